// Decodes a VMDK opened by openVmdk into a TargetWriter, reading each of its files once, in order,
// in large chunks: flat extents are copied, sparse extents' allocated grains are copied, and a
// streamOptimized file's grain markers are walked and each grain inflated. Nothing that is zero is
// written, so the target's holes stay holes (but for the zero parts of blocks a piece cuts, for a
// target that takes whole blocks: see TargetWriter.blockSize). Manifest digests are computed on
// the same pass.
//
// decodeVmdkStream does the same for a streamOptimized VMDK that arrives as a byte stream with no
// Range (an export lease's HTTP body): the same marker walk, chunk buffers and workers, the grains
// written only where they fall inside the planned areas.
//
// Threads: the main thread reads (read-ahead into shared buffers), hashes, walks the metadata and
// writes; a small pool of worker threads inflates grains into shared output buffers and finds
// their zero blocks. A worker answers with the non-zero runs to write, never writes itself: the
// target may be an NBD connection, which lives in the main thread. Chunks and outputs live in
// SharedArrayBuffers, so bytes cross threads without a copy; memory is a fixed number of buffers
// (16 MiB of chunks, 2 MiB of output per job in flight: 28 to 36 MiB) whatever the disk's size.

import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { OneswapError } from '../errors/index.js';
import type { TargetWriter } from '../copy/index.js';
import { normalizeExtents, type Extent } from '../extents/index.js';
import type { StreamCopyOptions } from './disk-reader.js';
import type { FileDigest, SourceFile } from './source-file.js';
import { grainCheck, parseStreamHeader, streamTables, vmdkLayout, type FileLayout, type SparseGrains, type StreamTables, type VmdkImage } from './vmdk-image.js';

export interface DecodeOptions {
  /**
   * Opened and closed by the caller, at least capacityBytes large, reading as zeros (a fresh
   * placeholder): zero data is never written, so holes stay holes. The decode ends with its flush.
   */
  readonly target: TargetWriter;
  /**
   * Digests by SourceFile.name: each listed file is hashed while it is read (in the same single
   * sequential pass) and compared at its end; a mismatch is a OneswapError('data').
   */
  readonly digests?: ReadonlyMap<string, FileDigest>;
  readonly signal: AbortSignal;
  readonly onProgress?: (p: { readonly bytesRead: number; readonly bytesWritten: number }) => void;
}

export interface DecodeStats {
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly sourceBytes: number;
}

const SECTOR = 512;
const MiB = 1024 * 1024;
/** Sequential reads of this size. */
const CHUNK = 2 * MiB;
/** Reads issued ahead of the one being decoded. */
const READ_AHEAD = 2;
/** Chunk buffers: the one being decoded, the read-ahead, and those jobs still use (see Batch). */
const SLOTS = 8;
/** One job for a worker: up to this many bytes of source, or this many pieces. */
const JOB_BYTES = 1 * MiB;
const JOB_PIECES = 32;
/** A job's inflated grains fit one output buffer of this size (32 grains of 64 KiB; a grain is at most 1 MiB). */
const OUT_BYTES = 2 * MiB;
/** Target writes in flight per decode: enough to keep a file's or an NBD server's queue busy. */
const WRITES = 8;
/**
 * Zero detection granularity: the file system block, so a skipped block is a real hole; or the
 * target's block when it takes whole blocks only (TargetWriter.blockSize).
 */
const ZERO_BLOCK = 4096;

export async function decodeVmdk(img: VmdkImage, opts: DecodeOptions): Promise<DecodeStats> {
  const layout = vmdkLayout(img);
  const counters = { bytesRead: 0, bytesWritten: 0 };
  const progress = (): void => opts.onProgress?.({ bytesRead: counters.bytesRead, bytesWritten: counters.bytesWritten });
  await intoTarget(opts.target, img.capacityBytes, [], opts.signal, (written) => {
    counters.bytesWritten += written;
    progress();
  }, async (jobs, slots) => {
    for (const fl of layout.files) {
      await decodeFile(fl, opts.digests?.get(fl.file.name), jobs, slots, opts.signal, (n) => {
        counters.bytesRead += n;
        progress();
      });
    }
  });
  return { bytesRead: counters.bytesRead, bytesWritten: counters.bytesWritten, sourceBytes: img.sourceBytes };
}

/** A stream copy's options (the disk reader's), with the disk's name for messages. */
export interface StreamDecodeOptions extends StreamCopyOptions {
  /** "disk 'Hard disk 1' of VM web01". */
  readonly name: string;
}

export interface StreamDecodeStats {
  /** Bytes taken from the stream. */
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly bytesPlanned: number;
}

/**
 * Decodes a streamOptimized VMDK arriving as an ordered byte stream (an export lease's HTTP body,
 * which has no Range): the header, the grain tables when they come first, then the markers in
 * order, each grain inflated and written where it falls inside `areas` (zero blocks left as
 * holes; a target holding older data has the areas zeroed first). The same marker walk, reading
 * and worker pool as decodeVmdk's. A stream that is cut, damaged or places a grain outside the
 * disk is a OneswapError('data') naming the disk; errors the stream itself throws (a cut
 * connection) and the target's write errors come through as they are.
 */
export async function decodeVmdkStream(body: AsyncIterable<Uint8Array>, opts: StreamDecodeOptions): Promise<StreamDecodeStats> {
  const { name, signal } = opts;
  const areas = normalizeExtents(opts.areas, opts.capacity);
  const planned = new PlannedAreas(areas);
  const counters = { bytesRead: 0, bytesWritten: 0, bytesDone: 0 };
  const progress = (): void =>
    opts.onProgress?.({ bytesDone: counters.bytesDone, bytesPlanned: planned.total, bytesWritten: counters.bytesWritten });
  await intoTarget(opts.target, opts.capacity, opts.targetIsZero ? [] : areas, signal, (written) => {
    counters.bytesWritten += written;
    progress();
  }, async (jobs, slots) => {
    const chunks = new StreamChunks(body, slots, signal, (n) => {
      counters.bytesRead += n;
      progress();
    });
    const batch = new Batch(jobs);
    const cursor = new Cursor(chunks, name, undefined, slots, () => batch.flush());
    jobs.setSource(name);
    try {
      const head = await cursor.bytes(0, SECTOR, (end) => `it ends at byte ${end}, inside its ${SECTOR}-byte header`);
      const h = parseStreamHeader(name, Buffer.from(head.data));
      // The tables are small and lie in the first chunks; copied, since the cursor moves on.
      const tables = await streamTables(name, h, opts.capacity, async (at, n) =>
        Buffer.from((await cursor.bytes(at, n, (end) => `it ends at byte ${end}, inside its grain tables`)).data),
      );
      await walkMarkers(
        { name, virt: 0, length: opts.capacity, grainBytes: h.grainBytes, start: h.overheadBytes, tables },
        cursor,
        batch,
        {
          parts: (pos, need) => planned.parts(pos, need),
          met: (end) => {
            const done = planned.below(end);
            if (done <= counters.bytesDone) return;
            counters.bytesDone = done;
            progress();
          },
        },
      );
      await batch.flush();
      // The rest (padding after the end-of-stream marker) is read, so the transfer completes.
      await cursor.finish();
    } finally {
      cursor.release();
      await chunks.close();
    }
  });
  counters.bytesDone = planned.total;
  progress();
  return { bytesRead: counters.bytesRead, bytesWritten: counters.bytesWritten, bytesPlanned: planned.total };
}

/**
 * The chunk buffers and the workers of one decode into `target`, around `run`: `zeroFirst`
 * zeroed before anything is written (older data the stream may not overwrite), every job and
 * write waited for (also on failure: the caller closes the target next), then the target flushed.
 * The signal's reason wins over whatever the stopped decode threw.
 */
async function intoTarget(
  target: TargetWriter,
  capacity: number,
  zeroFirst: readonly Extent[],
  signal: AbortSignal,
  onWritten: (bytes: number) => void,
  run: (jobs: Jobs, slots: SlotPool) => Promise<void>,
): Promise<void> {
  signal.throwIfAborted();
  if (target.size < capacity) throw new OneswapError('capacity', `${target.name} holds ${target.size} bytes, the disk needs ${capacity}`);
  if (zeroFirst.length > 0) await target.zero(zeroFirst);
  const slots = new SlotPool(SLOTS, CHUNK);
  const jobs = new Jobs(pool(), slots, target, onWritten);
  try {
    await run(jobs, slots);
    await jobs.drain();
    signal.throwIfAborted();
    await target.flush();
  } catch (err) {
    await jobs.settle();
    throw signal.aborted ? signal.reason : err;
  }
}

/** One file, start to end, once: its flat segments, sparse grains or stream markers go to the workers. */
async function decodeFile(
  fl: FileLayout,
  digest: FileDigest | undefined,
  jobs: Jobs,
  slots: SlotPool,
  signal: AbortSignal,
  onRead: (bytes: number) => void,
): Promise<void> {
  const { file } = fl;
  let fh: FileHandle;
  try {
    fh = await open(file.path, 'r');
  } catch (err) {
    throw new OneswapError((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not-found' : 'data', `cannot read ${file.name}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const hash = digest === undefined ? undefined : createHash(digest.algorithm);
  const reader = new FileChunks(fh, file, slots, hash, signal, onRead);
  const batch = new Batch(jobs);
  const cursor = new Cursor(reader, file.name, file.size, slots, () => batch.flush());
  jobs.setSource(file.name);
  try {
    for (const seg of fl.flat) {
      const end = seg.fileOffset + seg.length;
      for (let pos = seg.fileOffset; pos < end; ) {
        const c = await cursor.chunkAt(pos);
        const n = Math.min(end - pos, c.start + c.length - pos, JOB_BYTES);
        await batch.add(c.data.subarray(pos - c.start, pos - c.start + n), c.slot, seg.virt + (pos - seg.fileOffset), 0, n, pos);
        pos += n;
      }
    }
    if (fl.sparse) await decodeSparse(fl.sparse, cursor, batch);
    if (fl.stream) await walkMarkers({ ...fl.stream, name: file.name, tables: { grains: fl.stream.grains, check: fl.stream.check } }, cursor, batch);
    await batch.flush();
    await cursor.finish();
    if (hash !== undefined && digest !== undefined) {
      const actual = hash.digest('hex');
      if (actual !== digest.hex.toLowerCase())
        throw new OneswapError(
          'data',
          `checksum mismatch for ${file.name}: the manifest says ${digest.algorithm.toUpperCase()} ${digest.hex.toLowerCase()}, the file has ${actual}`,
          { hint: 'the package is damaged or was changed after export: copy or export it again' },
        );
    }
  } finally {
    cursor.release();
    await reader.close();
    await fh.close();
  }
}

async function decodeSparse(s: SparseGrains, cursor: Cursor, batch: Batch): Promise<void> {
  const end = s.virt + s.length;
  for (let k = 0; k < s.filePos.length; k++) {
    const at = s.filePos[k]!;
    const disk = s.diskPos[k]!;
    const need = Math.min(s.grainBytes, end - disk);
    const v = await cursor.bytes(at, need);
    await batch.add(v.data, v.slot, disk, 0, need, at);
  }
}

/** A stream's markers, where they are and what they must add up to. */
interface MarkerWalk {
  /** The file or disk, for messages. */
  readonly name: string;
  /** Where the extent starts on the disk, and its length. */
  readonly virt: number;
  readonly length: number;
  readonly grainBytes: number;
  /** Byte of the first marker. */
  readonly start: number;
  /** What the grain tables list; unknown for a stream whose tables come at its end. */
  readonly tables: StreamTables | undefined;
}

/** For a stream decoded into planned areas only. */
interface MarkerPlacement {
  /** Which parts of the grain at disk byte `pos` (`need` bytes) to write: null none, undefined all, else [from, to) pairs relative to pos. */
  parts(pos: number, need: number): number[] | null | undefined;
  /** A grain ending at disk byte `end` was met. */
  met(end: number): void;
}

/**
 * Walks a stream's markers from the first one to the end-of-stream marker (or the end of the file:
 * qemu-img writes none): grain markers (LBA, compressed size, data) go to the workers; metadata
 * markers (grain tables, directory, footer) are stepped over, since every grain carries its own
 * address. The grains seen must be those the grain tables list (count and checksum of places);
 * where those are unknown (the tables follow the grains), the stream must end with its
 * end-of-stream marker.
 */
async function walkMarkers(w: MarkerWalk, cursor: Cursor, batch: Batch, place?: MarkerPlacement): Promise<void> {
  const { name } = w;
  const maxCompressed = w.grainBytes + (w.grainBytes >>> 3) + 4096;
  let grains = 0;
  let check = 0;
  let eos = false;
  let p = w.start;
  for (;;) {
    if (await cursor.endsAt(p)) break; // the end, at a marker's place
    const head = (await cursor.bytes(p, 16, (end) => `it ends at byte ${end}, inside the marker at byte ${p}`)).data;
    const lo = head.readUInt32LE(0);
    const hi = head.readUInt32LE(4);
    const size = head.readUInt32LE(8);
    if (size > 0) {
      if (hi >= 0x200000) throw badMarker(name, p, `a grain at sector ${(BigInt(hi) << 32n) + BigInt(lo)}, beyond the disk`);
      const lba = hi * 2 ** 32 + lo;
      const at = lba * SECTOR;
      if (at >= w.length) throw badMarker(name, p, `a grain at sector ${lba}, beyond the disk's ${w.length / SECTOR} sectors`);
      if (at % w.grainBytes !== 0) throw badMarker(name, p, `a grain at sector ${lba}, not on a grain boundary`);
      if (size > maxCompressed) throw badMarker(name, p, `a grain of ${size} compressed bytes, more than a grain can take`);
      const need = Math.min(w.grainBytes, w.length - at);
      const parts = place === undefined ? undefined : place.parts(w.virt + at, need);
      if (parts === null) {
        // Outside the planned areas: stepped over, though its bytes must still be there.
        await cursor.reach(p + 12 + size, (end) => `the grain at byte ${p} needs ${size} bytes, it ends at byte ${end}`);
      } else {
        const v = await cursor.bytes(p + 12, size, (end) => `the grain at byte ${p} needs ${size} bytes, the file ends at byte ${end}`);
        await batch.add(v.data, v.slot, w.virt + at, w.grainBytes, need, p, parts);
      }
      place?.met(w.virt + at + need);
      grains++;
      check = (check + grainCheck(p / SECTOR, lba)) >>> 0;
      p = Math.ceil((p + 12 + size) / SECTOR) * SECTOR;
      continue;
    }
    const type = head.readUInt32LE(12);
    if (type === 0) {
      eos = true;
      break;
    }
    if (type > 3) throw badMarker(name, p, `an unknown marker type ${type}`);
    // Grain table, grain directory, footer: a marker sector, then `lo` sectors of metadata.
    if (hi !== 0) throw badMarker(name, p, `${(BigInt(hi) << 32n) + BigInt(lo)} sectors of metadata`);
    const next = p + SECTOR + lo * SECTOR;
    await cursor.reach(next, (end) => `its metadata at byte ${p} needs ${lo} sectors, the file ends at byte ${end}`);
    p = next;
  }
  const { tables } = w;
  if (tables === undefined) {
    if (!eos) throw truncated(name, `it ends at byte ${p} after ${grains} grains, without its end-of-stream marker`);
    return;
  }
  if (grains < tables.grains && !eos)
    throw truncated(name, `it ends at byte ${p} after ${grains} of the ${tables.grains} grains its grain tables list`);
  if (grains !== tables.grains || check !== tables.check)
    throw new OneswapError('data', `${name} is damaged: its grain markers (${grains} grains) do not match its grain tables (${tables.grains} grains)`, {
      hint: DAMAGED,
    });
}

/** The planned areas of a stream decode: which parts of a grain to write, and progress. */
class PlannedAreas {
  readonly total: number;
  /** Planned bytes before area k. */
  private readonly before: number[];

  constructor(private readonly areas: readonly Extent[]) {
    this.before = [];
    let sum = 0;
    for (const a of areas) {
      this.before.push(sum);
      sum += a.length;
    }
    this.total = sum;
  }

  /** The first area that ends after `pos`. */
  private first(pos: number): number {
    let lo = 0;
    let hi = this.areas.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const a = this.areas[mid]!;
      if (a.start + a.length <= pos) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  parts(pos: number, need: number): number[] | null | undefined {
    const end = pos + need;
    const out: number[] = [];
    for (let k = this.first(pos); k < this.areas.length; k++) {
      const a = this.areas[k]!;
      if (a.start >= end) break;
      out.push(Math.max(a.start, pos) - pos, Math.min(a.start + a.length, end) - pos);
    }
    if (out.length === 0) return null;
    if (out.length === 2 && out[0] === 0 && out[1] === need) return undefined;
    return out;
  }

  /** Planned bytes before disk byte `pos`. */
  below(pos: number): number {
    const k = this.first(pos);
    if (k >= this.areas.length) return this.total;
    const a = this.areas[k]!;
    return this.before[k]! + Math.max(0, pos - a.start);
  }
}

// ---- reading: chunks in shared buffers, read ahead, hashed in order ----

interface Slot {
  readonly sab: SharedArrayBuffer;
  readonly buf: Buffer;
  refs: number;
}

/** A fixed set of chunk buffers; a chunk goes back when nobody (cursor, jobs) holds it. */
class SlotPool {
  private readonly free: Slot[] = [];
  private readonly waiting: Array<(s: Slot) => void> = [];
  private created = 0;

  constructor(
    private readonly max: number,
    private readonly size: number,
  ) {}

  acquire(): Promise<Slot> {
    const s = this.free.pop();
    if (s !== undefined) return Promise.resolve(s);
    if (this.created < this.max) {
      this.created++;
      const sab = new SharedArrayBuffer(this.size);
      return Promise.resolve({ sab, buf: Buffer.from(sab), refs: 0 });
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  retain(s: Slot): void {
    s.refs++;
  }

  release(s: Slot): void {
    if (--s.refs > 0) return;
    const w = this.waiting.shift();
    if (w !== undefined) w(s);
    else this.free.push(s);
  }
}

interface Chunk {
  readonly slot: Slot;
  /** Offset in the source (file or stream). */
  readonly start: number;
  readonly length: number;
  readonly data: Buffer;
}

/** A source's bytes in order, as chunks in slots (each held once by the caller: release its slot). */
interface ChunkSource {
  /** The next chunk, or undefined at the end. */
  read(): Promise<Chunk | undefined>;
  /** Stops reading and gives the buffers of chunks read ahead back. */
  close(): Promise<void>;
}

class FileChunks implements ChunkSource {
  private next = 0;
  private readonly ahead: Array<Promise<Chunk>> = [];

  constructor(
    private readonly fh: FileHandle,
    private readonly file: SourceFile,
    private readonly slots: SlotPool,
    private readonly hash: Hash | undefined,
    private readonly signal: AbortSignal,
    private readonly onRead: (bytes: number) => void,
  ) {}

  async read(): Promise<Chunk | undefined> {
    this.signal.throwIfAborted();
    this.fill();
    const p = this.ahead.shift();
    if (p === undefined) return undefined;
    const c = await p;
    this.signal.throwIfAborted();
    this.hash?.update(c.data);
    this.onRead(c.length);
    this.fill();
    return c;
  }

  /** Waits for the reads in flight and gives their buffers back. */
  async close(): Promise<void> {
    for (const p of this.ahead.splice(0)) {
      try {
        this.slots.release((await p).slot);
      } catch {
        // its error was for nobody: the decode stopped already
      }
    }
  }

  private fill(): void {
    while (this.ahead.length < READ_AHEAD && this.next < this.file.size) {
      const start = this.next;
      const length = Math.min(CHUNK, this.file.size - start);
      this.next += length;
      const p = this.readChunk(start, length);
      p.catch(() => undefined);
      this.ahead.push(p);
    }
  }

  private async readChunk(start: number, length: number): Promise<Chunk> {
    const slot = await this.slots.acquire();
    slot.refs = 1;
    try {
      let got = 0;
      while (got < length) {
        const { bytesRead } = await this.fh.read(slot.buf, got, length - got, this.file.offset + start + got);
        if (bytesRead === 0) throw truncated(this.file.name, `it ends at byte ${start + got}, ${this.file.size} bytes were expected`);
        got += bytesRead;
      }
    } catch (err) {
      this.slots.release(slot);
      if (err instanceof OneswapError) throw err;
      throw new OneswapError('data', `reading ${this.file.name} failed at byte ${start}: ${(err as Error).message}`, { cause: err });
    }
    return { slot, start, length, data: slot.buf.subarray(0, length) };
  }
}

/**
 * An ordered byte stream gathered into chunks: each piece the stream gives is copied once, into a
 * shared chunk buffer; READ_AHEAD chunks are filled ahead of the decode. Whatever the stream
 * throws comes through `read` as it is.
 */
class StreamChunks implements ChunkSource {
  private readonly it: AsyncIterator<Uint8Array>;
  private piece: Uint8Array | undefined;
  private pieceAt = 0;
  private pos = 0;
  private ended = false;
  private closed = false;
  private failure: { readonly err: unknown } | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private readonly ahead: Array<Promise<Chunk | undefined>> = [];

  constructor(
    body: AsyncIterable<Uint8Array>,
    private readonly slots: SlotPool,
    private readonly signal: AbortSignal,
    private readonly onRead: (bytes: number) => void,
  ) {
    this.it = body[Symbol.asyncIterator]();
  }

  async read(): Promise<Chunk | undefined> {
    this.signal.throwIfAborted();
    this.fill();
    const p = this.ahead.shift();
    if (p === undefined) return undefined;
    const c = await untilAborted(p, this.signal);
    if (c === undefined) return undefined;
    this.onRead(c.length);
    this.fill();
    return c;
  }

  /** Stops the stream (a read still waiting for it gives its buffer back when it ends). */
  close(): Promise<void> {
    this.closed = true;
    for (const p of this.ahead.splice(0)) p.then((c) => c !== undefined && this.slots.release(c.slot), () => undefined);
    if (!this.ended) {
      this.ended = true;
      // Not waited for: a stream that hangs (the reason to stop) may never answer.
      Promise.resolve()
        .then(() => this.it.return?.())
        .catch(() => undefined);
    }
    return Promise.resolve();
  }

  private fill(): void {
    while (this.ahead.length < READ_AHEAD && !this.ended && !this.closed) {
      const p = this.tail.then(() => this.produce());
      this.tail = p.catch(() => undefined);
      p.catch(() => undefined);
      this.ahead.push(p);
    }
  }

  /** The next chunk; called one after another (chained on `tail`). */
  private async produce(): Promise<Chunk | undefined> {
    if (this.failure !== undefined) throw this.failure.err;
    if (this.ended || this.closed) return undefined;
    const slot = await this.slots.acquire();
    slot.refs = 1;
    let got = 0;
    try {
      while (got < CHUNK) {
        if (this.piece === undefined) {
          const r = await this.it.next();
          if (r.done === true) {
            this.ended = true;
            break;
          }
          this.piece = r.value;
          this.pieceAt = 0;
        }
        const n = Math.min(CHUNK - got, this.piece.length - this.pieceAt);
        slot.buf.set(this.piece.subarray(this.pieceAt, this.pieceAt + n), got);
        got += n;
        this.pieceAt += n;
        if (this.pieceAt >= this.piece.length) this.piece = undefined;
      }
    } catch (err) {
      this.failure = { err };
      this.ended = true;
      this.slots.release(slot);
      throw err;
    }
    if (got === 0) {
      this.slots.release(slot);
      return undefined;
    }
    const start = this.pos;
    this.pos += got;
    return { slot, start, length: got, data: slot.buf.subarray(0, got) };
  }
}

/** `p`, or the signal's reason as soon as it aborts (a stream may not listen to it). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

/** Moves forward through a source's chunks; hands out byte ranges, copying only those that straddle two chunks. */
class Cursor {
  private cur: Chunk | undefined;
  /** Where the source ended, once it did (known up front for a file). */
  private end: number | undefined;
  private seen = 0;

  constructor(
    private readonly source: ChunkSource,
    private readonly name: string,
    size: number | undefined,
    private readonly slots: SlotPool,
    /** Called before the current chunk is left (pieces that use it are sent off first). */
    private readonly beforeLeaving: () => Promise<void>,
  ) {
    this.end = size;
  }

  /** The chunk holding byte `pos` (never before the current one); `cut` says why a source that ends first is truncated. */
  async chunkAt(pos: number, cut?: (end: number) => string): Promise<Chunk> {
    if (this.cur !== undefined && pos < this.cur.start) throw new OneswapError('data', `${this.name} is damaged: byte ${pos} is needed after byte ${this.cur.start}, a stream goes forward only`, { hint: DAMAGED });
    while (this.cur === undefined || pos >= this.cur.start + this.cur.length) {
      if (this.cur !== undefined) {
        await this.beforeLeaving();
        this.release();
      }
      this.cur = await this.source.read();
      if (this.cur === undefined) {
        this.end ??= this.seen;
        throw truncated(this.name, cut?.(this.end) ?? `byte ${pos} is needed, it ends at byte ${this.end}`);
      }
      this.seen = this.cur.start + this.cur.length;
    }
    return this.cur;
  }

  /** Bytes [pos, pos + length): a view into a chunk (with its slot), or a copy when they straddle chunks. */
  async bytes(pos: number, length: number, cut?: (end: number) => string): Promise<{ data: Buffer; slot: Slot | undefined }> {
    const c = await this.chunkAt(pos, cut);
    const off = pos - c.start;
    if (off + length <= c.length) return { data: c.data.subarray(off, off + length), slot: c.slot };
    const out = Buffer.from(new SharedArrayBuffer(length));
    for (let have = 0; have < length; ) {
      const d = await this.chunkAt(pos + have, cut);
      const from = pos + have - d.start;
      const n = Math.min(length - have, d.length - from);
      d.data.copy(out, have, from, from + n);
      have += n;
    }
    return { data: out, slot: undefined };
  }

  /** Steps forward until the bytes before `pos` were read (they are passed over). */
  async reach(pos: number, cut: (end: number) => string): Promise<void> {
    if (pos > 0) await this.chunkAt(pos - 1, cut);
  }

  /** True when the source ends exactly at `pos` (where a marker would be). */
  async endsAt(pos: number): Promise<boolean> {
    if (this.end !== undefined) return pos === this.end;
    if (this.cur !== undefined && pos < this.cur.start + this.cur.length) return false;
    try {
      await this.chunkAt(pos);
      return false;
    } catch (err) {
      if (this.end !== undefined && pos === this.end) return true;
      throw err;
    }
  }

  /** Reads the rest of the source (for its digest, or so a transfer completes). */
  async finish(): Promise<void> {
    await this.beforeLeaving();
    this.release();
    for (let c = await this.source.read(); c !== undefined; c = await this.source.read()) this.slots.release(c.slot);
  }

  /** Gives the current chunk back. */
  release(): void {
    if (this.cur !== undefined) this.slots.release(this.cur.slot);
    this.cur = undefined;
  }
}

// ---- the work: pieces for the workers, batched into jobs ----

/** What a worker does with one run of source bytes. */
interface Piece {
  readonly sab: SharedArrayBuffer;
  readonly off: number;
  readonly len: number;
  /** Where it goes in the target. */
  readonly pos: number;
  /** 0: raw bytes; else the grain size the compressed bytes inflate to. */
  readonly grain: number;
  /** Bytes of it that are inside the disk (a grain at the disk's end may be cut). */
  readonly need: number;
  /** Where it came from in the source file, for messages. */
  readonly at: number;
  /** Only these parts of it are written: [from, to) pairs relative to pos (a stream into planned areas). */
  readonly parts: number[] | undefined;
}

/** Pieces gathered into jobs of about JOB_BYTES; each piece holds its chunk until its job is written. */
class Batch {
  private pieces: Piece[] = [];
  private held: Slot[] = [];
  private bytes = 0;
  /** Inflated bytes of the job's grains: they must fit its output buffer. */
  private inflated = 0;

  constructor(private readonly jobs: Jobs) {}

  async add(data: Buffer, slot: Slot | undefined, pos: number, grain: number, need: number, at: number, parts?: number[]): Promise<void> {
    if (this.inflated + grain > OUT_BYTES) await this.flush();
    if (slot !== undefined) {
      this.jobs.slots.retain(slot);
      this.held.push(slot);
    }
    this.pieces.push({ sab: data.buffer as SharedArrayBuffer, off: data.byteOffset, len: data.length, pos, grain, need, at, parts });
    this.bytes += data.length;
    this.inflated += grain;
    if (this.bytes >= JOB_BYTES || this.pieces.length >= JOB_PIECES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pieces.length === 0) return;
    const pieces = this.pieces;
    const held = this.held;
    const inflates = this.inflated > 0;
    this.pieces = [];
    this.held = [];
    this.bytes = 0;
    this.inflated = 0;
    await this.jobs.submit(pieces, held, inflates);
  }
}

interface JobResult {
  readonly id: number;
  /**
   * The non-zero runs to write, four numbers each: where the bytes are (-1: the job's output
   * buffer, else the index of the piece whose buffer holds them), their offset in that buffer,
   * their length, and their place on the disk.
   */
  readonly runs?: number[];
  readonly error?: { readonly piece: number; readonly kind: 'inflate' | 'size'; readonly message: string; readonly length?: number };
}

/**
 * Jobs of one decode in flight, at most a few at a time: each is inflated and scanned by a worker,
 * then its runs are written (WRITES at once over the whole decode) and its buffers given back.
 * The first failure is kept.
 */
class Jobs {
  private readonly inFlight = new Set<Promise<void>>();
  private error: unknown;
  private readonly max: number;
  /** One output buffer per job in flight, so taking one never waits. */
  private readonly outs: SlotPool;
  private writing = 0;
  private readonly writeQueue: Array<() => void> = [];
  private sourceName = '';
  /** Zero detection and write granularity, and whether a block a piece cuts is sent whole-of-its-part (see TargetWriter.blockSize). */
  private readonly block: number;
  private readonly whole: boolean;

  constructor(
    private readonly workers: WorkerPool,
    readonly slots: SlotPool,
    private readonly target: TargetWriter,
    private readonly onWritten: (bytes: number) => void,
  ) {
    // Two per worker keep them busy; two more for jobs whose runs are being written.
    this.max = workers.size * 2 + 2;
    // One spare byte: inflating a grain into exactly its place tells a grain that inflates to more.
    this.outs = new SlotPool(this.max, OUT_BYTES + 1);
    this.block = Math.max(ZERO_BLOCK, target.blockSize ?? 0);
    this.whole = target.blockSize !== undefined;
  }

  setSource(name: string): void {
    this.sourceName = name;
  }

  async submit(pieces: Piece[], held: Slot[], inflates: boolean): Promise<void> {
    while (this.inFlight.size >= this.max && this.error === undefined) await Promise.race(this.inFlight);
    if (this.error !== undefined) {
      for (const s of held) this.slots.release(s);
      throw this.error;
    }
    const out = inflates ? await this.outs.acquire() : undefined;
    if (out !== undefined) out.refs = 1;
    const p = this.run(pieces, out, this.sourceName)
      .catch((err: unknown) => {
        this.error ??= err;
      })
      .finally(() => {
        for (const s of held) this.slots.release(s);
        if (out !== undefined) this.outs.release(out);
        this.inFlight.delete(p);
      });
    this.inFlight.add(p);
  }

  /** Waits for every job; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    if (this.error !== undefined) throw this.error;
  }

  /** Waits for every job and write, whatever happened (the target is closed next). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async run(pieces: readonly Piece[], out: Slot | undefined, source: string): Promise<void> {
    const r = await this.workers.run({ pieces, out: out?.sab, block: this.block, whole: this.whole });
    if (r.error !== undefined) throw jobError(r.error, pieces[r.error.piece]!, source);
    const runs = r.runs ?? [];
    const writes: Array<Promise<void>> = [];
    for (let k = 0; k < runs.length && this.error === undefined; k += 4) {
      const where = runs[k]!;
      const length = runs[k + 2]!;
      const data = Buffer.from(where < 0 ? out!.sab : pieces[where]!.sab, runs[k + 1]!, length);
      await this.writeSlot();
      writes.push(
        this.target
          .write(data, runs[k + 3]!)
          .then(() => this.onWritten(length))
          .finally(() => this.writeDone()),
      );
    }
    // Every write settled before the buffers go back: a write still in flight reads them.
    const settled = await Promise.allSettled(writes);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
  }

  private async writeSlot(): Promise<void> {
    if (this.writing >= WRITES) await new Promise<void>((resolve) => this.writeQueue.push(resolve));
    this.writing++;
  }

  private writeDone(): void {
    this.writing--;
    this.writeQueue.shift()?.();
  }
}

function jobError(e: NonNullable<JobResult['error']>, piece: Piece, source: string): OneswapError {
  const name = source || 'the disk';
  if (e.kind === 'inflate') return new OneswapError('data', `corrupt compressed grain at byte ${piece.at} of ${name}: ${e.message}`, { hint: DAMAGED });
  return new OneswapError('data', `corrupt compressed grain at byte ${piece.at} of ${name}: it inflates to ${e.length} bytes, a grain is ${piece.grain}`, {
    hint: DAMAGED,
  });
}

const DAMAGED = 'the disk file is damaged: copy or export it again';

// ---- the worker pool ----

/**
 * What a worker runs (plain JavaScript: workers start without the TypeScript loader). A job is a
 * list of pieces of shared memory; each compressed grain is inflated into the job's output
 * buffer, one after the other, then the non-zero runs of every piece are answered, runs that
 * continue each other (in memory and on the disk) joined into one. Zeros are found per block of
 * job.block bytes, aligned on the disk; with job.whole, the part of a block that a piece's edge
 * cuts is answered even when it is zero (the target assembles the block from its parts and must
 * see them all). Errors are answered, not thrown.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
let Z = ${ZERO_BLOCK}, ZERO = Buffer.alloc(Z), whole = false;
function isZero(buf, s, e) {
  if (e - s === Z) return buf.compare(ZERO, 0, Z, s, e) === 0;
  for (let i = s; i < e; i++) if (buf[i] !== 0) return false;
  return true;
}
// Adds the non-zero runs of data (disk byte pos, bytes of sab at data.byteOffset, answered as
// where) to runs; a run that continues the last one in the same buffer joins it.
let lastSab = null;
function addRuns(runs, where, sab, data, pos) {
  let run = -1;
  for (let i = 0; i <= data.length; ) {
    const e = Math.min(data.length, Math.floor((pos + i) / Z) * Z + Z - pos);
    const cut = whole && ((pos + i) % Z !== 0 || (pos + e) % Z !== 0);
    if (i === data.length || (!cut && isZero(data, i, e))) {
      if (run >= 0) {
        const off = data.byteOffset + run, len = i - run, at = pos + run, k = runs.length - 4;
        if (k >= 0 && sab === lastSab && runs[k + 1] + runs[k + 2] === off && runs[k + 3] + runs[k + 2] === at) runs[k + 2] += len;
        else { runs.push(where, off, len, at); lastSab = sab; }
        run = -1;
      }
      if (i === data.length) break;
    } else if (run < 0) run = i;
    i = e;
  }
}
// Inflation straight into the output buffer through the zlib handle Node's own inflateSync uses,
// so a grain costs no allocation (a new Inflate per grain costs ~170 KiB of garbage, which only
// the collector gives back: tens of MB per thread). Falls back to inflateSync if that handle's
// shape ever changes.
let inflater = null, failure = '';
function inflateTo(src, out, at, grain) {
  if (inflater === null) {
    inflater = new zlib.Inflate();
    const h = inflater._handle;
    if (!h || typeof h.writeSync !== 'function' || !(inflater._writeState instanceof Uint32Array)) {
      inflater = false;
    } else {
      h.onerror = (message, errno, code) => { failure = String(message || code || errno); };
    }
  }
  if (inflater === false) {
    const o = zlib.inflateSync(src, { maxOutputLength: grain });
    o.copy(out, at);
    return o.length;
  }
  failure = '';
  // grain + 1 bytes of room: the byte after a grain is the next grain's, not yet inflated, or the
  // buffer's spare one.
  inflater._handle.writeSync(zlib.constants.Z_FINISH, src, 0, src.length, out, at, grain + 1);
  if (failure !== '') {
    // The handle is not reused after an error.
    try { inflater._handle.onerror = () => {}; inflater.on('error', () => {}); inflater.destroy(); } catch {}
    inflater = null;
    throw new Error(failure);
  }
  const produced = grain + 1 - inflater._writeState[0];
  inflater._handle.reset();
  if (produced > grain) throw Object.assign(new Error('it inflates to more than a grain'), { code: 'ERR_BUFFER_TOO_LARGE' });
  return produced;
}
parentPort.on('message', (job) => {
  if (job.block !== Z) { Z = job.block; ZERO = Buffer.alloc(Z); }
  whole = job.whole;
  const out = job.out === undefined ? null : Buffer.from(job.out);
  const runs = [];
  lastSab = null;
  let at = 0;
  for (let i = 0; i < job.pieces.length; i++) {
    const p = job.pieces[i];
    let data = Buffer.from(p.sab, p.off, p.len), where = i, sab = p.sab;
    if (p.grain > 0) {
      let n;
      try {
        n = inflateTo(data, out, at, p.grain);
      } catch (e) {
        const message = e && e.code === 'ERR_BUFFER_TOO_LARGE' ? 'it inflates to more than a grain' : String(e && e.message || e);
        parentPort.postMessage({ id: job.id, error: { piece: i, kind: 'inflate', message } });
        return;
      }
      if (n !== p.grain && n !== p.need) {
        parentPort.postMessage({ id: job.id, error: { piece: i, kind: 'size', message: '', length: n } });
        return;
      }
      data = out.subarray(at, at + Math.min(n, p.need));
      where = -1;
      sab = job.out;
      at += p.grain;
    }
    if (p.parts === undefined) addRuns(runs, where, sab, data, p.pos);
    else for (let k = 0; k < p.parts.length; k += 2) {
      const from = p.parts[k], to = Math.min(p.parts[k + 1], data.length);
      if (to > from) addRuns(runs, where, sab, data.subarray(from, to), p.pos + from);
    }
  }
  parentPort.postMessage({ id: job.id, runs });
});
`;

interface PoolWorker {
  readonly worker: Worker;
  readonly pending: Map<number, { resolve: (r: JobResult) => void; reject: (e: unknown) => void }>;
}

/** Worker threads shared by every decode in the process; they keep the process alive only while they have work. */
class WorkerPool {
  private readonly workers: PoolWorker[] = [];
  private nextId = 1;

  constructor(readonly size: number) {}

  run(job: { readonly pieces: readonly Piece[]; readonly out: SharedArrayBuffer | undefined; readonly block: number; readonly whole: boolean }): Promise<JobResult> {
    const w = this.pick();
    const id = this.nextId++;
    return new Promise<JobResult>((resolve, reject) => {
      if (w.pending.size === 0) w.worker.ref();
      w.pending.set(id, { resolve, reject });
      w.worker.postMessage({ id, ...job });
    });
  }

  private pick(): PoolWorker {
    while (this.workers.length < this.size) this.spawn();
    let best = this.workers[0]!;
    for (const w of this.workers) if (w.pending.size < best.pending.size) best = w;
    return best;
  }

  private spawn(): PoolWorker {
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    const pw: PoolWorker = { worker, pending: new Map() };
    const gone = (err: unknown): void => {
      const i = this.workers.indexOf(pw);
      if (i >= 0) this.workers.splice(i, 1);
      for (const j of pw.pending.values()) j.reject(err);
      pw.pending.clear();
    };
    worker.on('message', (r: JobResult) => {
      const j = pw.pending.get(r.id);
      if (j === undefined) return;
      pw.pending.delete(r.id);
      if (pw.pending.size === 0) worker.unref();
      j.resolve(r);
    });
    worker.on('error', (err) => gone(new OneswapError('internal', `a VMDK decode thread failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => gone(new OneswapError('internal', `a VMDK decode thread stopped (exit ${code})`)));
    // After the listeners: adding one refs the worker's port again.
    worker.unref();
    this.workers.push(pw);
    return pw;
  }
}

let shared: WorkerPool | undefined;
function pool(): WorkerPool {
  shared ??= new WorkerPool(Math.max(2, Math.min(4, availableParallelism())));
  return shared;
}

// ---- errors ----

function truncated(name: string, why: string): OneswapError {
  return new OneswapError('data', `${name} is truncated: ${why}`, { hint: 'the disk file was cut short: copy or export it again' });
}

function badMarker(name: string, at: number, what: string): OneswapError {
  return new OneswapError('data', `${name} is damaged: the stream marker at byte ${at} describes ${what}`, { hint: DAMAGED });
}
