import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeVcenterVm, checkCopyableDisks, isOwnSnapshot, ownSnapshotSpec, reportedAddresses } from '../../lib/input/index.js';
import type { VmSummary } from '../../lib/vsphere/index.js';
import { disk, summary } from '../support/vm-summary.js';

test('boot order: SCSI 0:0 first, then by bus kind, bus number and unit', () => {
  const vm = describeVcenterVm('vc', summary([disk(4, 'ide', 0, 0), disk(3, 'sata', 0, 1), disk(2, 'scsi', 1, 0), disk(1, 'scsi', 0, 1), disk(0, 'scsi', 0, 0)]));
  assert.deepEqual(vm.disks.map((d) => d.sourceKey), ['0', '1', '2', '3', '4']);
  assert.deepEqual(vm.disks.map((d) => d.index), [0, 1, 2, 3, 4]);
  assert.equal(vm.nics[0]!.mac, '00:50:56:aa:bb:cc');
  assert.equal(vm.nics[0]!.adapter, 'vmxnet3');
  assert.equal(vm.coresPerSocket, 1, 'an unset cores-per-socket means one');
  assert.deepEqual(vm.source, { kind: 'vcenter', host: 'vc', moref: 'vm-1', uuid: 'u', instanceUuid: 'iu', path: '/DC0/vm/web01' });
});

test('RDM and shared disks are refused before anything is created', () => {
  assert.throws(() => checkCopyableDisks(summary([disk(0, 'scsi', 0, 0, { backingType: 'VirtualDiskRawDiskMappingVer1BackingInfo' })])), /raw device mapping/);
  assert.throws(() => checkCopyableDisks(summary([disk(0, 'scsi', 0, 0, { sharing: 'sharingMultiWriter' })])), /shared between VMs/);
  checkCopyableDisks(summary([disk(0, 'scsi', 0, 0, { sharing: 'sharingNone' })]));
});

test("oneswap's snapshots are marked by name and description", () => {
  const spec = ownSnapshotSpec('cbt-map');
  assert.ok(isOwnSnapshot(spec));
  assert.ok(!isOwnSnapshot({ name: spec.name, description: 'before patching' }));
  assert.ok(!isOwnSnapshot({ name: 'nightly', description: spec.description }));
});

test('reportedAddresses: the first keepable IPv4 that Tools report per NIC, matched by MAC whatever its case', () => {
  const nic = (key: number, mac: string) => ({ key, label: `Network adapter ${key}`, macAddress: mac, network: 'VM Network', adapterType: 'VirtualVmxnet3', connected: true });
  const vm: VmSummary = {
    ...summary([disk(0, 'scsi', 0, 0)]),
    nics: [nic(1, '00:50:56:AA:00:01'), nic(2, '00:50:56:aa:00:02'), nic(3, '00:50:56:aa:00:03'), nic(4, '00:50:56:aa:00:04')],
    guestNet: [
      { mac: '00:50:56:aa:00:01', addresses: ['fe80::250:56ff:feaa:1', '169.254.3.4', '192.168.10.20', '192.168.10.21'] },
      { mac: '00:50:56:aa:00:03', addresses: ['fe80::1', '127.0.0.1', '999.1.1.1'] },
      { mac: '00:50:56:aa:00:04', addresses: ['10.1.2.3'] },
    ],
  };
  assert.deepEqual([...reportedAddresses(vm)], [[0, '192.168.10.20'], [3, '10.1.2.3']]);
  assert.deepEqual([...reportedAddresses(summary([disk(0, 'scsi', 0, 0)]))], [], 'a VM that is off reports nothing');
});
