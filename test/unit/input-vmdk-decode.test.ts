import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { OneswapError } from '../../lib/errors/index.js';
import { wholeFile, type FileDigest, type SourceFile } from '../../lib/input/source-file.js';
import { findMember, readTarIndex } from '../../lib/input/tar-index.js';
import { parseManifest } from '../../lib/input/manifest.js';
import { openVmdk, type VmdkImage } from '../../lib/input/vmdk-image.js';
import { decodeVmdk, type DecodeOptions, type DecodeStats } from '../../lib/input/vmdk-decode.js';
import { openFileWriter } from '../../lib/output/file-target.js';
import { wholeClusters } from '../../lib/output/whole-clusters.js';
import { MemoryTarget, zeroBlocksWritten } from '../support/memory-target.js';
import { withTempDir } from '../support/temp-dir.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GRAIN = 64 * KiB;

/** 5 MiB + 3 sectors (not a whole number of grains), data at both ends, a compressible island, holes elsewhere. */
const SIZE = 5 * MiB + 3 * 512;
const ISLANDS: Array<[number, number, 'random' | 'text']> = [
  [0, 4096, 'random'],
  [100_000, 200_000, 'random'],
  [MiB + 12_345, 70_000, 'text'],
  [3 * MiB, GRAIN, 'random'],
  [SIZE - 1000, 1000, 'random'],
];

function rawImage(): Buffer {
  const buf = Buffer.alloc(SIZE);
  let x = 987654321;
  for (const [start, len, kind] of ISLANDS) {
    for (let i = start; i < start + len; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      buf[i] = kind === 'random' ? x >>> 24 || 1 : 'the quick brown fox jumps over the lazy dog. '.charCodeAt(i % 45);
    }
  }
  return buf;
}
const RAW = rawImage();
const DATA_BYTES = ISLANDS.reduce((s, [, len]) => s + len, 0);

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  return withTempDir('oneswap-vmdk-', fn);
}

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The raw test image as a VMDK of `subformat` in `dir`; returns its path. */
async function makeVmdk(dir: string, subformat: string, name = `disk-${subformat}.vmdk`): Promise<string> {
  const raw = join(dir, 'src.raw');
  await writeFile(raw, RAW);
  const out = join(dir, name);
  qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${subformat},adapter_type=lsilogic`, raw, out);
  await rm(raw);
  return out;
}

/** A VMDK on disk whose extents are files beside it (what the folder reader does). */
async function openFile(path: string): Promise<VmdkImage> {
  const folder = dirname(path);
  return openVmdk(await wholeFile(path), (extent) => {
    const p = join(folder, extent);
    let size: number;
    try {
      size = statSync(p).size;
    } catch {
      throw new OneswapError('not-found', `extent ${extent} is not in ${folder}`);
    }
    return { name: extent, path: p, offset: 0, size };
  });
}

interface Decoded {
  readonly bytes: Buffer;
  readonly stats: DecodeStats;
  readonly allocated: number;
}

/** A fresh sparse placeholder of `size` bytes at `path`. */
async function placeholder(path: string, size: number): Promise<string> {
  await writeFile(path, '');
  await truncate(path, size);
  return path;
}

/** decodeVmdk into the raw file `path`, opened and closed around it as the callers do. */
async function decodeToFile(path: string, img: VmdkImage, opts: Omit<DecodeOptions, 'target'>): Promise<DecodeStats> {
  const target = await openFileWriter(path, img.capacityBytes);
  try {
    return await decodeVmdk(img, { ...opts, target });
  } finally {
    await target.close();
  }
}

async function decodeTo(dir: string, img: VmdkImage, opts: { digests?: ReadonlyMap<string, FileDigest>; signal?: AbortSignal; size?: number } = {}): Promise<Decoded> {
  const target = await placeholder(join(dir, `target-${Math.random().toString(36).slice(2)}.raw`), opts.size ?? img.capacityBytes);
  const stats = await decodeToFile(target, img, { signal: opts.signal ?? new AbortController().signal, ...(opts.digests ? { digests: opts.digests } : {}) });
  const bytes = await readFile(target);
  const allocated = (await stat(target)).blocks * 512;
  await rm(target);
  return { bytes, stats, allocated };
}

/** The decoded disk equals the raw image (qemu rounds nothing here: SIZE is whole sectors). */
function assertSameDisk(d: Decoded, img: VmdkImage): void {
  assert.equal(img.capacityBytes, SIZE);
  assert.equal(d.bytes.length, SIZE);
  assert.ok(d.bytes.equals(RAW), 'decoded bytes equal the raw image');
  // Data is written in 4 KiB blocks; holes stay holes.
  assert.ok(d.stats.bytesWritten >= DATA_BYTES && d.stats.bytesWritten <= DATA_BYTES + ISLANDS.length * 2 * 4096, `written ${d.stats.bytesWritten}`);
  assert.ok(d.allocated <= d.stats.bytesWritten + 64 * KiB, `allocated ${d.allocated} vs written ${d.stats.bytesWritten}`);
  assert.ok(d.allocated < SIZE / 2);
  assert.equal(d.stats.bytesRead, img.sourceBytes);
  assert.equal(d.stats.sourceBytes, img.sourceBytes);
}

function expectError(kind: string, re: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof OneswapError, `not a OneswapError: ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const SUBFORMATS = ['streamOptimized', 'monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat'] as const;

for (const subformat of SUBFORMATS) {
  test(`${subformat} from qemu-img decodes to the raw bytes, holes stay holes`, async () => {
    await withDir(async (dir) => {
      const img = await openFile(await makeVmdk(dir, subformat));
      assert.equal(img.subformat, subformat);
      assert.equal(img.adapterType, 'lsilogic');
      assert.equal(img.files[0]!.name, `disk-${subformat}.vmdk`);
      if (subformat.includes('Flat') || subformat === 'twoGbMaxExtentSparse') assert.ok(img.files.length >= 2, 'descriptor and extent files');
      let calls = 0;
      const target = await placeholder(join(dir, 'p.raw'), SIZE);
      const stats = await decodeToFile(target, img, { signal: new AbortController().signal, onProgress: () => calls++ });
      assert.ok(calls > 0);
      assert.equal(stats.bytesRead, img.sourceBytes);
      assertSameDisk(await decodeTo(dir, img), img);
    });
  });
}

test('into a target that is no file (an NBD export): the exact bytes, no zero block written, flushed last', async () => {
  await withDir(async (dir) => {
    for (const subformat of ['streamOptimized', 'monolithicSparse', 'monolithicFlat'] as const) {
      const img = await openFile(await makeVmdk(dir, subformat));
      const target = new MemoryTarget(SIZE);
      const stats = await decodeVmdk(img, { target, signal: new AbortController().signal });
      assert.ok(target.bytes.equals(RAW), `${subformat}: decoded bytes equal the raw image`);
      assert.deepEqual(zeroBlocksWritten(target), [], `${subformat}: holes stay holes`);
      assert.equal(stats.bytesWritten, target.written.reduce((n, w) => n + w.data.length, 0));
      assert.ok(stats.bytesWritten < DATA_BYTES + ISLANDS.length * 2 * 4096);
      assert.deepEqual(target.calls.filter((c) => c.op !== 'write'), [{ op: 'flush' }], `${subformat}: a fresh target is not zeroed, nor closed by the decoder`);
      assert.equal(target.calls.at(-1)?.op, 'flush', `${subformat}: flushed after the last write`);
      assert.ok(target.maxInFlight > 1 || target.written.length <= 1, `${subformat}: writes in parallel (${target.maxInFlight} at most)`);
    }
  });
});

/** MessagePorts keeping the process alive: a decode thread with work is one. */
const busyPorts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;

test('a failing target write stops the decode with its error; nothing is left running or written after it', async () => {
  await withDir(async (dir) => {
    const img = await openFile(await makeVmdk(dir, 'streamOptimized'));
    const full = new OneswapError('capacity', 'the pool holding one/one-7 is full', { hint: 'free space in the pool' });
    const idle = busyPorts();
    const target = new MemoryTarget(SIZE, { failAt: 2, error: full });
    await assert.rejects(decodeVmdk(img, { target, signal: new AbortController().signal }), (err) => err === full);
    assert.equal(target.inFlight, 0, 'no write in flight');
    assert.equal(busyPorts(), idle, 'no decode thread has work');
    assert.ok(!target.calls.some((c) => c.op === 'flush'), 'not flushed');
    const calls = target.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(target.calls.length, calls, 'no write after the decode stopped');
  });
});

test('ESXi "vmfs" descriptor with a VMFS extent', async () => {
  await withDir(async (dir) => {
    await writeFile(join(dir, 'esx-flat.vmdk'), RAW);
    await writeFile(join(dir, 'esx.vmdk'), `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="vmfs"\n\nRW ${SIZE / 512} VMFS "esx-flat.vmdk"\n\nddb.adapterType = "pvscsi"\n`);
    const img = await openFile(join(dir, 'esx.vmdk'));
    assert.deepEqual([img.subformat, img.adapterType], ['vmfs', 'pvscsi']);
    assertSameDisk(await decodeTo(dir, img), img);
  });
});

for (const format of ['ustar', 'pax', 'gnu'] as const) {
  test(`streamOptimized and monolithicSparse read straight out of a tar (--format=${format}), manifest checked`, async () => {
    await withDir(async (dir) => {
      const pkg = join(dir, 'pkg');
      execFileSync('mkdir', [pkg]);
      const stream = await makeVmdk(pkg, 'streamOptimized', 'disk1.vmdk');
      const sparse = await makeVmdk(pkg, 'monolithicSparse', 'disk2.vmdk');
      await writeFile(join(pkg, 'vm.ovf'), '<Envelope/>\n');
      const mf = `SHA256(disk1.vmdk)= ${sha256(await readFile(stream))}\nSHA1(disk2.vmdk)= ${createHash('sha1').update(await readFile(sparse)).digest('hex')}\n`;
      await writeFile(join(pkg, 'vm.mf'), mf);
      const ova = join(dir, 'vm.ova');
      execFileSync('tar', [`--format=${format}`, '-cf', ova, '-C', pkg, 'vm.ovf', 'vm.mf', 'disk1.vmdk', 'disk2.vmdk']);
      const members = await readTarIndex(ova);
      const digests = parseManifest(mf, 'vm.mf');
      for (const name of ['disk1.vmdk', 'disk2.vmdk']) {
        const m = findMember(members, name)!;
        assert.ok(m.offset > 0);
        const img = await openVmdk(m, () => assert.fail('no extents'));
        assert.deepEqual(img.files, [m]);
        assertSameDisk(await decodeTo(dir, img, { digests }), img);
      }
      // A manifest that does not match fails the decode, after the whole file was read.
      const wrong = new Map([['disk1.vmdk', { algorithm: 'sha256' as const, hex: '0'.repeat(64) }]]);
      const img = await openVmdk(findMember(members, 'disk1.vmdk')!, () => assert.fail('no extents'));
      await assert.rejects(decodeTo(dir, img, { digests: wrong }), expectError('data', /^checksum mismatch for disk1\.vmdk: the manifest says SHA256 0{64}, the file has [0-9a-f]{64}$/));
    });
  });
}

test('a flat VMDK and its extent as tar members; the descriptor is hashed too', async () => {
  await withDir(async (dir) => {
    const pkg = join(dir, 'pkg');
    execFileSync('mkdir', [pkg]);
    const desc = await makeVmdk(pkg, 'monolithicFlat', 'disk1.vmdk');
    const flat = join(pkg, 'disk1-flat.vmdk');
    const ova = join(dir, 'vm.ova');
    execFileSync('tar', ['--format=ustar', '-cf', ova, '-C', pkg, 'disk1.vmdk', 'disk1-flat.vmdk']);
    const members = await readTarIndex(ova);
    const resolve = (n: string): SourceFile => findMember(members, n) ?? assert.fail(`no member ${n}`);
    const img = await openVmdk(resolve('disk1.vmdk'), resolve);
    assert.deepEqual(img.files.map((f) => f.name), ['disk1.vmdk', 'disk1-flat.vmdk']);
    const digests = new Map<string, FileDigest>([
      ['disk1.vmdk', { algorithm: 'sha256', hex: sha256(await readFile(desc)) }],
      ['disk1-flat.vmdk', { algorithm: 'sha256', hex: sha256(await readFile(flat)) }],
    ]);
    assertSameDisk(await decodeTo(dir, img, { digests }), img);
    const bad = new Map(digests).set('disk1.vmdk', { algorithm: 'sha256', hex: 'f'.repeat(64) });
    await assert.rejects(decodeTo(dir, img, { digests: bad }), expectError('data', /checksum mismatch for disk1\.vmdk/));
  });
});

/** Patches bytes of a file in place. */
async function patch(path: string, at: number, bytes: Buffer | number[]): Promise<void> {
  const b = await readFile(path);
  Buffer.from(bytes).copy(b, at);
  await writeFile(path, b);
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

/** Grain markers of a stream: [byte, lba, size]. */
async function markers(path: string): Promise<Array<[number, number, number]>> {
  const b = await readFile(path);
  const out: Array<[number, number, number]> = [];
  for (let p = Number(b.readBigUInt64LE(64)) * 512; p + 16 <= b.length; ) {
    const size = b.readUInt32LE(p + 8);
    if (size === 0) break;
    out.push([p, Number(b.readBigUInt64LE(p)), size]);
    p = Math.ceil((p + 12 + size) / 512) * 512;
  }
  return out;
}

test('refused sparse headers: version, flags, grain size, capacity, GD and GT outside the file', async () => {
  await withDir(async (dir) => {
    const base = await makeVmdk(dir, 'monolithicSparse');
    const cases: Array<[string, number, Buffer, string, RegExp]> = [
      ['version', 4, u32(9), 'data', /uses sparse header version 9, which oneswap does not read/],
      ['flags', 8, u32(0x3 | 0x40), 'data', /uses sparse header flags 0x43/],
      ['compressed without markers', 8, u32(0x10003), 'data', /compressed grains without markers/],
      ['grain not a power of two', 20, u64(100n), 'data', /grain size of 100 sectors/],
      ['grain absurd', 20, u64(1n << 20n), 'data', /grain size of 1048576 sectors/],
      ['capacity absurd', 12, u64(1n << 40n), 'data', /absurd capacity/],
      ['GD outside', 56, u64(1n << 30n), 'data', /grain directory .* outside the file/],
      ['line endings', 73, Buffer.from('\n \n\n'), 'data', /line-ending check bytes were changed/],
    ];
    for (const [what, at, bytes, kind, re] of cases) {
      const path = join(dir, `${what.replace(/ /g, '-')}.vmdk`);
      await writeFile(path, await readFile(base));
      await patch(path, at, bytes);
      await assert.rejects(openFile(path), expectError(kind, re), what);
    }
    // A grain table outside the file: the first directory entry.
    const gt = join(dir, 'gt.vmdk');
    await writeFile(gt, await readFile(base));
    const gdSector = Number((await readFile(gt)).readBigUInt64LE(56));
    await patch(gt, gdSector * 512, u32(0x7fffffff));
    await assert.rejects(openFile(gt), expectError('data', /grain table 0 \(at sector 2147483647\) lies outside the file/));
  });
});

test('refused: COWD, seSparse, vmfsSparse, snapshot deltas, unknown subformats, raw devices, not a VMDK', async () => {
  await withDir(async (dir) => {
    const w = async (name: string, data: string | Buffer): Promise<string> => {
      await writeFile(join(dir, name), data);
      return join(dir, name);
    };
    const cowd = Buffer.alloc(2048);
    cowd.write('COWD', 0, 'latin1');
    await assert.rejects(openFile(await w('delta.vmdk', cowd)), expectError('data', /delta\.vmdk is a vmfsSparse \(COWD\) snapshot delta disk/));
    await w('x-flat.vmdk', Buffer.alloc(4096));
    const desc = (createType: string, extent: string, parent = 'ffffffff'): string =>
      `# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=${parent}\ncreateType="${createType}"\n\n${extent}\n`;
    await assert.rejects(openFile(await w('se.vmdk', desc('seSparse', 'RW 8 SESPARSE "x-sesparse.vmdk"'))), expectError('data', /se\.vmdk is a seSparse snapshot delta disk/));
    await assert.rejects(openFile(await w('vs.vmdk', desc('vmfsSparse', 'RW 8 VMFSSPARSE "x-delta.vmdk"'))), expectError('data', /vs\.vmdk is a vmfsSparse snapshot delta disk/));
    await assert.rejects(openFile(await w('child.vmdk', desc('vmfs', 'RW 8 VMFS "x-flat.vmdk"', 'abcdef01'))), expectError('data', /child\.vmdk is a snapshot delta disk \(its parentCID is abcdef01\)/));
    await assert.rejects(openFile(await w('odd.vmdk', desc('customThing', 'RW 8 FLAT "x-flat.vmdk" 0'))), expectError('data', /odd\.vmdk has an unknown VMDK subformat "customThing"/));
    await assert.rejects(openFile(await w('rdm.vmdk', desc('vmfsPassthroughRawDeviceMap', 'RW 8 VMFSRDM "x-rdmp.vmdk"'))), expectError('data', /unsupported extent type VMFSRDM/));
    await assert.rejects(openFile(await w('rdm2.vmdk', desc('vmfsRawDeviceMap', 'RW 8 FLAT "x-flat.vmdk" 0'))), expectError('data', /a raw device/));
    await assert.rejects(openFile(await w('junk.vmdk', Buffer.from('MZ this is no disk at all'.repeat(30)))), expectError('data', /junk\.vmdk is not a VMDK/));
    await assert.rejects(openFile(await w('empty.vmdk', Buffer.alloc(0))), expectError('data', /empty\.vmdk is not a valid VMDK: the file is empty/));
    // qemu-img's own snapshot child: a monolithicSparse file whose embedded descriptor has a parent.
    const baseDisk = await makeVmdk(dir, 'monolithicSparse', 'base.vmdk');
    qemuImg('create', '-f', 'vmdk', '-b', basename(baseDisk), '-F', 'vmdk', join(dir, 'snap.vmdk'));
    await assert.rejects(openFile(join(dir, 'snap.vmdk')), expectError('data', /snap\.vmdk is a snapshot delta disk \(its parentCID is [0-9a-f]{1,8}\)/));
    // One extent of a split sparse disk given on its own.
    await makeVmdk(dir, 'twoGbMaxExtentSparse', 'split.vmdk');
    await assert.rejects(openFile(join(dir, 'split-s001.vmdk')), expectError('data', /split-s001\.vmdk looks like one extent of a split/));
  });
});

test('refused descriptors: extents outside the folder, missing or short extents', async () => {
  await withDir(async (dir) => {
    const w = async (name: string, data: string | Buffer): Promise<string> => {
      await writeFile(join(dir, name), data);
      return join(dir, name);
    };
    const desc = (extent: string): string => `createType="monolithicFlat"\nparentCID=ffffffff\n${extent}\n`;
    for (const name of ['../x-flat.vmdk', '/etc/passwd', 'sub/x.vmdk', 'a\\b.vmdk', '..']) {
      await assert.rejects(
        openVmdk(await wholeFile(await w('out.vmdk', desc(`RW 8 FLAT "${name}" 0`))), () => assert.fail('never resolved')),
        expectError('data', /points outside the descriptor's folder/),
        name,
      );
    }
    await assert.rejects(openFile(await w('missing.vmdk', desc('RW 8 FLAT "nothere-flat.vmdk" 0'))), expectError('not-found', /nothere-flat\.vmdk/));
    await w('short-flat.vmdk', Buffer.alloc(2048));
    await assert.rejects(openFile(await w('short.vmdk', desc('RW 8 FLAT "short-flat.vmdk" 0'))), expectError('data', /short-flat\.vmdk is truncated: the descriptor short\.vmdk needs 4096 bytes of it, it has 2048/));
    await assert.rejects(openFile(await w('self.vmdk', desc('RW 8 FLAT "self.vmdk" 0'))), expectError('data', /is the descriptor itself/));
    await w('notsparse.bin', Buffer.alloc(4096));
    await assert.rejects(openFile(await w('ns.vmdk', 'createType="twoGbMaxExtentSparse"\nRW 8 SPARSE "notsparse.bin"\n')), expectError('data', /has no sparse header/));
  });
});

test('damaged streams: corrupt grain, bad marker, truncation inside and between grains', async () => {
  await withDir(async (dir) => {
    const base = await makeVmdk(dir, 'streamOptimized');
    const ms = await markers(base);
    assert.ok(ms.length >= 5);
    const copy = async (name: string): Promise<string> => {
      const p = join(dir, name);
      await writeFile(p, await readFile(base));
      return p;
    };
    // Compressed bytes flipped: zlib refuses them (or they inflate to the wrong size).
    const [at1, , size1] = ms[1]!;
    const corrupt = await copy('corrupt.vmdk');
    const b = await readFile(corrupt);
    for (let i = 2; i < Math.min(size1, 200); i += 3) b[at1 + 12 + i] = b[at1 + 12 + i]! ^ 0x5a;
    await writeFile(corrupt, b);
    await assert.rejects(decodeTo(dir, await openFile(corrupt)), expectError('data', new RegExp(`^corrupt compressed grain at byte ${at1} of corrupt\\.vmdk: `)));

    const far = await copy('far.vmdk');
    await patch(far, ms[0]![0], u64(1n << 40n));
    await assert.rejects(decodeTo(dir, await openFile(far)), expectError('data', /the stream marker at byte \d+ describes a grain at sector \d+, beyond the disk/));
    const odd = await copy('odd.vmdk');
    await patch(odd, ms[0]![0], u64(BigInt(ms[0]![1] + 3)));
    await assert.rejects(decodeTo(dir, await openFile(odd)), expectError('data', /not on a grain boundary/));
    const huge = await copy('huge.vmdk');
    await patch(huge, ms[0]![0] + 8, u32(0x7fffffff));
    await assert.rejects(decodeTo(dir, await openFile(huge)), expectError('data', /more than a grain can take/));

    const cutInside = join(dir, 'cut-inside.vmdk');
    await writeFile(cutInside, (await readFile(base)).subarray(0, ms[3]![0] + 100));
    await assert.rejects(decodeTo(dir, await openFile(cutInside)), expectError('data', /cut-inside\.vmdk is truncated: the grain at byte \d+ needs/));
    const cutBetween = join(dir, 'cut-between.vmdk');
    await writeFile(cutBetween, (await readFile(base)).subarray(0, ms[3]![0]));
    await assert.rejects(decodeTo(dir, await openFile(cutBetween)), expectError('data', /cut-between\.vmdk is truncated: it ends at byte \d+ after 3 of the \d+ grains its grain tables list/));
    // A marker's address changed to another valid grain: the grain tables disagree.
    const moved = await copy('moved.vmdk');
    await patch(moved, ms[0]![0], u64(BigInt(ms[0]![1] + 128 * 2)));
    await assert.rejects(decodeTo(dir, await openFile(moved)), expectError('data', /grain markers \(\d+ grains\) do not match its grain tables/));
  });
});

test('damaged sparse files: truncated grain data', async () => {
  await withDir(async (dir) => {
    const base = await makeVmdk(dir, 'monolithicSparse');
    const cut = join(dir, 'cut.vmdk');
    const b = await readFile(base);
    await writeFile(cut, b.subarray(0, b.length - 100_000));
    await assert.rejects(openFile(cut), expectError('data', /cut\.vmdk is truncated: grain \d+ \(at sector \d+\) lies past its end/));
    const head = join(dir, 'head.vmdk');
    await writeFile(head, b.subarray(0, 300));
    await assert.rejects(openFile(head), expectError('data', /head\.vmdk is truncated/));
  });
});

test('target checks: a missing file, a file or target smaller than the disk', async () => {
  await withDir(async (dir) => {
    const img = await openFile(await makeVmdk(dir, 'streamOptimized'));
    await assert.rejects(decodeToFile(join(dir, 'none.raw'), img, { signal: new AbortController().signal }), expectError('not-found', /none\.raw does not exist/));
    await assert.rejects(decodeTo(dir, img, { size: SIZE - 512 }), expectError('capacity', /holds \d+ bytes, the disk needs \d+/));
    const small = new MemoryTarget(SIZE - 512);
    await assert.rejects(decodeVmdk(img, { target: small, signal: new AbortController().signal }), expectError('capacity', /^memory target holds \d+ bytes, the disk needs \d+$/));
    assert.deepEqual(small.calls, [], 'refused before anything was written');
  });
});

test('abort stops a decode promptly with the signal reason', async () => {
  await withDir(async (dir) => {
    // 64 MiB of incompressible data: long enough to be stopped in the middle.
    const raw = join(dir, 'big.raw');
    const big = Buffer.alloc(64 * MiB);
    let x = 1;
    for (let i = 0; i < big.length; i += 4) {
      x = (x * 1103515245 + 12345) >>> 0;
      big.writeUInt32LE(x, i);
    }
    await writeFile(raw, big);
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', raw, join(dir, 'big.vmdk'));
    const img = await openFile(join(dir, 'big.vmdk'));
    const target = await placeholder(join(dir, 't.raw'), img.capacityBytes);
    const ac = new AbortController();
    const reason = new OneswapError('interrupted', 'stopped by the test');
    let seen = 0;
    const started = Date.now();
    await assert.rejects(
      decodeToFile(target, img, {
        signal: ac.signal,
        onProgress: (p) => {
          seen = p.bytesRead;
          if (p.bytesRead >= 8 * MiB) ac.abort(reason);
        },
      }),
      (err) => err === reason,
    );
    assert.ok(seen < 40 * MiB, `stopped after ${seen} bytes`);
    assert.ok(Date.now() - started < 5000);
    const pre = new AbortController();
    pre.abort(reason);
    await assert.rejects(decodeToFile(target, img, { signal: pre.signal }), (err) => err === reason);
  });
});

test('into a target that takes whole 64 KiB blocks (a compressed qcow2): whole aligned blocks, the parts a piece cuts sent even when zero, each cluster assembled once', async () => {
  await withDir(async (dir) => {
    // Two flat extents, the first 1000 sectors: the pieces of the second start off a cluster edge.
    const cut = 1000 * 512;
    await writeFile(join(dir, 'odd-f001.vmdk'), RAW.subarray(0, cut));
    await writeFile(join(dir, 'odd-f002.vmdk'), RAW.subarray(cut));
    await writeFile(
      join(dir, 'odd.vmdk'),
      `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="twoGbMaxExtentFlat"\n\nRW 1000 FLAT "odd-f001.vmdk" 0\nRW ${SIZE / 512 - 1000} FLAT "odd-f002.vmdk" 0\n\nddb.adapterType = "lsilogic"\n`,
    );
    const padded = Math.ceil(SIZE / GRAIN) * GRAIN;
    const zeros = Buffer.alloc(GRAIN);
    const dataClusters = [...Array(padded / GRAIN).keys()].filter((c) => !RAW.subarray(c * GRAIN, Math.min(SIZE, (c + 1) * GRAIN)).equals(zeros.subarray(0, Math.min(GRAIN, SIZE - c * GRAIN))));
    const images: Array<[string, VmdkImage]> = [];
    for (const subformat of ['streamOptimized', 'monolithicSparse', 'monolithicFlat'] as const) images.push([subformat, await openFile(await makeVmdk(dir, subformat))]);
    images.push(['odd flat extents', await openFile(join(dir, 'odd.vmdk'))]);
    for (const [what, img] of images) {
      // What the decoder sends: block edges only where its pieces start or end off a block edge.
      const direct = new MemoryTarget(SIZE, { blockSize: GRAIN });
      await decodeVmdk(img, { target: direct, signal: new AbortController().signal });
      assert.ok(direct.bytes.equals(RAW), `${what}: the exact bytes`);
      const offEdges = new Set(direct.written.flatMap((w) => [w.position, w.position + w.data.length]).filter((p) => p % GRAIN !== 0 && p !== SIZE));
      const pieceEdges = what === 'odd flat extents' ? [0, 1, 2, 3, 4].map((k) => cut + k * MiB) : [];
      assert.deepEqual([...offEdges].sort((a, b) => a - b), pieceEdges, `${what}: writes cut at block edges but where a piece starts`);
      // Through the writer of a compressed image: every data cluster once, whole; no zero cluster.
      const inner = new MemoryTarget(padded);
      const target = wholeClusters(inner, { size: SIZE, cluster: GRAIN });
      await decodeVmdk(img, { target, signal: new AbortController().signal });
      assert.ok(inner.bytes.subarray(0, SIZE).equals(RAW), `${what}: the exact bytes through whole clusters`);
      const clusters = inner.written.flatMap((w) => {
        assert.equal(w.position % GRAIN, 0);
        assert.equal(w.data.length % GRAIN, 0);
        return [...Array(w.data.length / GRAIN).keys()].map((k) => w.position / GRAIN + k);
      });
      assert.deepEqual(clusters.sort((a, b) => a - b), dataClusters, `${what}: each data cluster once`);
    }
  });
});
