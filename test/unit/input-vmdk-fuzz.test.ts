// Damaged inputs: truncations and bit flips at many offsets of a small streamOptimized VMDK, a
// monolithicSparse one, and an OVA (tar) holding a VMDK and its manifest. Every case must either
// decode or fail with a OneswapError (never an internal one, never a crash), within a few seconds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OneswapError } from '../../lib/errors/index.js';
import { wholeFile } from '../../lib/input/source-file.js';
import { findMember, readTarIndex } from '../../lib/input/tar-index.js';
import { parseManifest } from '../../lib/input/manifest.js';
import { openVmdk, type VmdkImage } from '../../lib/input/vmdk-image.js';
import { decodeVmdk } from '../../lib/input/vmdk-decode.js';
import { openFileWriter } from '../../lib/output/file-target.js';
import type { FileDigest } from '../../lib/input/source-file.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = MiB + 1536;
const CASE_TIMEOUT_MS = 5000;
/** Targets larger than this (a damaged capacity) are not created: opening is what is tested then. */
const MAX_TARGET = 256 * MiB;

function rawImage(): Buffer {
  const buf = Buffer.alloc(SIZE);
  let x = 4242;
  const islands: Array<[number, number, boolean]> = [
    [0, 5000, true],
    [200_000, 140_000, false],
    [600_000, 70_000, true],
    [SIZE - 700, 700, true],
  ];
  for (const [start, len, random] of islands) {
    for (let i = start; i < start + len; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      buf[i] = random ? x >>> 24 : 'lorem ipsum dolor sit amet, '.charCodeAt(i % 28);
    }
  }
  return buf;
}

/** Offsets spread over [0, n), plus the given ones; deterministic. */
function offsets(n: number, count: number, extra: number[], seed: number): number[] {
  const set = new Set(extra.filter((o) => o >= 0 && o < n));
  let x = seed;
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    set.add(i % 2 === 0 ? Math.floor((i / count) * n) : x % n);
  }
  return [...set].sort((a, b) => a - b);
}

type Outcome = 'ok' | string;

async function bounded(what: string, run: () => Promise<void>): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${CASE_TIMEOUT_MS} ms (a hang)`)), CASE_TIMEOUT_MS);
  });
  try {
    await Promise.race([run(), timeout]);
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof OneswapError, `${what}: threw something else than a OneswapError: ${err instanceof Error ? err.stack : String(err)}`);
    assert.notEqual(err.kind, 'internal', `${what}: internal error: ${err.message}`);
    assert.ok(!err.message.includes('\n'), `${what}: message on one line`);
    return err.kind;
  } finally {
    clearTimeout(timer);
  }
}

async function decodeInto(img: VmdkImage, target: string, digests?: ReadonlyMap<string, FileDigest>): Promise<void> {
  if (img.capacityBytes > MAX_TARGET) return;
  await writeFile(target, '');
  await truncate(target, img.capacityBytes);
  try {
    const writer = await openFileWriter(target, img.capacityBytes);
    try {
      await decodeVmdk(img, { target: writer, signal: new AbortController().signal, ...(digests ? { digests } : {}) });
    } finally {
      await writer.close();
    }
  } finally {
    await rm(target, { force: true });
  }
}

async function vmdkCase(dir: string, bytes: Buffer, what: string): Promise<Outcome> {
  const path = join(dir, 'case.vmdk');
  await writeFile(path, bytes);
  return bounded(what, async () => {
    const img = await openVmdk(await wholeFile(path), () => {
      throw new OneswapError('not-found', 'no extents here');
    });
    await decodeInto(img, join(dir, 'target.raw'));
  });
}

async function ovaCase(dir: string, bytes: Buffer, what: string): Promise<Outcome> {
  const path = join(dir, 'case.ova');
  await writeFile(path, bytes);
  return bounded(what, async () => {
    const members = await readTarIndex(path);
    const mf = findMember(members, 'vm.mf');
    const disk = findMember(members, 'disk1.vmdk');
    if (mf === undefined || disk === undefined) throw new OneswapError('data', 'a member is missing');
    const fh = await open(path, 'r');
    const text = Buffer.alloc(Math.min(mf.size, 64 * KiB));
    await fh.read(text, 0, text.length, mf.offset);
    await fh.close();
    const digests = parseManifest(text.toString('utf8'), 'vm.mf');
    const img = await openVmdk(disk, () => {
      throw new OneswapError('not-found', 'no extents here');
    });
    await decodeInto(img, join(dir, 'target.raw'), digests);
  });
}

/** Byte offsets of a stream's grain markers. */
function markerOffsets(b: Buffer): number[] {
  const out: number[] = [];
  for (let p = Number(b.readBigUInt64LE(64)) * 512; p + 16 <= b.length; ) {
    const size = b.readUInt32LE(p + 8);
    if (size === 0) break;
    out.push(p);
    p = Math.ceil((p + 12 + size) / 512) * 512;
  }
  return out;
}

test('damaged VMDKs and OVAs: a decode or a OneswapError, never a crash or a hang', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-fuzz-'));
  try {
    const raw = join(dir, 'src.raw');
    const good = rawImage();
    await writeFile(raw, good);
    const build = (subformat: string, out: string): void => {
      execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${subformat}`, raw, out], { stdio: ['ignore', 'ignore', 'pipe'] });
    };
    const pkg = join(dir, 'pkg');
    execFileSync('mkdir', [pkg]);
    build('streamOptimized', join(pkg, 'disk1.vmdk'));
    build('monolithicSparse', join(dir, 'sparse.vmdk'));
    const stream = await readFile(join(pkg, 'disk1.vmdk'));
    const sparse = await readFile(join(dir, 'sparse.vmdk'));
    await writeFile(join(pkg, 'vm.ovf'), '<Envelope/>\n');
    await writeFile(join(pkg, 'vm.mf'), `SHA256(disk1.vmdk)= ${createHash('sha256').update(stream).digest('hex')}\n`);
    execFileSync('tar', ['--format=ustar', '-cf', join(dir, 'vm.ova'), '-C', pkg, 'vm.ovf', 'vm.mf', 'disk1.vmdk']);
    const ova = await readFile(join(dir, 'vm.ova'));

    // The undamaged inputs decode.
    assert.equal(await vmdkCase(dir, stream, 'stream as is'), 'ok');
    assert.equal(await vmdkCase(dir, sparse, 'sparse as is'), 'ok');
    assert.equal(await ovaCase(dir, ova, 'ova as is'), 'ok');

    // Places worth hitting: header fields, the embedded descriptor, grain directory and tables,
    // grain markers and their compressed bytes, the last bytes; tar headers.
    const marks = markerOffsets(stream);
    const streamSpots = [4, 8, 9, 12, 20, 28, 36, 44, 56, 64, 73, 77, 512, 600, 700, ...marks.flatMap((m) => [m, m + 3, m + 8, m + 12, m + 40]), stream.length - 1];
    const gd = Number(sparse.readBigUInt64LE(56)) * 512;
    const gt = sparse.readUInt32LE(gd) * 512;
    const sparseSpots = [4, 8, 12, 20, 44, 56, 64, 600, gd, gd + 1, gd + 3, gt, gt + 4, gt + 7, gt + 12, 65536, sparse.length - 1];
    const ovaSpots = [0, 100, 124, 148, 156, 257, 345, 512, 1024, 1536, 1536 + 124, 2048, 2560, 2560 + 124, 2560 + 148, 3072, 3072 + 12, ova.length - 1];
    // A cut before this byte removes data the disk needs (after it: padding, end-of-archive blocks).
    const diskMember = findMember(await readTarIndex(join(dir, 'vm.ova')), 'disk1.vmdk')!;
    const inputs: Array<{ name: string; bytes: Buffer; spots: number[]; needed: number; run: (b: Buffer, what: string) => Promise<Outcome> }> = [
      { name: 'streamOptimized', bytes: stream, spots: streamSpots, needed: marks[marks.length - 1]! + 12, run: (b, w) => vmdkCase(dir, b, w) },
      { name: 'monolithicSparse', bytes: sparse, spots: sparseSpots, needed: sparse.length - 65536, run: (b, w) => vmdkCase(dir, b, w) },
      { name: 'OVA', bytes: ova, spots: ovaSpots, needed: diskMember.offset + diskMember.size, run: (b, w) => ovaCase(dir, b, w) },
    ];
    const tally = new Map<string, number>();
    const count = (k: string): void => void tally.set(k, (tally.get(k) ?? 0) + 1);
    let seed = 7;
    for (const input of inputs) {
      const n = input.bytes.length;
      for (const at of offsets(n, 40, [0, 1, 511, 512, 513, 65536, n - 512, n - 1, ...input.spots], seed++)) {
        const outcome = await input.run(input.bytes.subarray(0, at), `${input.name} cut at ${at}`);
        if (at < input.needed) assert.notEqual(outcome, 'ok', `${input.name} cut at ${at} decoded without an error`);
        count(`${input.name} cut: ${outcome}`);
      }
      for (const at of offsets(n, 60, input.spots, seed++)) {
        for (const bit of [0, 5, 7]) {
          const b = Buffer.from(input.bytes);
          b[at] = b[at]! ^ (1 << bit);
          count(`${input.name} flip: ${await input.run(b, `${input.name} bit ${bit} of byte ${at} flipped`)}`);
        }
      }
    }
    process.stderr.write(`fuzz outcomes: ${JSON.stringify(Object.fromEntries(tally))}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
