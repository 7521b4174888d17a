import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InventoryIndex, listClusters, listDatacenters, listHosts, listNetworks } from '../../lib/vsphere/inventory.js';
import { retrieveAllPages, type ObjectContent } from '../../lib/vsphere/property-collector.js';
import { parseSoapResponse } from '../../lib/vsphere/soap-envelope.js';
import { diskCapacityBytes, parseDatastorePath, readDisks } from '../../lib/vsphere/vm-hardware.js';
import { nameMatches, readVmSummary } from '../../lib/vsphere/vm-inventory.js';
import { flattenSnapshotTree } from '../../lib/vsphere/snapshots.js';

const XSI = 'xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance"';
const mo = (type: string, value: string) => `<val ${XSI} XMLSchema-instance:type="ManagedObjectReference" type="${type}">${value}</val>`;
const str = (s: string) => `<val ${XSI} XMLSchema-instance:type="xsd:string">${s}</val>`;
const prop = (name: string, val: string) => `<propSet><name>${name}</name>${val}</propSet>`;
const obj = (type: string, value: string, ...props: string[]) => `<objects><obj type="${type}">${value}</obj>${props.join('')}</objects>`;
const entity = (type: string, value: string, name: string, parentType: string, parent: string, ...more: string[]) =>
  obj(type, value, prop('name', str(name)), prop('parent', mo(parentType, parent)), ...more);

async function contentsOf(objects: string): Promise<ObjectContent[]> {
  const xml =
    '<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>' +
    `<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>${objects}</returnval></RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>`;
  const r = parseSoapResponse(xml);
  assert.equal(r.kind, 'result');
  return retrieveAllPages(async () => (r.kind === 'result' ? r.returnvals[0] : undefined), async () => undefined);
}

// The vcsim default model, with a nested folder and datacenter added.
const INVENTORY =
  entity('Datacenter', 'datacenter-2', 'DC0', 'Folder', 'group-d1') +
  entity('Folder', 'folder-3', 'vm', 'Datacenter', 'datacenter-2') +
  entity('Folder', 'folder-4', 'host', 'Datacenter', 'datacenter-2') +
  entity('Folder', 'folder-6', 'network', 'Datacenter', 'datacenter-2') +
  entity('Folder', 'folder-9', 'Prod', 'Folder', 'folder-3') +
  entity('ComputeResource', 'computeresource-23', 'DC0_H0', 'Folder', 'folder-4') +
  entity('HostSystem', 'host-21', 'DC0_H0', 'ComputeResource', 'computeresource-23', prop('runtime.connectionState', `<val ${XSI} XMLSchema-instance:type="HostSystemConnectionState">connected</val>`)) +
  entity(
    'ClusterComputeResource', 'clustercomputeresource-27', 'DC0_C0', 'Folder', 'folder-4',
    prop('host', `<val ${XSI} XMLSchema-instance:type="ArrayOfManagedObjectReference"><ManagedObjectReference type="HostSystem">host-34</ManagedObjectReference><ManagedObjectReference type="HostSystem">host-42</ManagedObjectReference></val>`),
  ) +
  entity('HostSystem', 'host-34', 'DC0_C0_H0', 'ClusterComputeResource', 'clustercomputeresource-27') +
  entity('HostSystem', 'host-42', 'DC0_C0_H1', 'ClusterComputeResource', 'clustercomputeresource-27') +
  entity('Network', 'network-7', 'VM Network', 'Folder', 'folder-6') +
  entity('DistributedVirtualPortgroup', 'dvportgroup-13', 'DC0_DVPG0', 'Folder', 'folder-6', prop('key', str('dvportgroup-13'))) +
  entity('DistributedVirtualPortgroup', 'dvportgroup-11', 'DVS0-DVUplinks-9', 'Folder', 'folder-6', prop('key', str('dvportgroup-11')), prop('config.uplink', `<val ${XSI} XMLSchema-instance:type="xsd:boolean">true</val>`)) +
  entity('OpaqueNetwork', 'network-o1', 'nsx-seg', 'Folder', 'folder-6', prop('summary.opaqueNetworkId', str('abc-123'))) +
  entity('Folder', 'group-x', 'Region', 'Folder', 'group-d1') +
  entity('Datacenter', 'datacenter-50', 'DC1', 'Folder', 'group-x');

const DEVICES =
  `<val ${XSI} XMLSchema-instance:type="ArrayOfVirtualDevice">` +
  '<VirtualDevice XMLSchema-instance:type="VirtualIDEController"><key>200</key><deviceInfo><label>IDE 0</label></deviceInfo><busNumber>0</busNumber></VirtualDevice>' +
  '<VirtualDevice XMLSchema-instance:type="ParaVirtualSCSIController"><key>1000</key><busNumber>0</busNumber><sharedBus>noSharing</sharedBus></VirtualDevice>' +
  '<VirtualDevice XMLSchema-instance:type="VirtualAHCIController"><key>15000</key><busNumber>0</busNumber></VirtualDevice>' +
  '<VirtualDevice XMLSchema-instance:type="VirtualDisk"><key>16000</key><deviceInfo><label>Hard disk 2</label></deviceInfo>' +
  '<backing XMLSchema-instance:type="VirtualDiskFlatVer2BackingInfo"><fileName>[Local DS (1)] web 01/web 01_1.vmdk</fileName><diskMode>independent_persistent</diskMode><thinProvisioned>false</thinProvisioned><changeId>52 8f 0c 11 a4 5e 39 02-6d 77 c1 e0 9b 3a 12 f4/7</changeId><sharing>sharingMultiWriter</sharing></backing>' +
  '<controllerKey>15000</controllerKey><unitNumber>0</unitNumber><capacityInKB>1</capacityInKB><capacityInBytes>4294967296</capacityInBytes></VirtualDevice>' +
  '<VirtualDevice XMLSchema-instance:type="VirtualDisk"><key>255511522</key><deviceInfo><label>Hard disk 1</label></deviceInfo>' +
  '<backing XMLSchema-instance:type="VirtualDiskFlatVer2BackingInfo"><fileName>[LocalDS_0] web01/web01.vmdk</fileName><diskMode>persistent</diskMode><thinProvisioned>true</thinProvisioned></backing>' +
  '<controllerKey>1000</controllerKey><unitNumber>0</unitNumber><capacityInKB>16384</capacityInKB></VirtualDevice>' +
  '<VirtualDevice XMLSchema-instance:type="VirtualVmxnet3"><key>4000</key><deviceInfo><label>Network adapter 1</label></deviceInfo>' +
  '<backing XMLSchema-instance:type="VirtualEthernetCardNetworkBackingInfo"><deviceName>VM Network</deviceName><network type="Network">network-7</network></backing>' +
  '<connectable><connected>true</connected></connectable><slotInfo XMLSchema-instance:type="VirtualDevicePciBusSlotInfo"><pciSlotNumber>192</pciSlotNumber></slotInfo><macAddress>00:50:56:AA:BB:CC</macAddress></VirtualDevice>' +
  '<VirtualDevice XMLSchema-instance:type="VirtualE1000e"><key>4001</key>' +
  '<backing XMLSchema-instance:type="VirtualEthernetCardDistributedVirtualPortBackingInfo"><port><switchUuid>fe a9</switchUuid><portgroupKey>dvportgroup-13</portgroupKey></port></backing>' +
  '<connectable><connected>false</connected></connectable><macAddress>00:50:56:00:00:01</macAddress></VirtualDevice>' +
  '<VirtualDevice XMLSchema-instance:type="VirtualVmxnet3"><key>4002</key>' +
  '<backing XMLSchema-instance:type="VirtualEthernetCardOpaqueNetworkBackingInfo"><opaqueNetworkId>abc-123</opaqueNetworkId><opaqueNetworkType>nsx.LogicalSwitch</opaqueNetworkType></backing>' +
  '<macAddress>00:50:56:00:00:02</macAddress></VirtualDevice>' +
  '</val>';

const VM =
  obj(
    'VirtualMachine', 'vm-100',
    prop('name', str('web01')),
    prop('parent', mo('Folder', 'folder-9')),
    prop('config.uuid', str('42 1c')),
    prop('config.firmware', str('efi')),
    prop('config.bootOptions.efiSecureBootEnabled', `<val ${XSI} XMLSchema-instance:type="xsd:boolean">true</val>`),
    prop('config.changeTrackingEnabled', `<val ${XSI} XMLSchema-instance:type="xsd:boolean">true</val>`),
    prop('config.hardware.numCPU', `<val ${XSI} XMLSchema-instance:type="xsd:int">4</val>`),
    prop('config.hardware.numCoresPerSocket', `<val ${XSI} XMLSchema-instance:type="xsd:int">2</val>`),
    prop('config.hardware.memoryMB', `<val ${XSI} XMLSchema-instance:type="xsd:int">8192</val>`),
    prop('config.hardware.device', DEVICES),
    prop('config.annotation', str('line1&#10;line2')),
    prop('runtime.powerState', `<val ${XSI} XMLSchema-instance:type="VirtualMachinePowerState">poweredOn</val>`),
    prop('runtime.host', mo('HostSystem', 'host-42')),
    prop('guest.toolsRunningStatus', str('guestToolsRunning')),
    prop('guest.net', `<val ${XSI} XMLSchema-instance:type="ArrayOfGuestNicInfo"><GuestNicInfo><network>VM Network</network><ipAddress>10.0.0.5</ipAddress><ipAddress>fe80::1</ipAddress><macAddress>00:50:56:AA:BB:CC</macAddress><ipConfig><ipAddress><ipAddress>10.0.0.5</ipAddress><prefixLength>24</prefixLength></ipAddress><ipAddress><ipAddress>10.0.0.6</ipAddress><prefixLength>24</prefixLength></ipAddress></ipConfig></GuestNicInfo><GuestNicInfo><ipAddress>192.168.1.9</ipAddress><macAddress>00:50:56:00:00:01</macAddress></GuestNicInfo><GuestNicInfo><ipAddress>172.17.0.1</ipAddress></GuestNicInfo></val>`),
    prop('snapshot.rootSnapshotList', `<val ${XSI} XMLSchema-instance:type="ArrayOfVirtualMachineSnapshotTree"><VirtualMachineSnapshotTree><snapshot type="VirtualMachineSnapshot">snapshot-1</snapshot><name>a</name></VirtualMachineSnapshotTree></val>`),
  );

describe('inventory index', () => {
  it('derives inventory paths, datacenters and clusters from parent links', async () => {
    const index = new InventoryIndex(await contentsOf(INVENTORY));
    assert.deepEqual(listDatacenters(index).map((d) => [d.name, d.path]), [['DC0', '/DC0'], ['DC1', '/Region/DC1']]);
    assert.deepEqual(listClusters(index).map((c) => [c.name, c.datacenter, c.hosts]), [['DC0_C0', 'DC0', 2]]);
    assert.deepEqual(
      listHosts(index).map((h) => [h.name, h.cluster ?? '-', h.datacenter]),
      [['DC0_C0_H0', 'DC0_C0', 'DC0'], ['DC0_C0_H1', 'DC0_C0', 'DC0'], ['DC0_H0', '-', 'DC0']],
    );
    assert.equal(index.path({ type: 'Folder', value: 'folder-9' }), '/DC0/vm/Prod');
  });

  it('lists VM networks of all kinds and leaves out DVS uplink portgroups', async () => {
    const index = new InventoryIndex(await contentsOf(INVENTORY));
    assert.deepEqual(listNetworks(index).map((n) => [n.name, n.kind]), [
      ['DC0_DVPG0', 'DistributedVirtualPortgroup'],
      ['nsx-seg', 'OpaqueNetwork'],
      ['VM Network', 'Network'],
    ]);
  });

  it('reads a VmSummary: hardware, disks, NICs with resolved networks, placement, guest', async () => {
    const index = new InventoryIndex(await contentsOf(INVENTORY));
    const [content] = await contentsOf(VM);
    assert.ok(content);
    const vm = readVmSummary(content.obj, content.props, index);
    assert.equal(vm.path, '/DC0/vm/Prod/web01');
    assert.equal(vm.datacenter, 'DC0');
    assert.equal(vm.cluster, 'DC0_C0');
    assert.equal(vm.host, 'DC0_C0_H1');
    assert.equal(vm.powerState, 'poweredOn');
    assert.deepEqual([vm.numCPU, vm.numCoresPerSocket, vm.memoryMiB], [4, 2, 8192]);
    assert.deepEqual([vm.firmware, vm.secureBoot, vm.changeTrackingEnabled, vm.toolsRunning], ['efi', true, true, true]);
    assert.equal(vm.annotation, 'line1\nline2');
    assert.equal(vm.hasSnapshots, true);
    // Per NIC by MAC, ipConfig first, then the flat list; an entry without a MAC (docker0) is no NIC.
    assert.deepEqual(vm.guestNet, [
      { mac: '00:50:56:aa:bb:cc', addresses: ['10.0.0.5', '10.0.0.6', 'fe80::1'] },
      { mac: '00:50:56:00:00:01', addresses: ['192.168.1.9'] },
    ]);

    // Device order as listed (boot order is the input stage's business); the opaque key stays a
    // number, capacityInBytes wins over capacityInKB.
    assert.deepEqual(vm.disks.map((d) => [d.key, d.controller.kind, d.controller.model, d.unitNumber, d.capacityBytes]), [
      [16000, 'sata', 'VirtualAHCIController', 0, 4294967296],
      [255511522, 'scsi', 'ParaVirtualSCSIController', 0, 16 * 1024 * 1024],
    ]);
    const sata = vm.disks[0];
    assert.equal(sata?.datastoreName, 'Local DS (1)');
    assert.equal(sata?.datastorePath, 'web 01/web 01_1.vmdk');
    assert.equal(sata?.changeId, '52 8f 0c 11 a4 5e 39 02-6d 77 c1 e0 9b 3a 12 f4/7');
    assert.equal(sata?.sharing, 'sharingMultiWriter');
    assert.equal(sata?.diskMode, 'independent_persistent');
    assert.equal(vm.disks[1]?.thinProvisioned, true);
    assert.equal(vm.disks[1]?.backingType, 'VirtualDiskFlatVer2BackingInfo');

    assert.deepEqual(vm.nics.map((n) => [n.macAddress, n.network, n.adapterType, n.connected, n.pciSlot]), [
      ['00:50:56:aa:bb:cc', 'VM Network', 'VirtualVmxnet3', true, 192],
      ['00:50:56:00:00:01', 'DC0_DVPG0', 'VirtualE1000e', false, undefined],
      ['00:50:56:00:00:02', 'nsx-seg', 'VirtualVmxnet3', false, undefined],
    ]);
  });

  it('reads disks from a bare device list (config.hardware retrieved whole)', () => {
    const disks = readDisks([
      { $type: 'ParaVirtualSCSIController', key: '1000', busNumber: '1' },
      { $type: 'VirtualDisk', key: '2001', controllerKey: '1000', unitNumber: '1', capacityInKB: '1024', backing: { $type: 'VirtualDiskFlatVer2BackingInfo', fileName: '[ds] a/b.vmdk' } },
      { $type: 'VirtualDisk', key: '2000', controllerKey: '1000', unitNumber: '0', capacityInKB: '2048', backing: { $type: 'VirtualDiskFlatVer2BackingInfo', fileName: '[ds] a/a.vmdk' } },
    ]);
    assert.deepEqual(disks.map((d) => [d.key, d.controller.busNumber, d.capacityBytes]), [[2001, 1, 1024 * 1024], [2000, 1, 2 * 1024 * 1024]]);
  });
});

describe('small readers', () => {
  it('parses "[datastore] path"', () => {
    assert.deepEqual(parseDatastorePath('[LocalDS_0] DC0_H0_VM0/disk1.vmdk'), { datastore: 'LocalDS_0', path: 'DC0_H0_VM0/disk1.vmdk' });
    assert.deepEqual(parseDatastorePath('[my ds] a b/c.vmdk'), { datastore: 'my ds', path: 'a b/c.vmdk' });
    assert.deepEqual(parseDatastorePath('/vmfs/volumes/x/y.vmdk'), { datastore: '', path: '/vmfs/volumes/x/y.vmdk' });
  });

  it('computes capacity from capacityInBytes, else capacityInKB × 1024', () => {
    assert.equal(diskCapacityBytes({ capacityInKB: '16384' }), 16 * 1024 * 1024);
    assert.equal(diskCapacityBytes({ capacityInKB: '1', capacityInBytes: '1500' }), 1500);
  });

  it('matches names exactly or by * glob, with regex characters taken literally', () => {
    assert.equal(nameMatches('web01', 'web01'), true);
    assert.equal(nameMatches('web01', 'web0'), false);
    assert.equal(nameMatches('web01', 'web*'), true);
    assert.equal(nameMatches('db.web01', '*web*'), true);
    assert.equal(nameMatches('a.b', 'a.*'), true);
    assert.equal(nameMatches('axb', 'a.b'), false);
    assert.equal(nameMatches('(x)[1]', '(x)*'), true);
  });

  it('flattens the snapshot tree depth-first', () => {
    const tree = [
      {
        snapshot: { $type: 'ManagedObjectReference', type: 'VirtualMachineSnapshot', value: 's1' },
        name: 'root',
        description: '',
        createTime: 't1',
        childSnapshotList: [
          { snapshot: { $type: 'ManagedObjectReference', type: 'VirtualMachineSnapshot', value: 's2' }, name: 'child', childSnapshotList: { snapshot: { $type: 'ManagedObjectReference', type: 'VirtualMachineSnapshot', value: 's3' }, name: 'grandchild' } },
          { snapshot: { $type: 'ManagedObjectReference', type: 'VirtualMachineSnapshot', value: 's4' }, name: 'child2' },
        ],
      },
    ];
    assert.deepEqual(flattenSnapshotTree(tree).map((s) => [s.ref.value, s.name]), [['s1', 'root'], ['s2', 'child'], ['s3', 'grandchild'], ['s4', 'child2']]);
  });
});
