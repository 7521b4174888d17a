// `plan check`'s engine against both simulators: a plan of a dozen VMs, most made to block one
// way each, checked in one pass: the findings per VM, the room summed per target datastore (each
// VM alone fits, the plan does not), raw device mappings, and the SOAP calls of that pass, the
// same for 1 VM as for all.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { createTestVm } from '../peers/vcsim/fixture.js';
import type { Oned } from '../peers/one/index.js';
import { startMigrationPeers, type MigrationPeers } from '../peers/migration.js';
import { connectTo } from '../support/vcsim-client.js';
import { OneClient, Template } from '../../lib/one/index.js';
import type { VSphereClient } from '../../lib/vsphere/index.js';
import { checkFleet, type FleetCheck } from '../../lib/plan/fleet-check.js';
import type { PlannedVm } from '../../lib/plan/index.js';
import { describeVcenterVm, vmIdentity } from '../../lib/input/index.js';
import { Journal } from '../../lib/supervisor/index.js';
import { join } from 'node:path';

const MiB = 1024 * 1024;
const skip = vcsimSkip();

describe('plan check: every precheck of every VM in one pass', { skip }, () => {
  let peers: MigrationPeers;
  let sim: Vcsim;
  let oned: Oned;
  let vsphere: VSphereClient;
  let one: OneClient;
  const soap: string[] = [];
  let big: number;
  let small: number;
  let clashImage: number;
  let plan: PlannedVm[];

  const vm = (key: string, line: number, o: Partial<PlannedVm> = {}): PlannedVm => ({
    key,
    query: { by: 'name', value: key },
    line,
    wave: 'one',
    priority: 0,
    mode: { kind: 'cold', shutdown: false },
    datastoreId: big,
    networkMap: new Map(),
    convert: false,
    output: 'template',
    transport: 'auto',
    namePrefix: '',
    keepMac: true,
    keepIp: false,
    ...o,
  });

  const check = async (vms: readonly PlannedVm[]): Promise<FleetCheck> => {
    soap.length = 0;
    return checkFleet({ vsphere, one, vcenterHost: sim.host }, vms, AbortSignal.timeout(60_000));
  };

  before(async () => {
    peers = await startMigrationPeers('plan-check', { vcsim: { vsan: true } });
    ({ sim, oned } = peers);
    oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 10 }] });
    big = await oned.createDatastore({ name: 'big', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', freeMb: 10_000 });
    small = await oned.createDatastore({ name: 'small', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', freeMb: 20 });
    one = await OneClient.connect({ endpoint: oned.endpoint, env: { ONE_AUTH: peers.env.ONE_AUTH! } });
    clashImage = await one.imageAllocate(Template.of({ NAME: 'clash-disk0', TYPE: 'DATABLOCK', SIZE: 1, FORMAT: 'raw' }), big);
    await one.waitForImage(clashImage, { pollMs: 50 });
    const net = [{ network: 'VM Network' }];
    const disk = (mib: number, mode?: 'independent_persistent') => ({ sizeBytes: mib * MiB, ...(mode ? { mode } : {}) });
    for (const spec of [
      { name: 'fine', guestId: 'debian12_64Guest', disks: [disk(4), disk(2)], nics: net },
      { name: 'indep', cbt: true, disks: [disk(1), disk(1, 'independent_persistent')], nics: net },
      { name: 'nocbt', disks: [disk(1)], nics: net },
      { name: 'lonely', disks: [disk(1)], nics: [{ network: 'DC0_DVPG0' }] },
      { name: 'clash', disks: [disk(1)], nics: net },
      { name: 'fill-a', disks: [disk(8)], nics: net },
      { name: 'fill-b', disks: [disk(8)], nics: net },
      { name: 'fill-c', disks: [disk(4), disk(4)], nics: net },
      { name: 'onvsan', datastore: sim.vsanDatastore!, disks: [disk(1)], nics: net },
      { name: 'running', disks: [disk(1)], nics: net, powerOn: true },
      { name: 'win', guestId: 'windows2019srv_64Guest', disks: [disk(1)], nics: net },
      // Both become "dup_1" as OpenNebula names (sanitizeName).
      { name: 'dup:1', disks: [disk(1)], nics: net },
      { name: 'dup|1', disks: [disk(1)], nics: net },
      { name: 'rdm-p', disks: [disk(1), { sizeBytes: MiB, rdm: 'physical' as const }], nics: net },
      { name: 'rdm-v', disks: [{ sizeBytes: MiB, rdm: 'virtual' as const }], nics: net },
    ])
      await createTestVm(sim, spec);
    vsphere = await connectTo(sim, { logger: { warn: () => {}, debug: (m) => (m.startsWith('SOAP ') ? soap.push(m) : undefined) } });
    plan = [
      vm('fine', 3, { convert: true }),
      vm('indep', 5, { mode: { kind: 'warm', enableCbt: false } }),
      vm('nocbt', 7, { mode: { kind: 'warm', enableCbt: false } }),
      vm('lonely', 9),
      vm('clash', 11),
      vm('fill-a', 13, { datastoreId: small }),
      vm('fill-b', 15, { datastoreId: small }),
      // Higher priority: the run starts it first, so fill-b is the one left without room.
      vm('fill-c', 17, { datastoreId: small, priority: 10 }),
      vm('onvsan', 19, { transport: 'folder' }),
      vm('running', 21),
      vm('win', 23, { convert: true }),
      vm('ghost', 25),
      vm('again', 27, { query: { by: 'name', value: 'fine' }, namePrefix: 'x-' }),
    ];
  });

  after(async () => {
    one?.close();
    await vsphere?.logout();
    await peers?.stop();
  });

  test('each VM gets the blockers and warnings of its own import, and the room is summed over the plan', async () => {
    const r = await check(plan);
    const codes = Object.fromEntries(r.vms.map((v) => [v.key, { blockers: v.blockers.map((f) => f.code), warnings: v.warnings.map((f) => f.code) }]));
    assert.deepEqual(codes, {
      fine: { blockers: [], warnings: [] },
      indep: { blockers: ['independent-disk'], warnings: [] },
      nocbt: { blockers: ['cbt-off'], warnings: [] },
      lonely: { blockers: ['unmapped-network'], warnings: [] },
      clash: { blockers: ['name-clash'], warnings: [] },
      'fill-a': { blockers: [], warnings: [] },
      'fill-b': { blockers: ['capacity'], warnings: [] },
      'fill-c': { blockers: [], warnings: [] },
      onvsan: { blockers: ['vsan-no-reader'], warnings: [] },
      running: { blockers: ['powered-on-cold'], warnings: [] },
      win: { blockers: ['guest-os-unsupported'], warnings: [] },
      ghost: { blockers: ['not-found'], warnings: [] },
      again: { blockers: ['duplicate-vm'], warnings: [] },
    });
    assert.equal(r.blocked, true);
    assert.deepEqual(r.vms.map((v) => [v.key, v.line, v.vm?.name]), [
      ['fine', 3, 'fine'], ['indep', 5, 'indep'], ['nocbt', 7, 'nocbt'], ['lonely', 9, 'lonely'], ['clash', 11, 'clash'], ['fill-a', 13, 'fill-a'], ['fill-b', 15, 'fill-b'],
      ['fill-c', 17, 'fill-c'], ['onvsan', 19, 'onvsan'], ['running', 21, 'running'], ['win', 23, 'win'], ['ghost', 25, undefined], ['again', 27, 'fine'],
    ]);
    const message = (key: string): string => r.vms.find((v) => v.key === key)!.blockers[0]!.message;
    assert.equal(message('fill-b'), `datastore ${small} (small) has 20 MiB free; the VMs before fill-b in the plan take 16 MiB, its disks need 8 MiB more (the plan puts 24 MiB there in all) (free space, move VMs to another datastore, or run them in a later plan once the first are done)`);
    assert.equal(message('clash'), `image name "clash-disk0" is already taken by image ${clashImage} (remove that image, or set namePrefix for this VM (or in defaults) to import under other names)`);
    assert.equal(message('lonely'), 'VM lonely: no OpenNebula network for vCenter network "DC0_DVPG0" (map it in networkMap for this VM (or in defaults): "<vCenter network>: <OpenNebula network name or id>", or set VCENTER_NETWORK_MATCH="<vCenter network>" on a virtual network)');
    assert.equal(message('indep'), 'disk "disk-202-1" of VM indep is independent (independent_persistent); snapshots skip such disks, so they cannot be copied while the VM runs (switch the disk to dependent mode in vCenter, or set mode: cold for this VM)');
    assert.equal(message('nocbt'), 'changed block tracking is off for VM nocbt; a warm migration needs it (set enableCbt: true for this VM (or in defaults) to have the migration turn it on (takes effect at its first snapshot), or set mode: cold)');
    assert.equal(message('ghost'), `vCenter ${sim.host} has no VM "ghost"; list the VMs with \`oneswap list\` and pass a VM name, inventory path or UUID`);
    assert.equal(message('again'), 'VM /DC0/vm/fine is also VM fine of this plan (line 3) (keep one of the two entries)');
    assert.match(message('onvsan'), /^--transport folder cannot read \[LocalDS_1\] onvsan\/onvsan\.vmdk: datastore LocalDS_1 is vsan, which keeps disks as objects, not files \(set transport: auto for this VM \(or in defaults\): an export lease, or VDDK when --vddk-libdir is given\)$/);
    assert.match(message('win'), /^VM win's guest is .*windows2019srv_64Guest.*: this host cannot convert Windows, Debian ships neither virtio-win nor rhsrvany/);

    assert.deepEqual(r.capacity, [
      { datastoreId: big, name: 'big', kind: 'files', workHosts: [], freeBytes: 10_000 * MiB, neededBytes: 14 * MiB, vms: ['fine', 'indep', 'nocbt', 'lonely', 'clash', 'onvsan', 'running', 'win'], overflow: [], enough: true, notes: [] },
      { datastoreId: small, name: 'small', kind: 'files', workHosts: [], freeBytes: 20 * MiB, neededBytes: 24 * MiB, vms: ['fill-c', 'fill-a', 'fill-b'], overflow: [{ key: 'fill-b', bytes: 8 * MiB, before: 16 * MiB }], enough: false, notes: [] },
    ]);
    assert.deepEqual(r.pools, []);
  });

  test('one inventory pass: the same SOAP calls for one VM as for the whole plan', async () => {
    await check(plan);
    const all = [...soap];
    await check(plan.slice(0, 1));
    // The index through a container view, then the details of every VM in one request.
    assert.deepEqual(all.map((m) => m.split(' ')[1]), ['CreateContainerView', 'RetrievePropertiesEx', 'DestroyView', 'RetrievePropertiesEx']);
    assert.deepEqual(soap.map((m) => m.split(' ')[1]), all.map((m) => m.split(' ')[1]));
  });

  test('a name two VMs of the plan would both give, and a disabled target datastore', async () => {
    const disabled = await oned.createDatastore({ name: 'off', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', freeMb: 100 });
    oned.datastore(disabled)!.state = 1; // DISABLED, as `onedatastore disable` leaves it
    const r = await check([vm('dup:1', 3), vm('dup|1', 4), vm('fine', 5, { datastoreId: disabled })]);
    assert.deepEqual(r.vms.map((v) => [v.key, v.blockers]), [
      ['dup:1', []],
      ['dup|1', [
        { code: 'name-clash', message: 'image name "dup_1-disk0" is also given by VM dup:1 of this plan (line 3) (set another namePrefix on one of them)' },
        { code: 'name-clash', message: 'template name "dup_1" is also given by VM dup:1 of this plan (line 3) (set another namePrefix on one of them)' },
      ]],
      ['fine', [{ code: 'datastore-disabled', message: `datastore ${disabled} (off) is disabled` }]],
    ]);
    assert.deepEqual(r.capacity.map((c) => [c.datastoreId, c.vms]), [[big, ['dup:1', 'dup|1']]]);
  });

  test('a raw device mapping, in either compatibility mode, blocks its VM', async () => {
    const r = await check([vm('rdm-p', 3), vm('rdm-v', 4)]);
    assert.deepEqual(r.vms.map((v) => [v.key, v.blockers, v.warnings]), [
      ['rdm-p', [{ code: 'rdm-disk', message: 'disk "disk-202-1" of VM rdm-p is a raw device mapping (RDM), which oneswap cannot copy (migrate the LUN separately or convert the RDM to a virtual disk in vCenter)' }], []],
      ['rdm-v', [{ code: 'rdm-disk', message: 'disk "disk-202-0" of VM rdm-v is a raw device mapping (RDM), which oneswap cannot copy (migrate the LUN separately or convert the RDM to a virtual disk in vCenter)' }], []],
    ]);
  });

  test('an earlier unfinished run: its images are resumed, neither clashes nor new room', async () => {
    const stateDir = join(peers.work, 'plan-state');
    const description = describeVcenterVm(sim.host, await vsphere.findVm('fine'));
    const disk0 = description.disks[0]!;
    const image = await one.imageAllocate(Template.of({ NAME: 'fine-disk0', TYPE: 'DATABLOCK', SIZE: 4, FORMAT: 'raw' }), big);
    await one.waitForImage(image, { pollMs: 50 });
    const { journal } = await Journal.open(stateDir, vmIdentity(description), big);
    journal.data.disks.push({ sourceKey: disk0.sourceKey, imageId: image, imagePath: '', capacityBytes: disk0.capacityBytes, done: [], complete: false });
    await journal.flush();
    try {
      const without = await checkFleet({ vsphere, one, vcenterHost: sim.host }, [vm('fine', 3)], AbortSignal.timeout(60_000));
      assert.deepEqual(without.vms[0]!.blockers.map((f) => f.code), ['name-clash']);
      assert.equal(without.capacity[0]!.neededBytes, 6 * MiB);
      const r = await checkFleet({ vsphere, one, vcenterHost: sim.host, stateDir }, [vm('fine', 3)], AbortSignal.timeout(60_000));
      assert.deepEqual(r.vms[0]!.blockers, []);
      assert.deepEqual(r.vms[0]!.warnings, [{ code: 'resumes', message: `an earlier run of VM fine left images ${image}; the migration resumes them` }]);
      assert.equal(r.capacity[0]!.neededBytes, 2 * MiB);
    } finally {
      await journal.remove();
      await one.imageDelete(image, true);
      await oned.idle();
    }
  });
});
