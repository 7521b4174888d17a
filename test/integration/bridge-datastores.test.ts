// oneswap into file datastores with a BRIDGE_LIST: the image files live on the bridge host and
// oneswap never reaches them through a local path. It runs in a mount namespace where the
// datastore's directory is an empty tmpfs, so only the bridge (a real sshd on loopback, logged in
// to as its own user, test/peers/bridge) can touch them: qemu-nbd and qemu-img run there, over ssh,
// as OpenNebula's stock drivers run theirs. One bridge, one vCenter and one OpenNebula for the file.
// And a Ceph datastore whose CEPH_CONF and CEPH_KEY are the bridge user's files, hidden from
// oneswap the same way: only the bridge hosts reach the pool (one real Ceph, started for those tests).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chown, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { vcsimSkip } from '../peers/vcsim/index.js';
import { createTestVm, powerOn, type TestVm } from '../peers/vcsim/fixture.js';
import { bridgeSkip, startBridge, type Bridge } from '../peers/bridge/index.js';
import { ovaToolsSkip } from '../peers/ova/index.js';
import { oneswap } from '../peers/cli.js';
import { islandOva, warmRounds } from '../support/datastore-scenarios.js';
import { importResult, startMigrationPeers, type MigrationPeers } from '../peers/migration.js';
import { ISLAND_DISKS, QCOW2_CLUSTER, RBD_OBJECT, qcow2Bytes, rbdBytes, rbdUsage, unitsTouched } from '../support/image-contents.js';
import { cephSkip, startCeph, type Ceph } from '../peers/ceph/index.js';
import { cephIdentityOnBridge } from '../support/ceph-identity.js';
import { rbdTarget } from '../../lib/output/image-target.js';
import { openRbdAccess } from '../../lib/output/rbd-access.js';
import { serveRbd } from '../../lib/output/rbd-target.js';

const MiB = 1024 * 1024;
const BLOCK = 4096; // the file system's block: what a sparse raw file allocates in
const skip = vcsimSkip() || bridgeSkip() || ovaToolsSkip() || (process.getuid?.() !== 0 ? 'needs root (a mount namespace hides the datastore from oneswap)' : false);

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('imports into file datastores worked on through BRIDGE_LIST hosts', { skip, timeout: 40 * 60_000 }, () => {
  let peers: MigrationPeers;
  let bridge: Bridge;
  let rawDs: number;
  let qcowDs: number;
  let work: string;
  const bases: string[] = [];
  let env: Record<string, string>;
  const islands = ISLAND_DISKS.map((d) => d.data);
  let vms = 0;
  const newVm = (name: string): Promise<TestVm> =>
    createTestVm(peers.sim, { name: `${name}-${vms++}`, cbt: true, disks: ISLAND_DISKS.map((d) => ({ sizeBytes: d.sizeBytes, data: [...d.data] })), nics: [{ network: 'VM Network', adapter: 'vmxnet3' }] });
  const importArgs = (ds: number, extra: string[]): string[] => [...peers.importArgs({ datastore: ds }), ...extra];
  /** oneswap as it runs here: the datastores' directories out of its reach. */
  const run = (args: string[], e = env): ReturnType<typeof oneswap> => oneswap(args, e, 300_000, { hide: bases });
  const qcowBytes = (file: string): Promise<Buffer> => qcow2Bytes(file, work);
  /** Bytes of the disk that hold data: qcow2 clusters, or a raw file's data extents (SEEK_DATA; st_blocks would count ext4's extent blocks too). */
  const allocated = async (file: string, format: 'raw' | 'qcow2'): Promise<number> => {
    const map = JSON.parse((await execa('qemu-img', ['map', '--output=json', '-f', format, file])).stdout) as Array<{ length: number; data: boolean }>;
    return map.reduce((s, e) => (e.data ? s + e.length : s), 0);
  };
  const sessionsSince = async (n: number): Promise<Awaited<ReturnType<Bridge['sessions']>>> => (await bridge.sessions()).slice(n);

  before(async () => {
    bridge = await startBridge({ hosts: ['bridge1', 'bridge2'], refusedHosts: ['bridge-down'], deniedHosts: ['bridge-denied'], bareHosts: ['bridge-bare'] });
    // The stock drivers skip hosts OpenNebula lists as off or disabled; oneswap finds out by itself.
    peers = await startMigrationPeers('bridge-ds', { oned: { driverEnv: { PATH: bridge.env().PATH ?? '' }, hosts: { 'bridge-down': 'off', 'bridge-bare': 'dsbl' } } });
    env = { ...peers.env, PATH: `${bridge.pathDir}:${peers.env.PATH}` };
    work = await mkdtemp(join(tmpdir(), 'oneswap-bridge-ds-'));
    peers.oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 16 }] });
    const bridged = async (name: string, tmMad: string, hosts: string, extra: Record<string, string | number> = {}): Promise<number> => {
      const id = await peers.oned.createDatastore({ name, type: 'IMAGE_DS', dsMad: 'fs', tmMad, template: { BRIDGE_LIST: hosts, STAGING_DIR: bridge.stagingDir }, noMonitor: true, ...extra });
      const base = peers.oned.datastore(id)!.basePath.replace(/\/+$/, '');
      await execa('mkdir', ['-p', base]);
      await bridge.grant(base, 'rw');
      bases.push(base);
      await peers.oned.monitorDatastore(id);
      return id;
    };
    rawDs = await bridged('bridged', 'shared', 'bridge1 bridge2');
    qcowDs = await bridged('bridged-qcow2', 'qcow2', 'bridge1');
  });

  after(async () => {
    await peers?.stop();
    await bridge?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('cold import of a 2-disk VM into a bridged raw datastore: the files, on the bridge, hold exactly the disks, sparse', async () => {
    const vm = await newVm('cold-raw');
    const seen = (await bridge.sessions()).length;
    const r = await run(importArgs(rawDs, [vm.name]));
    assert.equal(r.exitCode, 0, r.stderr);
    const ids = importResult(r.stdout).imageIds;
    assert.equal(ids.length, 2);
    for (const [i, id] of ids.entries()) {
      const img = peers.oned.image(id)!;
      assert.equal(img.format, 'raw');
      assert.equal(img.template.get('ONESWAP_STATE'), 'DONE');
      const st = await stat(img.source);
      assert.equal(st.uid, bridge.uid, 'the file is the bridge user\'s: written there, not from here');
      assert.equal(st.size, vm.disks[i]!.sizeBytes, 'exactly the disk\'s size');
      assert.equal(sha(await readFile(img.source)), vm.disks[i]!.sha256, `image ${id} holds the disk's bytes`);
      // mkfs's `qemu-img create` allocates the first block (qemu does, for its alignment probe): the
      // file holds that block and the data, nothing else.
      const placeholder = [{ offset: 0, length: BLOCK }];
      assert.equal(await allocated(img.source, 'raw'), unitsTouched([...placeholder, ...islands[i]!], vm.disks[i]!.sizeBytes, BLOCK), `image ${id} allocates only the blocks holding data`);
    }
    const sessions = await sessionsSince(seen);
    // Each image on the host the stock drivers pick: BRIDGE_LIST[id % 2].
    for (const id of ids) {
      const host = ['bridge1', 'bridge2'][id % 2];
      const src = peers.oned.image(id)!.source;
      assert.ok(sessions.some((s) => s.host === host && s.command.includes('qemu-nbd') && s.command.includes(src)), `qemu-nbd served image ${id} on ${host}`);
    }
  });

  test('cold import into a bridged qcow2 datastore: qcow2 files of the exact virtual size, check clean, only data clusters', async () => {
    const vm = await newVm('cold-qcow2');
    const r = await run(importArgs(qcowDs, [vm.name]));
    assert.equal(r.exitCode, 0, r.stderr);
    for (const [i, id] of importResult(r.stdout).imageIds.entries()) {
      const img = peers.oned.image(id)!;
      assert.equal(img.format, 'qcow2');
      const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', img.source])).stdout) as { format: string; 'virtual-size': number };
      assert.deepEqual([info.format, info['virtual-size']], ['qcow2', vm.disks[i]!.sizeBytes]);
      await execa('qemu-img', ['check', '-q', img.source]);
      assert.equal(sha(await qcowBytes(img.source)), vm.disks[i]!.sha256, `image ${id} holds the disk's bytes`);
      assert.equal(await allocated(img.source, 'qcow2'), unitsTouched(islands[i]!, vm.disks[i]!.sizeBytes, QCOW2_CLUSTER), `image ${id} allocates only the clusters holding data`);
    }
  });

  test('warm start, sync, cutover into a bridged raw datastore: each round leaves the files equal to the disks', async () => {
    const vm = await newVm('warm-raw');
    await powerOn(peers.sim, vm.moref);
    const vddkEnv = { ...peers.vddkEnv, PATH: `${bridge.pathDir}:${peers.vddkEnv.PATH}` };
    await warmRounds({ vm, warm: (stage) => run(['warm', stage, ...importArgs(rawDs, ['--vddk-libdir', peers.vddk.libdir]).slice(1), vm.name], vddkEnv), imageBytes: (id) => readFile(peers.oned.image(id)!.source) });
  });

  test('OVA import into a bridged raw datastore: the file holds the OVA\'s disk', async () => {
    const { ova, source } = await islandOva(work, 'ova-bridge');
    const r = await run(['import', '--ova', ova, '--no-convert', '--datastore', String(rawDs), '--endpoint', peers.oned.endpoint, '--progress', 'json']);
    assert.equal(r.exitCode, 0, r.stderr);
    const img = peers.oned.image(importResult(r.stdout).imageIds[0]!)!;
    const bytes = await readFile(img.source);
    assert.equal(bytes.length, source.length);
    assert.equal(sha(bytes), sha(source));
  });

  test('bridge hosts that are down, refuse the key or lack qemu-nbd: one line naming the host and the fix, nothing created; a usable host among them does the work', async () => {
    const vm = await newVm('faults');
    const before = peers.imageIds();
    const cases: Array<[string, number, RegExp]> = [
      ['bridge-down', 4, /datastore \d+ .*cannot reach the bridge host bridge-down over ssh: .*Connection refused/],
      ['bridge-denied', 4, /cannot reach the bridge host bridge-denied over ssh: .*Permission denied \(publickey\)/],
      ['bridge-bare', 2, /qemu-nbd is not installed on the bridge host bridge-bare/],
    ];
    for (const [host, code, message] of cases) {
      const ds = await peers.oned.createDatastore({ name: `b-${host}`, type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', template: { BRIDGE_LIST: host }, totalMb: 100_000, freeMb: 100_000 });
      const r = await run(importArgs(ds, [vm.name]));
      assert.equal(r.exitCode, code, `${host}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('oneswap:'));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, message);
    }
    assert.deepEqual(peers.imageIds(), before, 'nothing was created');

    // One good host among bad ones: it does the work, the others are warned about.
    const mixed = await peers.oned.createDatastore({ name: 'b-mixed', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', template: { BRIDGE_LIST: 'bridge-down bridge1 bridge-bare' }, totalMb: 100_000, freeMb: 100_000 });
    const base = peers.oned.datastore(mixed)!.basePath.replace(/\/+$/, '');
    await execa('mkdir', ['-p', base]);
    await bridge.grant(base, 'rw');
    const r = await oneswap(importArgs(mixed, [vm.name]), env, 300_000, { hide: [...bases, base] });
    assert.equal(r.exitCode, 0, r.stderr);
    const warned = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; level?: string; message?: string }).filter((e) => e.type === 'log' && e.level === 'warn').map((e) => e.message ?? '');
    assert.ok(warned.some((m) => /cannot reach the bridge host bridge-down .*the other BRIDGE_LIST hosts do the work/.test(m)), warned.join('\n'));
    assert.ok(warned.some((m) => /qemu-nbd is not installed on the bridge host bridge-bare.*the other BRIDGE_LIST hosts do the work/.test(m)), warned.join('\n'));
    for (const [i, id] of importResult(r.stdout).imageIds.entries()) assert.equal(sha(await readFile(peers.oned.image(id)!.source)), vm.disks[i]!.sha256);
  });
  test("placeholders the bridge host cannot use (missing, not the bridge user's to write, too small) and a BASE_PATH it cannot write: one line naming the datastore, nothing left", async () => {
    const vm = await newVm('placeholders');
    const before = peers.imageIds();
    const base = peers.oned.datastore(rawDs)!.basePath.replace(/\/+$/, '');
    const made: string[] = [];
    // mkfs answers a SOURCE of the test's making: what a broken or foreign driver could leave.
    const placeholders = async (kind: 'missing' | 'root' | 'small', id: number): Promise<string> => {
      const file = `${base}/placeholder-${kind}-${id}`;
      if (kind !== 'missing') {
        await writeFile(file, '');
        await truncate(file, kind === 'small' ? MiB : vm.disks[0]!.sizeBytes * 2);
        if (kind === 'small') await chown(file, bridge.uid, bridge.gid);
        made.push(file);
      }
      return file;
    };
    const cases: Array<['missing' | 'root' | 'small', number, RegExp]> = [
      ['missing', 8, /: the file of image \d+ \(bridge\d:\S+placeholder-missing-\d+\) does not exist on the bridge host/],
      ['root', 2, /: the file of image \d+ \(bridge\d:\S+placeholder-root-\d+\) is not writable by this user on the bridge host/],
      ['small', 8, /: the file of image \d+ \(bridge\d:\S+placeholder-small-\d+\) has 1048576 bytes, the disk needs \d+/],
    ];
    try {
      for (const [kind, code, message] of cases) {
        peers.oned.setDriverAction('mkfs', async ({ argv }) => ({ stdout: `${await placeholders(kind, Number(argv[0]))} raw\n` }));
        const r = await run(importArgs(rawDs, ['--no-convert', vm.name]));
        assert.equal(r.exitCode, code, `${kind}: ${r.stderr}`);
        const lines = r.stderr.trim().split('\n');
        assert.equal(lines.length, 1, r.stderr);
        assert.match(lines[0]!, new RegExp(`^oneswap: datastore ${rawDs} \\(bridged\\)${message.source}`));
        await peers.oned.idle();
        assert.deepEqual(peers.imageIds(), before, `${kind}: the placeholders are gone`);
      }
    } finally {
      peers.oned.setDriverAction('mkfs', null);
      for (const f of made) await rm(f, { force: true });
    }

    // BASE_PATH the bridge user cannot write: refused at the precheck, naming the host and the fix.
    const ds = await peers.oned.createDatastore({ name: 'b-readonly', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', template: { BRIDGE_LIST: 'bridge1' }, totalMb: 100_000, freeMb: 100_000 });
    const roBase = peers.oned.datastore(ds)!.basePath.replace(/\/+$/, '');
    await execa('mkdir', ['-p', roBase]);
    await bridge.grant(roBase, 'r');
    const r = await run(importArgs(ds, [vm.name]));
    assert.equal(r.exitCode, 2, r.stderr);
    assert.equal(r.stderr.trim(), `oneswap: datastore ${ds} (b-readonly): ${roBase} is not writable by this user on the bridge host bridge1 (reach the bridge hosts as the OpenNebula user (oneadmin), as its drivers do)`);
    assert.deepEqual(peers.imageIds(), before);
  });

  describe('a Ceph datastore whose CEPH_CONF and CEPH_KEY are only on its BRIDGE_LIST hosts', { skip: cephSkip() }, () => {
    let ceph: Ceph;
    let cephDs: number;
    /** The bridge user's files (the Ceph identity among them), out of oneswap's reach. */
    let identityDir: string;
    let coldImages: Array<{ source: string; sha256: string; size: number }> = [];
    const rbds = async (): Promise<string[]> => (await ceph.rbd(['ls', ceph.pool])).split('\n').filter(Boolean).sort();
    const cephDatastore = (name: string, hosts: string, conf: string, key: string): Promise<number> =>
      peers.oned.createDatastore({
        name,
        type: 'IMAGE_DS',
        dsMad: 'ceph',
        tmMad: 'ceph',
        template: { DISK_TYPE: 'RBD', BRIDGE_LIST: hosts, POOL_NAME: ceph.pool, CEPH_USER: ceph.user, CEPH_CONF: conf, CEPH_KEY: key },
        totalMb: 100_000,
        freeMb: 100_000,
        noMonitor: true,
      });
    /**
     * Private confs oneswap left on the bridge (the bridge's /tmp is this machine's). One that goes
     * while listed is not left: a session that ended (an earlier run's) removes its own after it.
     */
    const bridgeConfs = async (): Promise<string[]> => {
      const left: string[] = [];
      for (const n of await readdir(tmpdir())) {
        if (!n.startsWith('oneswap-rbd-')) continue;
        const st = await stat(join(tmpdir(), n)).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return undefined;
          throw err;
        });
        if (st?.uid === bridge.uid) left.push(n);
      }
      return left;
    };

    before(async () => {
      ceph = await startCeph();
      const { keyFile, confFile } = await cephIdentityOnBridge(ceph, bridge);
      identityDir = dirname(keyFile);
      assert.equal(dirname(confFile), identityDir);
      cephDs = await cephDatastore('ceph-bridged', 'bridge1 bridge2', confFile, keyFile);
    });

    after(async () => {
      await ceph?.stop();
    });

    test('cold import of a 2-disk VM: the bridge hosts write the RBD images, exactly the disks, only data objects; no private conf left', async () => {
      const vm = await newVm('cold-ceph');
      const seen = (await bridge.sessions()).length;
      const r = await oneswap(importArgs(cephDs, [vm.name]), env, 300_000, { hide: [...bases, identityDir] });
      assert.equal(r.exitCode, 0, r.stderr);
      const logged = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; level?: string; message?: string }).filter((e) => e.type === 'log').map((e) => e.message ?? '');
      assert.ok(logged.some((m) => /CEPH_CONF \S+ is not readable here: writing the Ceph pool \S+ from the BRIDGE_LIST hosts bridge1, bridge2$/.test(m)), logged.join('\n'));
      const ids = importResult(r.stdout).imageIds;
      assert.equal(ids.length, 2);
      for (const [i, id] of ids.entries()) {
        const img = peers.oned.image(id)!;
        assert.equal(img.template.get('ONESWAP_STATE'), 'DONE');
        assert.equal(sha(await rbdBytes(ceph, img.source, work)), vm.disks[i]!.sha256, `image ${id} holds the disk's bytes`);
        assert.deepEqual(await rbdUsage(ceph, img.source), { provisioned: vm.disks[i]!.sizeBytes, used: unitsTouched(islands[i]!, vm.disks[i]!.sizeBytes, RBD_OBJECT) }, `image ${id}: exactly the disk's size, only the objects holding data`);
      }
      const sessions = await sessionsSince(seen);
      for (const id of ids) {
        const host = ['bridge1', 'bridge2'][id % 2];
        const rbd = peers.oned.image(id)!.source;
        assert.ok(sessions.some((s) => s.host === host && s.command.includes('qemu-nbd') && s.command.includes(`"image":"${rbd.split('/')[1]}"`)), `qemu-nbd served image ${id} on ${host}`);
      }
      assert.deepEqual(await bridgeConfs(), [], 'the private confs on the bridge are removed');
      coldImages = ids.map((id, i) => ({ source: peers.oned.image(id)!.source, sha256: vm.disks[i]!.sha256, size: vm.disks[i]!.sizeBytes }));
    });

    test('the conversion\'s view: the bridge serves the RBD image as an NBD export here; a session that ends unasked removes its private conf there', async (t) => {
      const { source, sha256, size } = coldImages[0]!;
      const [pool, image] = source.split('/') as [string, string];
      const location = { pool, image, user: ceph.user, conf: join(identityDir, 'ceph.conf'), keyfile: join(identityDir, 'ceph.key'), host: 'bridge2' };
      // In this process, ssh as oneswap's runs find it: the bridge's wrapper knows its hosts.
      const path = process.env.PATH;
      process.env.PATH = env.PATH;
      t.after(() => void (process.env.PATH = path));
      const opened = await rbdTarget(location, size).forQemu();
      try {
        assert.match(opened.image.filename, /^nbd\+unix:\/\/\/\?socket=/);
        const out = join(work, 'export.raw');
        await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', opened.image.filename, out]);
        assert.equal(sha(await readFile(out)), sha256, 'the export holds the image\'s bytes');
        await rm(out);
      } finally {
        await opened.release();
      }
      assert.deepEqual(await bridgeConfs(), [], 'released: the private conf is removed');

      // oneswap gone (its ssh killed): the session's end takes the private conf with it.
      const access = await openRbdAccess(location);
      const server = await serveRbd(access, { connections: 1 });
      assert.deepEqual(await bridgeConfs(), [dirname(access.conf).slice(tmpdir().length + 1)]);
      process.kill(server.pid, 'SIGKILL');
      for (let i = 0; i < 100 && (await bridgeConfs()).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(await bridgeConfs(), [], 'the session\'s end removed the private conf');
      await server.stop();
      await access.dispose();
    });

    test('the key refused on the bridge: one line naming the datastore, the exit code of an auth failure, nothing left', async () => {
      const vm = await newVm('ceph-wrongkey');
      const wrongKey = await bridge.giveFile('wrong.key', `${(await execa('ceph-authtool', ['--gen-print-key'])).stdout.trim()}\n`);
      const ds = await cephDatastore('ceph-bridged-wrongkey', 'bridge1', join(identityDir, 'ceph.conf'), wrongKey);
      const [images, before] = [peers.imageIds(), await rbds()];
      const r = await oneswap(importArgs(ds, [vm.name]), env, 300_000, { hide: [...bases, identityDir] });
      assert.equal(r.exitCode, 3, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0]!,
        new RegExp(`^oneswap: datastore ${ds} \\(ceph-bridged-wrongkey\\): Ceph refused client\\.admin with the key in ${wrongKey} \\(for the Ceph pool ${ceph.pool}\\) \\(check the datastore's CEPH_USER and CEPH_KEY`),
      );
      await peers.oned.idle();
      assert.deepEqual(peers.imageIds(), images, 'no image left');
      assert.deepEqual(await rbds(), before, 'no RBD image left');
      assert.deepEqual(await bridgeConfs(), [], 'the private conf on the bridge is removed');
    });
  });
});
