// The streaming decode of a streamOptimized VMDK (an export lease's body): qemu-img makes the
// streams from raw images with known data and holes; they are fed as chunked streams with odd
// chunk sizes, into a fresh target (whole disk) or into one holding older data (planned areas).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OneswapError } from '../../lib/errors/index.js';
import { decodeVmdkStream, type StreamDecodeOptions, type StreamDecodeStats } from '../../lib/input/vmdk-decode.js';
import type { TargetWriter } from '../../lib/copy/index.js';
import type { Extent } from '../../lib/extents/index.js';
import { openFileWriter } from '../../lib/output/file-target.js';
import { MemoryTarget, zeroBlocksWritten } from '../support/memory-target.js';
import { withTempDir } from '../support/temp-dir.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GRAIN = 64 * KiB;
/** Not a whole number of grains: the last grain is cut. */
const SIZE = 6 * MiB + 3 * 512;

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function fill(buf: Buffer, start: number, length: number, seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = start; i < start + length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    buf[i] = x >>> 24 || 1;
  }
}

/** Old disk: data islands (one compressible), holes elsewhere. */
function oldDisk(): Buffer {
  const b = Buffer.alloc(SIZE);
  fill(b, 0, 4096, 1);
  fill(b, 100_000, 200_000, 2);
  for (let i = MiB + 12_345; i < MiB + 82_345; i++) b[i] = 'the quick brown fox '.charCodeAt(i % 20);
  fill(b, 3 * MiB, GRAIN, 3);
  fill(b, 4 * MiB, 300_000, 4);
  fill(b, SIZE - 1000, 1000, 5);
  return b;
}

/** The same disk later: one area rewritten, one zeroed (a trim), one new, one changed mid-grain. */
const CHANGES: Array<{ area: Extent; change: (b: Buffer) => void }> = [
  { area: { start: 128 * KiB, length: 128 * KiB }, change: (b) => fill(b, 130 * KiB, 100 * KiB, 11) },
  { area: { start: 3 * MiB, length: GRAIN }, change: (b) => b.fill(0, 3 * MiB, 3 * MiB + GRAIN) },
  { area: { start: 5 * MiB, length: 200 * KiB }, change: (b) => fill(b, 5 * MiB + 4096, 150 * KiB, 12) },
  // Not on grain boundaries: only these bytes of the grains around them are planned.
  { area: { start: 4 * MiB + 20_000, length: 9000 }, change: (b) => fill(b, 4 * MiB + 20_000, 9000, 13) },
  { area: { start: SIZE - 1000, length: 1000 }, change: (b) => b.fill(0, SIZE - 1000, SIZE - 500) },
];

function newDisk(old: Buffer): Buffer {
  const b = Buffer.from(old);
  for (const c of CHANGES) c.change(b);
  return b;
}

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  return withTempDir('oneswap-vmdk-stream-', fn);
}

/** The raw bytes as a streamOptimized VMDK (qemu-img, as the simulator serves lease disks). */
async function streamVmdk(dir: string, raw: Buffer): Promise<Buffer> {
  const src = join(dir, `src-${Math.random().toString(36).slice(2)}.raw`);
  const out = `${src}.vmdk`;
  await writeFile(src, raw);
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, out], { stdio: ['ignore', 'ignore', 'pipe'] });
  const vmdk = await readFile(out);
  await rm(src);
  await rm(out);
  return vmdk;
}

const ODD = [1, 7, 511, 4099, 65_537, 13, 1_000_003, 333_331];

/** The bytes in pieces of odd sizes, asynchronously, as a network body gives them. */
async function* chunked(buf: Buffer, sizes: readonly number[] = ODD): AsyncGenerator<Uint8Array> {
  let k = 0;
  for (let pos = 0; pos < buf.length; ) {
    const n = Math.min(sizes[k++ % sizes.length]!, buf.length - pos);
    await new Promise<void>((resolve) => setImmediate(resolve));
    yield buf.subarray(pos, pos + n);
    pos += n;
  }
}

async function target(dir: string, content?: Buffer): Promise<string> {
  const path = join(dir, `target-${Math.random().toString(36).slice(2)}.raw`);
  if (content === undefined) {
    await writeFile(path, '');
    await truncate(path, SIZE);
  } else await writeFile(path, content);
  return path;
}

function opts(target: TargetWriter, extra: Partial<StreamDecodeOptions> = {}): StreamDecodeOptions {
  return { name: 'disk-0 of VM t1', target, capacity: SIZE, areas: [{ start: 0, length: SIZE }], targetIsZero: true, signal: new AbortController().signal, ...extra };
}

/** decodeVmdkStream into the raw file `path`, opened and closed around it as the lease reader's callers do. */
async function streamInto(body: AsyncIterable<Uint8Array>, path: string, extra: Partial<StreamDecodeOptions> = {}): Promise<StreamDecodeStats> {
  const target = await openFileWriter(path, SIZE);
  try {
    return await decodeVmdkStream(body, opts(target, extra));
  } finally {
    await target.close();
  }
}

/** Bytes of non-zero 4 KiB blocks of `buf` inside `areas` (what the decode must write). */
function nonZeroBytes(buf: Buffer, areas: readonly Extent[]): number {
  let n = 0;
  for (const a of areas) {
    for (let b = Math.floor(a.start / 4096) * 4096; b < a.start + a.length; b += 4096) {
      const s = Math.max(b, a.start);
      const e = Math.min(b + 4096, a.start + a.length, buf.length);
      if (buf.subarray(s, e).some((x) => x !== 0)) n += e - s;
    }
  }
  return n;
}

function expectData(re: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof OneswapError, `a OneswapError, got ${String(err)}`);
    assert.equal(err.kind, 'data', err.message);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  };
}

test('a whole stream into a fresh target equals the source, holes kept, progress counted', async () => {
  await withDir(async (dir) => {
    const raw = oldDisk();
    const vmdk = await streamVmdk(dir, raw);
    for (const sizes of [ODD, [vmdk.length], [512], [3]]) {
      if (sizes[0] === 3 && vmdk.length > 4 * MiB) continue;
      const path = await target(dir);
      let last = { bytesDone: 0, bytesPlanned: 0, bytesWritten: 0 };
      const stats = await streamInto(chunked(vmdk, sizes), path, { onProgress: (p) => (last = p) });
      const out = await readFile(path);
      assert.equal(sha256(out), sha256(raw), `chunks of ${sizes.join(',')}`);
      assert.equal(stats.bytesRead, vmdk.length);
      assert.equal(stats.bytesPlanned, SIZE);
      assert.equal(stats.bytesWritten, nonZeroBytes(raw, [{ start: 0, length: SIZE }]));
      assert.deepEqual(last, { bytesDone: SIZE, bytesPlanned: SIZE, bytesWritten: stats.bytesWritten });
      // Holes stay holes: about the data, not the disk, is allocated.
      assert.ok((await stat(path)).blocks * 512 < 2 * MiB, 'the target stays sparse');
      await rm(path);
    }
  });
});

test('a delta into a target holding older data: each planned area equals the new disk, the rest is left alone', async () => {
  await withDir(async (dir) => {
    const old = oldDisk();
    const now = newDisk(old);
    const areas = CHANGES.map((c) => c.area);
    // Outside the areas the target holds bytes the stream does not have: they must stay.
    const before = Buffer.from(old);
    fill(before, 2 * MiB, 8192, 21);
    fill(before, 4 * MiB + 20_000 - 3000, 3000, 22);
    const path = await target(dir, before);
    const stats = await streamInto(chunked(await streamVmdk(dir, now)), path, { areas, targetIsZero: false });
    const out = await readFile(path);
    const expected = Buffer.from(before);
    for (const a of areas) now.copy(expected, a.start, a.start, a.start + a.length);
    assert.equal(sha256(out), sha256(expected));
    assert.equal(stats.bytesWritten, nonZeroBytes(now, areas));
    assert.equal(stats.bytesPlanned, areas.reduce((s, a) => s + a.length, 0));
    // And with areas covering every change, the target is the new disk.
    const path2 = await target(dir, old);
    await streamInto(chunked(await streamVmdk(dir, now), [65_536 + 17]), path2, { areas, targetIsZero: false });
    assert.equal(sha256(await readFile(path2)), sha256(now));
  });
});

test('into a target that is no file (an NBD export): planned areas zeroed first, the exact bytes, no zero block written, flushed last', async () => {
  await withDir(async (dir) => {
    const old = oldDisk();
    const now = newDisk(old);
    const areas = CHANGES.map((c) => c.area);
    const target = new MemoryTarget(SIZE, { content: old });
    const stats = await decodeVmdkStream(chunked(await streamVmdk(dir, now)), opts(target, { areas, targetIsZero: false }));
    assert.equal(sha256(target.bytes), sha256(now));
    assert.deepEqual(zeroBlocksWritten(target), []);
    assert.equal(stats.bytesWritten, nonZeroBytes(now, areas));
    const sorted = [...areas].sort((a, b) => a.start - b.start);
    assert.deepEqual(target.calls[0], { op: 'zero', areas: sorted }, 'the planned areas are zeroed before anything is written');
    assert.deepEqual(target.calls.slice(1, -1).map((c) => c.op).filter((op) => op !== 'write'), []);
    assert.deepEqual(target.calls.at(-1), { op: 'flush' }, 'flushed last, not closed');
    for (const w of target.written)
      assert.ok(sorted.some((a) => w.position >= a.start && w.position + w.data.length <= a.start + a.length), `write at ${w.position} inside a planned area`);

    // A fresh target is not zeroed; a failing write stops the decode with its error.
    const fresh = new MemoryTarget(SIZE);
    await decodeVmdkStream(chunked(await streamVmdk(dir, old)), opts(fresh));
    assert.ok(fresh.bytes.equals(old));
    assert.ok(!fresh.calls.some((c) => c.op === 'zero'));
    const gone = new OneswapError('connection', 'the NBD server closed the connection');
    const failing = new MemoryTarget(SIZE, { failAt: 1, error: gone });
    await assert.rejects(decodeVmdkStream(chunked(await streamVmdk(dir, old)), opts(failing)), (err) => err === gone);
    assert.equal(failing.inFlight, 0);
  });
});

test('a stream whose grain directory is at its end (VMware) needs its end-of-stream marker', async () => {
  await withDir(async (dir) => {
    const raw = oldDisk();
    const vmdk = await streamVmdk(dir, raw);
    // qemu puts the directory in the header; VMware writes GD_AT_END and the tables after the grains.
    const atEnd = Buffer.from(vmdk);
    atEnd.writeBigUInt64LE(0xffffffffffffffffn, 56);
    const path = await target(dir);
    await streamInto(chunked(atEnd), path);
    assert.equal(sha256(await readFile(path)), sha256(raw));
    const end = lastGrainEnd(atEnd);
    await assert.rejects(streamInto(chunked(atEnd.subarray(0, end)), await target(dir)), expectData(/^disk-0 of VM t1 is truncated: it ends at byte \d+ after \d+ grains, without its end-of-stream marker/));
  });
});

/** The byte after the last grain of a qemu stream (sector-aligned). */
function lastGrainEnd(vmdk: Buffer): number {
  let p = Number(vmdk.readBigUInt64LE(64)) * 512;
  let end = p;
  for (;;) {
    const size = vmdk.readUInt32LE(p + 8);
    if (size === 0) return end;
    p = Math.ceil((p + 12 + size) / 512) * 512;
    end = p;
  }
}

/** The byte of the first grain marker whose grain is at disk byte `diskPos`. */
function grainMarker(vmdk: Buffer, diskPos: number): number {
  let p = Number(vmdk.readBigUInt64LE(64)) * 512;
  for (;;) {
    const size = vmdk.readUInt32LE(p + 8);
    assert.ok(size > 0, `no grain at ${diskPos}`);
    if (Number(vmdk.readBigUInt64LE(p)) * 512 === diskPos) return p;
    p = Math.ceil((p + 12 + size) / 512) * 512;
  }
}

test('truncated and damaged streams fail with a one-line data error naming the disk', async () => {
  await withDir(async (dir) => {
    const raw = oldDisk();
    const vmdk = await streamVmdk(dir, raw);
    const run = async (bytes: Buffer): Promise<unknown> => streamInto(chunked(bytes), await target(dir));
    await assert.rejects(run(vmdk.subarray(0, 300)), expectData(/^disk-0 of VM t1 is truncated: it ends at byte 300, inside its 512-byte header/));
    await assert.rejects(run(Buffer.alloc(0)), expectData(/^disk-0 of VM t1 is truncated/));
    const g = grainMarker(vmdk, 4 * MiB);
    await assert.rejects(run(vmdk.subarray(0, g + 100)), expectData(/^disk-0 of VM t1 is truncated: the grain at byte \d+ needs \d+ bytes/));
    await assert.rejects(run(vmdk.subarray(0, g)), expectData(/^disk-0 of VM t1 is truncated: it ends at byte \d+ after \d+ of the \d+ grains its grain tables list/));
    await assert.rejects(run(vmdk.subarray(0, g + 5)), expectData(/^disk-0 of VM t1 is truncated: it ends at byte \d+, inside the marker at byte \d+/));
    // A grain placed outside the disk.
    const outside = Buffer.from(vmdk);
    outside.writeBigUInt64LE(BigInt((SIZE + 2 * GRAIN) / 512 - (((SIZE + 2 * GRAIN) / 512) % 128)), g);
    await assert.rejects(run(outside), expectData(/^disk-0 of VM t1 is damaged: the stream marker at byte \d+ describes a grain at sector \d+, beyond the disk's \d+ sectors/));
    // An unknown marker type.
    const badType = Buffer.from(vmdk);
    badType.fill(0, g, g + 512);
    badType.writeUInt32LE(9, g + 12);
    await assert.rejects(run(badType), expectData(/describes an unknown marker type 9/));
    // A corrupt compressed grain.
    const corrupt = Buffer.from(vmdk);
    corrupt.fill(0x55, g + 12, g + 40);
    await assert.rejects(run(corrupt), expectData(/corrupt compressed grain at byte \d+ of disk-0 of VM t1/));
    // Not a VMDK at all.
    await assert.rejects(run(randomBytes(4096)), expectData(/^disk-0 of VM t1 is not a streamOptimized VMDK/));
  });
});

test('the stream\'s own error comes through as it is; the signal stops a stream that hangs', async () => {
  await withDir(async (dir) => {
    const vmdk = await streamVmdk(dir, oldDisk());
    const cut = new OneswapError('connection', 'the connection was cut');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield vmdk.subarray(0, 3 * MiB);
      throw cut;
    }
    await assert.rejects(streamInto(failing(), await target(dir)), (err) => err === cut);
    const ac = new AbortController();
    const reason = new OneswapError('interrupted', 'stopped');
    async function* hanging(): AsyncGenerator<Uint8Array> {
      yield vmdk.subarray(0, MiB);
      setTimeout(() => ac.abort(reason), 50);
      await new Promise(() => undefined);
    }
    await assert.rejects(streamInto(hanging(), await target(dir), { signal: ac.signal }), (err) => err === reason);
  });
});
