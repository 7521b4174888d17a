// The pure parts of `plan check`: the run order, room summed over a plan, finding a VM among
// those read, the source refusals (the import's precheck throws their first), the guest OS rule
// and name clashes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planRoom, poolRoom, runOrder } from '../../lib/plan/plan-capacity.js';
import { guestSupport } from '../../lib/convert/index.js';
import { matchVm, type VmSummary } from '../../lib/vsphere/index.js';
import { disk, summary } from '../support/vm-summary.js';
import { sourceRefusals, foreignSnapshotRefusal } from '../../lib/supervisor/index.js';
import { mapNics, nameClashes, unusableDatastore } from '../../lib/output/index.js';
import { chooseReader, type DiskPlace } from '../../lib/input/index.js';
import type { OneDatastore } from '../../lib/one/index.js';
import { describeError } from '../../lib/errors/index.js';

const MiB = 1024 * 1024;

test('run order: waves as the plan first names them, higher priority first, ties in plan order', () => {
  const vms = [
    { key: 'a', wave: 'w2', priority: 0 },
    { key: 'b', wave: 'w1', priority: 0 },
    { key: 'c', wave: 'w2', priority: 5 },
    { key: 'd', wave: 'w1', priority: 0 },
    { key: 'e', wave: 'w1', priority: 1 },
  ];
  assert.deepEqual(runOrder(vms).map((v) => v.key), ['c', 'a', 'e', 'b', 'd']);
});

test('room: each VM alone fits, the plan does not; a VM left out does not take room from the next', () => {
  const lines = planRoom(
    [
      { key: 'a', datastoreId: 1, bytes: 8 * MiB },
      { key: 'b', datastoreId: 2, bytes: 1 },
      { key: 'c', datastoreId: 1, bytes: 10 * MiB },
      { key: 'd', datastoreId: 1, bytes: 2 * MiB },
    ],
    [{ datastoreId: 1, freeMb: 12 }, { datastoreId: 2, freeMb: 1 }],
  );
  assert.deepEqual(lines, [
    { datastoreId: 1, freeBytes: 12 * MiB, neededBytes: 20 * MiB, vms: ['a', 'c', 'd'], overflow: [{ key: 'c', bytes: 10 * MiB, before: 8 * MiB }], enough: false },
    // One byte takes a whole MiB, as oned counts it.
    { datastoreId: 2, freeBytes: 1 * MiB, neededBytes: 1, vms: ['b'], overflow: [], enough: true },
  ]);
  assert.deepEqual(planRoom([{ key: 'a', datastoreId: 1, bytes: 12 * MiB + 1 }], [{ datastoreId: 1, freeMb: 12 }])[0]!.overflow.map((o) => o.key), ['a']);
});

test('a Ceph pool two datastores share: each fits its own datastore, together they overflow the pool', () => {
  const demands = [
    { key: 'a', datastoreId: 1, bytes: 6 * MiB },
    { key: 'b', datastoreId: 2, bytes: 6 * MiB },
    { key: 'c', datastoreId: 3, bytes: 6 * MiB },
    { key: 'd', datastoreId: 1, bytes: 2 * MiB },
  ];
  assert.deepEqual(planRoom(demands, [{ datastoreId: 1, freeMb: 10 }, { datastoreId: 2, freeMb: 10 }]).map((l) => l.enough), [true, true]);
  assert.deepEqual(poolRoom(demands, { pool: 'one', datastoreIds: [1, 2], freeMb: 10 }), {
    pool: 'one',
    datastoreIds: [1, 2],
    freeBytes: 10 * MiB,
    neededBytes: 14 * MiB,
    vms: ['a', 'b', 'd'],
    overflow: [{ key: 'b', bytes: 6 * MiB, before: 6 * MiB }],
    enough: false,
  });
});

const keys = (name: string, path: string, uuid: string, instanceUuid: string) => ({ name, path, uuid, instanceUuid });

test('a VM is found by path, by either UUID (any case), or by exact name; ambiguity names the paths', () => {
  const vms = [
    keys('web', '/DC0/vm/a/web', '11111111-1111-1111-1111-111111111111', '21111111-1111-1111-1111-111111111111'),
    keys('web', '/DC0/vm/b/web', '12222222-2222-2222-2222-222222222222', '22222222-2222-2222-2222-222222222222'),
    keys('db', '/DC0/vm/db', '13333333-3333-3333-3333-333333333333', '23333333-3333-3333-3333-333333333333'),
  ];
  assert.equal(matchVm({ by: 'path', value: '/DC0/vm/b/web/' }, vms, 'vCenter vc').uuid, '12222222-2222-2222-2222-222222222222');
  assert.equal(matchVm({ by: 'uuid', value: '23333333-3333-3333-3333-333333333333'.toUpperCase() }, vms, 'vCenter vc').name, 'db');
  assert.equal(matchVm({ by: 'name', value: 'db' }, vms, 'vCenter vc').path, '/DC0/vm/db');
  assert.throws(() => matchVm({ by: 'name', value: 'web' }, vms, 'vCenter vc'), {
    message: '"web" matches 2 VMs in vCenter vc: /DC0/vm/a/web, /DC0/vm/b/web; pass the inventory path or the UUID instead',
  });
  assert.throws(() => matchVm({ by: 'name', value: 'Web' }, vms, 'vCenter vc'), { message: /^vCenter vc has no VM "Web"; / });
});

const vm = (o: Partial<VmSummary> = {}): VmSummary => summary([disk(0, 'scsi', 0, 0)], { changeTrackingEnabled: false, ...o });

test('source refusals: all of them, in the order the import meets them (it throws the first)', () => {
  const odd = vm({
    powerState: 'poweredOn',
    hardwareVersion: 'vmx-04',
    disks: [disk(0, 'scsi', 0, 0, { backingType: 'VirtualDiskRawDiskMappingVer1BackingInfo' }), disk(1, 'scsi', 0, 1, { sharing: 'sharingMultiWriter' }), disk(2, 'scsi', 0, 2, { diskMode: 'independent_persistent' })],
  });
  assert.deepEqual(sourceRefusals(odd, { kind: 'warm', enableCbt: false }).map((r) => r.code), ['rdm-disk', 'shared-disk', 'hardware-version', 'independent-disk', 'cbt-off']);
  assert.deepEqual(sourceRefusals(odd, { kind: 'warm', enableCbt: true }).map((r) => r.code), ['rdm-disk', 'shared-disk', 'hardware-version', 'independent-disk']);
  assert.deepEqual(sourceRefusals(odd, { kind: 'cold', shutdown: false }).map((r) => r.code), ['rdm-disk', 'shared-disk', 'powered-on-cold']);
  assert.deepEqual(sourceRefusals(odd, { kind: 'cold', shutdown: true }).map((r) => r.code), ['rdm-disk', 'shared-disk']);
  assert.deepEqual(sourceRefusals(vm({ disks: [], powerState: 'suspended' }), { kind: 'cold', shutdown: true }).map((r) => r.code), ['no-disks', 'suspended']);
  assert.deepEqual(sourceRefusals(vm(), { kind: 'cold', shutdown: false }), []);
});

test('snapshots: only those oneswap did not make refuse the VM', () => {
  const own = { name: 'oneswap-cbt-map-2026', description: 'Created by oneswap (cbt-map); oneswap removes it when done.' };
  assert.equal(foreignSnapshotRefusal(vm(), [own]), undefined);
  const r = foreignSnapshotRefusal(vm(), [own, { name: 'before upgrade', description: '' }]);
  assert.equal(r?.code, 'foreign-snapshots');
  assert.equal(describeError(r!.error), 'VM web01 has snapshots ("before upgrade"); its disks are snapshot deltas (delete or consolidate the snapshots in vCenter first (oneswap never touches snapshots it did not create))');
});

test('guest OS: Windows and non-Linux families cannot be converted here; an undeclared OS is a doubt', () => {
  const g = (guestId: string, toolsGuestId = '') => guestSupport({ name: 'vm', guestId, toolsGuestId, guestFullName: '' });
  assert.deepEqual(g('debian12_64Guest'), {});
  assert.deepEqual(g('other5xLinux64Guest'), {});
  assert.equal(g('windows2019srv_64Guest').refusal?.code, 'guest-os-unsupported');
  assert.equal(g('winNetStandardGuest').refusal?.code, 'guest-os-unsupported');
  assert.equal(g('freebsd13_64Guest').refusal?.code, 'guest-os-unsupported');
  assert.equal(g('otherGuest64').doubt?.code, 'guest-os-unknown');
  assert.equal(g('').doubt?.code, 'guest-os-unknown');
  // What VMware Tools report from inside the guest wins over the configured id.
  assert.deepEqual(g('otherGuest', 'ubuntu64Guest'), {});
  assert.equal(describeError(g('otherGuest', 'windows9_64Guest').refusal!.error), "VM vm's guest is windows9_64Guest (windows9_64Guest, as VMware Tools report it): this host cannot convert Windows, Debian ships neither virtio-win nor rhsrvany (migrate it without conversion (convert: false) and install the virtio drivers in the guest, or convert it where virtio-win is installed)");
});

test('name clashes: every taken image name, then the template', () => {
  const taken = { images: [{ id: 4, name: 'a-disk1' }, { id: 5, name: 'a-disk0' }], templates: [{ id: 9, name: 'a' }] };
  assert.deepEqual(nameClashes(['a-disk0', 'a-disk1', 'a-disk2'], 'a', taken).map((r) => r.error.message), [
    'image name "a-disk0" is already taken by image 5',
    'image name "a-disk1" is already taken by image 4',
    'template name "a" is already taken by template 9',
  ]);
  assert.deepEqual(nameClashes(['b-disk0'], 'b', taken), []);
});

/** What a check throws. */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('nothing was thrown');
}

/** The hint of the one line describeError gives in the words of `face`: "message (hint)". */
function hintOf(err: Error, face: 'cli' | 'plan' = 'cli'): string {
  const line = describeError(err, face);
  assert.ok(line.startsWith(`${err.message} (`) && line.endsWith(')'), line);
  return line.slice(err.message.length + 2, -1);
}

test('hints: plan check names the plan\'s keys where the import names its flags, for every finding that tells what to change', () => {
  const refusals = new Map(
    [
      ...sourceRefusals(vm({ powerState: 'poweredOn', hardwareVersion: 'vmx-04', disks: [disk(0, 'scsi', 0, 0, { diskMode: 'independent_persistent' })] }), { kind: 'warm', enableCbt: false }),
      ...sourceRefusals(vm({ powerState: 'poweredOn' }), { kind: 'cold', shutdown: false }),
      ...nameClashes(['a-disk0'], 'a', { images: [{ id: 5, name: 'a-disk0' }], templates: [{ id: 9, name: 'a' }] }).map((r, i) => ({ ...r, code: `${r.code}-${i === 0 ? 'image' : 'template'}` })),
      unusableDatastore({ id: 0, name: 'system', type: 'SYSTEM_DS', state: 'READY' } as OneDatastore)!,
    ].map((r) => [r.code, r.error]),
  );
  const plan = Object.fromEntries([...refusals].map(([code, error]) => [code, hintOf(error, 'plan')]));
  assert.deepEqual(plan, {
    'hardware-version': 'upgrade the VM compatibility in vCenter, or set mode: cold for this VM',
    'independent-disk': 'switch the disk to dependent mode in vCenter, or set mode: cold for this VM',
    'cbt-off': 'set enableCbt: true for this VM (or in defaults) to have the migration turn it on (takes effect at its first snapshot), or set mode: cold',
    'powered-on-cold': 'shut it down first, or set shutdown: true for this VM (or in defaults) to have oneswap ask the guest to shut down',
    'name-clash-image': 'remove that image, or set namePrefix for this VM (or in defaults) to import under other names',
    'name-clash-template': 'remove that template, or set namePrefix for this VM (or in defaults)',
    'not-image-datastore': 'set datastore for this VM (or in defaults) to one from: onedatastore list',
  });
  // The import keeps its flags.
  assert.deepEqual(Object.fromEntries([...refusals].map(([code, error]) => [code, hintOf(error)])), {
    'hardware-version': 'upgrade the VM compatibility in vCenter, or import it cold (without --warm)',
    'independent-disk': 'switch the disk to dependent mode in vCenter, or import the VM cold (without --warm)',
    'cbt-off': 'pass --enable-cbt to turn it on (takes effect at the first migration snapshot), or import the VM cold',
    'powered-on-cold': 'shut it down first, or pass --shutdown to have oneswap ask the guest to shut down',
    'name-clash-image': 'remove that image, or pass --name-prefix to import under other names',
    'name-clash-template': 'remove that template, or pass --name-prefix',
    'not-image-datastore': 'pick one from: onedatastore list',
  });

  // unmapped-network: none found, or several.
  const nic = [{ index: 0, label: 'Network adapter 1', mac: '00:50:56:00:00:01', network: 'DMZ', adapter: 'vmxnet3' }] as const;
  const unmapped = () => mapNics('web01', nic, [{ id: 0, name: 'VM Network' }], new Map());
  const several = () => mapNics('web01', nic, [{ id: 1, name: 'DMZ' }, { id: 2, name: 'DMZ' }], new Map());
  assert.deepEqual([hintOf(thrown(unmapped), 'plan'), hintOf(thrown(several), 'plan')], [
    'map it in networkMap for this VM (or in defaults): "<vCenter network>: <OpenNebula network name or id>", or set VCENTER_NETWORK_MATCH="<vCenter network>" on a virtual network',
    'choose one in networkMap for this VM (or in defaults): "DMZ: <id>"',
  ]);
  assert.deepEqual([hintOf(thrown(unmapped)), hintOf(thrown(several))], [
    'add --network-map "<vCenter network>=<OpenNebula network id>", or set VCENTER_NETWORK_MATCH="<vCenter network>" on a virtual network',
    'choose one with --network-map "DMZ=<id>"',
  ]);

  // no-reader and vsan-no-reader: a transport that cannot read the disk.
  const place = { datastoreType: 'vsan', device: { key: 2000, label: 'Hard disk 1', capacityBytes: 1 << 30, fileName: '[vsan] web/web.vmdk', datastoreName: 'vsan', datastorePath: 'web/web.vmdk' } } as unknown as DiskPlace;
  const none = { vddk: false, nfc: false };
  const readers = [
    () => chooseReader({ transport: 'folder' }, none, place, false),
    () => chooseReader({ transport: 'vddk' }, none, place, false),
    () => chooseReader({ transport: 'vddk', vddkLibdir: '/opt/vddk' }, none, place, false),
    () => chooseReader({ transport: 'nfc' }, none, place, false),
  ];
  assert.deepEqual(readers.map((r) => hintOf(thrown(r), 'plan')), [
    'set transport: auto for this VM (or in defaults): an export lease, or VDDK when --vddk-libdir is given',
    'pass --vddk-libdir DIR (the unpacked vmware-vix-disklib-distrib folder) to plan check and plan run, or set vddk-libdir in oneswap.yaml; or set transport: auto for this VM (or in defaults)',
    'install nbdkit\u2019s vddk plugin and check that DIR holds lib64/libvixDiskLib.so.*; or set transport: auto for this VM (or in defaults)',
    'nbdkit\u2019s nfc plugin comes with newer nbdkit releases; set transport: auto for this VM (or in defaults)',
  ]);
  assert.deepEqual(readers.map((r) => hintOf(thrown(r))), [
    'use --transport auto (an export lease, or VDDK when --vddk-libdir is given)',
    'pass --vddk-libdir DIR (the unpacked vmware-vix-disklib-distrib folder), or set vddk-libdir in oneswap.yaml',
    'install nbdkit\u2019s vddk plugin and check that DIR holds lib64/libvixDiskLib.so.*; or use --transport auto',
    'nbdkit\u2019s nfc plugin comes with newer nbdkit releases; use --transport auto',
  ]);
});
