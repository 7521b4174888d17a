// Warm migration against the vCenter simulator's CBT and the OpenNebula simulator, as the real
// command. The test plays the running guest: it writes known data into the source disks between
// rounds (never while a round copies, as the simulator has no delta disks). Throughout, a watcher
// counts oneswap's snapshots: never more than one may exist.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { client as vimClient, createTestVm, listSnapshots, powerOn, setCbt, sha256File, simStats, writeDiskData, type DiskSpec, type TestVm } from '../peers/vcsim/fixture.js';
import type { Oned } from '../peers/one/index.js';
import { killOnceJournalHolds, oneswap, spawnOneswap } from '../peers/cli.js';
import { OneClient, Template } from '../../lib/one/index.js';
import { startMigrationPeers, type MigrationPeers } from '../peers/migration.js';

const MiB = 1024 * 1024;
const skip = vcsimSkip();

interface Status {
  state: string;
  rounds: number;
  disks: Array<{ imageId: number; changeId?: string; bytesPerRound: number[]; pendingBytes: number }>;
  prediction?: { totalMs: number; parts: Array<{ step: string; ms: number }>; notes: string[] };
  copyRate?: number;
}

describe('warm migration: CBT rounds while the VM runs, then a measured cutover', { skip }, () => {
  let peers: MigrationPeers;
  let sim: Vcsim;
  let oned: Oned;
  let env: Record<string, string>;
  let seed = 1000;
  let maxSnapshots = 0;
  let watching = true;
  let watched: TestVm[] = [];
  let watcher: Promise<void>;

  /** `oneswap <cmd...> --vcenter ... --datastore ...` without --no-convert; --progress json. */
  const args = (cmd: string[], o: { convert?: boolean } = {}): string[] => {
    const common = peers.importArgs().slice(1).filter((a) => a !== '--no-convert' || o.convert === false);
    return [...cmd, ...common];
  };
  const warm = (stage: string, vm: string, extra: string[] = [], e = env): Promise<{ exitCode: number; stdout: string; stderr: string }> =>
    oneswap([...args(['warm', stage], { convert: false }), ...extra, vm], e);
  const status = async (vm: string, extra: string[] = [], e = env): Promise<Status> => {
    const common = peers.importArgs().slice(1).filter((a) => !['--no-convert', '--progress', 'json'].includes(a));
    const r = await oneswap(['warm', 'status', ...common, ...extra, '--json', vm], e);
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as Status;
  };
  const imageFile = (id: number): string => oned.image(id)!.source;
  const powerOnVm = (vm: TestVm): Promise<void> => powerOn(sim, vm.moref);
  const assertImagesEqual = async (vm: TestVm, ids: number[]): Promise<void> => {
    for (const [i, d] of vm.disks.entries()) assert.equal(await sha256File(imageFile(ids[i]!)), await sha256File(d.flatPath), `image ${ids[i]} differs from disk ${i}`);
  };
  /** The guest writes `length` bytes at `offset` of disk `disk`. */
  const guestWrites = (vm: TestVm, disk: number, offset: number, length: number): Promise<void> => writeDiskData(vm.disks[disk]!.flatPath, offset, length, seed++);
  const powerState = async (vm: TestVm): Promise<string> => JSON.stringify((await (await vimClient(sim)).props(vm.moref, ['runtime.powerState']))['runtime.powerState']);

  before(async () => {
    peers = await startMigrationPeers('warm', { vcsim: { vsan: true } });
    ({ sim, oned, env } = peers);
    oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 10 }] });
    watcher = (async () => {
      while (watching) {
        for (const vm of watched) {
          const own = (await listSnapshots(sim, vm.moref).catch(() => [])).filter((s) => s.name.startsWith('oneswap-'));
          maxSnapshots = Math.max(maxSnapshots, own.length);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
  });

  after(async () => {
    watching = false;
    await watcher;
    await peers?.stop();
  });

  const twoDisks: DiskSpec[] = [
    { sizeBytes: 24 * MiB, data: [{ offset: 0, length: 4 * MiB }, { offset: 16 * MiB, length: 2 * MiB }] },
    // Not a whole MiB (vCenter sizes disks in KiB): each image must end where its disk ends.
    { sizeBytes: 8 * MiB + 64 * 1024, data: [{ offset: 1 * MiB, length: 1 * MiB }, { offset: 8 * MiB, length: 64 * 1024 }] },
  ];
  /** One disk large enough to interrupt a throttled round in the middle. */
  const bigDisk: DiskSpec[] = [{ sizeBytes: 64 * MiB, data: [{ offset: 0, length: 48 * MiB }] }];
  const runningVm = async (name: string, cbt = true, disks = twoDisks): Promise<TestVm> => {
    const vm = await createTestVm(sim, { name, cbt, powerOn: true, disks, nics: [{ network: 'VM Network' }] });
    watched.push(vm);
    return vm;
  };

  // Once with VDDK (the stand-in, random access to each snapshot) and once without, the way real
  // ESXi serves a running VM then: an export lease of the snapshot, and /folder only at the cutover.
  for (const mode of ['vddk', 'lease'] as const) {
    test(`start, sync, status, cutover (${mode}): each image equals its disk after every round, downtime measured, no /folder read of the running VM`, async () => {
      const vm = await runningVm(`warm1-${mode}`);
      const e = mode === 'vddk' ? peers.vddkEnv : env;
      const extra = mode === 'vddk' ? ['--vddk-libdir', peers.vddk.libdir] : [];
      const before = await simStats(sim);
      const start = await warm('start', vm.name, extra, e);
      assert.equal(start.exitCode, 0, start.stderr);
      const readers = (out: string): string[] => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; reader?: string }).filter((x) => x.type === 'reader').map((x) => x.reader!);
      assert.deepEqual(readers(start.stdout), [mode, mode], 'round 0 reads the snapshot with VDDK, else through an export lease');
      assert.match(await powerState(vm), /poweredOn/);
      assert.deepEqual(await listSnapshots(sim, vm.moref), [], 'a round leaves no snapshot behind');
      let s = await status(vm.name, extra, e);
      assert.equal(s.rounds, 1);
      const ids = s.disks.map((d) => d.imageId);
      assert.equal(ids.length, 2);
      for (const d of s.disks) assert.match(d.changeId ?? '', /^52 [0-9a-f ]+-[0-9a-f ]+\/\d+$/);
      assert.equal(oned.image(ids[0]!)!.template.get('ONESWAP_STATE'), 'SYNCING');
      assert.equal(oned.image(ids[0]!)!.template.get('ONESWAP_CHANGE_ID'), s.disks[0]!.changeId);
      assert.deepEqual(s.disks.map((d) => d.bytesPerRound[0]), [6 * MiB, 1 * MiB + 64 * 1024], 'round 0 copies the allocated areas');
      await assertImagesEqual(vm, ids);

      // The guest writes 192 KiB (three 64 KiB CBT blocks) into disk 0 and 64 KiB into disk 1.
      await guestWrites(vm, 0, 20 * MiB, 128 * 1024);
      await guestWrites(vm, 0, 5 * MiB + 100, 1000);
      await guestWrites(vm, 1, 7 * MiB, 64 * 1024);
      peers.proxy.reset();
      const sync = await warm('sync', vm.name, extra, e);
      assert.equal(sync.exitCode, 0, sync.stderr);
      s = await status(vm.name, extra, e);
      assert.equal(s.rounds, 2);
      assert.deepEqual(s.disks.map((d) => d.bytesPerRound[1]), [192 * 1024, 64 * 1024], 'round 1 writes only the changed blocks');
      if (mode === 'vddk') assert.ok(peers.proxy.counters.down < 1 * MiB, `the sync moved ${peers.proxy.counters.down} bytes`);
      else {
        // A lease streams each whole allocated disk (random data: streamOptimized cannot compress it).
        assert.match(sync.stdout, /round 1 reads through an export lease, which streams each whole allocated disk over the network to write 262144 bytes of changed areas/);
        assert.ok(peers.proxy.counters.down > 7 * MiB && peers.proxy.counters.down < 8 * MiB, `the sync moved ${peers.proxy.counters.down} bytes`);
      }
      await assertImagesEqual(vm, ids);

      await guestWrites(vm, 1, 0, 256 * 1024);
      const s2 = await warm('sync', vm.name, extra, e);
      assert.equal(s2.exitCode, 0, s2.stderr);
      await assertImagesEqual(vm, ids);
      s = await status(vm.name, extra, e);
      assert.ok(s.copyRate !== undefined && s.copyRate > 0);
      // The cutover reads the powered-off disks: VDDK, else /folder (a file datastore). Started
      // with --no-convert, it will not convert, and the prediction does not count it.
      const final = mode === 'vddk' ? 'final delta (vddk)' : 'final delta (folder)';
      assert.deepEqual(s.prediction?.parts.map((p) => p.step), [final], JSON.stringify(s));
      assert.ok(s.prediction!.notes.includes('no conversion at the cutover: the migration runs with --no-convert'), s.prediction!.notes.join('; '));

      await guestWrites(vm, 0, 10 * MiB, 64 * 1024);
      const cut = await warm('cutover', vm.name, extra, e);
      assert.equal(cut.exitCode, 0, cut.stderr);
      assert.deepEqual(readers(cut.stdout), mode === 'vddk' ? ['vddk', 'vddk'] : ['folder', 'folder']);
      assert.match(await powerState(vm), /poweredOff/);
      await assertImagesEqual(vm, ids);
      const downtime = cut.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; totalMs?: number; parts?: Array<{ step: string }> }).find((x) => x.type === 'downtime');
      assert.ok(downtime && downtime.totalMs! > 0, 'the downtime is reported');
      assert.deepEqual(downtime.parts!.map((p) => p.step), ['shutdown', 'final delta', 'template']);
      assert.equal(oned.image(ids[0]!)!.template.get('ONESWAP_STATE'), 'DONE');
      assert.deepEqual(await listSnapshots(sim, vm.moref), []);
      assert.ok(maxSnapshots <= 1, `${maxSnapshots} oneswap snapshots existed at once`);
      const after = await simStats(sim);
      assert.equal(after.folderRefusals, before.folderRefusals, 'no /folder read of a running VM was ever tried');
      const leases = after.leases.slice(before.leases.length);
      if (mode === 'vddk') assert.deepEqual(leases, [], 'VDDK needs no export lease');
      else assert.deepEqual(leases.map((l) => [l.state, l.end]), [['done', 'complete'], ['done', 'complete'], ['done', 'complete']], 'three rounds, each lease completed');
    });
  }

  test('a VM on vSAN, warm through VDDK: every round and the cutover read over NBD, the images equal the disks', async () => {
    const vm = await createTestVm(sim, { name: 'warm-vsan', datastore: sim.vsanDatastore!, cbt: true, powerOn: true, disks: twoDisks, nics: [{ network: 'VM Network' }] });
    watched.push(vm);
    const vddk = ['--vddk-libdir', peers.vddk.libdir];
    const before = await simStats(sim);
    const start = await warm('start', vm.name, vddk, peers.vddkEnv);
    assert.equal(start.exitCode, 0, start.stderr);
    const ids = (await status(vm.name, vddk, peers.vddkEnv)).disks.map((d) => d.imageId);
    await assertImagesEqual(vm, ids);
    await guestWrites(vm, 0, 2 * MiB, 64 * 1024);
    const sync = await warm('sync', vm.name, vddk, peers.vddkEnv);
    assert.equal(sync.exitCode, 0, sync.stderr);
    await assertImagesEqual(vm, ids);
    await guestWrites(vm, 1, 3 * MiB, 4096);
    const cut = await warm('cutover', vm.name, vddk, peers.vddkEnv);
    assert.equal(cut.exitCode, 0, cut.stderr);
    await assertImagesEqual(vm, ids);
    const readers = [start, sync, cut].flatMap((r) => r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; reader?: string }).filter((e) => e.type === 'reader').map((e) => e.reader));
    assert.deepEqual(readers, Array(6).fill('vddk'));
    const after = await simStats(sim);
    assert.equal(after.folderRefusals, before.folderRefusals);
    assert.equal(after.leases.length, before.leases.length);
    assert.deepEqual(await listSnapshots(sim, vm.moref), []);
  });

  test('a CBT reset (tracking off and on) makes the next round a full one, and the images stay exact', async () => {
    const vm = await runningVm('warm2');
    const started = await warm('start', vm.name);
    assert.equal(started.exitCode, 0, started.stderr);
    await setCbt(sim, vm.moref, false);
    await setCbt(sim, vm.moref, true);
    await guestWrites(vm, 0, 8 * MiB, 64 * 1024);
    const r = await warm('sync', vm.name);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /change tracking of disk .* was reset/);
    const s = await status(vm.name);
    assert.deepEqual(s.disks.map((d) => d.bytesPerRound[1]), [6 * MiB + 64 * 1024, 1 * MiB + 64 * 1024], 'the round after the reset copies everything allocated');
    await assertImagesEqual(vm, s.disks.map((d) => d.imageId));
    assert.equal((await warm('abort', vm.name)).exitCode, 0);
  });

  test('abort: no snapshot, no image, the source runs on as it was', async () => {
    const vm = await runningVm('warm3');
    const before = await Promise.all(vm.disks.map((d) => sha256File(d.flatPath)));
    const imagesBefore = peers.imageIds();
    const started = await warm('start', vm.name);
    assert.equal(started.exitCode, 0, started.stderr);
    assert.equal(peers.imageIds().length, imagesBefore.length + 2);
    const r = await warm('abort', vm.name);
    assert.equal(r.exitCode, 0, r.stderr);
    await oned.idle();
    assert.deepEqual(peers.imageIds(), imagesBefore);
    assert.deepEqual(await listSnapshots(sim, vm.moref), []);
    assert.match(await powerState(vm), /poweredOn/);
    assert.deepEqual(await Promise.all(vm.disks.map((d) => sha256File(d.flatPath))), before);
    const again = await warm('abort', vm.name);
    assert.equal(again.exitCode, 5, 'nothing left to abort');
  });

  test('CBT off: refused with the hint, or turned on with --enable-cbt', async () => {
    const vm = await runningVm('warm4', false);
    const r = await warm('start', vm.name);
    assert.equal(r.exitCode, 6);
    assert.match(r.stderr, /changed block tracking is off.*--enable-cbt/s);
    const ok = await warm('start', vm.name, ['--enable-cbt']);
    assert.equal(ok.exitCode, 0, ok.stderr);
    await assertImagesEqual(vm, (await status(vm.name)).disks.map((d) => d.imageId));
    assert.equal((await warm('abort', vm.name)).exitCode, 0);
  });

  test('what a warm migration refuses: old virtual hardware, independent disks, warm options on a cold import', async () => {
    await oned.idle(); // deletions of earlier tests' images finish first
    const imagesBefore = peers.imageIds();
    const old = await createTestVm(sim, { name: 'warm12', cbt: true, powerOn: true, hardwareVersion: 'vmx-04', disks: [{ sizeBytes: MiB }], nics: [{ network: 'VM Network' }] });
    const r = await warm('start', old.name);
    assert.equal(r.exitCode, 6, r.stderr);
    assert.match(r.stderr.trim().split('\n').at(-1)!, /^oneswap: VM warm12 has virtual hardware vmx-04; changed block tracking needs vmx-07 or later \(upgrade the VM compatibility/);

    const indep = await createTestVm(sim, { name: 'warm13', cbt: true, powerOn: true, disks: [{ sizeBytes: MiB }, { sizeBytes: MiB, mode: 'independent_persistent' }], nics: [{ network: 'VM Network' }] });
    const r2 = await warm('start', indep.name);
    assert.equal(r2.exitCode, 6, r2.stderr);
    assert.match(r2.stderr, /disk "[^"]+" of VM warm13 is independent \(independent_persistent\); snapshots skip such disks/);
    assert.deepEqual(peers.imageIds(), imagesBefore, 'nothing created');
    for (const vm of [old, indep]) assert.deepEqual(await listSnapshots(sim, vm.moref), []);

    const cold = await oneswap([...args(['import'], { convert: false }), '--enable-cbt', indep.name], env);
    assert.equal(cold.exitCode, 2, cold.stderr);
    assert.match(cold.stderr, /--enable-cbt belongs to a warm migration \(add --warm/);
  });

  test('kill -9 mid-round (vddk), then the same command resumes without copying finished ranges again', async () => {
    const vm = await runningVm('warm5', true, bigDisk);
    const vddk = ['--vddk-libdir', peers.vddk.libdir];
    // Killed once the journal holds half the data: the resumed run then has half to read, well
    // under the bound below even with its snapshot's and NFC's own traffic (16 MiB left a margin
    // that a loaded machine's SOAP polling could eat). Throttled to 4 MiB/s per connection, as
    // nbdkit opens several, so the round is still going when a journal flush shows that much.
    peers.proxy.faults = { throttleBytesPerSecond: 4 * MiB };
    const child = spawnOneswap([...args(['warm', 'start'], { convert: false }), '--streams', '1', ...vddk, vm.name], peers.vddkEnv);
    const killed = await killOnceJournalHolds(child, join(peers.work, 'state'), 24 * MiB);
    if (!killed) {
      const ended = await child;
      assert.fail(`the journal never recorded progress: the run ended first, exit ${ended.exitCode}: ${String(ended.stderr).trim().split('\n').at(-1)}`);
    }
    assert.equal((await listSnapshots(sim, vm.moref)).length, 1, 'the killed run left its snapshot');
    peers.proxy.faults = {};
    // The guest keeps writing while nobody copies.
    await guestWrites(vm, 0, 60 * MiB, 64 * 1024);
    peers.proxy.reset();
    const r = await warm('start', vm.name, vddk, peers.vddkEnv);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /removing oneswap's leftover snapshot/);
    assert.ok(peers.proxy.counters.down < 48 * MiB - 12 * MiB, `the resumed run read ${peers.proxy.counters.down} bytes`);
    const s = await status(vm.name);
    await assertImagesEqual(vm, s.disks.map((d) => d.imageId));
    assert.deepEqual(await listSnapshots(sim, vm.moref), []);
    assert.ok(maxSnapshots <= 1, `${maxSnapshots} oneswap snapshots existed at once`);
    assert.equal((await warm('abort', vm.name)).exitCode, 0);
  });

  test('Ctrl-C mid-round: exit 130, our snapshot removed, the source runs on; without local state the images resume it', async () => {
    const vm = await runningVm('warm9', true, bigDisk);
    peers.proxy.faults = { throttleBytesPerSecond: 8 * MiB };
    const child = spawnOneswap([...args(['warm', 'start'], { convert: false }), '--streams', '1', vm.name], env);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    while (!/"type":"disk"/.test(out)) await new Promise((res) => setTimeout(res, 50));
    await new Promise((res) => setTimeout(res, 500));
    const leases = (await simStats(sim)).leases.length;
    child.kill('SIGINT');
    const r = await child;
    peers.proxy.faults = {};
    assert.equal(r.exitCode, 130, String(r.stderr));
    assert.deepEqual(await listSnapshots(sim, vm.moref), [], 'the snapshot of the interrupted round was removed');
    const aborted = (await simStats(sim)).leases.slice(leases - 1);
    assert.deepEqual(aborted.map((l) => [l.vm, l.state, l.end]), [[vm.moref.value, 'error', 'abort']], 'the round\'s export lease was aborted');
    assert.match(await powerState(vm), /poweredOn/);
    assert.equal((await warm('start', vm.name)).exitCode, 0, 'the same command finishes round 0');

    // The state directory is lost (or this is another machine): the images carry the changeIds.
    await rm(join(peers.work, 'state', 'journal'), { recursive: true, force: true });
    await guestWrites(vm, 0, 32 * MiB, 64 * 1024);
    const sync = await warm('sync', vm.name);
    assert.equal(sync.exitCode, 0, sync.stderr);
    assert.match(sync.stdout, /no local state for warm9: resuming the warm migration from images \d+ \(their changeIds after round 0\)/);
    const s = await status(vm.name);
    assert.equal(s.rounds, 2);
    assert.deepEqual(s.disks[0]!.bytesPerRound, [64 * 1024], 'only the change travelled');
    await assertImagesEqual(vm, s.disks.map((d) => d.imageId));
    assert.equal((await warm('abort', vm.name)).exitCode, 0);
  });

  test('a cold import kept after a failure, then warm: the first round starts from a cleared image', async () => {
    const vm = await createTestVm(sim, { name: 'warm11', cbt: true, disks: [{ sizeBytes: 16 * MiB, data: [{ offset: 0, length: 12 * MiB }] }], nics: [{ network: 'VM Network' }] });
    watched.push(vm);
    peers.proxy.faults = { cutAfterBytes: 2 * MiB };
    const cold = await oneswap([...args(['import'], { convert: false }), '--keep-on-failure', vm.name], env);
    peers.proxy.faults = {};
    assert.equal(cold.exitCode, 4, cold.stderr);
    // The guest zeroes what the cold run had copied, and writes elsewhere.
    const fh = await open(vm.disks[0]!.flatPath, 'r+');
    await fh.write(Buffer.alloc(2 * MiB), 0, 2 * MiB, 0);
    await fh.close();
    await guestWrites(vm, 0, 14 * MiB, 64 * 1024);
    const r = await warm('start', vm.name);
    assert.equal(r.exitCode, 0, r.stderr);
    await assertImagesEqual(vm, (await status(vm.name)).disks.map((d) => d.imageId));
    assert.equal((await warm('abort', vm.name)).exitCode, 0);
  });

  test('import --warm cuts over when a round is small enough, and when the operator says so', async () => {
    const vm = await runningVm('warm6');
    const r = await oneswap([...args(['import'], { convert: false }), '--warm', '--cutover-when-below', '64M', vm.name], env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /cutting over: round 0 copied \d+ bytes, not more than --cutover-when-below/);
    assert.match(await powerState(vm), /poweredOff/);

    // --cutover-at wakes the wait between rounds (here a round every hour).
    const vmAt = await runningVm('warm10');
    const at = new Date(Date.now() + 4000).toISOString();
    const timed = await oneswap([...args(['import'], { convert: false }), '--warm', '--sync-interval', '1h', '--cutover-at', at, vmAt.name], env);
    assert.equal(timed.exitCode, 0, timed.stderr);
    assert.match(timed.stdout, /cutting over: --cutover-at .* has come/);
    assert.ok(Date.now() >= Date.parse(at));
    assert.match(await powerState(vmAt), /poweredOff/);

    const vm2 = await runningVm('warm7');
    const child = spawnOneswap([...args(['import'], { convert: false }), '--warm', '--sync-interval', '1s', vm2.name], env);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    while (!/"phase":"sync","state":"done"/.test(out)) await new Promise((res) => setTimeout(res, 100));
    const ask = await warm('cutover', vm2.name);
    assert.equal(ask.exitCode, 0, ask.stderr);
    assert.match(ask.stdout, /asked it to cut over/);
    const done = await child;
    assert.equal(done.exitCode, 0, done.stderr);
    assert.match(out, /cutting over: the operator asked for it/);
    assert.match(await powerState(vm2), /poweredOff/);
    const ids = peers.imageIds().slice(-2);
    await assertImagesEqual(vm2, ids);
    assert.ok(maxSnapshots <= 1, `${maxSnapshots} oneswap snapshots existed at once`);
  });

  test('a guest that will not convert is found by the rehearsal; a cutover that fails powers the source on again', async () => {
    const vm = await runningVm('warm8');
    const templatesBefore = peers.templateIds().length;
    // The libvirt backend needs a libvirtd this machine does not run: every conversion fails fast.
    const broken = { ...env, LIBGUESTFS_BACKEND: 'libvirt' };
    const start = await oneswap([...args(['warm', 'start']), vm.name], broken, 10 * 60_000);
    assert.equal(start.exitCode, 10, start.stderr);
    assert.match(start.stderr.trim().split('\n').at(-1)!, /^oneswap: the rehearsal conversion of warm8 failed, so a cutover would fail too: .*appliance/);
    assert.match(start.stdout, /the source VM keeps running; images \d+, \d+ keep the finished rounds/);
    assert.match(await powerState(vm), /poweredOn/);
    assert.deepEqual(await listSnapshots(sim, vm.moref), []);
    const s = await status(vm.name);
    assert.equal(s.rounds, 1, 'the round before the rehearsal is kept');
    const ids = s.disks.map((d) => d.imageId);

    await guestWrites(vm, 0, 2 * MiB, 64 * 1024);
    const cut = await oneswap([...args(['warm', 'cutover']), '--no-rehearse', vm.name], broken, 10 * 60_000);
    assert.equal(cut.exitCode, 10, cut.stderr);
    assert.match(cut.stdout, /source warm8: powered on again in vCenter/);
    assert.match(cut.stdout, /OpenNebula: images \d+, \d+ kept with their rounds \(not converted\)/);
    assert.match(await powerState(vm), /poweredOn/);
    assert.deepEqual(await listSnapshots(sim, vm.moref), []);
    assert.equal(peers.templateIds().length, templatesBefore, 'no template was created for warm8');
    await assertImagesEqual(vm, ids);

    // Fixed (here: not converting): the same cutover finishes from where it is.
    await guestWrites(vm, 1, 3 * MiB, 64 * 1024);
    const again = await warm('cutover', vm.name);
    assert.equal(again.exitCode, 0, again.stderr);
    await assertImagesEqual(vm, ids);
    assert.match(await powerState(vm), /poweredOff/);
  });

  test('a guest without an operating system: the rehearsal finds it, status predicts no conversion, the cutover spends none', async () => {
    const vm = await runningVm('warm15');
    const start = await oneswap([...args(['warm', 'start']), vm.name], env, 10 * 60_000);
    assert.equal(start.exitCode, 0, start.stderr);
    assert.match(start.stdout, /no operating system found \(data disks only\): the cutover will not convert/);
    const s = await status(vm.name);
    assert.deepEqual(s.prediction!.parts.map((p) => p.step), ['final delta (folder)'], JSON.stringify(s.prediction));
    assert.ok(s.prediction!.notes.includes('no conversion at the cutover: the rehearsal found no operating system (data disks only)'), s.prediction!.notes.join('; '));
    await guestWrites(vm, 0, 3 * MiB, 64 * 1024);
    const cut = await oneswap([...args(['warm', 'cutover']), vm.name], env, 10 * 60_000);
    assert.equal(cut.exitCode, 0, cut.stderr);
    const events = cut.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; phase?: string; state?: string; detail?: string; parts?: Array<{ step: string }> });
    assert.deepEqual(events.filter((e) => e.phase === 'convert').map((e) => [e.state, e.detail]), [['skipped', 'the rehearsal found no operating system (data disks only)']]);
    assert.deepEqual(events.find((e) => e.type === 'downtime')!.parts!.map((p) => p.step), ['shutdown', 'final delta', 'template']);
    await assertImagesEqual(vm, s.disks.map((d) => d.imageId));
  });

  test('a VM migrated already: another warm migration never takes over, writes into or removes the finished images', async () => {
    const vm = await runningVm('warm14');
    const started = await warm('start', vm.name);
    assert.equal(started.exitCode, 0, started.stderr);
    const cut = await warm('cutover', vm.name);
    assert.equal(cut.exitCode, 0, cut.stderr);
    const finished = peers.imageIds().filter((id) => oned.image(id)!.name.startsWith('warm14-'));
    assert.equal(finished.length, 2);
    const templates = peers.templateIds();
    const snapshot = async (): Promise<string[]> =>
      Promise.all(finished.map(async (id) => `${oned.image(id)!.template.toText()} ${await sha256File(imageFile(id))}`));
    const untouched = await snapshot();
    await powerOnVm(vm);

    // The same names: a name clash, said in one line, nothing created or changed.
    const before = peers.imageIds();
    const same = await warm('start', vm.name);
    assert.equal(same.exitCode, 6, same.stderr);
    assert.match(same.stderr.trim().split('\n').at(-1)!, new RegExp(`^oneswap: image name "warm14-disk0" is already taken by image ${finished[0]}`));
    assert.match(same.stdout, new RegExp(`not touching images of warm14 .*: ${finished[0]} \\(it is a finished migration \\(ONESWAP_STATE=DONE\\)\\), ${finished[1]} \\(`));
    assert.deepEqual(peers.imageIds(), before);

    // Other names: a fresh migration with new images; the finished ones stay as they are.
    const again = await warm('start', vm.name, ['--name-prefix', 'again-']);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.doesNotMatch(again.stdout, /resuming/);
    const fresh = peers.imageIds().filter((id) => !before.includes(id));
    assert.deepEqual(fresh.map((id) => oned.image(id)!.name), ['again-warm14-disk0', 'again-warm14-disk1']);
    await assertImagesEqual(vm, fresh);

    // An image of that unfinished migration attached to a VM by someone: not taken over either.
    const one = await OneClient.connect({ endpoint: oned.endpoint, env: { ONE_AUTH: env.ONE_AUTH! } });
    try {
      const tpl = await one.templateAllocate(Template.of({ NAME: 'borrower', CPU: 1, MEMORY: 128, DISK: { IMAGE_ID: fresh[1]! } }));
      const borrower = await one.templateInstantiate(tpl, { name: 'borrower', hold: true, persistent: false });
      await rm(join(peers.work, 'state', 'journal'), { recursive: true, force: true });
      const sync = await warm('sync', vm.name, ['--name-prefix', 'again-']);
      assert.equal(sync.exitCode, 6, sync.stderr);
      assert.match(sync.stdout, new RegExp(`no local state for warm14: resuming the warm migration from images ${fresh[0]} `));
      assert.match(sync.stdout, new RegExp(`${fresh[1]} \\(it is in use by VM ${borrower}\\)`));
      assert.match(sync.stderr, new RegExp(`image name "again-warm14-disk1" is already taken by image ${fresh[1]}`));
      await one.vmAction('terminate-hard', borrower);
      await one.templateDelete(tpl);
    } finally {
      one.close();
    }

    // Abort without local state: only that migration's images go.
    await rm(join(peers.work, 'state', 'journal'), { recursive: true, force: true });
    const abort = await warm('abort', vm.name, ['--name-prefix', 'again-']);
    assert.equal(abort.exitCode, 0, abort.stderr);
    await oned.idle();
    assert.deepEqual(peers.imageIds(), before, 'the new images are gone, the finished ones are there');
    assert.deepEqual(await snapshot(), untouched, 'the finished images are as the first migration left them');
    assert.deepEqual(peers.templateIds(), templates, 'the first migration\'s template stays');
    assert.equal((await warm('abort', vm.name, ['--name-prefix', 'again-'])).exitCode, 5, 'nothing of that migration is left to abort');
    assert.equal((await warm('abort', vm.name)).exitCode, 5, 'a finished migration is not something to abort');
    assert.deepEqual(await snapshot(), untouched);
  });
});
