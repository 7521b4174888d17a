// Bad input and faults of `oneswap import`, run as the real command against both simulators:
// each gives one line and a distinct exit code, creates nothing (or removes what it created),
// leaves the source VM as it was and never shows the password.

import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { client as vimClient, createTestVm, listSnapshots, powerOn, powerOff, type TestVm } from '../peers/vcsim/fixture.js';
import { OneClient, Template } from '../../lib/one/index.js';
import type { Oned } from '../peers/one/index.js';
import { startTcpProxy, type TcpProxy } from '../peers/net/tcp-proxy.js';
import { killOnceJournalHolds, oneswap, spawnOneswap } from '../peers/cli.js';
import { startMigrationPeers, type MigrationPeers } from '../peers/migration.js';

const MiB = 1024 * 1024;
const skip = vcsimSkip();

describe('oneswap import: bad input and faults', { skip }, () => {
  let peers: MigrationPeers;
  let sim: Vcsim;
  let oned: Oned;
  let proxy: TcpProxy;
  let work: string;
  let dsId: number;
  let env: Record<string, string>;
  let vm: TestVm;
  let imagesBefore: number[];

  const base = (o: { port?: number; thumbprint?: string; datastore?: number } = {}): string[] => peers.importArgs(o);
  const imageIds = (): number[] => peers.imageIds();
  const templateIds = (): number[] => peers.templateIds();

  /** Removes what a successful import in a test created, so the next test starts clean. */
  async function removeImported(): Promise<void> {
    const one = await OneClient.connect({ endpoint: oned.endpoint, env: { ONE_AUTH: env.ONE_AUTH! } });
    for (const t of templateIds()) await one.templateDelete(t);
    for (const id of imageIds().filter((i) => !imagesBefore.includes(i))) await one.imageDelete(id, true);
    await oned.idle();
    one.close();
  }

  /** The common promises of every failure: one line, the exit code, nothing left, no secret shown. */
  async function assertCleanFailure(r: { exitCode: number; stdout: string; stderr: string }, code: number, message: RegExp): Promise<void> {
    assert.equal(r.exitCode, code, `exit code (stderr: ${r.stderr})`);
    const last = r.stderr.trim().split('\n').pop() ?? '';
    assert.match(last, /^oneswap: /);
    assert.match(last, message);
    assert.ok(!r.stdout.includes(sim.password) && !r.stderr.includes(sim.password), 'the password was printed');
    await oned.idle();
    assert.deepEqual(imageIds(), imagesBefore, 'images left behind');
    assert.deepEqual(templateIds(), [], 'templates left behind');
    assert.deepEqual(await listSnapshots(sim, vm.moref), [], 'snapshots left behind');
    const logs = await readdir(join(work, 'state', 'logs')).catch(() => [] as string[]);
    for (const l of logs) assert.ok(!(await readFile(join(work, 'state', 'logs', l), 'utf8')).includes(sim.password), `password in log ${l}`);
  }

  before(async () => {
    peers = await startMigrationPeers('faults');
    ({ sim, oned, proxy, work, dsId, env } = peers);
    oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 10 }] });
    vm = await createTestVm(sim, {
      name: 'faulty',
      cbt: true,
      disks: [
        { sizeBytes: 48 * MiB, data: [{ offset: 0, length: 24 * MiB }] },
        { sizeBytes: 32 * MiB, data: [{ offset: 8 * MiB, length: 16 * MiB }] },
      ],
      nics: [{ network: 'VM Network' }],
    });
  });

  beforeEach(() => {
    proxy.faults = {};
    imagesBefore = imageIds();
  });

  after(async () => {
    await peers?.stop();
  });

  test('wrong vCenter password: exit 3, the password is never shown', async () => {
    const r = await oneswap([...base(), 'faulty'], { ...env, ONESWAP_VCENTER_PASSWORD: 'not-the-password' });
    await assertCleanFailure(r, 3, /refused the login for user user/);
    assert.ok(!r.stderr.includes('not-the-password'));
  });

  test('wrong OpenNebula credentials: exit 3', async () => {
    const auth = join(work, 'bad_auth');
    await writeFile(auth, 'oneadmin:wrong\n', { mode: 0o600 });
    const r = await oneswap([...base(), 'faulty'], { ...env, ONE_AUTH: auth });
    await assertCleanFailure(r, 3, /refused the credentials of user oneadmin/);
    assert.ok(!r.stderr.includes(':wrong'));
  });

  test('unreachable vCenter: exit 4 naming host and port', async () => {
    const closed = await startTcpProxy(1);
    const port = closed.port;
    await closed.close();
    const r = await oneswap([...base({ port }), 'faulty'], env);
    await assertCleanFailure(r, 4, new RegExp(`127\\.0\\.0\\.1:${port}`));
  });

  test('TLS mismatch: a wrong pin and an untrusted certificate fail with exit 4; the error offers the thumbprint', async () => {
    const wrongPin = await oneswap([...base({ thumbprint: 'AA:'.repeat(31) + 'AA' }), 'faulty'], env);
    await assertCleanFailure(wrongPin, 4, /thumbprint|certificate/i);
    const args = base().filter((a, i, all) => a !== '--thumbprint' && all[i - 1] !== '--thumbprint');
    const untrusted = await oneswap([...args, 'faulty'], env);
    await assertCleanFailure(untrusted, 4, new RegExp(sim.thumbprintSha256.replace(/:/g, ':?'), 'i'));
  });

  test('unknown VM: exit 5', async () => {
    const r = await oneswap([...base(), 'no-such-vm'], env);
    await assertCleanFailure(r, 5, /no-such-vm/);
  });

  test('VM powered on without --shutdown: exit 6 and the VM keeps running', async () => {
    await powerOn(sim, vm.moref);
    try {
      const r = await oneswap([...base(), 'faulty'], env);
      await assertCleanFailure(r, 6, /powered on.*--shutdown/);
    } finally {
      await powerOff(sim, vm.moref);
    }
  });

  test('--shutdown: a running VM is shut down and imported; if the import then fails it runs again', async () => {
    const powerState = async (): Promise<string> => {
      const c = await vimClient(sim);
      const props = await c.props(vm.moref, ['runtime.powerState']);
      return JSON.stringify(props['runtime.powerState']);
    };
    await powerOn(sim, vm.moref);
    proxy.faults = { cutAfterBytes: 2 * MiB };
    const failed = await oneswap([...base(), '--shutdown', 'faulty'], env);
    await assertCleanFailure(failed, 4, /reading|connection|socket/i);
    assert.match(failed.stdout, /powered faulty on again/);
    assert.match(await powerState(), /poweredOn/);

    proxy.faults = {};
    const ok = await oneswap([...base(), '--shutdown', '--name-prefix', 'sd-', 'faulty'], env);
    assert.equal(ok.exitCode, 0, ok.stderr);
    assert.match(await powerState(), /poweredOff/);
    await removeImported();
  });

  test('datastore missing, not an image datastore, or too small: exit 5, 2, 7', async () => {
    await assertCleanFailure(await oneswap([...base({ datastore: 77 }), 'faulty'], env), 5, /datastore \[?77/i);
    await assertCleanFailure(await oneswap([...base({ datastore: 0 }), 'faulty'], env), 2, /not an image datastore/);
    const tiny = await oned.createDatastore({ name: 'tiny', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', totalMb: 100, freeMb: 10 });
    await assertCleanFailure(await oneswap([...base({ datastore: tiny }), 'faulty'], env), 7, /10 MiB free, the disks need 80 MiB/);
  });

  test('datastores oneswap cannot fill from here: a Ceph key out of reach, bridge hosts it cannot reach, files elsewhere', async () => {
    const cephDs = (name: string, conf: string): Promise<number> =>
      oned.createDatastore({
        name,
        type: 'IMAGE_DS',
        dsMad: 'ceph',
        tmMad: 'ceph',
        template: { DISK_TYPE: 'RBD', BRIDGE_LIST: 'host1', POOL_NAME: 'one', CEPH_CONF: conf, CEPH_KEY: '/nonexistent/client.key' },
        totalMb: 100000,
        freeMb: 100000,
      });
    // Its conf here: this host writes the pool, and the key must be here too.
    const conf = join(work, 'ceph.conf');
    await writeFile(conf, '[global]\nmon host = 127.0.0.1:1\n');
    await assertCleanFailure(await oneswap([...base({ datastore: await cephDs('c', conf) }), 'faulty'], env), 2, /datastore \d+ \(c\): CEPH_KEY \/nonexistent\/client\.key is not readable on this host/);
    // No conf here: its BRIDGE_LIST hosts reach the pool, and these cannot be reached.
    await assertCleanFailure(await oneswap([...base({ datastore: await cephDs('c-bridged', '/nonexistent/ceph.conf') }), 'faulty'], env), 4, /datastore \d+ \(c-bridged\): cannot reach the bridge host host1 over ssh/);
    const bridged = await oned.createDatastore({ name: 'b', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', template: { BRIDGE_LIST: 'host1 host2' }, totalMb: 100000, freeMb: 100000 });
    // No such hosts: ssh cannot resolve them (bridge-datastores.test.ts has reachable ones).
    await assertCleanFailure(await oneswap([...base({ datastore: bridged }), 'faulty'], env), 4, /datastore \d+ \(b\): cannot reach the bridge host host1 over ssh/);
    // The datastore's files live on another machine: DATASTORE_LOCATION does not exist here.
    const elsewhere = await oned.createDatastore({ name: 'e', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', totalMb: 100000, freeMb: 100000 });
    const basePath = oned.datastore(elsewhere)!.basePath;
    await rm(basePath, { recursive: true, force: true });
    const location = join(basePath, '..');
    await rename(location, `${location}.away`);
    try {
      await assertCleanFailure(await oneswap([...base({ datastore: elsewhere }), 'faulty'], env), 2, /not reachable from this host.*frontend/);
    } finally {
      await rename(`${location}.away`, location);
    }
  });

  test('a network with no OpenNebula counterpart: exit 5 naming it, before anything is created', async () => {
    const other = await createTestVm(sim, { name: 'lonely', disks: [{ sizeBytes: MiB }], nics: [{ network: 'DC0_DVPG0' }] });
    const r = await oneswap([...base(), 'lonely'], env);
    await assertCleanFailure(r, 5, /no OpenNebula network for vCenter network "DC0_DVPG0".*--network-map/);
    assert.ok(other.name);
  });

  test('a raw device mapping: exit 6 naming the disk, before anything is created', async () => {
    const rdm = await createTestVm(sim, { name: 'rdm', disks: [{ sizeBytes: MiB }, { sizeBytes: 2 * MiB, rdm: 'physical' }], nics: [{ network: 'VM Network' }] });
    const r = await oneswap([...base(), 'rdm'], env);
    await assertCleanFailure(r, 6, /./);
    assert.equal(r.stderr, 'oneswap: disk "disk-202-1" of VM rdm is a raw device mapping (RDM), which oneswap cannot copy (migrate the LUN separately or convert the RDM to a virtual disk in vCenter)');
    assert.deepEqual(await listSnapshots(sim, rdm.moref), [], 'snapshots of the RDM VM');
  });

  test('image name already taken: exit 6, nothing created', async () => {
    const auth = env.ONE_AUTH!;
    const one = await OneClient.connect({ endpoint: oned.endpoint, env: { ONE_AUTH: auth } });
    const id = await one.imageAllocate(Template.of({ NAME: 'faulty-disk1', TYPE: 'DATABLOCK', SIZE: 1, FORMAT: 'raw' }), dsId);
    await one.waitForImage(id, { pollMs: 50 });
    imagesBefore = imageIds();
    try {
      const r = await oneswap([...base(), 'faulty'], env);
      await assertCleanFailure(r, 6, /"faulty-disk1" is already taken by image/);
    } finally {
      await one.imageDelete(id, true);
      await oned.idle();
      one.close();
    }
  });

  test('a connection dropped mid-disk is retried and the import completes', async () => {
    proxy.faults = { cutAfterBytes: 4 * MiB, cutCount: 2 };
    const r = await oneswap([...base(), '--name-prefix', 'drop-', 'faulty'], env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.ok(proxy.counters.cuts >= 1, 'the proxy cut no connection');
    const ids = imageIds().filter((i) => !imagesBefore.includes(i));
    assert.equal(ids.length, 2);
    for (const [i, id] of ids.entries()) {
      const data = await readFile(oned.image(id)!.source);
      assert.equal(data.length, vm.disks[i]!.sizeBytes);
      assert.equal(createHash('sha256').update(data).digest('hex'), vm.disks[i]!.sha256);
    }
    await removeImported();
  });

  test('a connection that keeps dropping: exit 4, placeholders removed, no snapshot left', async () => {
    proxy.faults = { cutAfterBytes: 2 * MiB };
    const r = await oneswap([...base(), 'faulty'], env);
    // Each new connection is cut, including SOAP calls that carry more than 2 MiB (none do).
    await assertCleanFailure(r, 4, /reading .*faulty.*failed|connection|socket/i);
  });

  let dying: TestVm | undefined;
  for (const at of [0.1, 0.6])
    test(`vCenter dies at ${at * 100} % of a disk: exit 4 with the connection message, never "interrupted"`, async () => {
      // Nobody pressed Ctrl-C: the streams cancelled because a sibling lost its connection must not
      // speak for the run, whichever moment vCenter goes away.
      // Several 64 MiB requests per disk, so several streams read each disk, all retrying in step
      // once vCenter is gone: their last attempts race, as on the 6 GiB disk this was seen on.
      dying ??= await createTestVm(sim, {
        name: 'dying',
        cbt: true,
        disks: [
          { sizeBytes: 256 * MiB, data: [{ offset: 0, length: 200 * MiB }] },
          { sizeBytes: 160 * MiB + 64 * 1024, data: [{ offset: 16 * MiB, length: 144 * MiB }] },
        ],
        nics: [{ network: 'VM Network' }],
      });
      proxy.faults = { throttleBytesPerSecond: 8 * MiB };
      const child = spawnOneswap([...base(), 'dying'], env);
      let killed: Promise<void> | undefined;
      child.stdout?.on('data', (d: Buffer) => {
        for (const line of d.toString().split('\n')) {
          const m = /"type":"disk".*"bytesDone":(\d+),"bytesPlanned":(\d+)/.exec(line);
          if (!killed && m && Number(m[1]) >= at * Number(m[2])) killed = proxy.down();
        }
      });
      const r = await child;
      assert.ok(killed, 'the copy never got that far');
      await killed;
      await proxy.up();
      await assertCleanFailure({ exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) }, 4, /cannot reach vCenter 127\.0\.0\.1:\d+ \(connection refused\)/);
      assert.doesNotMatch(String(r.stderr), /cancelled|interrupted/);
    });

  test('Ctrl-C mid-copy: exit 130, placeholders removed, source untouched', async () => {
    proxy.faults = { throttleBytesPerSecond: 4 * MiB };
    const child = spawnOneswap([...base(), 'faulty'], env);
    let sent = false;
    child.stdout?.on('data', (d: Buffer) => {
      if (!sent && /"type":"disk".*"bytesDone":[1-9]/.test(d.toString())) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const r = await child;
    assert.ok(sent, 'the copy never started');
    await assertCleanFailure({ exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) }, 130, /interrupted by SIGINT/);
  });

  test('--keep-on-failure keeps marked images, and the next run resumes without copying finished ranges again', async () => {
    proxy.faults = { throttleBytesPerSecond: 8 * MiB };
    const child = spawnOneswap([...base(), '--keep-on-failure', '--streams', '1', 'faulty'], env);
    let sent = false;
    child.stdout?.on('data', (d: Buffer) => {
      const m = /"type":"disk".*"bytesDone":(\d+)/.exec(d.toString());
      if (!sent && m && Number(m[1]) >= 8 * MiB) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const first = await child;
    assert.equal(first.exitCode, 130);
    await oned.idle();
    const kept = imageIds().filter((i) => !imagesBefore.includes(i));
    assert.equal(kept.length, 2, 'images kept');
    for (const id of kept) assert.equal(oned.image(id)!.template.get('ONESWAP_STATE'), 'FAILED');
    assert.deepEqual(await listSnapshots(sim, vm.moref), []);

    proxy.faults = {};
    proxy.reset();
    const second = await oneswap([...base(), 'faulty'], env);
    assert.equal(second.exitCode, 0, second.stderr);
    assert.match(second.stdout, /resuming an earlier run/);
    const data = vm.disks.reduce((s, d) => s + d.dataBytes, 0);
    assert.ok(proxy.counters.down < data - 4 * MiB, `the resumed run read ${proxy.counters.down} bytes of ${data}`);
    for (const [i, id] of kept.entries()) {
      const img = oned.image(id)!;
      assert.equal(img.template.get('ONESWAP_STATE'), 'DONE');
      const bytes = await readFile(img.source);
      assert.equal(bytes.length, vm.disks[i]!.sizeBytes);
      assert.equal(createHash('sha256').update(bytes).digest('hex'), vm.disks[i]!.sha256);
    }
    await removeImported();
  });

  test('kill -9 mid-copy: the same command resumes from the journal', async () => {
    proxy.faults = { throttleBytesPerSecond: 8 * MiB };
    const child = spawnOneswap([...base(), '--streams', '1', 'faulty'], env);
    // Kill once the journal on disk records at least 8 MiB copied: that much must not travel again.
    const killed = await killOnceJournalHolds(child, join(work, 'state'), 8 * MiB);
    assert.ok(killed, 'the journal never recorded progress');
    proxy.faults = {};
    proxy.reset();
    const r = await oneswap([...base(), 'faulty'], env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /resuming an earlier run/);
    const data = vm.disks.reduce((s, d) => s + d.dataBytes, 0);
    assert.ok(proxy.counters.down < data - 4 * MiB, `the resumed run read ${proxy.counters.down} bytes of ${data}`);
    // The snapshot of the killed run was oneswap's: the re-run removed it.
    assert.deepEqual(await listSnapshots(sim, vm.moref), []);
  });
});
