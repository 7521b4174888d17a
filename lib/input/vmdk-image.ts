// Opens a VMDK that arrives as a file (an OVA member, a file of an OVF folder, a VMDK on disk) and
// works out, from its small metadata only, how vmdk-decode.ts turns it into a raw image: which
// files are read, and where each of their bytes goes on the disk.
//
// Layouts: a text descriptor with FLAT/VMFS/ZERO/SPARSE extents (monolithicFlat,
// twoGbMaxExtentFlat, vmfs, twoGbMaxExtentSparse), or a hosted sparse file (magic KDMV):
// monolithicSparse (grain directory and tables read here, up front), or streamOptimized (compressed
// grains with markers, walked in order by the decoder). Snapshot deltas, COWD/seSparse, unknown
// subformats and headers that do not add up are refused with a one-line OneswapError('data').

import { open, type FileHandle } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import type { SourceFile } from './source-file.js';
import { parseImageDescriptor, vmdkKind } from './vmdk-descriptor.js';

export type VmdkSubformat = 'streamOptimized' | 'monolithicSparse' | 'monolithicFlat' | 'twoGbMaxExtentSparse' | 'twoGbMaxExtentFlat' | 'vmfs';

export interface VmdkImage {
  /** file.name, for messages. */
  readonly name: string;
  readonly subformat: VmdkSubformat;
  readonly capacityBytes: number;
  /** ddb.adapterType: lsilogic, buslogic, ide, pvscsi, lsisas1068, ... */
  readonly adapterType?: string;
  /** Every file the decode reads, the descriptor first when it is a file of its own. */
  readonly files: readonly SourceFile[];
  /** Total bytes decodeVmdk reads (each file once, whole): for progress. */
  readonly sourceBytes: number;
}

// ---- what the decoder needs (internal to lib/input) ----

/** Bytes [fileOffset, fileOffset + length) of a file are the disk's [virt, virt + length). */
export interface FlatSegment {
  readonly fileOffset: number;
  readonly length: number;
  readonly virt: number;
}

/** A hosted sparse extent with a grain directory: its allocated grains in file order. */
export interface SparseGrains {
  readonly virt: number;
  readonly length: number;
  readonly grainBytes: number;
  /** Byte offset of each allocated grain in the file, ascending. */
  readonly filePos: Float64Array;
  /** Where that grain starts on the disk. */
  readonly diskPos: Float64Array;
}

/** A streamOptimized extent: markers from `start` on, walked in order. */
export interface StreamExtent {
  readonly virt: number;
  readonly length: number;
  readonly grainBytes: number;
  /** Byte where the first marker is (the header's overHead). */
  readonly start: number;
  /** Grains with data according to the grain tables, and the checksum of their places (grainCheck). */
  readonly grains: number;
  readonly check: number;
}

export interface FileLayout {
  readonly file: SourceFile;
  /** Flat extents in this file, by file offset. */
  readonly flat: readonly FlatSegment[];
  readonly sparse?: SparseGrains;
  readonly stream?: StreamExtent;
}

export interface VmdkLayout {
  /** One per file of VmdkImage.files, in the same order (a descriptor has an empty layout). */
  readonly files: readonly FileLayout[];
}

const layouts = new WeakMap<VmdkImage, VmdkLayout>();

/** What the checks and messages need of a file: its name and size (Infinity for a stream of unknown length). */
type Named = Pick<SourceFile, 'name' | 'size'>;

/** The layout openVmdk worked out for `img` (which must be the object it returned). */
export function vmdkLayout(img: VmdkImage): VmdkLayout {
  const l = layouts.get(img);
  if (l === undefined) throw new OneswapError('internal', `${img.name}: not an image returned by openVmdk`);
  return l;
}

// ---- limits ----

const SECTOR = 512;
const KiB = 1024;
const MiB = 1024 * KiB;
const TiB = 1024 * 1024 * MiB;
/** Larger disks than this are taken as a corrupt header. */
export const MAX_CAPACITY = 64 * TiB;
/** Grains are 64 KiB in every VMDK VMware or qemu writes; larger than 1 MiB is not a VMDK. */
export const MAX_GRAIN_BYTES = 1 * MiB;
/** A text descriptor file is a few hundred bytes. */
const MAX_DESCRIPTOR_BYTES = 64 * KiB;
/** An embedded descriptor is 20 sectors in files VMware or qemu write. */
const MAX_EMBEDDED_DESCRIPTOR_BYTES = 1 * MiB;
/** Grain directories larger than this belong to a corrupt header (64 TiB of 64 KiB grains needs 8 MiB). */
const MAX_GD_BYTES = 64 * MiB;
/** Grain tables are read in pieces of at most this. */
const GT_READ_BYTES = 4 * MiB;

const FLAG_NL_DETECT = 0x1;
const FLAG_RGD = 0x2;
const FLAG_ZERO_GTE = 0x4;
const FLAG_COMPRESSED = 0x10000;
const FLAG_MARKERS = 0x20000;
const KNOWN_FLAGS = FLAG_NL_DETECT | FLAG_RGD | FLAG_ZERO_GTE | FLAG_COMPRESSED | FLAG_MARKERS;
const GD_AT_END = 0xffffffffffffffffn;
const COMPRESSION_DEFLATE = 1;

const DELTA_HINT = 'consolidate the snapshots (or export the VM again) so each disk is a single VMDK';

/**
 * Reads the head of `file` (and, for a descriptor, of each extent it names) and returns how to
 * decode it. Extent names go through `resolveExtent`, which decides where such a file may be (the
 * same folder, the same tar) and throws when it is not there; names with "/", "\" or ".." never
 * reach it.
 */
export async function openVmdk(file: SourceFile, resolveExtent: (extentFileName: string) => SourceFile): Promise<VmdkImage> {
  const files = new FileCache();
  try {
    if (file.size === 0) throw corrupt(file, 'the file is empty');
    const head = await files.read(file, 0, Math.min(file.size, MAX_DESCRIPTOR_BYTES));
    const kind = vmdkKind(head);
    if (kind === 'hosted-sparse') return await openSparseFile(file, head, files);
    if (kind === 'vmfs-sparse')
      throw new OneswapError('data', `${file.name} is a vmfsSparse (COWD) snapshot delta disk, not a whole disk`, { hint: DELTA_HINT });
    if (kind === 'descriptor') {
      if (file.size > MAX_DESCRIPTOR_BYTES) throw corrupt(file, `it looks like a VMDK descriptor but is ${file.size} bytes long`);
      return await openDescriptor(file, head, resolveExtent, files);
    }
    throw new OneswapError('data', `${file.name} is not a VMDK: it is neither a descriptor nor a sparse extent (KDMV)`, {
      hint: 'the package names a disk file oneswap cannot read; check that it is a VMware disk',
    });
  } finally {
    await files.close();
  }
}

// ---- a binary hosted sparse file: monolithicSparse or streamOptimized ----

async function openSparseFile(file: SourceFile, head: Buffer, files: FileCache): Promise<VmdkImage> {
  const h = parseSparseHeader(file, head);
  let createType: string | undefined;
  let adapterType: string | undefined;
  if (h.descriptorBytes > 0) {
    const text = (await files.read(file, h.descriptorOffset, h.descriptorBytes)).toString('utf8');
    const nul = text.indexOf('\0');
    const d = parseImageDescriptor(nul < 0 ? text : text.slice(0, nul), file.name, { embedded: true });
    createType = d.createType || undefined;
    adapterType = d.adapterType;
  }
  if (createType === undefined && /-s\d{3}\.vmdk$/i.test(file.name))
    throw new OneswapError('data', `${file.name} looks like one extent of a split (twoGbMaxExtentSparse) disk: it has no descriptor of its own`, {
      hint: 'give the disk\'s descriptor (the small .vmdk that names the -s001, -s002... files) instead',
    });
  const stream = h.compressed;
  const subformat: VmdkSubformat = stream ? 'streamOptimized' : 'monolithicSparse';
  if (createType !== undefined && createType !== subformat) {
    if (createType === 'twoGbMaxExtentSparse')
      throw new OneswapError('data', `${file.name} is one extent of a split (twoGbMaxExtentSparse) disk, not a whole disk`, {
        hint: 'give its descriptor (the small .vmdk that names the -s001, -s002... files) instead',
      });
    checkCreateType(file, createType);
    throw corrupt(file, `its descriptor says createType "${createType}" but its header is that of a ${subformat} file`);
  }
  const layout = stream
    ? { file, flat: [], stream: await streamExtent(file, h, 0, h.capacityBytes, files) }
    : { file, flat: [], sparse: await sparseGrains(file, h, 0, h.capacityBytes, files) };
  return image(file, subformat, h.capacityBytes, adapterType, [layout]);
}

export interface SparseHeader {
  readonly version: number;
  readonly flags: number;
  readonly capacityBytes: number;
  readonly grainBytes: number;
  readonly descriptorOffset: number;
  readonly descriptorBytes: number;
  readonly gtes: number;
  /** Byte offset of the grain directory; undefined when it is at the end (streams). */
  readonly gdOffset: number | undefined;
  readonly overheadBytes: number;
  readonly compressed: boolean;
  readonly zeroGrains: boolean;
}

/** The 512-byte header of a hosted sparse extent, checked against the file it is in. */
function parseSparseHeader(file: Named, head: Buffer): SparseHeader {
  if (head.length < SECTOR) throw truncated(file, `the ${SECTOR}-byte sparse header is cut at byte ${head.length}`);
  const version = head.readUInt32LE(4);
  const flags = head.readUInt32LE(8);
  if (version < 1 || version > 3) throw unsupported(file, `sparse header version ${version}`);
  if ((flags & ~KNOWN_FLAGS) !== 0) throw unsupported(file, `sparse header flags 0x${(flags >>> 0).toString(16)}`);
  const compressed = (flags & FLAG_COMPRESSED) !== 0;
  const markers = (flags & FLAG_MARKERS) !== 0;
  if (compressed !== markers) throw unsupported(file, `sparse header flags 0x${flags.toString(16)} (compressed grains ${compressed ? 'without' : 'only with'} markers)`);
  if ((flags & FLAG_NL_DETECT) !== 0 && head.toString('latin1', 73, 77) !== '\n \r\n')
    throw new OneswapError('data', `${file.name} is damaged: its line-ending check bytes were changed (copied as text?)`, {
      hint: 'copy the file again in binary mode',
    });
  if (compressed && head.readUInt16LE(77) !== COMPRESSION_DEFLATE) throw unsupported(file, `compression algorithm ${head.readUInt16LE(77)}`);

  const capacitySectors = u64(head, 12);
  if (capacitySectors === undefined || capacitySectors * SECTOR > MAX_CAPACITY)
    throw corrupt(file, `its header gives an absurd capacity (${head.readBigUInt64LE(12)} sectors, more than 64 TiB)`);
  const grainSectors = u64(head, 20);
  if (grainSectors === undefined || grainSectors < 1 || grainSectors * SECTOR > MAX_GRAIN_BYTES || (grainSectors & (grainSectors - 1)) !== 0)
    throw corrupt(file, `its header gives a grain size of ${head.readBigUInt64LE(20)} sectors (a power of two up to ${MAX_GRAIN_BYTES / SECTOR} is expected)`);
  const descriptorOffset = u64(head, 28);
  const descriptorSectors = u64(head, 36);
  if (descriptorOffset === undefined || descriptorSectors === undefined) throw corrupt(file, 'its header gives an absurd descriptor location');
  if (descriptorSectors > 0) {
    if (descriptorOffset < 1 || descriptorSectors * SECTOR > MAX_EMBEDDED_DESCRIPTOR_BYTES)
      throw corrupt(file, `its header puts the descriptor at sector ${descriptorOffset} (${descriptorSectors} sectors)`);
    if ((descriptorOffset + descriptorSectors) * SECTOR > file.size)
      throw truncated(file, `the embedded descriptor (sectors ${descriptorOffset}-${descriptorOffset + descriptorSectors}) lies past its end`);
  }
  const gtes = head.readUInt32LE(44);
  const gdRaw = head.readBigUInt64LE(56);
  const gdSectors = gdRaw === GD_AT_END ? undefined : u64(head, 56);
  const overheadSectors = u64(head, 64);
  if (overheadSectors === undefined || overheadSectors * SECTOR > file.size)
    throw truncated(file, `its header says the metadata takes ${head.readBigUInt64LE(64)} sectors, but the file has ${Math.floor(file.size / SECTOR)}`);
  if (!compressed && gdSectors === undefined) throw unsupported(file, 'a grain directory at the end of a file that is not a stream');
  if (compressed && overheadSectors < 1) throw corrupt(file, 'its header puts the first grain inside the header');
  if (gdRaw !== GD_AT_END && (gdSectors === undefined || gdSectors < 1 || gdSectors * SECTOR + 4 > file.size))
    throw corrupt(file, `its grain directory (sector ${gdRaw}) is outside the file`);
  return {
    version,
    flags,
    capacityBytes: capacitySectors * SECTOR,
    grainBytes: grainSectors * SECTOR,
    descriptorOffset: descriptorOffset * SECTOR,
    descriptorBytes: descriptorSectors * SECTOR,
    gtes,
    gdOffset: gdSectors === undefined ? undefined : gdSectors * SECTOR,
    overheadBytes: overheadSectors * SECTOR,
    compressed,
    zeroGrains: (flags & FLAG_ZERO_GTE) !== 0,
  };
}

/**
 * A stream extent, with what its grain tables say it holds: the number of grains and a checksum
 * of their (marker sector, disk sector) pairs, which the decoder compares with the markers it
 * walks. That catches a stream cut between two grains (qemu-img ends its streams without an
 * end-of-stream marker) and markers whose address or length was damaged.
 */
async function streamExtent(file: SourceFile, h: SparseHeader, virt: number, length: number, files: FileCache): Promise<StreamExtent> {
  if (h.overheadBytes >= file.size) throw truncated(file, 'it ends before its first grain');
  let gdOffset = h.gdOffset;
  if (gdOffset === undefined) {
    // VMware's streams: the directory's place is in the footer, a copy of the header before the
    // end-of-stream marker.
    if (file.size < h.overheadBytes + 3 * SECTOR) throw truncated(file, 'it ends before its footer');
    const footer = await files.read(file, file.size - 2 * SECTOR, SECTOR);
    if (footer.toString('latin1', 0, 4) !== 'KDMV') throw truncated(file, 'its footer (the header copy before the end-of-stream marker) is missing');
    const gd = footer.readBigUInt64LE(56);
    const sectors = u64(footer, 56);
    if (gd === GD_AT_END || sectors === undefined || sectors < 1 || sectors * SECTOR + 4 > file.size)
      throw corrupt(file, `its footer puts the grain directory at sector ${gd}, outside the file`);
    gdOffset = sectors * SECTOR;
  }
  const { grains, check } = await tableCheck(file, { ...h, gdOffset }, length, (at, n) => files.read(file, at, n));
  return { virt, length, grainBytes: h.grainBytes, start: h.overheadBytes, grains, check };
}

/** The number of grains a stream's grain tables list, and the checksum of their places. */
async function tableCheck(file: Named, h: SparseHeader, length: number, read: (at: number, length: number) => Promise<Buffer>): Promise<StreamTables> {
  let grains = 0;
  let check = 0;
  await walkGrainTables(file, h, length, read, (grain, sector) => {
    grains++;
    check = (check + grainCheck(sector, (grain * h.grainBytes) / SECTOR)) >>> 0;
  });
  return { grains, check };
}

// ---- a streamOptimized VMDK that arrives as a byte stream (an export lease) ----

export interface StreamTables {
  readonly grains: number;
  readonly check: number;
}

/**
 * The 512-byte header at the start of a stream, checked as a file's is; anything but a
 * streamOptimized (compressed, with markers) sparse header is refused: only those can be decoded
 * in one ordered pass.
 */
export function parseStreamHeader(name: string, head: Buffer): SparseHeader {
  const file: Named = { name, size: Number.POSITIVE_INFINITY };
  if (head.length < SECTOR || vmdkKind(head) !== 'hosted-sparse')
    throw new OneswapError('data', `${name} is not a streamOptimized VMDK: its stream does not start with a sparse header (KDMV)`, { hint: DAMAGED_HINT });
  const h = parseSparseHeader(file, head);
  if (!h.compressed) throw unsupported(file, 'a monolithicSparse layout in a stream (grains out of order)');
  return h;
}

/**
 * What a stream's grain tables list, when they come before its first grain (qemu-img writes the
 * directory and the tables into the header's overHead area): read through `read`, which only goes
 * forward. Undefined when the directory is at the end of the stream (VMware's streams): the walk
 * then needs the end-of-stream marker to know the stream is whole.
 */
export async function streamTables(
  name: string,
  h: SparseHeader,
  length: number,
  read: (at: number, length: number) => Promise<Buffer>,
): Promise<StreamTables | undefined> {
  if (h.gdOffset === undefined) return undefined;
  const gdBytes = Math.ceil(Math.ceil(h.capacityBytes / h.grainBytes) / Math.max(1, h.gtes)) * 4;
  if (h.gdOffset + gdBytes > h.overheadBytes) return undefined;
  return tableCheck({ name, size: h.overheadBytes }, h, length, read);
}

/** One grain's share of a stream's checksum: a mix of where its marker is and where it goes (both in sectors). */
export function grainCheck(markerSector: number, lbaSector: number): number {
  let x = Math.imul((markerSector >>> 0) ^ 0x9e3779b9, 0x85ebca6b);
  x ^= Math.imul(Math.floor(markerSector / 2 ** 32) ^ 0x632be5ab, 0xc2b2ae35);
  x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d);
  x ^= Math.imul((lbaSector >>> 0) ^ 0x27d4eb2f, 0x165667b1);
  x ^= Math.imul(Math.floor(lbaSector / 2 ** 32) ^ 0x7f4a7c15, 0x94d049bb);
  x = Math.imul(x ^ (x >>> 13), 0x5bd1e995);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * Reads a sparse extent's grain directory and tables (small positional reads, tables in file order
 * and in pieces of a few MiB) and calls `visit` for every grain that has data and lies within the
 * extent's first `length` bytes. Sector 1 in a table means a zero grain (never data: the header
 * is there).
 */
async function walkGrainTables(
  file: Named,
  h: SparseHeader,
  length: number,
  read: (at: number, length: number) => Promise<Buffer>,
  visit: (grain: number, sector: number) => void,
): Promise<void> {
  const grainCount = Math.ceil(h.capacityBytes / h.grainBytes);
  if (h.gtes < 1 || h.gtes > 65536) throw corrupt(file, `its header gives ${h.gtes} entries per grain table`);
  const gtCount = Math.ceil(grainCount / h.gtes);
  const gdBytes = gtCount * 4;
  const gdOffset = h.gdOffset!;
  if (gdBytes > MAX_GD_BYTES) throw corrupt(file, `its header gives ${grainCount} grains, an absurd number`);
  if (gdOffset + gdBytes > file.size) throw corrupt(file, `its grain directory (${gdBytes} bytes at byte ${gdOffset}) runs past the end of the file`);
  const gd = gdBytes === 0 ? Buffer.alloc(0) : await read(gdOffset, gdBytes);
  const gtBytes = h.gtes * 4;

  const tables: Array<{ index: number; at: number }> = [];
  for (let i = 0; i < gtCount; i++) {
    const sector = gd.readUInt32LE(i * 4);
    if (sector === 0) continue; // no grain of this table has data
    const at = sector * SECTOR;
    if (at + gtBytes > file.size) throw corrupt(file, `grain table ${i} (at sector ${sector}) lies outside the file`);
    tables.push({ index: i, at });
  }
  tables.sort((a, b) => a.at - b.at);
  for (let t = 0; t < tables.length; ) {
    const first = tables[t]!.at;
    let last = t;
    while (last + 1 < tables.length && tables[last + 1]!.at + gtBytes - first <= Math.max(GT_READ_BYTES, gtBytes)) last++;
    const span = await read(first, tables[last]!.at + gtBytes - first);
    for (; t <= last; t++) {
      const { index, at } = tables[t]!;
      for (let j = 0; j < h.gtes; j++) {
        const grain = index * h.gtes + j;
        if (grain >= grainCount || grain * h.grainBytes >= length) break;
        const sector = span.readUInt32LE(at - first + j * 4);
        if (sector > 1) visit(grain, sector);
      }
    }
  }
}

/**
 * The grains of a sparse extent with data, in file order, so the decoder reads the file once from
 * start to end. Grains past `length` (the extent's size in the descriptor) are not part of the disk.
 */
async function sparseGrains(file: SourceFile, h: SparseHeader, virt: number, length: number, files: FileCache): Promise<SparseGrains> {
  const grainsFile: number[] = [];
  const grainsDisk: number[] = [];
  await walkGrainTables(file, h, length, (at, n) => files.read(file, at, n), (grain, sector) => {
    const start = grain * h.grainBytes;
    const need = Math.min(h.grainBytes, length - start);
    if (sector * SECTOR + need > file.size) throw truncated(file, `grain ${grain} (at sector ${sector}) lies past its end at byte ${file.size}`);
    grainsFile.push(sector * SECTOR);
    grainsDisk.push(virt + start);
  });
  // Usually in order already; otherwise sort an index by file position.
  let sorted = true;
  for (let k = 1; k < grainsFile.length && sorted; k++) if (grainsFile[k]! < grainsFile[k - 1]!) sorted = false;
  let filePos = Float64Array.from(grainsFile);
  let diskPos = Float64Array.from(grainsDisk);
  if (!sorted) {
    const order = Uint32Array.from(grainsFile.keys()).sort((a, b) => grainsFile[a]! - grainsFile[b]!);
    filePos = Float64Array.from(order, (k) => grainsFile[k]!);
    diskPos = Float64Array.from(order, (k) => grainsDisk[k]!);
  }
  for (let k = 1; k < filePos.length; k++) {
    if (filePos[k]! - filePos[k - 1]! < Math.min(h.grainBytes, virt + length - diskPos[k - 1]!))
      throw corrupt(file, `two grains overlap at byte ${filePos[k]} (its grain tables are damaged)`);
  }
  return { virt, length, grainBytes: h.grainBytes, filePos, diskPos };
}

// ---- a text descriptor with extents ----

const DESCRIPTOR_TYPES: ReadonlySet<string> = new Set<VmdkSubformat>([
  'monolithicFlat',
  'twoGbMaxExtentFlat',
  'vmfs',
  'twoGbMaxExtentSparse',
  'monolithicSparse',
  'streamOptimized',
]);

async function openDescriptor(
  file: SourceFile,
  head: Buffer,
  resolveExtent: (extentFileName: string) => SourceFile,
  files: FileCache,
): Promise<VmdkImage> {
  const d = parseImageDescriptor(head.toString('utf8'), file.name);
  checkCreateType(file, d.createType);
  if (d.capacityBytes > MAX_CAPACITY) throw corrupt(file, `its extents add up to ${d.capacityBytes} bytes, more than 64 TiB`);
  const byName = new Map<string, { file: SourceFile; flat: FlatSegment[]; sparse?: SparseGrains; stream?: StreamExtent }>();
  let virt = 0;
  for (const ext of d.extents) {
    const start = virt;
    virt += ext.size;
    if (ext.kind === 'ZERO' || ext.size === 0) continue;
    const name = ext.file!;
    if (name === file.name) throw corrupt(file, `its extent "${name}" is the descriptor itself`);
    let entry = byName.get(name);
    if (entry === undefined) {
      entry = { file: resolveExtent(name), flat: [] };
      byName.set(name, entry);
    }
    const f = entry.file;
    if (ext.kind === 'FLAT' || ext.kind === 'VMFS') {
      if (entry.sparse || entry.stream) throw corrupt(file, `the extent file ${name} is named twice`);
      if (ext.fileOffset + ext.size > f.size)
        throw truncated(f, `the descriptor ${file.name} needs ${ext.fileOffset + ext.size} bytes of it, it has ${f.size}`);
      entry.flat.push({ fileOffset: ext.fileOffset, length: ext.size, virt: start });
      continue;
    }
    // SPARSE: a hosted sparse extent of its own, with its own header.
    if (entry.flat.length > 0 || entry.sparse || entry.stream) throw corrupt(file, `the extent file ${name} is named twice`);
    const head2 = await files.read(f, 0, Math.min(f.size, SECTOR));
    const kind = vmdkKind(head2);
    if (kind === 'vmfs-sparse') throw new OneswapError('data', `${f.name} is a vmfsSparse (COWD) snapshot delta extent, not a whole disk`, { hint: DELTA_HINT });
    if (kind !== 'hosted-sparse') throw corrupt(f, `it is a SPARSE extent of ${file.name} but has no sparse header (KDMV)`);
    const h = parseSparseHeader(f, head2);
    if (h.capacityBytes < ext.size)
      throw corrupt(f, `its header holds ${h.capacityBytes} bytes, the descriptor ${file.name} says ${ext.size}`);
    if (h.compressed) entry.stream = await streamExtent(f, h, start, ext.size, files);
    else entry.sparse = await sparseGrains(f, h, start, ext.size, files);
  }
  const layouts: FileLayout[] = [{ file, flat: [] }];
  for (const e of byName.values()) {
    e.flat.sort((a, b) => a.fileOffset - b.fileOffset);
    for (let k = 1; k < e.flat.length; k++) {
      const a = e.flat[k - 1]!;
      if (a.fileOffset + a.length > e.flat[k]!.fileOffset) throw corrupt(file, `two extents overlap in ${e.file.name}`);
    }
    layouts.push(e);
  }
  return image(file, d.createType as VmdkSubformat, d.capacityBytes, d.adapterType, layouts);
}

/** Known createTypes pass; deltas, raw device maps and the unknown are refused. */
function checkCreateType(file: SourceFile, createType: string): void {
  if (DESCRIPTOR_TYPES.has(createType)) return;
  if (createType === 'vmfsSparse' || createType === 'seSparse')
    throw new OneswapError('data', `${file.name} is a ${createType} snapshot delta disk, not a whole disk`, { hint: DELTA_HINT });
  if (/rdm|rawdevice|passthrough|fulldevice|partitioneddevice/i.test(createType))
    throw new OneswapError('data', `${file.name} is a ${createType} disk (a raw device), which has no bytes in the file`, {
      hint: 'copy the device to a virtual disk first',
    });
  throw new OneswapError('data', `${file.name} has an unknown VMDK subformat "${createType.slice(0, 60)}"`, {
    hint: 'oneswap reads streamOptimized, monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat and vmfs disks; convert it with qemu-img or vmware-vdiskmanager',
  });
}

function image(file: SourceFile, subformat: VmdkSubformat, capacityBytes: number, adapterType: string | undefined, files: FileLayout[]): VmdkImage {
  const img: VmdkImage = {
    name: file.name,
    subformat,
    capacityBytes,
    ...(adapterType === undefined || adapterType === '' ? {} : { adapterType }),
    files: files.map((l) => l.file),
    sourceBytes: files.reduce((s, l) => s + l.file.size, 0),
  };
  layouts.set(img, { files });
  return img;
}

// ---- reading ----

/** Positional reads of SourceFiles; one handle per path, closed at the end. */
class FileCache {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  async read(file: SourceFile, at: number, length: number): Promise<Buffer> {
    if (at + length > file.size) throw truncated(file, `it ends at byte ${file.size}, ${at + length} are needed`);
    let h = this.handles.get(file.path);
    if (h === undefined) {
      h = open(file.path, 'r');
      h.catch(() => undefined);
      this.handles.set(file.path, h);
    }
    let fh: FileHandle;
    try {
      fh = await h;
    } catch (err) {
      throw new OneswapError((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not-found' : 'data', `cannot read ${file.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, file.offset + at + got);
      if (bytesRead === 0) throw truncated(file, `it ends at byte ${at + got}, ${at + length} are needed`);
      got += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await h.then((fh) => fh.close()).catch(() => undefined);
    this.handles.clear();
  }
}

/** A little-endian u64 as a number, or undefined when it is beyond 2^53. */
function u64(buf: Buffer, off: number): number | undefined {
  const v = buf.readBigUInt64LE(off);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(v);
}

const DAMAGED_HINT = 'the disk file is damaged: copy or export it again';

function corrupt(file: Named, why: string): OneswapError {
  return new OneswapError('data', `${file.name} is not a valid VMDK: ${why}`, { hint: DAMAGED_HINT });
}

function truncated(file: Named, why: string): OneswapError {
  return new OneswapError('data', `${file.name} is truncated: ${why}`, { hint: 'the disk file was cut short: copy or export it again' });
}

function unsupported(file: Named, what: string): OneswapError {
  return new OneswapError('data', `${file.name} uses ${what}, which oneswap does not read`, {
    hint: 'convert the disk with qemu-img convert -O vmdk -o subformat=streamOptimized, or to raw',
  });
}
