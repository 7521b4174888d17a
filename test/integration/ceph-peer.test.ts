// The one-node Ceph peer (test/peers/ceph): it starts, qemu writes into an RBD image through its
// rbd driver as an explicit cephx user, `rbd export` reads back exactly those bytes, `rbd du`
// counts only the objects written, and stop() leaves no daemon and no directory behind.
// Skipped (loudly) when the Ceph packages or qemu's rbd driver are missing, except in CI.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cephSkip, pidAlive, startCeph, type Ceph } from '../peers/ceph/index.js';

const MiB = 1024 * 1024;

function qemuRbdSkip(): string | false {
  const help = spawnSync('qemu-img', ['--help'], { encoding: 'utf8' });
  if (help.status === 0 && /Supported formats:.*\brbd\b/s.test(help.stdout)) return false;
  const reason = 'qemu-img has no rbd driver (apt-get install -y qemu-block-extra, or ./install.sh --dev)';
  if (process.env.CI === 'true' || process.env.ONESWAP_REQUIRE_PEERS === '1') throw new Error(`${reason}; CI requires it`);
  process.stderr.write(`\n*** SKIPPED: ${reason} ***\n\n`);
  return reason;
}

const skip = cephSkip() || qemuRbdSkip();

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

describe('one-node Ceph peer', { skip }, () => {
  let ceph: Ceph;
  let dir: string;

  before(async () => {
    ceph = await startCeph();
    process.stderr.write(`ceph peer: HEALTH_OK after ${ceph.startMs} ms (mon ${ceph.monHost})\n`);
    dir = await mkdtemp(join(tmpdir(), 'oneswap-ceph-test-'));
  });

  after(async () => {
    await ceph?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is healthy, with cephx on and the pool initialised for rbd', async () => {
    assert.match(await ceph.ceph(['health']), /^HEALTH_OK/);
    const apps = JSON.parse(await ceph.ceph(['osd', 'pool', 'application', 'get', ceph.pool, '--format', 'json'])) as Record<string, unknown>;
    assert.ok('rbd' in apps, `pool ${ceph.pool} is an rbd pool: ${JSON.stringify(apps)}`);
    const size = JSON.parse(await ceph.ceph(['osd', 'pool', 'get', ceph.pool, 'size', '--format', 'json'])) as { size: number };
    assert.equal(size.size, 1);
    assert.match(await ceph.ceph(['config', 'get', 'mon', 'auth_cluster_required']), /cephx/);
    assert.equal((await stat(ceph.keyring)).mode & 0o777, 0o600);
    // Without a key the monitor refuses a client.
    const anon = spawnSync('ceph', ['--conf', ceph.conf, '--id', 'admin', '--keyring', '/dev/null', '--connect-timeout', '5', 'health'], { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(anon.status, 0, 'no key, no access');
  });

  it('qemu-img writes an RBD image as client.admin; rbd export reads the same bytes; rbd du counts only the data', async () => {
    const size = 64 * MiB;
    const src = join(dir, 'src.raw');
    // 8 MiB at 0 (objects 0–1) and 1 MiB at 41 MiB (object 10, 4 MiB objects): 12 MiB of objects.
    const f = await open(src, 'w');
    await f.truncate(size);
    await f.write(randomBytes(8 * MiB), 0, 8 * MiB, 0);
    await f.write(randomBytes(MiB), 0, MiB, 41 * MiB);
    await f.close();

    await ceph.rbd(['create', '--size', String(size / MiB), `${ceph.pool}/img`]);
    // The rbd driver with the user and conf in the filename, as OpenNebula's drivers pass them;
    // no CEPH_CONF or CEPH_ARGS in the environment.
    const env = { ...process.env };
    delete env.CEPH_CONF;
    delete env.CEPH_ARGS;
    const conv = spawnSync('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, `rbd:${ceph.pool}/img:id=${ceph.user}:conf=${ceph.conf}`], {
      encoding: 'utf8',
      env,
      timeout: 120_000,
    });
    assert.equal(conv.status, 0, conv.stderr);

    const out = join(dir, 'export.raw');
    await ceph.rbd(['export', `${ceph.pool}/img`, out]);
    assert.ok(existsSync(out));
    assert.equal(await sha256(out), await sha256(src));

    const du = JSON.parse(await ceph.rbd(['du', '--format', 'json', `${ceph.pool}/img`])) as { images: { name: string; provisioned_size: number; used_size: number }[] };
    const img = du.images.find((i) => i.name === 'img');
    assert.ok(img, JSON.stringify(du));
    assert.equal(img.provisioned_size, size);
    assert.equal(img.used_size, 12 * MiB, `only the written objects are allocated: ${JSON.stringify(img)}`);
  });

  it('stop() ends both daemons and removes the cluster directory', async () => {
    const { pids, dir: cephDir } = ceph;
    assert.ok(pidAlive(pids.mon) && pidAlive(pids.osd));
    const t = Date.now();
    await ceph.stop();
    process.stderr.write(`ceph peer: stopped in ${Date.now() - t} ms\n`);
    assert.ok(!pidAlive(pids.mon), 'ceph-mon is gone');
    assert.ok(!pidAlive(pids.osd), 'ceph-osd is gone');
    assert.ok(!existsSync(cephDir), 'its directory is removed');
  });
});

// With a manager (what OpenNebula's Ceph datastore monitor needs): `ceph df` reports the pool's
// capacity and, within the manager's stats period, what was written to it.
describe('one-node Ceph peer with a manager', { skip: skip || cephSkip({ mgr: true }) }, () => {
  let ceph: Ceph;

  before(async () => {
    ceph = await startCeph({ mgr: true });
    process.stderr.write(`ceph peer (mgr): HEALTH_OK and ceph df ready after ${ceph.startMs} ms\n`);
  });

  after(async () => {
    await ceph?.stop();
  });

  it('ceph df shows the pool, its free space and the bytes stored; health stays OK', async () => {
    type Df = { pools: { name: string; stats: { stored: number; max_avail: number } }[] };
    const poolStats = async (): Promise<{ stored: number; max_avail: number }> => {
      const df = JSON.parse(await ceph.ceph(['df', '--format', 'json'])) as Df;
      const p = df.pools.find((x) => x.name === ceph.pool);
      assert.ok(p, JSON.stringify(df));
      return p.stats;
    };
    const before0 = await poolStats();
    assert.ok(before0.max_avail > 512 * MiB, `max_avail ${before0.max_avail}`);
    await ceph.rbd(['create', '--size', '16', `${ceph.pool}/m`]);
    const dir = await mkdtemp(join(tmpdir(), 'oneswap-ceph-test-'));
    const src = join(dir, 'd.raw');
    const f = await open(src, 'w');
    await f.write(randomBytes(4 * MiB), 0, 4 * MiB, 0);
    await f.close();
    const conv = spawnSync('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, `rbd:${ceph.pool}/m:id=admin:conf=${ceph.conf}`], { encoding: 'utf8' });
    await rm(dir, { recursive: true, force: true });
    assert.equal(conv.status, 0, conv.stderr);
    const deadline = Date.now() + 30_000;
    let st = await poolStats();
    while (st.stored < 4 * MiB && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      st = await poolStats();
    }
    assert.ok(st.stored >= 4 * MiB, `stored ${st.stored} after writing 4 MiB`);
    assert.ok(st.max_avail < before0.max_avail, `max_avail went down: ${before0.max_avail} -> ${st.max_avail}`);
    assert.match(await ceph.ceph(['health']), /^HEALTH_OK/);
  });

  it('stop() ends all three daemons', async () => {
    const { pids } = ceph;
    assert.ok(pids.mgr !== undefined && pidAlive(pids.mgr));
    await ceph.stop();
    for (const [name, pid] of Object.entries(pids)) assert.ok(!pidAlive(pid), `${name} is gone`);
  });
});
