import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OneswapError } from '../../lib/errors/index.js';
import { bytesPerUnit, describeOvfVm, ovfDisks, parseOvf } from '../../lib/input/ovf.js';
import { VCENTER8_OVF } from '../fixtures/ovf/vcenter8.js';
import { OVFTOOL_LEGACY_OVF } from '../fixtures/ovf/ovftool-legacy.js';
import { VIRTUALBOX_OVF10, VIRTUALBOX_OVF20 } from '../fixtures/ovf/virtualbox.js';

const GiB = 2 ** 30;
const src = { path: '/imports/app01.ova' };

test('vCenter 8 export: hardware, firmware, OS and annotation', () => {
  const pkg = parseOvf(VCENTER8_OVF, 'app01.ovf in OVA app01.ova');
  assert.equal(pkg.version, '1.0');
  assert.equal(pkg.vmName, 'app01');
  assert.equal(pkg.hardware.systemType, 'vmx-20');
  assert.deepEqual([...pkg.files.keys()], ['file1', 'file2', 'file3', 'file4']);
  assert.deepEqual(pkg.files.get('file1'), { id: 'file1', href: 'app01-1.vmdk', size: 1836433408 });
  assert.deepEqual(pkg.disks.get('vmdisk1'), {
    diskId: 'vmdisk1',
    fileRef: 'file1',
    capacityBytes: 40 * GiB,
    formatUrl: 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized',
    subformat: 'streamOptimized',
    populatedSize: 4393533440,
  });
  assert.equal(pkg.disks.get('vmdisk2')!.capacityBytes, 10 * GiB);
  assert.equal(pkg.disks.get('vmdisk3')!.capacityBytes, 50 * GiB);
  assert.deepEqual(pkg.networks, ['prod-vlan120', 'backup-net']);
  assert.deepEqual(
    pkg.hardware.controllers.map((c) => [c.instanceId, c.bus, c.model, c.busNumber]),
    [
      ['3', 'scsi', 'ParaVirtualSCSIController', 0],
      ['4', 'sata', 'VirtualAHCIController', 0],
      ['5', 'ide', 'VirtualIDEController', 1],
      ['6', 'ide', 'VirtualIDEController', 0],
    ],
  );
  assert.deepEqual(pkg.warnings, []);

  const vm = describeOvfVm(pkg, src);
  assert.deepEqual(
    { ...vm, disks: undefined, nics: undefined },
    {
      name: 'app01',
      source: { kind: 'file', path: '/imports/app01.ova' },
      cpus: 4,
      coresPerSocket: 2,
      memoryMiB: 8192,
      firmware: 'efi',
      secureBoot: true,
      guestId: 'debian12_64Guest',
      guestFullName: 'Debian GNU/Linux 12 (64-bit)',
      annotation: 'Order service & API\nowner: team-payments <ops@example.com>',
      disks: undefined,
      nics: undefined,
    },
  );
});

test('vCenter 8 export: disks in bus order (SCSI before SATA whatever the document order), NICs with adapters, MAC and PCI slot', () => {
  const pkg = parseOvf(VCENTER8_OVF, 'app01.ovf');
  const vm = describeOvfVm(pkg, src, { name: 'app01-migrated' });
  assert.equal(vm.name, 'app01-migrated');
  assert.deepEqual(vm.disks, [
    { index: 0, label: 'Hard disk 1', capacityBytes: 40 * GiB, bus: 'scsi', controllerModel: 'ParaVirtualSCSIController', busNumber: 0, unitNumber: 0, sourceName: 'app01-1.vmdk', sourceKey: 'ovf:vmdisk1' },
    { index: 1, label: 'Hard disk 2', capacityBytes: 10 * GiB, bus: 'scsi', controllerModel: 'ParaVirtualSCSIController', busNumber: 0, unitNumber: 1, sourceName: 'app01-2.vmdk', sourceKey: 'ovf:vmdisk2' },
    { index: 2, label: 'Hard disk 3', capacityBytes: 50 * GiB, bus: 'sata', controllerModel: 'VirtualAHCIController', busNumber: 0, unitNumber: 0, sourceName: 'app01-3.vmdk', sourceKey: 'ovf:vmdisk3' },
  ]);
  assert.deepEqual(vm.nics, [
    { index: 0, label: 'Network adapter 1', mac: '00:50:56:9a:3c:01', network: 'prod-vlan120', adapter: 'vmxnet3', pciSlot: 192 },
    { index: 1, label: 'Network adapter 2', mac: '', network: 'backup-net', adapter: 'e1000e', pciSlot: 224 },
  ]);
  const files = ovfDisks(pkg);
  assert.deepEqual(
    files.map((f) => [f.href, f.format, f.chunked]),
    [
      ['app01-1.vmdk', 'streamOptimized', false],
      ['app01-2.vmdk', 'streamOptimized', false],
      ['app01-3.vmdk', 'streamOptimized', false],
    ],
  );
  assert.deepEqual(
    files.map((f) => f.description),
    vm.disks,
  );
});

test('older ovftool export: rasd Items only, LSI Logic, one disk, BIOS, CD-ROM and floppy ignored', () => {
  const pkg = parseOvf(OVFTOOL_LEGACY_OVF, 'centos6.ovf');
  const vm = describeOvfVm(pkg, { path: '/x/centos6.ova' });
  assert.equal(vm.name, 'centos6');
  assert.equal(vm.cpus, 1);
  assert.equal(vm.coresPerSocket, 1);
  assert.equal(vm.memoryMiB, 2048);
  assert.equal(vm.firmware, 'bios');
  assert.equal(vm.secureBoot, false);
  assert.equal(vm.guestId, 'centos64Guest');
  assert.equal(vm.annotation, '');
  assert.deepEqual(vm.disks, [
    { index: 0, label: 'Hard disk 1', capacityBytes: 16 * GiB, bus: 'scsi', controllerModel: 'VirtualLsiLogicController', busNumber: 0, unitNumber: 0, sourceName: 'centos6-disk1.vmdk', sourceKey: 'ovf:vmdisk1' },
  ]);
  assert.deepEqual(vm.nics, [{ index: 0, label: 'Network adapter 1', mac: '', network: 'VM Network', adapter: 'e1000' }]);
});

test('older form of host resource (/disk/id) and ovf://disk/id are read', () => {
  for (const form of ['/disk/vmdisk1', 'ovf://disk/vmdisk1']) {
    const pkg = parseOvf(OVFTOOL_LEGACY_OVF.replace('ovf:/disk/vmdisk1', form), 'c.ovf');
    assert.equal(ovfDisks(pkg)[0]!.href, 'centos6-disk1.vmdk');
  }
});

test('VirtualBox OVF 1.0: AHCI and PIIX4 controllers, capacities without unit, MegaBytes, Caption names', () => {
  const pkg = parseOvf(VIRTUALBOX_OVF10, 'devbox.ovf');
  assert.equal(pkg.hardware.systemType, 'virtualbox-2.2');
  assert.deepEqual(
    pkg.hardware.controllers.map((c) => [c.subType, c.bus, c.model, c.busNumber]),
    [
      ['PIIX4', 'ide', 'VirtualIDEController', 0],
      ['PIIX4', 'ide', 'VirtualIDEController', 1],
      ['AHCI', 'sata', 'VirtualAHCIController', 0],
      ['lsilogic', 'scsi', 'VirtualLsiLogicController', 0],
    ],
  );
  const vm = describeOvfVm(pkg, { path: '/x/devbox.ova' });
  assert.equal(vm.name, 'devbox');
  assert.equal(vm.cpus, 2);
  assert.equal(vm.memoryMiB, 4096);
  assert.equal(vm.firmware, 'bios');
  assert.equal(vm.guestId, '');
  assert.equal(vm.guestFullName, 'Debian_64');
  assert.deepEqual(
    vm.disks.map((d) => [d.index, d.label, d.capacityBytes, d.bus, d.controllerModel, d.busNumber, d.unitNumber, d.sourceName, d.sourceKey]),
    [
      [0, 'Hard disk 1', 20 * GiB, 'sata', 'VirtualAHCIController', 0, 0, 'devbox-disk001.vmdk', 'ovf:vmdisk1'],
      [1, 'Hard disk 2', 5 * GiB, 'sata', 'VirtualAHCIController', 0, 1, 'devbox-disk002.vmdk', 'ovf:vmdisk2'],
    ],
  );
  assert.deepEqual(vm.nics, [{ index: 0, label: 'Network adapter 1', mac: '', network: 'NAT', adapter: 'e1000' }]);
});

test('VirtualBox OVF 2.0: StorageItem in its .xsd namespace, lsilogic disk, EFI from vbox:Machine, virtio NIC', () => {
  const pkg = parseOvf(VIRTUALBOX_OVF20, 'uefibox.ovf');
  assert.equal(pkg.version, '2.0');
  const vm = describeOvfVm(pkg, { path: '/x/uefibox.ova' });
  assert.equal(vm.firmware, 'efi');
  assert.equal(vm.secureBoot, false);
  assert.equal(vm.memoryMiB, 1024);
  assert.equal(vm.guestFullName, 'Ubuntu_64');
  assert.deepEqual(
    vm.disks.map((d) => [d.bus, d.controllerModel, d.capacityBytes, d.sourceName]),
    [['scsi', 'VirtualLsiLogicController', 32 * GiB, 'uefibox-disk001.vmdk']],
  );
  assert.deepEqual(vm.nics, [{ index: 0, label: 'Network adapter 1', mac: '', network: 'Bridged', adapter: 'other' }]);
});

test('controller subtypes map to vSphere models; NVMe and unknown SCSI models keep their name', () => {
  const withController = (type: number, sub: string) =>
    OVFTOOL_LEGACY_OVF.replace('<rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>\n        <rasd:ResourceType>6</rasd:ResourceType>', `<rasd:ResourceSubType>${sub}</rasd:ResourceSubType>\n        <rasd:ResourceType>${type}</rasd:ResourceType>`);
  const cases: Array<[number, string, string, string]> = [
    [6, 'lsilogicsas', 'scsi', 'VirtualLsiLogicSASController'],
    [6, 'LsiLogicSas', 'scsi', 'VirtualLsiLogicSASController'],
    [6, 'buslogic', 'scsi', 'VirtualBusLogicController'],
    [6, 'VirtualSCSI', 'scsi', 'ParaVirtualSCSIController'],
    [6, 'VirtioSCSI', 'scsi', 'VirtioSCSI'],
    [20, 'vmware.nvme.controller', 'nvme', 'VirtualNVMEController'],
    [20, 'NVMe', 'nvme', 'VirtualNVMEController'],
    [20, 'vmware.sata.ahci', 'sata', 'VirtualAHCIController'],
  ];
  for (const [type, sub, bus, model] of cases) {
    const d = describeOvfVm(parseOvf(withController(type, sub), 'x.ovf'), src).disks[0]!;
    assert.deepEqual([d.bus, d.controllerModel], [bus, model], sub);
  }
  const empty = describeOvfVm(parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>', ''), 'x.ovf'), src).disks[0]!;
  assert.equal(empty.controllerModel, 'VirtualLsiLogicController');
});

test('NIC subtypes map to adapters; MACs are normalized', () => {
  const nic = (sub: string, mac = '') =>
    describeOvfVm(
      parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:ResourceSubType>E1000</rasd:ResourceSubType>', `<rasd:ResourceSubType>${sub}</rasd:ResourceSubType>${mac ? `<rasd:Address>${mac}</rasd:Address>` : ''}`), 'x.ovf'),
      src,
    ).nics[0]!;
  assert.equal(nic('VmxNet3').adapter, 'vmxnet3');
  assert.equal(nic('VmxNet2').adapter, 'vmxnet2');
  assert.equal(nic('E1000e').adapter, 'e1000e');
  assert.equal(nic('PCNet32').adapter, 'pcnet32');
  assert.equal(nic('Am79C973').adapter, 'pcnet32');
  assert.equal(nic('something').adapter, 'other');
  assert.equal(nic('VmxNet3', '00-50-56-AA-BB-CC').mac, '00:50:56:aa:bb:cc');
  assert.equal(nic('VmxNet3', '005056aabbcc').mac, '00:50:56:aa:bb:cc');
  assert.equal(nic('VmxNet3', 'not-a-mac').mac, '');
});

test('units: DSP0004 programmatic units and the names other tools write', () => {
  assert.equal(bytesPerUnit('byte'), 1);
  assert.equal(bytesPerUnit('byte * 2^30'), GiB);
  assert.equal(bytesPerUnit('byte*2^20'), 2 ** 20);
  assert.equal(bytesPerUnit('byte * 10^6'), 1e6);
  assert.equal(bytesPerUnit('byte * 2^10 * 2^10'), 2 ** 20);
  assert.equal(bytesPerUnit('MegaBytes'), 2 ** 20);
  assert.equal(bytesPerUnit('GB'), GiB);
  assert.equal(bytesPerUnit('hertz * 10^6'), undefined);
  assert.equal(bytesPerUnit('byte * lots'), undefined);
  // memory in GiB, memory without AllocationUnits (MiB by default)
  const gib = OVFTOOL_LEGACY_OVF.replace('<rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>', '<rasd:AllocationUnits>byte * 2^30</rasd:AllocationUnits>').replace('<rasd:VirtualQuantity>2048</rasd:VirtualQuantity>', '<rasd:VirtualQuantity>3</rasd:VirtualQuantity>');
  assert.equal(parseOvf(gib, 'x.ovf').hardware.memoryMiB, 3072);
  const none = OVFTOOL_LEGACY_OVF.replace('<rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>', '');
  assert.equal(parseOvf(none, 'x.ovf').hardware.memoryMiB, 2048);
});

test('a disk item before its controller, units without AddressOnParent, the old OVF 0.9 Section form', () => {
  // No AddressOnParent: units count up per controller in document order.
  const noUnits = VCENTER8_OVF.replace(/<sasd:AddressOnParent>\d<\/sasd:AddressOnParent>/g, '');
  const vm = describeOvfVm(parseOvf(noUnits, 'x.ovf'), src);
  assert.deepEqual(vm.disks.map((d) => [d.sourceKey, d.bus, d.unitNumber]), [
    ['ovf:vmdisk1', 'scsi', 0],
    ['ovf:vmdisk2', 'scsi', 1],
    ['ovf:vmdisk3', 'sata', 0],
  ]);
  const old = OVFTOOL_LEGACY_OVF.replace('<DiskSection>', '<Section xsi:type="ovf:DiskSection_Type">').replace('</DiskSection>', '</Section>');
  assert.equal(parseOvf(old, 'x.ovf').disks.size, 1);
});

test('deployment options: the default configuration\'s items are read', () => {
  const xml = OVFTOOL_LEGACY_OVF.replace(
    '<VirtualSystem ovf:id="centos6">',
    `<DeploymentOptionSection><Info>sizes</Info><Configuration ovf:id="small"><Label>Small</Label><Description>s</Description></Configuration><Configuration ovf:default="true" ovf:id="large"><Label>Large</Label><Description>l</Description></Configuration></DeploymentOptionSection>
  <VirtualSystem ovf:id="centos6">`,
  ).replace(
    /<Item>\s*<rasd:AllocationUnits>hertz \* 10\^6<\/rasd:AllocationUnits>/,
    `<Item ovf:configuration="small"><rasd:InstanceID>90</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item ovf:configuration="large"><rasd:InstanceID>91</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>8</rasd:VirtualQuantity></Item>
      <Item ovf:configuration="nothing"><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>`,
  );
  const pkg = parseOvf(xml, 'x.ovf');
  assert.equal(pkg.deploymentOption, 'large');
  assert.equal(pkg.hardware.cpus, 8);
  assert.match(pkg.warnings.join('\n'), /2 deployment configurations; the hardware of "large"/);
});

test('a VirtualSystemCollection holding one VM is read; disks not attached are reported', () => {
  const xml = OVFTOOL_LEGACY_OVF.replace('<VirtualSystem ovf:id="centos6">', '<VirtualSystemCollection ovf:id="vapp"><Info>x</Info><VirtualSystem ovf:id="centos6">').replace('</VirtualSystem>', '</VirtualSystem></VirtualSystemCollection>');
  assert.equal(parseOvf(xml, 'x.ovf').vmName, 'centos6');
  const extra = OVFTOOL_LEGACY_OVF.replace('</DiskSection>', '<Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="spare"/></DiskSection>');
  assert.match(parseOvf(extra, 'x.ovf').warnings.join('\n'), /disk spare of DiskSection is attached to no controller/);
});

// ---------------------------------------------------------------------------------------------
// Refusals: OneswapError 'data', one line, naming the descriptor.

function refuses(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof OneswapError, `not a OneswapError: ${String(err)}`);
    assert.equal(err.kind, 'data');
    assert.ok(!err.message.includes('\n'), `message has several lines: ${err.message}`);
    assert.match(err.message, /bad\.ovf/);
    assert.match(err.message, pattern);
    return true;
  });
}

const describe = (xml: string) => describeOvfVm(parseOvf(xml, 'bad.ovf'), src);

test('refuses XML that does not parse', () => {
  refuses(() => parseOvf('<Envelope><References></Envelope>', 'bad.ovf'), /not well-formed XML/);
  refuses(() => parseOvf('', 'bad.ovf'), /bad\.ovf/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.slice(0, 2000), 'bad.ovf'), /not well-formed XML/);
});

test('refuses XML that is not an OVF envelope', () => {
  refuses(() => parseOvf('<?xml version="1.0"?><VirtualMachine><Name>x</Name></VirtualMachine>', 'bad.ovf'), /^bad\.ovf is not an OVF descriptor \(root element <VirtualMachine>\)$/);
  refuses(() => parseOvf('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"/>', 'bad.ovf'), /not an OVF descriptor \(root element <soap:Envelope> in http:\/\/schemas\.xmlsoap\.org/);
});

test('refuses an envelope with no VirtualSystem, and one with several', () => {
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace(/<VirtualSystem [\s\S]*<\/VirtualSystem>/, ''), 'bad.ovf'), /describes no VirtualSystem/);
  const vs = /<VirtualSystem [\s\S]*<\/VirtualSystem>/.exec(OVFTOOL_LEGACY_OVF)![0];
  const two = OVFTOOL_LEGACY_OVF.replace(vs, `<VirtualSystemCollection ovf:id="vapp"><Info>A vApp</Info>${vs}${vs.replace('ovf:id="centos6"', 'ovf:id="centos6-b"')}</VirtualSystemCollection>`);
  assert.throws(() => parseOvf(two, 'bad.ovf'), (err: OneswapError) => {
    assert.match(err.message, /describes 2 VMs .*centos6, centos6-b/);
    assert.match(err.hint ?? '', /export each VM/);
    return true;
  });
});

test('refuses a disk item naming an unknown disk, a disk naming an unknown file, a disk on no controller', () => {
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('ovf:/disk/vmdisk1', 'ovf:/disk/vmdisk9'), 'bad.ovf'), /HostResource "ovf:\/disk\/vmdisk9", which is not a disk of the DiskSection/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>', ''), 'bad.ovf'), /hard disk with no HostResource/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('ovf:fileRef="file1"', 'ovf:fileRef="file7"'), 'bad.ovf'), /disk vmdisk1 names file "file7", which References does not list/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:Parent>3</rasd:Parent>\n        <rasd:ResourceType>17', '<rasd:Parent>9</rasd:Parent>\n        <rasd:ResourceType>17'), 'bad.ovf'), /attached to item 9, which is not a disk controller oneswap knows \(ResourceType 24\)/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:Parent>3</rasd:Parent>\n        <rasd:ResourceType>17', '<rasd:Parent>42</rasd:Parent>\n        <rasd:ResourceType>17'), 'bad.ovf'), /attached to controller 42, which the VirtualHardwareSection does not have/);
});

test('refuses an empty disk (no file): oneswap does not create blank disks', () => {
  const blank = OVFTOOL_LEGACY_OVF.replace(' ovf:fileRef="file1"', '');
  const pkg = parseOvf(blank, 'bad.ovf');
  assert.equal(pkg.disks.get('vmdisk1')!.fileRef, undefined);
  refuses(() => describeOvfVm(pkg, src), /Hard disk 1 \(disk vmdisk1\) is an empty disk with no file/);
  refuses(() => ovfDisks(pkg), /empty disk/);
});

test('refuses chunked and compressed disk files', () => {
  const chunked = parseOvf(OVFTOOL_LEGACY_OVF.replace('ovf:size="734003200"', 'ovf:size="734003200" ovf:chunkSize="2147483648"'), 'bad.ovf');
  assert.equal(chunked.files.get('file1')!.chunkSize, 2147483648);
  assert.equal(ovfDisks(chunked)[0]!.chunked, true);
  refuses(() => describeOvfVm(chunked, src), /centos6-disk1\.vmdk is split into chunks \(ovf:chunkSize\)/);
  refuses(() => describe(OVFTOOL_LEGACY_OVF.replace('ovf:size="734003200"', 'ovf:size="734003200" ovf:compression="gzip"')), /gzip-compressed/);
  // "identity" means not compressed
  assert.equal(describe(OVFTOOL_LEGACY_OVF.replace('ovf:size="734003200"', 'ovf:compression="identity"')).disks.length, 1);
});

test('refuses delta disks (ovf:parentRef); warns about controllers of unknown subtype', () => {
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('ovf:diskId="vmdisk1"', 'ovf:diskId="vmdisk1" ovf:parentRef="base1"'), 'bad.ovf'), /disk vmdisk1 is a delta of disk base1/);
  const odd = parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>', '<rasd:ResourceSubType>megaraid</rasd:ResourceSubType>'), 'x.ovf');
  assert.equal(ovfDisks(odd)[0]!.description.controllerModel, 'megaraid');
  assert.match(odd.warnings.join('\n'), /hardware item 3 \(scsiController0\) is a controller of unknown subtype "megaraid"; it is taken for SCSI/);
});

test('refuses non-numeric quantities', () => {
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('ovf:capacity="16"', 'ovf:capacity="${disk.size}"'), 'bad.ovf'), /the capacity of disk vmdisk1 is "\$\{disk\.size\}", not a whole number/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:VirtualQuantity>1</rasd:VirtualQuantity>', '<rasd:VirtualQuantity>one</rasd:VirtualQuantity>'), 'bad.ovf'), /CPU count .* is "one"/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:VirtualQuantity>2048</rasd:VirtualQuantity>', '<rasd:VirtualQuantity>2 GB</rasd:VirtualQuantity>'), 'bad.ovf'), /memory size .* is "2 GB"/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>', '<rasd:AllocationUnits>furlongs</rasd:AllocationUnits>'), 'bad.ovf'), /"furlongs", which is not a unit of bytes/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:AddressOnParent>0</rasd:AddressOnParent>\n        <rasd:ElementName>disk0', '<rasd:AddressOnParent>x</rasd:AddressOnParent>\n        <rasd:ElementName>disk0'), 'bad.ovf'), /AddressOnParent .* is "x"/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:ResourceType>24</rasd:ResourceType>', '<rasd:ResourceType>video</rasd:ResourceType>'), 'bad.ovf'), /ResourceType of hardware item 9 \(video\) is "video"/);
});

test('refuses absurd values: 0 CPUs, no memory, capacity 0, no CPU item', () => {
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:VirtualQuantity>1</rasd:VirtualQuantity>', '<rasd:VirtualQuantity>0</rasd:VirtualQuantity>'), 'bad.ovf'), /has 0 CPUs/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:VirtualQuantity>2048</rasd:VirtualQuantity>', '<rasd:VirtualQuantity>0</rasd:VirtualQuantity>'), 'bad.ovf'), /0 bytes of memory/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('ovf:capacity="16"', 'ovf:capacity="0"'), 'bad.ovf'), /disk vmdisk1 has capacity 0/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('<rasd:ResourceType>3</rasd:ResourceType>', '<rasd:ResourceType>1</rasd:ResourceType>'), 'bad.ovf'), /no CPU item/);
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace('ovf:capacity="16"', 'ovf:capacity="99999999999"'), 'bad.ovf'), /out of range/);
});

test('refuses a VirtualSystem without VirtualHardwareSection and a disk attached twice', () => {
  refuses(() => parseOvf(OVFTOOL_LEGACY_OVF.replace(/<VirtualHardwareSection>[\s\S]*<\/VirtualHardwareSection>/, ''), 'bad.ovf'), /has no VirtualHardwareSection/);
  const twice = OVFTOOL_LEGACY_OVF.replace(
    '<Item>\n        <rasd:AddressOnParent>7</rasd:AddressOnParent>',
    '<Item><rasd:AddressOnParent>1</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>20</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>\n      <Item>\n        <rasd:AddressOnParent>7</rasd:AddressOnParent>',
  );
  refuses(() => parseOvf(twice, 'bad.ovf'), /disk vmdisk1 is attached twice/);
});

test('entities and CDATA in names and annotations are decoded; a DOCTYPE cannot define entities', () => {
  const xml = OVFTOOL_LEGACY_OVF.replace('<Name>centos6</Name>', '<Name>web &amp; db &#x263A;</Name>').replace(
    '</VirtualHardwareSection>',
    '</VirtualHardwareSection><AnnotationSection><Info>a</Info><Annotation><![CDATA[raw <b>&amp;</b>]]></Annotation></AnnotationSection>',
  );
  const pkg = parseOvf(xml, 'x.ovf');
  assert.equal(pkg.vmName, 'web & db \u263a');
  assert.equal(pkg.annotation, 'raw <b>&amp;</b>');
  const bomb = `<?xml version="1.0"?><!DOCTYPE Envelope [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>` + OVFTOOL_LEGACY_OVF.replace(/^<\?xml[^>]*>/, '').replace('<Name>centos6</Name>', '<Name>&b;</Name>');
  assert.equal(parseOvf(bomb, 'x.ovf').vmName, '&b;');
});
