// The oned simulator's Ceph, qcow2 and BRIDGE_LIST datastores (reference §5.8) against a real
// one-node Ceph (test/peers/ceph, with a manager for `ceph df`) and a real ssh bridge host
// (test/peers/bridge), all over XML-RPC: the stock-like drivers run rbd/qemu-img on the bridge as the
// bridge user. One Ceph and one bridge serve the whole file.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { statfsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { XMLParser } from 'fast-xml-parser';
import { bridgeSkip, startBridge, type Bridge } from '../peers/bridge/index.js';
import { cephSkip, startCeph, type Ceph } from '../peers/ceph/index.js';
import { IMAGE_STATE, startOned, type Oned } from '../peers/one/index.js';
import { rpc, type RpcParam } from '../peers/one/rpc.js';

const MiB = 1024 * 1024;
const docParser = new XMLParser({ ignoreAttributes: true, parseTagValue: false });

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = any;

async function call(oned: Oned, method: string, ...params: RpcParam[]): Promise<{ ok: boolean; value: string | number | boolean; code: number }> {
  return rpc(oned.endpoint, oned.adminSession, method, ...params);
}

async function okValue(oned: Oned, method: string, ...params: RpcParam[]): Promise<string | number | boolean> {
  const r = await call(oned, method, ...params);
  assert.ok(r.ok, `${method} failed: ${String(r.value)} (${r.code})`);
  return r.value;
}

async function imageDoc(oned: Oned, id: number): Promise<Doc> {
  return (docParser.parse(String(await okValue(oned, 'one.image.info', id, false))) as Doc).IMAGE;
}

async function dsDoc(oned: Oned, id: number): Promise<Doc> {
  return (docParser.parse(String(await okValue(oned, 'one.datastore.info', id, false))) as Doc).DATASTORE;
}

async function waitImage(oned: Oned, id: number, states: number[] = [IMAGE_STATE.READY, IMAGE_STATE.ERROR]): Promise<Doc> {
  const end = Date.now() + 60_000;
  for (;;) {
    const d = await imageDoc(oned, id);
    if (states.includes(Number(d.STATE))) return d;
    if (Date.now() > end) throw new Error(`image ${id} still in state ${d.STATE}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Until one.image.info says the image no longer exists (rm done), without waiting for the monitor after it. */
async function waitGone(oned: Oned, id: number): Promise<void> {
  const end = Date.now() + 60_000;
  while ((await call(oned, 'one.image.info', id, false)).code !== 1024) {
    if (Date.now() > end) throw new Error(`image ${id} still exists`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function allocateImage(oned: Oned, tmpl: string, ds: number, skipCapacity = false): Promise<number> {
  return Number(await okValue(oned, 'one.image.allocate', tmpl, ds, skipCapacity));
}

function qemuInfo(file: string): { format: string; 'virtual-size': number } {
  const r = spawnSync('qemu-img', ['info', '-U', '--output=json', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { format: string; 'virtual-size': number };
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** A sparse raw file of `size` bytes with random data at the given offsets. */
async function sparseFile(file: string, size: number, chunks: [offset: number, length: number][]): Promise<void> {
  const f = await open(file, 'w');
  await f.truncate(size);
  for (const [off, len] of chunks) await f.write(randomBytes(len), 0, len, off);
  await f.close();
}

// ---------------------------------------------------------------------------------------------
// qcow2 datastores need neither Ceph nor a bridge

describe('oned simulator: qcow2 datastores (§5.8)', () => {
  let oned: Oned;
  let work: string;

  before(async () => {
    oned = await startOned({ asyncDelayMs: 20 });
    // SAFE_DIRS default /var/tmp: PATH files must live there
    work = await mkdtemp('/var/tmp/one-sim-qcow2-');
  });
  after(async () => {
    await oned?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('TM_MAD=qcow2: DRIVER=qcow2 in the datastore template; an empty DATABLOCK asked raw is a qcow2 file of the virtual size, DRIVER=qcow2', async () => {
    const ds = await oned.createDatastore({ name: 'q', type: 'IMAGE_DS', tmMad: 'qcow2' });
    const dsd = await dsDoc(oned, ds);
    assert.equal(dsd.TEMPLATE.DRIVER, 'qcow2');
    const id = await allocateImage(oned, 'NAME="q-empty"\nTYPE=DATABLOCK\nSIZE=48\nFORMAT=raw', ds);
    const d = await waitImage(oned, id);
    assert.equal(d.STATE, '1', d.TEMPLATE.ERROR);
    assert.equal(d.FORMAT, 'qcow2');
    assert.equal(d.TEMPLATE.DRIVER, 'qcow2');
    const info = qemuInfo(d.SOURCE);
    assert.equal(info.format, 'qcow2');
    assert.equal(info['virtual-size'], 48 * MiB);
  });

  it('TM_MAD=qcow2: a raw PATH is converted to qcow2', async () => {
    const ds = await oned.createDatastore({ name: 'q2', type: 'IMAGE_DS', tmMad: 'qcow2' });
    const src = join(work, 'disk.raw');
    await sparseFile(src, 8 * MiB, [[0, 64 * 1024]]);
    const id = await allocateImage(oned, `NAME="q-path"\nPATH="${src}"`, ds);
    const d = await waitImage(oned, id);
    assert.equal(d.STATE, '1', d.TEMPLATE.ERROR);
    assert.equal(d.FORMAT, 'qcow2');
    assert.equal(qemuInfo(d.SOURCE).format, 'qcow2');
    assert.equal(d.SIZE, '8');
  });

  it('DRIVER=qcow2 on a shared datastore forces qcow2; plain shared keeps the FORMAT asked (default raw)', async () => {
    const drv = await oned.createDatastore({ name: 'sq', type: 'IMAGE_DS', tmMad: 'shared', template: { DRIVER: 'qcow2' } });
    const a = await waitImage(oned, await allocateImage(oned, 'NAME="sq-1"\nTYPE=DATABLOCK\nSIZE=4\nFORMAT=raw', drv));
    assert.deepEqual([a.FORMAT, a.TEMPLATE.DRIVER, qemuInfo(a.SOURCE).format], ['qcow2', 'qcow2', 'qcow2']);

    const plain = await oned.createDatastore({ name: 'sh', type: 'IMAGE_DS', tmMad: 'shared' });
    const b = await waitImage(oned, await allocateImage(oned, 'NAME="sh-1"\nTYPE=DATABLOCK\nSIZE=4', plain));
    assert.deepEqual([b.FORMAT, b.TEMPLATE.DRIVER, qemuInfo(b.SOURCE).format], ['raw', undefined, 'raw']);
    const c = await waitImage(oned, await allocateImage(oned, 'NAME="sh-2"\nTYPE=DATABLOCK\nSIZE=4\nFORMAT=qcow2', plain));
    assert.deepEqual([c.FORMAT, qemuInfo(c.SOURCE).format, qemuInfo(c.SOURCE)['virtual-size']], ['qcow2', 'qcow2', 4 * MiB]);
  });
});

// ---------------------------------------------------------------------------------------------

const skip = cephSkip({ mgr: true }) || bridgeSkip();

describe('oned simulator: Ceph and BRIDGE_LIST datastores with a real Ceph and ssh bridge (§5.8)', { skip }, () => {
  let ceph: Ceph;
  let bridge: Bridge;
  let oned: Oned;
  let work: string;
  let cephDs: number;
  let keyFile: string;
  let confFile: string;

  /** The Ceph datastore template as a test writes it (text syntax). */
  const cephTemplate = (name: string, extra: Record<string, string> = {}): string =>
    Object.entries({
      NAME: name,
      TYPE: 'IMAGE_DS',
      DS_MAD: 'ceph',
      TM_MAD: 'ceph',
      DISK_TYPE: 'RBD',
      BRIDGE_LIST: 'bridge1 bridge2',
      POOL_NAME: 'one',
      CEPH_USER: 'admin',
      CEPH_KEY: keyFile,
      CEPH_CONF: confFile,
      STAGING_DIR: bridge.stagingDir,
      ...extra,
    })
      .map(([k, v]) => `${k}="${v}"`)
      .join('\n');

  const allocateDs = async (tmpl: string): Promise<number> => {
    const id = Number(await okValue(oned, 'one.datastore.allocate', tmpl, -1));
    await oned.idle(); // the first monitor runs after the reply, as on oned
    return id;
  };

  const rbdJson = async (args: string[]): Promise<Doc> => JSON.parse(await ceph.rbd([...args, '--format', 'json'])) as Doc;

  before(async () => {
    [ceph, bridge] = await Promise.all([startCeph({ mgr: true }), startBridge({ hosts: ['bridge1', 'bridge2'], refusedHosts: ['bridge-down'] })]);
    process.stderr.write(`ceph peer: HEALTH_OK after ${ceph.startMs} ms; bridge on 127.0.0.1:${bridge.port}\n`);
    // the bridge user's own client identity: the peer's ceph.conf names root-only paths
    keyFile = await bridge.giveFile('ceph.key', `${await ceph.adminKey()}\n`);
    confFile = await bridge.giveFile('ceph.conf', ceph.clientConf({ extra: ['auth cluster required = cephx', 'auth service required = cephx', 'auth client required = cephx'] }));
    oned = await startOned({ asyncDelayMs: 50, marketMonitorFirstCycleMs: 3_600_000, driverEnv: { PATH: bridge.env().PATH ?? '' } });
    // PATH files are read by the frontend (root), not by the bridge user
    work = await mkdtemp('/var/tmp/one-sim-ds-');
  });

  after(async () => {
    await oned?.stop();
    await bridge?.stop();
    await ceph?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('ceph datastore allocate: DISK_TYPE then BRIDGE_LIST required (8192), then the attributes 7.4 adds, DISK_TYPE 3 (RBD)', async () => {
    const noDiskType = await call(oned, 'one.datastore.allocate', 'NAME="c0"\nDS_MAD=ceph\nTM_MAD=ceph', -1);
    assert.deepEqual(noDiskType, { ok: false, value: '[one.datastore.allocate] Datastore template is missing the "DISK_TYPE" attribute or it\'s empty.', code: 8192 });
    const emptyBridge = await call(oned, 'one.datastore.allocate', 'NAME="c0"\nDS_MAD=ceph\nTM_MAD=ceph\nDISK_TYPE=RBD\nBRIDGE_LIST=""', -1);
    assert.deepEqual(emptyBridge, { ok: false, value: '[one.datastore.allocate] Datastore template is missing the "BRIDGE_LIST" attribute or it\'s empty.', code: 8192 });

    cephDs = await allocateDs(cephTemplate('ceph'));
    const d = await dsDoc(oned, cephDs);
    assert.equal(d.DS_MAD, 'ceph');
    assert.equal(d.TM_MAD, 'ceph');
    assert.equal(d.DISK_TYPE, '3');
    const t = d.TEMPLATE;
    assert.equal(t.DISK_TYPE, 'RBD');
    const added = { ALLOW_ORPHANS: 'mixed', CLONE_TARGET: 'SELF', CLONE_TARGET_SSH: 'SYSTEM', DISK_TYPE_SSH: 'FILE', DRIVER: 'raw', LN_TARGET: 'NONE', LN_TARGET_SSH: 'SYSTEM', PERSISTENT_SNAPSHOTS: 'YES', RESTRICTED_DIRS: '/', SAFE_DIRS: '/var/tmp', TM_MAD_SYSTEM: 'ssh' };
    for (const [k, v] of Object.entries(added)) assert.equal(t[k], v, k);
    assert.equal(t.SHARED, undefined);
    assert.deepEqual(
      Object.keys(t).sort(),
      [...Object.keys(added), 'BRIDGE_LIST', 'CEPH_CONF', 'CEPH_KEY', 'CEPH_USER', 'DISK_TYPE', 'DS_MAD', 'POOL_NAME', 'STAGING_DIR', 'TM_MAD', 'TYPE'].sort(),
    );
  });

  it('ceph monitor: USED_MB = stored, FREE_MB = max_avail, TOTAL_MB = their sum (MiB) of the pool in `ceph df`', async () => {
    await oned.monitorDatastore(cephDs);
    const d = await dsDoc(oned, cephDs);
    const df = JSON.parse(await ceph.ceph(['df', 'detail', '--format', 'json'])) as { pools: { name: string; stats: { stored: number; max_avail: number } }[] };
    const pool = df.pools.find((p) => p.name === 'one');
    assert.ok(pool);
    const [used, free, total] = [Number(d.USED_MB), Number(d.FREE_MB), Number(d.TOTAL_MB)];
    assert.ok(free > 500 && Math.abs(free - Math.floor(pool.stats.max_avail / MiB)) <= 8, `FREE_MB ${free} vs max_avail ${pool.stats.max_avail}`);
    assert.ok(Math.abs(used - Math.floor(pool.stats.stored / MiB)) <= 8, `USED_MB ${used} vs stored ${pool.stats.stored}`);
    assert.ok(total - used - free >= 0 && total - used - free <= 1, `TOTAL_MB ${total} = ${used} + ${free}`);
    const sessions = await bridge.sessions();
    assert.ok(sessions.some((s) => s.command === 'bash -s' && /ceph --id admin --keyfile \S+ --conf \S+ df detail --format json/.test(s.script ?? '')));
  });

  it('ceph mkfs: SOURCE one/one-<ID>, FORMAT raw and DRIVER=raw whatever FORMAT was asked; the RBD is exactly SIZE MiB, nothing allocated; made on BRIDGE_LIST[id % 2]', async () => {
    for (const [size, format] of [[100, 'raw'], [101, 'qcow2']] as const) {
      const before = (await bridge.sessions()).length;
      const id = await allocateImage(oned, `NAME="blank-${size}"\nTYPE=DATABLOCK\nSIZE=${size}\nFORMAT=${format}`, cephDs);
      const d = await waitImage(oned, id);
      assert.equal(d.STATE, '1', d.TEMPLATE.ERROR);
      assert.equal(d.SOURCE, `one/one-${id}`);
      assert.equal(d.FORMAT, 'raw');
      assert.equal(d.TEMPLATE.DRIVER, 'raw');
      assert.equal(d.DISK_TYPE, '3');
      const info = await rbdJson(['info', `one/one-${id}`]);
      assert.equal(info.size, size * MiB);
      assert.equal(info.format, 2);
      assert.deepEqual(info.features, ['layering', 'exclusive-lock', 'object-map', 'fast-diff', 'deep-flatten']);
      const du = await rbdJson(['du', `one/one-${id}`]);
      assert.equal(du.images[0].used_size, 0);
      const mine = (await bridge.sessions()).slice(before).find((s) => (s.script ?? '').includes(`one/one-${id} `));
      assert.ok(mine, 'the rbd create went through ssh');
      assert.equal(mine.host, id % 2 === 0 ? 'bridge1' : 'bridge2');
      assert.match(mine.script ?? '', new RegExp(`rbd --id admin --keyfile ${keyFile} --conf ${confFile} create --image-format 2 one/one-${id} --size ${size}`));
    }
  });

  it('ceph cp: a raw PATH becomes an RBD of exactly the file size (not rounded), same bytes, sparse; a qcow2 PATH is converted to raw', async () => {
    const raw = join(work, 'disk.raw');
    const size = 100 * MiB + 64 * 1024;
    await sparseFile(raw, size, [[0, MiB], [size - 64 * 1024, 64 * 1024]]);
    const id = await allocateImage(oned, `NAME="from-raw"\nPATH="${raw}"`, cephDs);
    const d = await waitImage(oned, id);
    assert.equal(d.STATE, '1', d.TEMPLATE.ERROR);
    assert.deepEqual([d.SOURCE, d.FORMAT, d.SIZE], [`one/one-${id}`, 'raw', '101']);
    const info = await rbdJson(['info', `one/one-${id}`]);
    assert.equal(info.size, 104923136);
    const out = join(work, 'export.raw');
    await ceph.rbd(['export', `one/one-${id}`, out]);
    assert.equal(await sha256(out), await sha256(raw));
    const du = await rbdJson(['du', `one/one-${id}`]);
    assert.ok(du.images[0].used_size <= 8 * MiB, `rbd du ${du.images[0].used_size}: only the written objects`);
    const sessions = await bridge.sessions();
    assert.ok(sessions.some((s) => new RegExp(`^dd of=${bridge.stagingDir}/[0-9a-f]{32} bs=64k$`).test(s.command)), 'PATH piped into dd on the bridge');
    await rm(out);

    const small = join(work, 'small.raw');
    await sparseFile(small, 6 * MiB, [[MiB, 3 * MiB]]);
    const q = join(work, 'small.qcow2');
    assert.equal(spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', small, q]).status, 0);
    const qid = await allocateImage(oned, `NAME="from-qcow2"\nPATH="${q}"`, cephDs);
    const qd = await waitImage(oned, qid);
    assert.equal(qd.STATE, '1', qd.TEMPLATE.ERROR);
    assert.equal(qd.FORMAT, 'raw');
    await ceph.rbd(['export', `one/one-${qid}`, out]);
    assert.equal(await sha256(out), await sha256(small));
  });

  it('ceph rm: snapshots then the image; an RBD already gone → ERROR with 7.4\'s text, then delete --force drops it', async () => {
    const id = await allocateImage(oned, 'NAME="to-remove"\nTYPE=DATABLOCK\nSIZE=8', cephDs);
    assert.equal((await waitImage(oned, id)).STATE, '1');
    await ceph.rbd(['snap', 'create', `one/one-${id}@snap`]);
    await ceph.rbd(['snap', 'protect', `one/one-${id}@snap`]);
    assert.equal(await okValue(oned, 'one.image.delete', id, false), id);
    await waitGone(oned, id);
    assert.ok(!(await ceph.rbd(['ls', 'one'])).split('\n').includes(`one-${id}`));

    const goneId = await allocateImage(oned, 'NAME="gone"\nTYPE=DATABLOCK\nSIZE=8', cephDs);
    assert.equal((await waitImage(oned, goneId)).STATE, '1');
    await ceph.rbd(['rm', `one/one-${goneId}`]);
    await okValue(oned, 'one.image.delete', goneId, false);
    const d = await waitImage(oned, goneId, [IMAGE_STATE.ERROR]);
    assert.equal(d.STATE, '5');
    assert.match(
      d.TEMPLATE.ERROR,
      / : Error removing image from datastore\. Retry the operation or manually remove image source {2}and run the delete --force operation to completely delete the image$/,
    );
    assert.ok(oned.onedLog.some((l) => l.includes(`Error removing image ${goneId}`) && l.includes('No such file or directory')));
    await okValue(oned, 'one.image.delete', goneId, true);
    await waitGone(oned, goneId);
  });

  it('ceph errors: a missing pool monitors 0/0/0 and mkfs fails with rbd\'s message; a wrong CEPH_USER cannot connect; no ceph.conf → FREE_MB 0 and "Not enough space"', async () => {
    const noPool = await allocateDs(cephTemplate('nopool', { POOL_NAME: 'nopool' }));
    const np = await dsDoc(oned, noPool);
    assert.deepEqual([np.USED_MB, np.FREE_MB, np.TOTAL_MB], ['0', '0', '0']);
    const refused = await call(oned, 'one.image.allocate', 'NAME="np"\nTYPE=DATABLOCK\nSIZE=8', noPool, false);
    assert.deepEqual(refused, { ok: false, value: '[one.image.allocate] Not enough space in datastore', code: 2048 });
    const npId = await allocateImage(oned, 'NAME="np"\nTYPE=DATABLOCK\nSIZE=8', noPool, true);
    const npd = await waitImage(oned, npId);
    assert.equal(npd.STATE, '5');
    assert.equal(npd.SOURCE, '');
    assert.match(npd.TEMPLATE.ERROR, / : Error creating datablock: .*rbd: error opening pool 'nopool': \(2\) No such file or directory/);
    assert.match(npd.TEMPLATE.ERROR, /Error registering nopool\/one-\d+ in bridge[12]$/);

    const wrongUser = await allocateDs(cephTemplate('wronguser', { CEPH_USER: 'nobody' }));
    assert.equal((await dsDoc(oned, wrongUser)).FREE_MB, '0');
    const wuId = await allocateImage(oned, 'NAME="wu"\nTYPE=DATABLOCK\nSIZE=8', wrongUser, true);
    const wud = await waitImage(oned, wuId);
    assert.equal(wud.STATE, '5');
    assert.match(wud.TEMPLATE.ERROR, /handle_auth_bad_method.*rbd: couldn't connect to the cluster!/);

    const noConf = await allocateDs(cephTemplate('noconf', { CEPH_CONF: '/nonexistent/ceph.conf' }));
    const nc = await dsDoc(oned, noConf);
    assert.deepEqual([nc.USED_MB, nc.FREE_MB, nc.TOTAL_MB], ['0', '0', '0']);
    assert.equal(oned.log.filter((e) => e.action === 'monitor' && e.argv[0] === String(noConf)).at(-1)?.exitCode !== 0, true);
    const ncr = await call(oned, 'one.image.allocate', 'NAME="nc"\nTYPE=DATABLOCK\nSIZE=1', noConf, false);
    assert.deepEqual([ncr.value, ncr.code], ['[one.image.allocate] Not enough space in datastore', 2048]);
  });

  it('fs datastore with BRIDGE_LIST: mkfs, cp (dd into STAGING_DIR, moved into BASE_PATH) and rm run over ssh as the bridge user; monitor is df on the bridge', async () => {
    const ds = await oned.createDatastore({ name: 'bridged', type: 'IMAGE_DS', tmMad: 'shared', template: { BRIDGE_LIST: 'bridge1', STAGING_DIR: bridge.stagingDir }, noMonitor: true });
    const base = (await dsDoc(oned, ds)).BASE_PATH as string;
    await bridge.grant(base, 'rw');
    await oned.monitorDatastore(ds);
    const dd = await dsDoc(oned, ds);
    const st = statfsSync(base);
    assert.ok(Math.abs(Number(dd.TOTAL_MB) - (st.blocks * st.bsize) / MiB) <= 1, `TOTAL_MB ${dd.TOTAL_MB}: df of BASE_PATH`);
    assert.ok(Number(dd.FREE_MB) > 0);

    const id = await allocateImage(oned, 'NAME="b-blank"\nTYPE=DATABLOCK\nSIZE=16', ds);
    const d = await waitImage(oned, id);
    assert.equal(d.STATE, '1', d.TEMPLATE.ERROR);
    assert.equal(d.FORMAT, 'raw');
    assert.match(d.SOURCE, new RegExp(`^${base.replace(/[/]/g, '\\/')}/[0-9a-f]{32}$`));
    assert.equal((await stat(d.SOURCE)).uid, bridge.uid, 'created by the bridge user');
    assert.equal(qemuInfo(d.SOURCE)['virtual-size'], 16 * MiB);
    const mk = (await bridge.sessions()).find((s) => (s.script ?? '').includes(`qemu-img create -f raw ${d.SOURCE} 16M`));
    assert.equal(mk?.host, 'bridge1');

    const src = join(work, 'b.raw');
    await sparseFile(src, 5 * MiB, [[MiB, MiB]]);
    const cid = await allocateImage(oned, `NAME="b-copy"\nPATH="${src}"`, ds);
    const cd = await waitImage(oned, cid);
    assert.equal(cd.STATE, '1', cd.TEMPLATE.ERROR);
    assert.equal(cd.FORMAT, 'raw');
    assert.equal(await sha256(cd.SOURCE), await sha256(src));
    assert.equal((await stat(cd.SOURCE)).uid, bridge.uid);
    const hash = (cd.SOURCE as string).split('/').pop();
    const sessions = await bridge.sessions();
    assert.ok(sessions.some((s) => s.command === `dd of=${bridge.stagingDir}/${hash} bs=64k conv=sparse`));
    assert.ok(sessions.some((s) => (s.script ?? '').includes(`mv -f ${bridge.stagingDir}/${hash} ${cd.SOURCE}`)));

    await okValue(oned, 'one.image.delete', cid, false);
    await waitGone(oned, cid);
    await assert.rejects(stat(cd.SOURCE));
    assert.ok((await bridge.sessions()).some((s) => (s.script ?? '').includes(`[ -f ${cd.SOURCE} ] && rm -rf ${cd.SOURCE} ${cd.SOURCE}.snap ${cd.SOURCE}.md5sum`)));
  });

  it('BRIDGE_LIST with TM_MAD=qcow2: the placeholder is made as qcow2 on the bridge, a raw PATH is converted there (the datastore has a DRIVER)', async () => {
    const ds = await oned.createDatastore({ name: 'bridged-q', type: 'IMAGE_DS', tmMad: 'qcow2', template: { BRIDGE_LIST: 'bridge1', STAGING_DIR: bridge.stagingDir }, noMonitor: true });
    await bridge.grant((await dsDoc(oned, ds)).BASE_PATH as string, 'rw');
    await oned.monitorDatastore(ds);
    const blank = await waitImage(oned, await allocateImage(oned, 'NAME="bq-blank"\nTYPE=DATABLOCK\nSIZE=32\nFORMAT=raw', ds));
    assert.deepEqual([blank.STATE, blank.FORMAT, blank.TEMPLATE.DRIVER], ['1', 'qcow2', 'qcow2']);
    assert.deepEqual([qemuInfo(blank.SOURCE).format, qemuInfo(blank.SOURCE)['virtual-size']], ['qcow2', 32 * MiB]);

    const src = join(work, 'bq.raw');
    await sparseFile(src, 3 * MiB, [[0, MiB]]);
    const copy = await waitImage(oned, await allocateImage(oned, `NAME="bq-copy"\nPATH="${src}"`, ds));
    assert.deepEqual([copy.STATE, copy.FORMAT, qemuInfo(copy.SOURCE).format], ['1', 'qcow2', 'qcow2']);
    assert.ok((await bridge.sessions()).some((s) => (s.script ?? '').includes(`qemu-img convert -O qcow2 ${copy.SOURCE} ${copy.SOURCE}.tmp`)));
  });

  it('an unreachable bridge: mkfs and cp end in ERROR; hosts listed off/err/dsbl are skipped, all of them gone → ERROR', async () => {
    const down = await oned.createDatastore({ name: 'down', type: 'IMAGE_DS', tmMad: 'shared', template: { BRIDGE_LIST: 'bridge-down', STAGING_DIR: bridge.stagingDir } });
    assert.equal((await dsDoc(oned, down)).FREE_MB, '0', 'the monitor could not reach the bridge');
    const m = await waitImage(oned, await allocateImage(oned, 'NAME="d-blank"\nTYPE=DATABLOCK\nSIZE=4', down, true));
    assert.equal(m.STATE, '5');
    assert.match(m.TEMPLATE.ERROR, / : Error creating datablock: .*ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused/);
    assert.match(m.TEMPLATE.ERROR, /Unable to create image with format raw in bridge-down:\S+$/);
    const src = join(work, 'd.raw');
    await sparseFile(src, MiB, [[0, 4096]]);
    const c = await waitImage(oned, await allocateImage(oned, `NAME="d-copy"\nPATH="${src}"`, down, true));
    assert.equal(c.STATE, '5');
    assert.match(c.TEMPLATE.ERROR, new RegExp(` : Error copying image in the datastore: Error dumping ${src} to bridge-down:${bridge.stagingDir}/[0-9a-f]{32}$`));

    // BRIDGE_LIST[id % 2] would pick bridge-down for even ids: with it off only bridge1 is left
    const both = await oned.createDatastore({ name: 'both', type: 'IMAGE_DS', tmMad: 'shared', template: { BRIDGE_LIST: 'bridge-down bridge1', STAGING_DIR: bridge.stagingDir }, noMonitor: true });
    await bridge.grant((await dsDoc(oned, both)).BASE_PATH as string, 'rw');
    oned.setHostState('bridge-down', 'off');
    const ids = [await allocateImage(oned, 'NAME="o-1"\nTYPE=DATABLOCK\nSIZE=1', both, true), await allocateImage(oned, 'NAME="o-2"\nTYPE=DATABLOCK\nSIZE=1', both, true)];
    for (const id of ids) assert.equal((await waitImage(oned, id)).STATE, '1');

    oned.setHostState('bridge1', 'dsbl');
    const none = await waitImage(oned, await allocateImage(oned, 'NAME="o-3"\nTYPE=DATABLOCK\nSIZE=1', both, true));
    assert.equal(none.STATE, '5');
    assert.match(none.TEMPLATE.ERROR, /All hosts from 'BRIDGE_LIST' are offline, error or disabled/);
    oned.setHostState('bridge1', null);
    oned.setHostState('bridge-down', null);
  });
});
