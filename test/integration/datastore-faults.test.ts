// Bad input and faults of `oneswap import` (and `oneswap convert`) into Ceph and qcow2 image
// datastores, as the real command against the simulators, a real Ceph and a bridge host: each
// gives one line naming the datastore and what to fix, the exit code of its kind, and leaves
// nothing that looks finished; a re-run after the fix finishes the import with the disks' bytes.
// One Ceph, one bridge host, one vCenter and one OpenNebula for the whole file; no conversion.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { execa } from 'execa';
import { OneClient, Template } from '../../lib/one/index.js';
import { vcsimSkip } from '../peers/vcsim/index.js';
import { createTestVm, type TestVm } from '../peers/vcsim/fixture.js';
import { cephSkip, startCeph, type Ceph } from '../peers/ceph/index.js';
import { bridgeSkip, startBridge, type Bridge } from '../peers/bridge/index.js';
import { oneswap, spawnOneswap, type CliRun } from '../peers/cli.js';
import { importResult, startMigrationPeers, type MigrationPeers } from '../peers/migration.js';

const MiB = 1024 * 1024;
const skip = vcsimSkip() || cephSkip({ mgr: true }) || bridgeSkip();
const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

describe('faults of imports into Ceph and qcow2 image datastores', { skip, timeout: 20 * 60_000 }, () => {
  let peers: MigrationPeers;
  let ceph: Ceph;
  let bridge: Bridge;
  /** The bridge user's own copy of the client identity (the peer's files are root's), which the datastores name: the stock driver reads them on the bridge, oneswap here. */
  let keyFile: string;
  let confFile: string;
  let cephDs: number;
  let qcowDs: number;
  let vm: TestVm;
  let imagesBefore: number[];
  let rbdsBefore: string[];

  const importArgs = (ds: number, ...extra: string[]): string[] => [...peers.importArgs({ datastore: ds }), ...extra];
  const rbds = async (): Promise<string[]> => (await ceph.rbd(['ls', ceph.pool])).split('\n').filter(Boolean).sort();
  /** A Ceph datastore like `ceph` but for the attributes given; its capacity pinned when its monitor cannot work. */
  const cephDatastore = (name: string, attrs: Record<string, string>, o: { pinned?: boolean } = {}): Promise<number> =>
    peers.oned.createDatastore({
      name,
      type: 'IMAGE_DS',
      dsMad: 'ceph',
      tmMad: 'ceph',
      template: { DISK_TYPE: 'RBD', BRIDGE_LIST: bridge.hostName, POOL_NAME: ceph.pool, CEPH_USER: ceph.user, CEPH_CONF: confFile, CEPH_KEY: keyFile, ...attrs },
      ...(o.pinned ? { totalMb: 100_000, freeMb: 100_000, noMonitor: true } : {}),
    });

  /** One line on stderr naming the datastore, the exit code of its kind; what the run made is gone (images and RBD images). */
  async function assertCleanFailure(r: CliRun, code: number, message: RegExp): Promise<void> {
    assert.equal(r.exitCode, code, `exit code (stderr: ${r.stderr})`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0]!, /^oneswap: datastore \d+ \([\w-]+\): /);
    assert.match(lines[0]!, message);
    await peers.oned.idle();
    assert.deepEqual(peers.imageIds(), imagesBefore, 'images left behind');
    assert.deepEqual(peers.templateIds(), [], 'templates left behind');
    assert.deepEqual(await rbds(), rbdsBefore, 'RBD images left behind');
  }

  before(async () => {
    [ceph, bridge] = await Promise.all([startCeph({ mgr: true }), startBridge({ hosts: ['bridge1'] })]);
    // The manager's statistics every second: the monitors flag a pool at its quota from them.
    await ceph.ceph(['config', 'set', 'mgr', 'mgr_stats_period', '1']);
    await ceph.ceph(['config', 'set', 'mgr', 'mon_mgr_digest_period', '1']);
    peers = await startMigrationPeers('ds-faults', { oned: { driverEnv: { PATH: bridge.env().PATH ?? '' } } });
    peers.oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 16 }] });
    keyFile = await bridge.giveFile('ceph.key', `${await ceph.adminKey()}\n`);
    confFile = await bridge.giveFile('ceph.conf', ceph.clientConf());
    cephDs = await cephDatastore('ceph', {});
    qcowDs = await peers.oned.createDatastore({ name: 'qcow2', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'qcow2' });
    vm = await createTestVm(peers.sim, {
      name: 'faulty',
      cbt: true,
      disks: [
        { sizeBytes: 64 * MiB + 64 * 1024, data: [{ offset: 0, length: 40 * MiB }, { offset: 64 * MiB, length: 64 * 1024 }] },
        { sizeBytes: 16 * MiB, data: [{ offset: 4 * MiB, length: 4 * MiB }] },
      ],
      nics: [{ network: 'VM Network', adapter: 'vmxnet3' }],
    });
  });

  beforeEach(async () => {
    peers.proxy.faults = {};
    imagesBefore = peers.imageIds();
    rbdsBefore = await rbds();
  });

  after(async () => {
    if (ceph) for (const pid of [ceph.pids.mon, ceph.pids.osd]) process.kill(pid, 'SIGCONT');
    await peers?.stop();
    await Promise.all([ceph?.stop(), bridge?.stop()]);
  });

  /** Removes what a successful import created, so the next test starts clean. */
  async function removeImported(ids: readonly number[]): Promise<void> {
    const one = await OneClient.connect({ endpoint: peers.oned.endpoint, secret: peers.oned.adminSession, env: {} });
    try {
      for (const t of peers.templateIds()) await one.templateDelete(t);
      for (const id of ids) await one.imageDelete(id);
      await peers.oned.idle();
    } finally {
      one.close();
    }
  }

  /** The images hold the VM's disks exactly; then they are removed. */
  async function assertImported(r: CliRun): Promise<void> {
    assert.equal(r.exitCode, 0, r.stderr);
    const ids = importResult(r.stdout).imageIds;
    for (const [i, id] of ids.entries()) {
      const img = peers.oned.image(id)!;
      assert.equal(img.template.get('ONESWAP_STATE'), 'DONE');
      assert.deepEqual(await ceph.imageSha(img.source), { size: vm.disks[i]!.sizeBytes, sha256: vm.disks[i]!.sha256 }, `image ${id} holds disk ${i}`);
    }
    await removeImported(ids);
  }

  test('the pool checked before anything is made: missing, key unreadable or refused, monitors out of reach', async () => {
    const noPool = await cephDatastore('ceph-nopool', { POOL_NAME: 'nopool' }, { pinned: true });
    await assertCleanFailure(
      await oneswap(importArgs(noPool, vm.name), peers.env),
      5,
      /: the Ceph pool nopool does not exist \(check the datastore's POOL_NAME, or create the pool \(ceph osd pool create, then rbd pool init\)\)$/,
    );

    const noKey = await cephDatastore('ceph-nokey', { CEPH_KEY: '/nonexistent/ceph.key' }, { pinned: true });
    await assertCleanFailure(await oneswap(importArgs(noKey, vm.name), peers.env), 2, /: CEPH_KEY \/nonexistent\/ceph\.key is not readable on this host \(ENOENT\) \(oneswap writes into the Ceph pool one from this host/);

    // A key of the right form that is not the user's.
    const otherKey = await bridge.giveFile('other.key', `${(await execa('ceph-authtool', ['--gen-print-key'])).stdout.trim()}\n`);
    const wrongKey = await cephDatastore('ceph-wrongkey', { CEPH_KEY: otherKey }, { pinned: true });
    await assertCleanFailure(
      await oneswap(importArgs(wrongKey, vm.name), peers.env),
      3,
      new RegExp(`: Ceph refused client\\.admin with the key in ${otherKey} \\(for the Ceph pool one\\) \\(check the datastore's CEPH_USER and CEPH_KEY: the key must be the one \`ceph auth get client\\.admin\` shows\\)$`),
    );

    // Monitors nobody answers for: librados gives up after the private conf's 30 s, not rbd's 300.
    const deadConf = await bridge.giveFile('dead.conf', ceph.clientConf({ monHost: '127.0.0.1:1' }));
    const unreachable = await cephDatastore('ceph-unreachable', { CEPH_CONF: deadConf }, { pinned: true });
    const t0 = Date.now();
    await assertCleanFailure(
      await oneswap(importArgs(unreachable, vm.name), peers.env),
      4,
      new RegExp(`: cannot reach the Ceph monitors named in ${deadConf} \\(for the Ceph pool one\\) \\(check the datastore's CEPH_CONF \\(mon_host\\) and that the monitors run and are reachable from this host\\)$`),
    );
    assert.ok(Date.now() - t0 < 60_000, `gave up after ${Date.now() - t0} ms`);
    // Its monitor (every 5 minutes) would wait 300 s for those monitors.
    peers.oned.datastore(unreachable)!.template.set('CEPH_CONF', confFile);
  });

  test('an RBD image already there under a placeholder\'s name: refused, left as it was; a re-run imports under other names', async () => {
    // The second placeholder will be image N+1, its RBD image one/one-<N+1>: someone else's now.
    const next = peers.oned.sim.pools.next.image;
    const foreign = `${ceph.pool}/one-${next + 1}`;
    await ceph.rbd(['create', '--size', '8', foreign]);
    await execa('qemu-io', ['-f', 'raw', '-c', 'write -P 0x3c 1M 64k', `rbd:${foreign}:id=${ceph.user}:conf=${ceph.conf}`]);
    const foreignBytes = await ceph.imageSha(foreign);
    rbdsBefore = await rbds();

    await assertCleanFailure(
      await oneswap(importArgs(cephDs, vm.name), peers.env),
      6,
      new RegExp(
        `: the RBD image ${foreign} that the datastore makes for image ${next + 1} already exists, so it made none \\(oneswap wrote nothing into ${foreign}\\) \\(no image of this OpenNebula owns it .*: see what it is \\(rbd info ${foreign}\\) and remove it if stale; running the same command again makes placeholders under other ids\\)$`,
      ),
    );
    assert.deepEqual(await ceph.imageSha(foreign), foreignBytes, 'the foreign RBD image is untouched');

    await assertImported(await oneswap(importArgs(cephDs, vm.name), peers.env));
    await ceph.rbd(['rm', foreign]);
  });

  test('a qcow2 placeholder that is not empty: refused before anything is written, the datastore as it was', async () => {
    const files = async (): Promise<string[]> => (await readdir(peers.oned.datastore(qcowDs)!.basePath).catch(() => [] as string[])).sort();
    const filesBefore = await files();
    // A datastore driver whose mkfs leaves data in the new image of the second disk.
    peers.oned.setDriverAction('mkfs', async (c) => {
      if (!c.payload.includes(`<NAME>${vm.name}-disk1</NAME>`)) return undefined;
      // As the stock mkfs names it: BASE_PATH as oned gives it (DATASTORE_LOCATION//<id>), then the file.
      const file = `${peers.oned.datastore(qcowDs)!.basePath}/not-empty`;
      await execa('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
      await execa('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 64k', file]);
      return { stdout: `${file}\n` };
    });
    try {
      await assertCleanFailure(
        await oneswap(importArgs(qcowDs, vm.name), peers.env),
        6,
        /: the new image \d+ \(\S+\/not-empty\) already holds 65536 bytes of data, not an empty placeholder; oneswap writes only into empty ones \(the datastore's mkfs must create an empty qcow2 file/,
      );
    } finally {
      peers.oned.setDriverAction('mkfs', null);
    }
    assert.deepEqual(await files(), filesBefore, 'the datastore holds the files it held');
  });

  test('oneswap convert of a Ceph image whose SOURCE is not pool/image: one line naming the datastore', async () => {
    const one = await OneClient.connect({ endpoint: peers.oned.endpoint, secret: peers.oned.adminSession, env: {} });
    try {
      for (const source of ['one-7', 'one/']) {
        const id = await one.imageAllocate(Template.of({ NAME: `bad-${source.replace('/', '')}`, TYPE: 'OS', SOURCE: source, FORMAT: 'raw', SIZE: 1, PERSISTENT: 'YES' }), cephDs);
        const r = await oneswap(['convert', '--endpoint', peers.oned.endpoint, '--progress', 'json', '--image', String(id)], peers.env);
        assert.equal(r.exitCode, 8, r.stderr);
        assert.equal(
          r.stderr.trim(),
          `oneswap: datastore ${cephDs} (ceph): image ${id} (bad-${source.replace('/', '')}) has SOURCE "${source}", not the pool/image of an RBD image (images of a Ceph datastore are RBD images named POOL/IMAGE (the datastore's driver makes one/one-${id}); register the image again with such a SOURCE)`,
        );
        // Its SOURCE names no RBD image the datastore's rm could remove: gone only by force.
        await one.imageDelete(id, true);
        await peers.oned.idle();
      }
    } finally {
      one.close();
    }
  });

  test('the monitors stop once the placeholders are made: exit 4 naming them, the placeholders removed once Ceph is back', async () => {
    const child = spawnOneswap(importArgs(cephDs, vm.name), peers.env);
    let stopped = false;
    let resumed = false;
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (!stopped && /"phase":"placeholders","state":"done"/.test(out)) {
        stopped = true;
        process.kill(ceph.pids.mon, 'SIGSTOP');
      }
      // Back once the failure is told: the rollback's rbd rm waits for the monitors (the stock
      // driver sets no timeout), and would otherwise spend its whole wait on them.
      if (stopped && !resumed && /"phase":"rollback","state":"start"/.test(out)) {
        resumed = true;
        process.kill(ceph.pids.mon, 'SIGCONT');
      }
    });
    let r: CliRun;
    try {
      const c = await child;
      r = { exitCode: c.exitCode ?? -1, stdout: String(c.stdout), stderr: String(c.stderr) };
    } finally {
      if (!resumed) process.kill(ceph.pids.mon, 'SIGCONT');
    }
    assert.ok(stopped, 'the placeholders were never made');
    await assertCleanFailure(
      r,
      4,
      /: cannot reach the Ceph monitors named in \S+ \(for rbd one\/one-\d+\) \(check the datastore's CEPH_CONF \(mon_host\) and that the monitors run and are reachable from this host\)$/,
    );
  });

  test('the pool reaches its quota during the copy: exit 7 naming the pool and the fix, the images kept; once raised, a re-run resumes', async () => {
    const stored = async (): Promise<number> =>
      (JSON.parse(await ceph.ceph(['df', '--format', 'json'])) as { pools: Array<{ name: string; stats: { stored: number } }> }).pools.find((p) => p.name === ceph.pool)!.stats.stored;
    const full = async (): Promise<boolean> => /full_quota/.test(await ceph.ceph(['osd', 'pool', 'ls', 'detail']));
    // Room for 8 MiB of the 44 MiB of data; the copy slowed down (29 s) so the monitors flag the
    // pool while it runs: they see the pool's usage late (the OSD reports to the manager every
    // second, the manager's digest reaches the monitors every second, their tick checks quotas
    // every 5 s), so the flag comes some 10 s after the quota is reached. Earlier tests' images
    // count until the manager says they are gone: a quota over their stale usage leaves more room.
    for (const deadline = Date.now() + 90_000; (await stored()) > 4 * MiB && Date.now() < deadline; ) await sleep(500);
    const base = await stored();
    assert.ok(base <= 4 * MiB, `the pool still stores ${base} bytes of earlier tests' images`);
    await ceph.ceph(['osd', 'pool', 'set-quota', ceph.pool, 'max_bytes', String(base + 8 * MiB)]);
    peers.proxy.faults = { throttleBytesPerSecond: 1.5 * MiB };
    const t0 = Date.now();
    const r = await oneswap(importArgs(cephDs, vm.name), peers.env);
    const failedAfter = Date.now() - t0;
    try {
      assert.equal(r.exitCode, 7, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(
        r.stderr.trim(),
        new RegExp(
          `^oneswap: datastore ${cephDs} \\(ceph\\): the Ceph pool one has reached its quota \\(writing rbd one/one-\\d+\\) \\(raise the quota \\(ceph osd pool set-quota one max_bytes …\\) or free space in the pool, then run the same command again\\)$`,
        ),
      );
      assert.ok(failedAfter < 60_000, `told after ${failedAfter} ms, not after librados' 120 s`);
      // Ceph removes no image from a pool at its quota: the images stay, marked, for the re-run.
      const kept = peers.imageIds().filter((id) => !imagesBefore.includes(id));
      assert.equal(kept.length, 2);
      for (const id of kept) assert.equal(peers.oned.image(id)!.template.get('ONESWAP_STATE'), 'FAILED');
      assert.match(r.stdout, new RegExp(`kept images ${kept.join(',')} with what was copied, marked ONESWAP_STATE=FAILED: the copy ran out of room; make room, then run the same command again to resume \\(it copies only what is missing\\), or remove them: oneimage delete ${kept.join(' ')}"`));

      // Run again before there is room: refused at the precheck, the kept images as they were.
      const early = await oneswap(importArgs(cephDs, vm.name), peers.env);
      assert.equal(early.exitCode, 7, early.stderr);
      assert.equal(
        early.stderr.trim(),
        `oneswap: datastore ${cephDs} (ceph): the Ceph pool one has reached its quota (raise the quota (ceph osd pool set-quota one max_bytes …) or free space in the pool, then run the same command again)`,
      );
      assert.deepEqual(peers.imageIds().filter((id) => !imagesBefore.includes(id)), kept);
      for (const id of kept) assert.equal(peers.oned.image(id)!.template.get('ONESWAP_STATE'), 'FAILED');
    } finally {
      await ceph.ceph(['osd', 'pool', 'set-quota', ceph.pool, 'max_bytes', '0']);
      peers.proxy.faults = {};
    }
    while (await full()) await sleep(250);

    peers.proxy.reset();
    const again = await oneswap(importArgs(cephDs, vm.name), peers.env);
    assert.match(again.stdout, /resuming an earlier run/);
    const data = vm.disks.reduce((s, d) => s + d.dataBytes, 0);
    assert.ok(peers.proxy.counters.down < data, `the resumed run read ${peers.proxy.counters.down} bytes of ${data}`);
    await assertImported(again);
  });
  test('the pool reaches its quota while the datastore makes the placeholders (the stock mkfs waits for room for ever): exit 7 within seconds, nothing left', async () => {
    const full = async (): Promise<boolean> => /full_quota/.test(await ceph.ceph(['osd', 'pool', 'ls', 'detail']));
    // Data in the pool, so that a quota below it flags the pool.
    const filler = `${ceph.pool}/filler`;
    await ceph.rbd(['create', '--size', '8', filler]);
    await ceph.rbd(['bench', '--io-type', 'write', '--io-size', '1M', '--io-total', '4M', '--io-pattern', 'seq', filler]);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    // The stock mkfs's `rbd create` once the pool is full: it waits, with no timeout.
    peers.oned.setDriverAction('mkfs', async ({ dsMad }) => {
      if (dsMad !== 'ceph') return undefined;
      await ceph.ceph(['osd', 'pool', 'set-quota', ceph.pool, 'max_bytes', String(MiB)]);
      await released;
      return { stderr: 'ERROR: mkfs: Command "rbd create" failed: pool full', exitCode: 1 };
    });
    let r: CliRun;
    const t0 = Date.now();
    try {
      r = await oneswap(importArgs(cephDs, vm.name), peers.env);
    } finally {
      release();
      peers.oned.setDriverAction('mkfs', null);
      await ceph.ceph(['osd', 'pool', 'set-quota', ceph.pool, 'max_bytes', '0']);
    }
    const told = Date.now() - t0;
    while (await full()) await sleep(250);
    await ceph.rbd(['rm', filler]);
    await assertCleanFailure(r, 7, /: the Ceph pool one has reached its quota \(raise the quota \(ceph osd pool set-quota one max_bytes …\) or free space in the pool, then run the same command again\)$/);
    assert.ok(told < 90_000, `told after ${told} ms`);
  });
});
