// oneswap's datastore driver as oned 7.4 runs it (through the OpenNebula simulator, which runs the
// scripts in driver/datastore/oneswap with oned's argv, stdin, working directory and environment):
// images whose PATH is a vcenter:// URL are filled from the vCenter simulator; plain paths go to
// the stock fs driver.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { readFile, stat, writeFile, mkdtemp, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { vcsimSkip, startVcsim, type Vcsim } from '../peers/vcsim/index.js';
import { createTestVm, type TestVm } from '../peers/vcsim/fixture.js';
import { IMAGE_STATE, type Oned } from '../peers/one/index.js';
import { startOnedWithDrivers, writeVcenterCredentials, type DriverPeers } from '../peers/one-drivers.js';
import { OneClient, OneApiError, Template } from '../../lib/one/index.js';

const MiB = 1024 * 1024;
const skip = vcsimSkip();
const run = promisify(execFile);

async function sha256Prefix(file: string, size: number): Promise<string> {
  const data = await readFile(file);
  assert.equal(data.length, size, `${file} has the disk's size`);
  return createHash('sha256').update(data).digest('hex');
}

/** Runs a driver script directly, the way a given OpenNebula version calls it. */
async function runScript(script: string, args: string[], stdin: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(script, args, { cwd: tmpdir(), env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    child.stdin!.end(stdin);
  });
}

describe('datastore driver: vcenter:// images', { skip }, () => {
  let sim: Vcsim;
  let peers: DriverPeers;
  let oned: Oned;
  let one: OneClient;
  let cbtVm: TestVm;
  let plainVm: TestVm;

  let work: string;

  const allocate = (t: Record<string, string | number>, ds = peers.dsId): Promise<number> => one.imageAllocate(Template.of(t), ds);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-dsdrv-'));
    sim = await startVcsim();
    peers = await startOnedWithDrivers(sim);
    oned = peers.oned;
    one = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession });
    cbtVm = await createTestVm(sim, {
      name: 'drv cbt',
      cbt: true,
      disks: [
        { sizeBytes: 64 * MiB, data: [{ offset: 0, length: MiB }, { offset: 20 * MiB + 4096, length: 3 * MiB }, { offset: 64 * MiB - 65536, length: 65536 }] },
        { sizeBytes: 8 * MiB + 512 * 1024, data: [{ offset: 4 * MiB, length: 12288 }] },
      ],
    });
    plainVm = await createTestVm(sim, { name: 'drv-plain', disks: [{ sizeBytes: 16 * MiB, data: [{ offset: 5 * MiB, length: 2 * MiB }] }] });
    await createTestVm(sim, { name: 'drv-running', powerOn: true, disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: MiB }] }] });
  });

  after(async () => {
    one?.close();
    await oned?.stop();
    await sim?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('allocate with a vcenter:// PATH: stat sizes it, cp streams the disk into SOURCE, READY with the exact bytes', async () => {
    const id = await allocate({ NAME: 'cbt-disk0', TYPE: 'OS', PATH: peers.url('drv cbt', 0), PERSISTENT: 'YES' });
    const stat0 = oned.log.find((e) => e.action === 'stat' && e.payload.includes('drv%20cbt'))!;
    assert.equal(stat0.argv.length, 1, 'stat gets one argument, the request counter');
    assert.equal(stat0.stdout.trim(), '64');
    assert.equal(oned.image(id)!.size, 64);
    const img = await oned.waitImage(id);
    assert.equal(img.state, IMAGE_STATE.READY, JSON.stringify(img.template));
    const info = await one.image(id);
    assert.equal(info.format, 'raw');
    const ds = await one.datastore(peers.dsId);
    assert.ok(info.source.startsWith(`${ds.basePath}/`), `${info.source} lies directly under ${ds.basePath}`);
    assert.match(info.source.slice(ds.basePath.length + 1), /^[0-9a-f]{32}$/);
    assert.equal(await sha256Prefix(info.source, 64 * MiB), cbtVm.disks[0]!.sha256);
    // Only the data travelled and was written: the file stays sparse.
    const blocks = (await stat(info.source)).blocks * 512;
    assert.ok(blocks <= 5 * MiB, `file allocates ${blocks} bytes for ~4.1 MiB of data`);
    const cp = oned.log.find((e) => e.action === 'cp' && e.argv[0] === String(id))!;
    assert.deepEqual(cp.argv, [String(id)]);
    assert.equal(cp.stdout, `${info.source} raw\n`);
    assert.equal(info.template.get('ONESWAP_STATE'), 'COPIED');
    assert.match(info.template.get('ONESWAP_PROGRESS') ?? '', /^copied \d+ MiB/);
    assert.equal(info.template.get('ONESWAP_DISK_INDEX'), '0');
    assert.ok(!cp.stderr.split('\n').some((l) => l && !/^(INFO|WARN|ERROR|DEBUG):/.test(l)), `no plain stderr on success: ${cp.stderr}`);
  });

  test('the second disk, whose size is not a whole MiB, and a VM without CBT', async () => {
    const id1 = await allocate({ NAME: 'cbt-disk1', TYPE: 'DATABLOCK', PATH: peers.url('drv cbt', 1) });
    const id2 = await allocate({ NAME: 'plain-disk0', TYPE: 'OS', PATH: peers.url('drv-plain', 0) });
    assert.equal(oned.image(id1)!.size, 9);
    for (const id of [id1, id2]) assert.equal((await oned.waitImage(id)).state, IMAGE_STATE.READY);
    assert.equal(await sha256Prefix((await one.image(id1)).source, 8 * MiB + 512 * 1024), cbtVm.disks[1]!.sha256);
    assert.equal(await sha256Prefix((await one.image(id2)).source, 16 * MiB), plainVm.disks[0]!.sha256);
  });

  test('a wrong URL, an unknown VM, a missing disk, bad credentials: allocate fails at once with a readable message', async () => {
    const cases: Array<[string, RegExp]> = [
      [`vcenter://127.0.0.1:${sim.port}/DC0/drv-plain`, /names no disk: add \?disk=N/],
      [`vcenter://127.0.0.1:${sim.port}/DC0/no-such-vm?disk=0`, /has no VM/],
      [`vcenter://127.0.0.1:${sim.port}/DC0/drv-plain?disk=3`, /has 1 disk\(s\); there is no disk 3/],
      [`vcenter://127.0.0.1:${sim.port}/DC0/drv-plain?disc=0`, /unknown parameter "disc"/],
      [`vcenter://user:pw@127.0.0.1:${sim.port}/DC0/drv-plain?disk=0`, /must not carry credentials/],
      [`vcenter://127.0.0.1:${sim.port + 1}/DC0/drv-plain?disk=0`, /no entry for 127\.0\.0\.1/],
    ];
    for (const [path, message] of cases) {
      const before = oned.sim.pools.images.size;
      await assert.rejects(allocate({ NAME: `bad-${Math.random()}`, PATH: path }), (err: unknown) => {
        assert.ok(err instanceof OneApiError, String(err));
        assert.match(err.remoteMessage, /^\[one\.image\.allocate\] Cannot parse image SIZE: /);
        assert.match(err.remoteMessage, message);
        assert.doesNotMatch(err.remoteMessage, /\n/);
        return true;
      });
      assert.equal(oned.sim.pools.images.size, before, `no image left for ${path}`);
    }
    // Wrong password: vCenter refuses the login.
    await writeVcenterCredentials(peers.credentials, sim, { password: 'wrong' });
    try {
      await assert.rejects(allocate({ NAME: 'bad-auth', PATH: peers.url('drv-plain', 0) }), /Cannot parse image SIZE: .*(login|password|credentials|auth)/i);
    } finally {
      await writeVcenterCredentials(peers.credentials, sim);
    }
    // Credentials other users can read are refused, not used.
    await writeVcenterCredentials(peers.credentials, sim, { mode: 0o644 });
    try {
      await assert.rejects(allocate({ NAME: 'bad-mode', PATH: peers.url('drv-plain', 0) }), /can be read by other users \(mode 644\).*chmod 600/);
    } finally {
      await writeVcenterCredentials(peers.credentials, sim);
    }
  });

  test('cp failures end in ERROR with the plain message, and leave no file', async () => {
    const files = async (): Promise<string[]> => (await run('find', [(await one.datastore(peers.dsId)).basePath, '-type', 'f'])).stdout.split('\n').filter(Boolean).sort();
    const before = await files();
    // A powered-on VM: stat answers (the size is known), cp refuses to copy a disk being written.
    const id = await allocate({ NAME: 'running-disk0', PATH: peers.url('drv-running', 0) });
    const img = await oned.waitImage(id);
    assert.equal(img.state, IMAGE_STATE.ERROR);
    const error = (await one.image(id)).template.get('ERROR') ?? '';
    assert.match(error, /Error copying image in the datastore: VM drv-running is poweredOn: power it off in vCenter/);
    assert.deepEqual(await files(), before);
    // The disk vanished between stat and cp (an app whose SOURCE went stale): stat is skipped here.
    oned.setDriverAction('stat', (c) => (c.payload.includes('gone-vm') ? { stdout: '4\n' } : undefined));
    try {
      const id2 = await allocate({ NAME: 'gone-disk0', PATH: `vcenter://127.0.0.1:${sim.port}/DC0/gone-vm?disk=0` });
      assert.equal((await oned.waitImage(id2)).state, IMAGE_STATE.ERROR);
      assert.match((await one.image(id2)).template.get('ERROR') ?? '', /has no VM "\/DC0\/vm\/gone-vm"/);
    } finally {
      oned.setDriverAction('stat', null);
    }
    assert.deepEqual(await files(), before);
    // A datastore whose files live on a bridge host this frontend cannot reach: one line naming
    // the datastore and the host, nothing made.
    const bridged = await oned.createDatastore({ name: 'bridged', type: 'IMAGE_DS', dsMad: 'oneswap', tmMad: 'ssh', template: { ONESWAP_CREDENTIALS: peers.credentials, BRIDGE_LIST: 'host1' }, totalMb: 100_000, freeMb: 100_000 });
    const id3 = await allocate({ NAME: 'bridged-disk0', PATH: peers.url('drv-plain', 0) }, bridged);
    assert.equal((await oned.waitImage(id3)).state, IMAGE_STATE.ERROR);
    assert.match((await one.image(id3)).template.get('ERROR') ?? '', new RegExp(`datastore ${bridged} \\(bridged\\): cannot reach the bridge host host1 over ssh: ssh: Could not resolve hostname host1`));
    assert.deepEqual(await files(), before);
  });

  test('plain paths, http URLs, mkfs and monitor behave like the stock fs driver', async () => {
    const src = join(work, 'plain.raw');
    await writeFile(src, Buffer.alloc(3 * MiB, 7));
    const id = await allocate({ NAME: 'from-file', PATH: src });
    assert.equal((await oned.waitImage(id)).state, IMAGE_STATE.READY);
    const info = await one.image(id);
    assert.equal(createHash('sha256').update(await readFile(info.source)).digest('hex'), createHash('sha256').update(Buffer.alloc(3 * MiB, 7)).digest('hex'));
    // An http(s) URL, as the stock driver downloads it (stat from Content-Length).
    const body = Buffer.alloc(2 * MiB + 4096, 3);
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/disk.raw`;
      const web = await allocate({ NAME: 'from-http', PATH: url });
      assert.equal(oned.image(web)!.size, 3);
      assert.equal((await oned.waitImage(web)).state, IMAGE_STATE.READY);
      assert.deepEqual(await readFile((await one.image(web)).source), body);
    } finally {
      server.close();
    }
    const blank = await allocate({ NAME: 'blank', TYPE: 'DATABLOCK', SIZE: 5, FORMAT: 'raw' });
    assert.equal((await oned.waitImage(blank)).state, IMAGE_STATE.READY);
    assert.equal((await stat((await one.image(blank)).source)).size, 5 * MiB);
    await oned.monitorDatastore(peers.dsId);
    const ds = await one.datastore(peers.dsId);
    assert.ok(ds.totalMb > 0 && ds.freeMb > 0, `monitor filled the capacity: ${ds.totalMb}/${ds.freeMb}`);
    // A restricted local path outside SAFE_DIRS is refused by the stock rules.
    const denied = await allocate({ NAME: 'etc-passwd', PATH: '/etc/passwd' });
    assert.equal((await oned.waitImage(denied)).state, IMAGE_STATE.ERROR);
    assert.match((await one.image(denied)).template.get('ERROR') ?? '', /Not allowed to copy image from \/etc\/passwd, check RESTRICTED_DIRS/);
  });

  test('rm removes the image file, and only files directly under BASE_PATH', async () => {
    const id = await allocate({ NAME: 'to-delete', PATH: peers.url('drv-plain', 0) });
    assert.equal((await oned.waitImage(id)).state, IMAGE_STATE.READY);
    const file = (await one.image(id)).source;
    const rmPayload = oned.log.find((e) => e.action === 'cp' && e.argv[0] === String(id))!.payload;
    await one.imageDelete(id);
    await oned.idle();
    await assert.rejects(access(file), /ENOENT/);
    // The same rm with a SOURCE outside BASE_PATH: refused, the file stays.
    const victim = join(work, 'victim.raw');
    await writeFile(victim, 'keep me');
    const payload = rmPayload.replace(/<SOURCE>.*?<\/SOURCE>|<SOURCE\/>/, `<SOURCE><![CDATA[${victim}]]></SOURCE>`);
    const script = join(oned.remotesDir, 'datastore', 'oneswap', 'rm');
    const r = await runScript(script, [String(id)], Buffer.from(payload).toString('base64'));
    assert.notEqual(r.code, 0);
    assert.equal(await readFile(victim, 'utf8'), 'keep me');
  });

  test('both calling conventions: 6.8+ (stdin), ≤6.6 (base64 in argv) and 6.6.2 "-"', async () => {
    const statPayload = oned.log.find((e) => e.action === 'stat' && e.payload.includes('drv-plain?disk=0'))!.payload;
    const b64 = Buffer.from(statPayload).toString('base64');
    const script = join(oned.remotesDir, 'datastore', 'oneswap', 'stat');
    for (const [args, stdin] of [[['7'], b64], [[b64, '7'], ''], [['-', '7'], `${b64}\n`]] as Array<[string[], string]>) {
      // HOME without ~/.one: stat needs only vCenter.
      const r = await runScript(script, args, stdin);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '16\n');
    }
    const bad = await runScript(script, ['7'], 'not base64 xml');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /not base64-encoded XML/);
  });
});

describe('datastore driver: progress on the image while cp runs, and an image deleted mid-copy', { skip }, () => {
  let sim: Vcsim;
  let peers: DriverPeers;
  let oned: Oned;
  let one: OneClient;

  before(async () => {
    // 1 MiB/s per range request: 60 MiB in 4 islands over 4 streams takes about 15 s.
    sim = await startVcsim({ folderRate: MiB });
    peers = await startOnedWithDrivers(sim);
    oned = peers.oned;
    one = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession });
    for (const name of ['slow-a', 'slow-b'])
      await createTestVm(sim, { name, cbt: true, disks: [{ sizeBytes: 64 * MiB, data: [0, 1, 2, 3].map((i) => ({ offset: i * 16 * MiB, length: 15 * MiB })) }] });
  });

  after(async () => {
    one?.close();
    await oned?.stop();
    await sim?.stop();
  });

  test('ONESWAP_PROGRESS moves while the disk copies, at most once per 5 s', async () => {
    const id = await one.imageAllocate(Template.of({ NAME: 'slow-a-disk0', PATH: peers.url('slow-a', 0) }), peers.dsId);
    const seen: Array<{ at: number; text: string }> = [];
    const t0 = Date.now();
    const look = (): void => {
      const text = oned.image(id)!.template.get('ONESWAP_PROGRESS');
      if (text && text !== seen.at(-1)?.text) seen.push({ at: Date.now() - t0, text });
    };
    while (oned.image(id)!.state === IMAGE_STATE.LOCKED) {
      look();
      await new Promise((r) => setTimeout(r, 50));
    }
    look();
    assert.equal(oned.image(id)!.state, IMAGE_STATE.READY);
    const copying = seen.filter((s) => s.text.startsWith('copying '));
    const percents = copying.map((s) => Number(/copying (\d+)%/.exec(s.text)![1]));
    assert.ok(copying.length >= 3, `progress seen: ${JSON.stringify(seen)}`);
    assert.deepEqual(percents, [...percents].sort((a, b) => a - b), 'progress only moves forward');
    assert.ok(percents.some((p) => p > 0 && p < 100), `intermediate progress: ${percents}`);
    assert.match(copying.at(-1)!.text, /of 60 MiB at \d+ MiB\/s\)/);
    for (let i = 2; i < copying.length; i++) assert.ok(copying[i]!.at - copying[i - 1]!.at >= 4500, `updates are at least 5 s apart: ${JSON.stringify(copying)}`);
    assert.match(seen.at(-1)!.text, /^copied 60 MiB in \d+ s$/);
  });

  test('an image force-deleted while LOCKED: the copy stops and its file is removed', async () => {
    const id = await one.imageAllocate(Template.of({ NAME: 'slow-b-disk0', PATH: peers.url('slow-b', 0) }), peers.dsId);
    const base = (await one.datastore(peers.dsId)).basePath;
    while (!/copying [1-9]/.test(oned.image(id)?.template.get('ONESWAP_PROGRESS') ?? '')) await new Promise((r) => setTimeout(r, 100));
    const before = (await run('find', [base, '-type', 'f'])).stdout;
    await one.imageDelete(id, true);
    await oned.idle();
    const cp = oned.log.find((e) => e.action === 'cp' && e.argv[0] === String(id))!;
    assert.notEqual(cp.exitCode, 0);
    assert.match(cp.stderr, /image \d+ was deleted while its disk was being copied; copy stopped/);
    const after = (await run('find', [base, '-type', 'f'])).stdout;
    assert.ok(before.split('\n').length > after.split('\n').length, `the partial file is gone: before ${before}, after ${after}`);
  });
});
