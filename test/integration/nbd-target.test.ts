// The copy engine writing through qemu-nbd into the two image kinds a datastore may hold besides
// raw files: a qcow2 placeholder and an RBD image in the one-node Ceph peer (one cluster for the
// file). Each byte lands once and only data is allocated; zeroing deallocates; the image opens as
// an overlay's backing file; no credential is on a command line; Ceph's and the file's failures
// read as what to fix; qemu-nbd never outlives oneswap.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyExtents, type RangeSource, type TargetWriter } from '../../lib/copy/index.js';
import { OneswapError } from '../../lib/errors/index.js';
import { openCompressedQcow2Writer, openQcow2Writer, qcow2Allocated, qcow2Image } from '../../lib/output/qcow2-target.js';
import { openRbdAccess } from '../../lib/output/rbd-access.js';
import { openRbdAccessWriter, openRbdWriter } from '../../lib/output/rbd-target.js';
import { cephSkip, startCeph, type Ceph } from '../peers/ceph/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB; // the engine's zero-detection block
const CLUSTER = 64 * KiB; // qemu-img create's default qcow2 cluster
const OBJECT = 4 * MiB; // rbd create's default object size

/** 80 MiB + 12 KiB: not a whole MiB (an RBD placeholder rounds up), not a whole cluster. */
const SIZE = 80 * MiB + 12 * KiB;
/** Data islands [start, length): unaligned, across cluster and object edges, one in the last object. */
const ISLANDS: ReadonlyArray<readonly [number, number]> = [
  [0, 100],
  [3 * MiB + 5000, 2 * MiB + 333],
  [OBJECT - 10, 20],
  [17 * MiB, 64 * KiB],
  [40 * MiB + 1, 7 * MiB],
  [SIZE - 5000, 5000],
];

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function diskImage(size: number, islands: ReadonlyArray<readonly [number, number]>): Buffer {
  const b = Buffer.alloc(size);
  for (const [start, len] of islands) {
    randomFillSync(b, start, len);
    // No zero 4 KiB block inside an island by chance: every byte non-zero.
    for (let i = start; i < start + len; i++) if (b[i] === 0) b[i] = 1;
  }
  return b;
}

/** Bytes of the `unit`-sized pieces of `data` that hold a non-zero byte (the last piece may be short). */
function usedUnits(data: Buffer, unit: number): number {
  const zeros = Buffer.alloc(unit);
  let used = 0;
  for (let off = 0; off < data.length; off += unit) {
    const end = Math.min(data.length, off + unit);
    if (!data.subarray(off, end).equals(zeros.subarray(0, end - off))) used += end - off;
  }
  return used;
}

/** Serves ranges from memory in 64 KiB chunks, as a vCenter body would arrive. */
function memorySource(data: Buffer): RangeSource {
  return {
    name: 'memory',
    async open(start, end) {
      return (async function* () {
        for (let p = start; p < end; p += 64 * KiB) yield data.subarray(p, Math.min(end, p + 64 * KiB));
      })();
    },
  };
}

async function copyInto(writer: TargetWriter, data: Buffer): Promise<{ bytesWritten: number }> {
  return copyExtents({
    source: memorySource(data),
    target: writer,
    capacity: data.length,
    extents: [{ start: 0, length: data.length }],
    targetIsZero: true,
    streams: 4,
    requestSize: 8 * MiB,
    retries: 0,
  });
}

function qemuImgJson<T>(args: string[]): T {
  return JSON.parse(execFileSync('qemu-img', [...args, '--output=json'], { encoding: 'utf8' })) as T;
}

/** The command lines of running qemu-nbd processes that mention `text`. */
async function qemuNbdCmdlines(text: string): Promise<Array<{ pid: number; argv: string[] }>> {
  const out: Array<{ pid: number; argv: string[] }> = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = await readFile(`/proc/${entry}/cmdline`, 'utf8').then((s) => s.split('\0').filter(Boolean), () => []);
    if (argv[0]?.endsWith('qemu-nbd') && argv.some((a) => a.includes(text))) out.push({ pid: Number(entry), argv });
  }
  return out;
}

/** Running, not a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

async function until(what: string, test: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const isError = (kind: string, text: RegExp) => (err: unknown) => {
  assert.ok(err instanceof OneswapError, String(err));
  assert.equal(err.kind, kind, err.message);
  assert.match(err.message, text);
  assert.ok(!err.message.includes('\n'), 'one line');
  return true;
};

describe('qcow2 image file as a copy target', () => {
  let dir: string;
  const data = diskImage(SIZE, ISLANDS);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oneswap-qcow2-target-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const placeholder = (name: string, size = SIZE): string => {
    const path = join(dir, name);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path, String(size)]);
    return path;
  };

  it('the copy engine fills a placeholder: same bytes, same virtual size, check clean, only data clusters allocated', async () => {
    const path = placeholder('disk.qcow2');
    assert.equal(await qcow2Allocated(path), 0, 'a fresh placeholder is empty');
    const writer = await openQcow2Writer(path, SIZE);
    assert.equal(writer.name, path);
    assert.equal(writer.size, SIZE);
    const t = Date.now();
    const stats = await copyInto(writer, data);
    await writer.close();
    process.stderr.write(`qcow2: ${SIZE} bytes copied in ${Date.now() - t} ms\n`);

    assert.equal(stats.bytesWritten, usedUnits(data, BLOCK), 'each data block written once, zero blocks never');
    assert.equal(qemuImgJson<{ 'virtual-size': number }>(['info', path])['virtual-size'], SIZE);
    const check = qemuImgJson<{ 'check-errors': number; leaks?: number; corruptions?: number }>(['check', path]);
    assert.deepEqual([check['check-errors'], check.leaks ?? 0, check.corruptions ?? 0], [0, 0, 0]);
    const dataBytes = qemuImgJson<Array<{ length: number; data: boolean }>>(['map', path]).reduce((s, e) => (e.data ? s + e.length : s), 0);
    assert.equal(dataBytes, usedUnits(data, CLUSTER), 'allocated: exactly the clusters holding data');
    assert.equal(await qcow2Allocated(path), dataBytes);
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, join(dir, 'disk.raw')]);
    assert.equal(sha(await readFile(join(dir, 'disk.raw'))), sha(data));
    assert.deepEqual(qcow2Image(path), { filename: path, format: 'qcow2' });
  });

  it('zero() over written data reads back zeros and frees the clusters', async () => {
    const path = placeholder('rezero.qcow2', 8 * MiB);
    const writer = await openQcow2Writer(path, 8 * MiB);
    await writer.write(Buffer.alloc(8 * MiB, 0x5a), 0);
    await writer.flush();
    await writer.zero([{ start: MiB, length: 2 * MiB }, { start: 6 * MiB + 4 * KiB, length: 8 * KiB }]);
    await writer.flush();
    await writer.close();
    const raw = join(dir, 'rezero.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, raw]);
    const back = await readFile(raw);
    assert.ok(back.subarray(MiB, 3 * MiB).every((b) => b === 0) && back.subarray(6 * MiB + 4 * KiB, 6 * MiB + 12 * KiB).every((b) => b === 0));
    assert.equal(back[MiB - 1], 0x5a);
    assert.equal(back[3 * MiB], 0x5a);
    // The whole clusters are freed; the two partial ones stay allocated, zeroed.
    assert.equal(await qcow2Allocated(path), 6 * MiB);
    assert.equal(qemuImgJson<{ 'check-errors': number; leaks?: number }>(['check', path])['check-errors'], 0);
  });

  it('says what is wrong with the file: missing, not qcow2, too small, in use, not writable', async () => {
    await assert.rejects(openQcow2Writer(join(dir, 'nope.qcow2'), MiB), isError('not-found', /nope\.qcow2 does not exist/));
    const notQcow2 = join(dir, 'plain.raw');
    await writeFile(notQcow2, Buffer.alloc(MiB));
    await assert.rejects(openQcow2Writer(notQcow2, MiB), isError('data', /plain\.raw is not a qcow2 image/));
    const small = placeholder('small.qcow2', MiB);
    await assert.rejects(openQcow2Writer(small, 2 * MiB), isError('capacity', /virtual size of 1048576 bytes, the disk needs 2097152/));
    const busy = await openQcow2Writer(small, MiB);
    await assert.rejects(openQcow2Writer(small, MiB), isError('conflict', /small\.qcow2 is in use by another process/));
    await assert.rejects(qcow2Allocated(small), isError('conflict', /in use/));
    await busy.close();
    // Root writes anything but an immutable file.
    if (spawnSync('chattr', ['+i', small]).status === 0) {
      try {
        await assert.rejects(openQcow2Writer(small, MiB), isError('auth', /cannot write the image file .*small\.qcow2/));
      } finally {
        spawnSync('chattr', ['-i', small]);
      }
    }
  });

  it('qemu-nbd exits with oneswap, even when oneswap is killed; the image stays consistent', async () => {
    const path = placeholder('orphan.qcow2', 16 * MiB);
    const idle = placeholder('idle.qcow2', 16 * MiB);
    const lib = (file: string): string => JSON.stringify(new URL(`../../lib/output/${file}`, import.meta.url).pathname);
    const script = join(dir, 'holder.mts');
    // Two servers: one written through, one started the way the writers start it but never
    // connected to (as while qemu opens an image), which only the parent-death signal ends.
    await writeFile(
      script,
      `import { openQcow2Writer } from ${lib('qcow2-target.ts')};
       import { spawnQemuNbd } from ${lib('qemu-nbd.ts')};
       const w = await openQcow2Writer(${JSON.stringify(path)}, ${16 * MiB});
       await w.write(Buffer.alloc(${MiB}, 7), 0);
       spawnQemuNbd({ filename: ${JSON.stringify(idle)}, format: 'qcow2', cache: 'none' }, ${JSON.stringify(join(dir, 'idle.sock'))}, 1);
       process.stdout.write('ready\\n');
       setInterval(() => {}, 1000);`,
    );
    // Killed, it cannot remove its socket directories: they go with ours.
    const holder = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TMPDIR: dir } });
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      holder.once('exit', () => reject(new Error('the holder exited early')));
    });
    await until('both servers to run', async () => (await qemuNbdCmdlines(path)).length + (await qemuNbdCmdlines(idle)).length === 2, 5000);
    const servers = [...(await qemuNbdCmdlines(path)), ...(await qemuNbdCmdlines(idle))];
    holder.kill('SIGKILL');
    await until('qemu-nbd to exit', () => servers.every((s) => !alive(s.pid)), 10_000);
    for (const file of [path, idle]) {
      const check = qemuImgJson<{ 'check-errors': number; corruptions?: number }>(['check', file]);
      assert.equal(check['check-errors'], 0);
      assert.equal(check.corruptions ?? 0, 0);
    }
  });

  it('compressed clusters: the file made afresh, whole clusters while written, cut to the disk after; the same bytes, check clean, every data cluster compressed but the one zlib cannot shrink', async () => {
    const size = 6 * MiB + 3 * 512;
    const text = (start: number, length: number, into: Buffer): void => {
      for (let i = start; i < start + length; i++) into[i] = 'a disk of text compresses well. '.charCodeAt(i % 32);
    };
    const disk = Buffer.alloc(size);
    text(5000, 200_000, disk);
    text(2 * MiB + 7, 3 * CLUSTER, disk);
    randomFillSync(disk, 3 * MiB, CLUSTER);
    text(size - 700, 700, disk);
    const path = join(dir, 'compressed.qcow2');
    await writeFile(path, 'what was here before');
    const writer = await openCompressedQcow2Writer(path, size);
    assert.deepEqual([writer.size, writer.blockSize], [size, CLUSTER]);
    // The engine finds zeros per 4 KiB: the clusters it sends in parts are assembled.
    const t = Date.now();
    await copyInto(writer, disk);
    await writer.close();
    process.stderr.write(`compressed qcow2: ${size} bytes copied in ${Date.now() - t} ms\n`);

    assert.equal(qemuImgJson<{ 'virtual-size': number }>(['info', path])['virtual-size'], size, 'cut to the disk');
    const dataClusters = Math.ceil(usedUnits(disk, CLUSTER) / CLUSTER);
    const check = qemuImgJson<{ 'check-errors': number; 'allocated-clusters': number; 'compressed-clusters': number; leaks?: number; corruptions?: number }>(['check', path]);
    assert.deepEqual(
      [check['check-errors'], check.leaks ?? 0, check.corruptions ?? 0, check['allocated-clusters'], check['compressed-clusters']],
      [0, 0, 0, dataClusters, dataClusters - 1],
    );
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, join(dir, 'compressed.raw')]);
    assert.equal(sha(await readFile(join(dir, 'compressed.raw'))), sha(disk));
    assert.ok((await stat(path)).size < 2 * MiB, 'the text takes little room');

    // Opened again, it starts over: a compressed cluster is written once.
    const again = await openCompressedQcow2Writer(path, size);
    await again.write(Buffer.alloc(CLUSTER, 0x41), CLUSTER);
    await again.flush();
    await again.close();
    const after = qemuImgJson<{ 'check-errors': number; 'allocated-clusters': number; 'compressed-clusters': number }>(['check', path]);
    assert.deepEqual([after['check-errors'], after['allocated-clusters'], after['compressed-clusters']], [0, 1, 1]);
    assert.equal(await qcow2Allocated(path), CLUSTER);
  });

  it('a write longer than the server takes in one request is split', async () => {
    const path = placeholder('long.qcow2', 48 * MiB);
    const writer = await openQcow2Writer(path, 48 * MiB, { connections: 2 });
    const long = diskImage(40 * MiB, [[0, 40 * MiB]]);
    await writer.write(long, MiB + 512);
    await writer.flush();
    await writer.close();
    const raw = join(dir, 'long.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, raw]);
    const back = await readFile(raw);
    assert.equal(sha(back.subarray(MiB + 512, 41 * MiB + 512)), sha(long));
    assert.ok(back.subarray(0, MiB + 512).every((b) => b === 0));
  });
});

describe('RBD image as a copy target', { skip: cephSkip({ mgr: true }) }, () => {
  let ceph: Ceph;
  let dir: string;
  const data = diskImage(SIZE, ISLANDS);
  let n = 0;
  /** A new image of `bytes` rounded up to whole MiB, as OpenNebula creates a placeholder. */
  const placeholder = async (bytes = SIZE, pool = 'one'): Promise<string> => {
    const image = `img-${++n}`;
    await ceph.rbd(['create', '--size', String(Math.ceil(bytes / MiB)), `${pool}/${image}`]);
    return image;
  };
  const location = (image: string, pool = 'one') => ({ pool, image, user: ceph.user, conf: ceph.conf, keyfile: ceph.keyring });
  const rbdSize = async (image: string): Promise<number> => (JSON.parse(await ceph.rbd(['info', '--format', 'json', `one/${image}`])) as { size: number }).size;
  const rbdUsed = async (image: string): Promise<number> => {
    const du = JSON.parse(await ceph.rbd(['du', '--format', 'json', `one/${image}`])) as { images: Array<{ name: string; used_size: number }> };
    return du.images.find((i) => i.name === image)!.used_size;
  };
  const rbdExport = async (image: string): Promise<Buffer> => {
    const out = join(dir, `${image}.raw`);
    await ceph.rbd(['export', `one/${image}`, out]);
    const b = await readFile(out);
    await rm(out);
    return b;
  };

  let quotaWriter: TargetWriter;

  before(async () => {
    ceph = await startCeph({ mgr: true });
    process.stderr.write(`ceph peer: HEALTH_OK after ${ceph.startMs} ms\n`);
    dir = await mkdtemp(join(tmpdir(), 'oneswap-rbd-target-'));
    // A pool over its quota, with a writer open on it, for the quota test: the monitors take a
    // few seconds to flag it, which the tests before that one use.
    await ceph.ceph(['config', 'set', 'mgr', 'mgr_stats_period', '1']);
    await ceph.ceph(['osd', 'pool', 'create', 'tiny', '8', '8']);
    await ceph.rbd(['pool', 'init', 'tiny']);
    const image = await placeholder(64 * MiB, 'tiny');
    quotaWriter = await openRbdWriter({ ...location(image, 'tiny'), size: 64 * MiB, timeouts: { operationSeconds: 3 } });
    await quotaWriter.write(Buffer.alloc(8 * MiB, 1), 0);
    await quotaWriter.flush();
    await ceph.ceph(['osd', 'pool', 'set-quota', 'tiny', 'max_bytes', String(4 * MiB)]);
  });
  after(async () => {
    await quotaWriter?.close();
    if (ceph) process.kill(ceph.pids.osd, 'SIGCONT');
    await ceph?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the copy engine fills an RBD image: exact size and bytes, only data objects used, no key on any command line', async () => {
    const image = await placeholder();
    assert.equal(await rbdSize(image), 81 * MiB, 'OpenNebula rounds the placeholder up to MiB');
    const writer = await openRbdWriter({ ...location(image), size: SIZE });
    assert.equal(writer.name, `rbd one/${image}`);

    // qemu-nbd's command line names the user and a private conf; the key is in neither.
    const [server] = await qemuNbdCmdlines(image);
    assert.ok(server, 'qemu-nbd serves the image');
    const keyring = await readFile(ceph.keyring, 'utf8');
    const key = /key = (\S+)/.exec(keyring)![1]!;
    const cmdline = server.argv.join(' ');
    assert.ok(!cmdline.includes(key), 'no key on the command line');
    assert.ok(!(await readFile(`/proc/${server.pid}/environ`, 'utf8')).includes(key), 'nor in its environment');
    const conf = /"conf":"([^"]+)"/.exec(cmdline)![1]!;
    assert.equal((await stat(conf)).mode & 0o777, 0o600);
    assert.equal((await stat(join(conf, '..'))).mode & 0o777, 0o700);
    assert.match(await readFile(conf, 'utf8'), new RegExp(`\\[client\\.admin\\]\\nkeyring = ${ceph.keyring}\\n`));

    const t = Date.now();
    const stats = await copyInto(writer, data);
    await writer.close();
    process.stderr.write(`rbd: ${SIZE} bytes copied in ${Date.now() - t} ms\n`);
    await assert.rejects(stat(conf), /ENOENT/, 'the private conf is removed with the writer');
    assert.equal((await qemuNbdCmdlines(image)).length, 0, 'qemu-nbd has exited');

    assert.equal(stats.bytesWritten, usedUnits(data, BLOCK));
    assert.equal(await rbdSize(image), SIZE, 'the image is exactly the disk');
    assert.equal(sha(await rbdExport(image)), sha(data));
    // rbd du counts whole objects (fast-diff), the last one up to the image's end.
    assert.equal(await rbdUsed(image), usedUnits(data, OBJECT));
  });

  it('zero() over written data reads back zeros; whole objects are freed', async () => {
    const image = await placeholder(16 * MiB);
    const writer = await openRbdWriter({ ...location(image), size: 16 * MiB });
    await writer.write(Buffer.alloc(16 * MiB, 0x5a), 0);
    await writer.flush();
    assert.equal(await rbdUsed(image), 16 * MiB);
    // Object 1 whole, and part of object 3.
    await writer.zero([{ start: OBJECT, length: OBJECT }, { start: 3 * OBJECT + 4 * KiB, length: 64 * KiB }]);
    await writer.flush();
    await writer.close();
    const back = await rbdExport(image);
    const expect = Buffer.alloc(16 * MiB, 0x5a);
    expect.fill(0, OBJECT, 2 * OBJECT);
    expect.fill(0, 3 * OBJECT + 4 * KiB, 3 * OBJECT + 68 * KiB);
    assert.equal(sha(back), sha(expect));
    assert.equal(await rbdUsed(image), 12 * MiB, 'the discarded object is gone; the partly zeroed one stays');
  });

  it('an overlay on the access as backing file commits into the RBD image; the access outlives the writer', async () => {
    const image = await placeholder(8 * MiB);
    const access = await openRbdAccess(location(image));
    try {
      const writer = await openRbdAccessWriter(access, 8 * MiB);
      await writer.write(Buffer.alloc(64 * KiB, 0xaa), 0);
      await writer.flush();
      await writer.close();
      assert.equal((await stat(access.conf)).mode & 0o777, 0o600, 'the access keeps its conf after the writer closed');
      assert.equal(access.qemu.format, 'raw');
      assert.match(access.qemu.filename, /^json:\{"driver":"raw","file":\{"driver":"rbd","pool":"one","image":"img-\d+","user":"admin","conf":"[^"]+"\}\}$/);
      const overlay = join(dir, 'overlay.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', access.qemu.filename, '-F', access.qemu.format, overlay]);
      execFileSync('qemu-io', ['-c', 'write -P 0x55 1M 64k', overlay]);
      execFileSync('qemu-img', ['commit', '-q', overlay]);
    } finally {
      await access.dispose();
    }
    await assert.rejects(stat(access.conf), /ENOENT/);
    const back = await rbdExport(image);
    assert.deepEqual([back[0], back[64 * KiB], back[MiB], back[MiB + 64 * KiB - 1], back[MiB + 64 * KiB]], [0xaa, 0, 0x55, 0x55, 0]);
  });

  it('tells what to fix: wrong key, missing pool, missing image, unreachable monitors', async () => {
    const image = await placeholder(MiB);
    const badKey = join(dir, 'wrong.key');
    await writeFile(badKey, execFileSync('ceph-authtool', ['--gen-print-key'], { encoding: 'utf8' }), { mode: 0o600 });
    await assert.rejects(openRbdWriter({ ...location(image), keyfile: badKey, size: MiB }), isError('auth', /Ceph refused client\.admin with the key in \S+wrong\.key \(for rbd one\/img-\d+\)/));
    await assert.rejects(openRbdWriter({ ...location(image, 'nopool'), size: MiB }), isError('not-found', /the Ceph pool nopool does not exist/));
    await assert.rejects(openRbdWriter({ ...location('nope'), size: MiB }), isError('not-found', /the RBD image one\/nope does not exist/));
    const deadConf = join(dir, 'ceph.conf');
    await writeFile(deadConf, (await readFile(ceph.conf, 'utf8')).replace(/^mon host = .*$/m, 'mon host = 127.0.0.1:1'));
    const t = Date.now();
    await assert.rejects(
      openRbdWriter({ ...location(image), conf: deadConf, size: MiB, timeouts: { connectSeconds: 3 } }),
      isError('connection', /cannot reach the Ceph monitors named in .*ceph\.conf/),
    );
    assert.ok(Date.now() - t < 10_000, `gave up after ${Date.now() - t} ms`);
    assert.equal((await qemuNbdCmdlines('nopool')).length + (await qemuNbdCmdlines(deadConf)).length, 0, 'no qemu-nbd left');
  });

  it('a pool at its quota is told as such', async () => {
    try {
      // Flagged by the monitors once the manager reports the pool's usage (set up in before()).
      await until('the pool to be flagged full', async () => /full_quota/.test(await ceph.ceph(['osd', 'pool', 'ls', 'detail'])), 30_000);
      await assert.rejects(
        (async () => {
          await quotaWriter.write(Buffer.alloc(4 * MiB, 2), 32 * MiB);
          await quotaWriter.flush();
        })(),
        isError('capacity', /the Ceph pool tiny has reached its quota \(writing rbd tiny\/img-\d+\)/),
      );
    } finally {
      // Closing releases the image's lock, a write Ceph would hold back too until it timed out.
      await ceph.ceph(['osd', 'pool', 'set-quota', 'tiny', 'max_bytes', '0']);
      await quotaWriter.close();
    }
  });

  it('an OSD that stops answering fails the write with a connection error, not a hang', async () => {
    const image = await placeholder(8 * MiB);
    const writer = await openRbdWriter({ ...location(image), size: 8 * MiB, timeouts: { operationSeconds: 3 } });
    process.kill(ceph.pids.osd, 'SIGSTOP');
    try {
      const t = Date.now();
      await assert.rejects(
        (async () => {
          await writer.write(Buffer.alloc(MiB, 3), 0);
          await writer.flush();
        })(),
        isError('connection', /Ceph did not complete a write to rbd one\/img-\d+/),
      );
      assert.ok(Date.now() - t < 30_000, `failed after ${Date.now() - t} ms`);
    } finally {
      process.kill(ceph.pids.osd, 'SIGCONT');
      await writer.close();
    }
  });
});
