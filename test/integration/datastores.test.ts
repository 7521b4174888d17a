// oneswap into the image datastores OpenNebula clouds run besides plain raw files: a Ceph pool
// (DS_MAD ceph: RBD images; the simulator's stock-like driver runs rbd on a BRIDGE_LIST host over
// ssh, oneswap reaches the pool itself with the datastore's CEPH_CONF and CEPH_KEY) and a qcow2
// datastore (TM_MAD qcow2: qcow2 placeholders filled through qemu-nbd). One real Ceph, one bridge
// host, one vCenter and one OpenNebula for the whole file.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { vcsimSkip } from '../peers/vcsim/index.js';
import { createTestVm, powerOn, type TestVm } from '../peers/vcsim/fixture.js';
import { cephSkip, startCeph, type Ceph } from '../peers/ceph/index.js';
import { bridgeSkip, startBridge, type Bridge } from '../peers/bridge/index.js';
import { ovaToolsSkip } from '../peers/ova/index.js';
import { bootCheck, guestSkip, testGuest } from '../peers/guest/index.js';
import { oneswap } from '../peers/cli.js';
import { islandOva, warmRounds } from '../support/datastore-scenarios.js';
import { importResult, planFileHead, planSummary, startMigrationPeers, type MigrationPeers } from '../peers/migration.js';
import { cephIdentityOnBridge } from '../support/ceph-identity.js';
import { ISLAND_DISKS, QCOW2_CLUSTER, RBD_OBJECT, qcow2Bytes, imageDataBytes, rbdBytes as readRbd, rbdUsage, unitsTouched } from '../support/image-contents.js';

const MiB = 1024 * 1024;
const skip = vcsimSkip() || cephSkip({ mgr: true }) || bridgeSkip() || ovaToolsSkip();

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('imports into Ceph and qcow2 image datastores', { skip, timeout: 40 * 60_000 }, () => {
  let peers: MigrationPeers;
  let ceph: Ceph;
  let bridge: Bridge;
  let cephDs: number;
  let qcowDs: number;
  let confFile: string;
  let keyFile: string;
  let work: string;
  const islands = ISLAND_DISKS.map((d) => d.data);
  let vms = 0;
  const newVm = (name: string): Promise<TestVm> =>
    createTestVm(peers.sim, { name: `${name}-${vms++}`, cbt: true, disks: ISLAND_DISKS.map((d) => ({ sizeBytes: d.sizeBytes, data: [...d.data] })), nics: [{ network: 'VM Network', adapter: 'vmxnet3' }] });
  const importArgs = (ds: number, extra: string[]): string[] => [...peers.importArgs({ datastore: ds }), ...extra];
  const rbdBytes = (source: string): Promise<Buffer> => readRbd(ceph, source, work);
  const qcowBytes = (file: string): Promise<Buffer> => qcow2Bytes(file, work);
  const assertRbdImages = async (ids: readonly number[], expected: ReadonlyArray<{ sha256: string; size: number; used: number }>): Promise<void> => {
    for (const [i, id] of ids.entries()) {
      const img = peers.oned.image(id)!;
      assert.match(img.source, /^one\/one-\d+$/);
      const bytes = await rbdBytes(img.source);
      assert.equal(bytes.length, expected[i]!.size, `image ${id} is exactly the disk's size`);
      assert.equal(sha(bytes), expected[i]!.sha256, `image ${id} holds the disk's bytes`);
      assert.equal((await rbdUsage(ceph, img.source)).used, expected[i]!.used, `image ${id} allocates only the objects holding data`);
    }
  };

  before(async () => {
    [ceph, bridge] = await Promise.all([startCeph({ mgr: true, memstoreBytes: 5 * 1024 * MiB }), startBridge({ hosts: ['bridge1'] })]);
    peers = await startMigrationPeers('datastores', { oned: { driverEnv: { PATH: bridge.env().PATH ?? '' } } });
    work = await mkdtemp(join(tmpdir(), 'oneswap-ds-test-'));
    peers.oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 16 }] });
    ({ keyFile, confFile } = await cephIdentityOnBridge(ceph, bridge));
    cephDs = await peers.oned.createDatastore({
      name: 'ceph',
      type: 'IMAGE_DS',
      dsMad: 'ceph',
      tmMad: 'ceph',
      template: { DISK_TYPE: 'RBD', BRIDGE_LIST: 'bridge1', POOL_NAME: ceph.pool, CEPH_USER: ceph.user, CEPH_CONF: confFile, CEPH_KEY: keyFile },
    });
    qcowDs = await peers.oned.createDatastore({ name: 'qcow2', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'qcow2' });
  });

  after(async () => {
    await peers?.stop();
    await Promise.all([ceph?.stop(), bridge?.stop()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('cold import of a 2-disk VM into Ceph: RBD images exactly the disks, only data objects allocated', async () => {
    const vm = await newVm('cold-ceph');
    const r = await oneswap(importArgs(cephDs, [vm.name]), peers.env);
    assert.equal(r.exitCode, 0, r.stderr);
    const res = importResult(r.stdout);
    assert.equal(res.imageIds.length, 2);
    await assertRbdImages(
      res.imageIds,
      vm.disks.map((d, i) => ({ sha256: d.sha256, size: d.sizeBytes, used: unitsTouched(islands[i]!, d.sizeBytes, RBD_OBJECT) })),
    );
    for (const id of res.imageIds) assert.equal(peers.oned.image(id)!.template.get('ONESWAP_STATE'), 'DONE');
  });

  test('cold import into a qcow2 datastore: qcow2 images of the disks\' exact virtual size, check clean, only data clusters', async () => {
    const vm = await newVm('cold-qcow2');
    const r = await oneswap(importArgs(qcowDs, [vm.name]), peers.env);
    assert.equal(r.exitCode, 0, r.stderr);
    const res = importResult(r.stdout);
    for (const [i, id] of res.imageIds.entries()) {
      const img = peers.oned.image(id)!;
      assert.equal(img.format, 'qcow2');
      const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', img.source])).stdout) as { format: string; 'virtual-size': number };
      assert.equal(info.format, 'qcow2');
      assert.equal(info['virtual-size'], vm.disks[i]!.sizeBytes);
      await execa('qemu-img', ['check', '-q', img.source]);
      assert.equal(sha(await qcowBytes(img.source)), vm.disks[i]!.sha256, `image ${id} holds the disk's bytes`);
      assert.equal(await imageDataBytes(img.source), unitsTouched(islands[i]!, vm.disks[i]!.sizeBytes, QCOW2_CLUSTER), `image ${id} allocates only the clusters holding data`);
    }
  });

  test('warm start, sync, cutover into Ceph: each round leaves the RBD images equal to the disks', async () => {
    const vm = await newVm('warm-ceph');
    await powerOn(peers.sim, vm.moref);
    await warmRounds({
      vm,
      warm: (stage) => oneswap(['warm', stage, ...importArgs(cephDs, ['--vddk-libdir', peers.vddk.libdir]).slice(1), vm.name], peers.vddkEnv),
      imageBytes: (id) => rbdBytes(peers.oned.image(id)!.source),
    });
  });

  test('warm start, sync, cutover into qcow2: each round leaves the qcow2 images equal to the disks, data turned to zeros no longer allocated', async () => {
    const vm = await newVm('warm-qcow2');
    await powerOn(peers.sim, vm.moref);
    let ids: number[] = [];
    await warmRounds({
      vm,
      warm: async (stage) => {
        const r = await oneswap(['warm', stage, ...importArgs(qcowDs, ['--vddk-libdir', peers.vddk.libdir]).slice(1), vm.name], peers.vddkEnv);
        if (stage === 'start' && r.exitCode === 0) ids = importResult(r.stdout).imageIds;
        return r;
      },
      imageBytes: (id) => qcowBytes(peers.oned.image(id)!.source),
    });
    // What warmRounds changed: disk 0's first MiB zeroed and 128 KiB written at 20 MiB, 64 KiB at disk 1's start.
    const after = [
      [...islands[0]!.filter((i) => i.offset >= MiB), { offset: 20 * MiB, length: 128 * 1024 }],
      [{ offset: 0, length: 64 * 1024 }, ...islands[1]!],
    ];
    for (const [i, id] of ids.entries()) {
      const file = peers.oned.image(id)!.source;
      await execa('qemu-img', ['check', '-q', file]);
      assert.equal(await imageDataBytes(file), unitsTouched(after[i]!, vm.disks[i]!.sizeBytes, QCOW2_CLUSTER), `image ${id} allocates only the clusters holding data now`);
    }
  });

  test('OVA import into Ceph and into qcow2: the images hold the OVA\'s disks', async () => {
    const { ova, source } = await islandOva(work, 'ova-ds');
    for (const ds of [cephDs, qcowDs]) {
      const r = await oneswap(['import', '--ova', ova, '--name-prefix', `ds${ds}-`, '--no-convert', '--datastore', String(ds), '--endpoint', peers.oned.endpoint, '--progress', 'json'], peers.env);
      assert.equal(r.exitCode, 0, r.stderr);
      const img = peers.oned.image(importResult(r.stdout).imageIds[0]!)!;
      const bytes = ds === cephDs ? await rbdBytes(img.source) : await qcowBytes(img.source);
      assert.equal(bytes.length, source.length);
      assert.equal(sha(bytes), sha(source), `datastore ${ds}: the image holds the OVA's disk`);
    }
  });

  // The one conversion of this file goes through `oneswap plan run`, so a plan's conversion path
  // (the run's `converting` budget around virt-v2v-in-place, the convert phase in the summary) is
  // proven with a real guest. (A fresh `oneswap import` converting is guest-network.test.ts's.)
  test('a Debian guest in a plan run into Ceph is converted in place on its RBD image and boots on virtio; the summary and plan status say done', { skip: guestSkip() }, async () => {
    const guest = await testGuest();
    const vm = await createTestVm(peers.sim, {
      name: 'deb-ceph',
      guestId: 'debian12_64Guest',
      firmware: 'bios',
      numCPUs: 2,
      memoryMB: 1024,
      disks: [{ sizeBytes: 3 * 1024 * MiB, fromRaw: guest, controller: 'pvscsi' }],
      nics: [{ network: 'VM Network', adapter: 'vmxnet3' }],
    });
    const plan = join(work, 'deb-ceph.yaml');
    await writeFile(
      plan,
      [...planFileHead(peers), 'defaults:', `  datastore: ${cephDs}`, '  convert: true', 'budgets: {readsPerHost: 1, converting: 1, inFlight: 2}', 'vms:', `  - name: ${vm.name}`, ''].join('\n'),
    );
    const r = await oneswap(['plan', 'run', plan, '--progress', 'json'], peers.env, 30 * 60_000);
    assert.equal(r.exitCode, 0, r.stderr);
    const ev = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; vm?: string; ok?: boolean; imageIds?: number[] });
    const result = ev.find((e) => e.type === 'result' && e.vm === vm.name)!;
    assert.equal(result.ok, true);
    assert.equal(result.imageIds!.length, 1);
    const id = result.imageIds![0]!;
    const img = peers.oned.image(id)!;
    assert.equal(img.template.get('ONESWAP_GUEST_VIRTIO_BLK'), 'YES');
    assert.equal(img.template.get('ONESWAP_STATE'), 'DONE');

    const summary = await planSummary(r.stdout);
    assert.equal(summary.budgets.converting, 1);
    assert.deepEqual(summary.vms.map((v) => [v.key, v.outcome, v.imageIds]), [[vm.name, 'done', [id]]]);
    const convert = summary.vms[0]!.phases.filter((p) => p.phase === 'convert');
    assert.deepEqual(convert.map((p) => p.state), ['done'], 'one conversion, done');
    assert.ok(Date.parse(convert[0]!.end) > Date.parse(convert[0]!.start));
    const st = await oneswap(['plan', 'status', plan, '--json'], peers.env);
    assert.equal(st.exitCode, 0, st.stderr);
    const status = JSON.parse(st.stdout) as { ended: boolean; vms: Array<{ key: string; state: string }> };
    assert.equal(status.ended, true);
    assert.deepEqual(status.vms.map((v) => [v.key, v.state]), [[vm.name, 'done']]);

    // The conversion went into the RBD image itself (the commit of its overlay): as copied, the
    // guest cannot boot from virtio-blk (test/integration/convert.test.ts shows it), converted it does.
    const raw = join(work, 'deb-ceph.raw');
    await ceph.rbd(['export', img.source, raw]);
    try {
      const boot = await bootCheck(raw, { format: 'raw', bus: 'virtio', workDir: work });
      assert.equal(boot.outcome, 'login', `converted guest from the RBD image on virtio: ${boot.console.slice(-500)}`);
    } finally {
      await rm(raw, { force: true });
    }
  });
});
