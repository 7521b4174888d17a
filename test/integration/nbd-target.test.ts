// The copy engine writing through qemu-nbd into a qcow2 placeholder. Each byte lands once and
// only data is allocated; zeroing deallocates; the file's failures read as what to fix; qemu-nbd
// never outlives oneswap.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyExtents, type RangeSource, type TargetWriter } from '../../lib/copy/index.js';
import { OneswapError } from '../../lib/errors/index.js';
import { openQcow2Writer, qcow2Allocated, qcow2Image } from '../../lib/output/qcow2-target.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB; // the engine's zero-detection block
const CLUSTER = 64 * KiB; // qemu-img create's default qcow2 cluster

/** 80 MiB + 12 KiB: not a whole MiB, not a whole cluster. */
const SIZE = 80 * MiB + 12 * KiB;
/** Data islands [start, length): unaligned, across cluster edges, one in the last cluster. */
const ISLANDS: ReadonlyArray<readonly [number, number]> = [
  [0, 100],
  [3 * MiB + 5000, 2 * MiB + 333],
  [4 * MiB - 10, 20],
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
    const script = join(dir, 'holder.mts');
    const target = new URL('../../lib/output/qcow2-target.ts', import.meta.url).pathname;
    await writeFile(
      script,
      `import { openQcow2Writer } from ${JSON.stringify(target)};
       const w = await openQcow2Writer(${JSON.stringify(path)}, ${16 * MiB});
       await w.write(Buffer.alloc(${MiB}, 7), 0);
       process.stdout.write('ready\\n');
       setInterval(() => {}, 1000);`,
    );
    const holder = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      holder.once('exit', () => reject(new Error('the holder exited early')));
    });
    const [server] = await qemuNbdCmdlines(path);
    assert.ok(server, 'qemu-nbd serves the file');
    holder.kill('SIGKILL');
    await until('qemu-nbd to exit', () => !alive(server.pid), 10_000);
    const check = qemuImgJson<{ 'check-errors': number; corruptions?: number }>(['check', path]);
    assert.equal(check['check-errors'], 0);
    assert.equal(check.corruptions ?? 0, 0);
  });
});
