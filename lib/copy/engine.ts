// The copy engine: reads byte ranges from a source and writes them at the same offsets into a
// target (a raw file, or an image a block server serves: see target.ts). Several range streams run at once, each holding one staging buffer, so memory is
// bounded by streams x bufferSize whatever the disk size. Blocks that are all zero are not written
// (the target keeps its holes), which is what makes the target as sparse as the source's data.

import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError } from '../errors/index.js';
import { type Extent, normalizeExtents, splitExtents, totalLength } from '../extents/index.js';
import { together } from './together.js';
import type { TargetWriter } from './target.js';

/** Where the bytes come from: anything that can stream a byte range. */
export interface RangeSource {
  /** Shown in errors, e.g. "[LocalDS_0] web01/web01-flat.vmdk". */
  readonly name: string;
  /** Streams exactly the bytes [start, end). Must reject or error the stream on a short read. */
  open(start: number, end: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
}

/**
 * An optional faster way for a source's body to deliver: a Readable body may carry a function
 * under this global symbol. Called once instead of reading the stream, it hands every chunk to
 * `sink.data` synchronously — the chunk is lent (valid only during the call; the source reuses
 * its memory), so the engine's copy into its staging buffer is the only copy — and calls
 * `sink.end` after the last one. When `data` returns false the source waits until the function
 * it returned is called. Errors still arrive as the Readable's 'error' (or an early 'close').
 */
export const DIRECT_CHUNKS = Symbol.for('oneswap.directChunks');
export interface DirectChunkSink {
  data(chunk: Uint8Array): boolean;
  end(): void;
}
export type DirectChunks = (sink: DirectChunkSink) => () => void;

export interface CopyProgress {
  /** Bytes of the planned extents already handled (written or found zero). */
  readonly bytesDone: number;
  readonly bytesPlanned: number;
  readonly bytesWritten: number;
}

export interface CopyOptions {
  readonly source: RangeSource;
  /** Where the bytes go, opened by the caller (who closes it); flushed before the copy returns. */
  readonly target: TargetWriter;
  readonly capacity: number;
  /** Areas to copy; everything else of the target is left as it is. */
  readonly extents: readonly Extent[];
  /**
   * True when unwritten areas of the target already read as zeros (a fresh sparse placeholder, or
   * areas this engine has never touched): zero blocks are then simply skipped. False for a target
   * holding older data (warm rounds), where zero blocks must become holes.
   */
  readonly targetIsZero: boolean;
  /** Parallel range streams (HTTP connections). */
  readonly streams?: number;
  /** Largest byte range asked for in one request. */
  readonly requestSize?: number;
  /** Staging buffer per stream; also the largest single write. */
  readonly bufferSize?: number;
  /** Retries per range after a failed or cut read, with exponential back-off. */
  readonly retries?: number;
  readonly retryDelayMs?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: CopyProgress) => void;
  /**
   * Called for every span handled (written, or found zero), one staging buffer at a time, so a
   * resume journal loses at most one buffer per stream when the process dies. Not yet synced.
   */
  readonly onWritten?: (span: Extent) => void;
}

export interface CopyStats {
  readonly bytesPlanned: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly bytesZero: number;
  readonly requests: number;
  readonly retries: number;
  readonly durationMs: number;
}

/** Zero detection granularity: the file system block size, so a skipped block is a real hole. */
const ZERO_BLOCK = 4096;
const ZEROS = Buffer.alloc(ZERO_BLOCK);

const DEFAULTS = {
  streams: 4,
  requestSize: 64 * 1024 * 1024,
  bufferSize: 1024 * 1024,
  retries: 5,
  retryDelayMs: 500,
};

export async function copyExtents(options: CopyOptions): Promise<CopyStats> {
  const started = Date.now();
  const streams = Math.max(1, options.streams ?? DEFAULTS.streams);
  const bufferSize = roundUp(options.bufferSize ?? DEFAULTS.bufferSize, ZERO_BLOCK);
  const requestSize = Math.max(bufferSize, options.requestSize ?? DEFAULTS.requestSize);
  const retries = options.retries ?? DEFAULTS.retries;
  const retryDelayMs = options.retryDelayMs ?? DEFAULTS.retryDelayMs;

  const planned = normalizeExtents(options.extents, options.capacity);
  // Aligned pieces spread a big extent over all streams, so one large data island is not read
  // by a single connection while the others sit idle.
  const work = splitExtents(planned, requestSize);
  const bytesPlanned = totalLength(planned);
  const counters = { bytesDone: 0, bytesRead: 0, bytesWritten: 0, bytesZero: 0, requests: 0, retries: 0 };

  const target = options.target;
  // Writes still running when a stream fails: waited for before the error goes up, so the caller
  // closes (or removes) a target nothing writes to any more.
  const inFlight = new Set<Promise<void>>();
  try {
    let next = 0;
    const worker = async (signal: AbortSignal): Promise<void> => {
      const staging = Buffer.allocUnsafe(bufferSize);
      while (next < work.length) {
        signal.throwIfAborted();
        const range = work[next++]!;
        await copyRange(range, staging, signal);
      }
    };

    const copyRange = async (range: Extent, staging: Buffer, signal: AbortSignal): Promise<void> => {
      // Everything before cursor.pos is written (or known zero): a retry resumes there.
      const cursor = { pos: range.start };
      const end = range.start + range.length;
      for (let attempt = 0; ; attempt++) {
        try {
          counters.requests++;
          await streamInto(cursor, end, staging, signal);
          return;
        } catch (err) {
          if (signal.aborted) throw err;
          if (!isRetryable(err) || attempt >= retries) throw wrapReadError(err, options.source.name, cursor.pos);
          counters.retries++;
          await sleep(retryDelayMs * 2 ** attempt, undefined, { signal });
        }
      }
    };

    const streamInto = async (cursor: { pos: number }, end: number, staging: Buffer, signal: AbortSignal): Promise<void> => {
      const body = await options.source.open(cursor.pos, end, signal);
      const fill = { bytes: 0 }; // bytes in staging, which starts at file offset cursor.pos
      // Copies as much of chunk[off..] as fits into staging; returns the new offset in chunk.
      const take = (chunk: Uint8Array, off: number): number => {
        const n = Math.min(chunk.length - off, staging.length - fill.bytes);
        if (cursor.pos + fill.bytes + n > end) throw new ShortReadError(`more data than asked for at offset ${cursor.pos + fill.bytes}`);
        staging.set(n === chunk.length ? chunk : chunk.subarray(off, off + n), fill.bytes);
        fill.bytes += n;
        counters.bytesRead += n;
        return off + n;
      };
      const flush = async (): Promise<void> => {
        await writeNonZero(staging, fill.bytes, cursor.pos);
        options.onWritten?.({ start: cursor.pos, length: fill.bytes });
        cursor.pos += fill.bytes;
        fill.bytes = 0;
      };
      if (isReadable(body)) await pumpReadable(body, take, flush, () => fill.bytes === staging.length, signal);
      else {
        for await (const chunk of body) {
          for (let off = 0; off < chunk.length; ) {
            off = take(chunk, off);
            if (fill.bytes === staging.length) await flush();
          }
        }
      }
      if (fill.bytes > 0) await flush();
      if (cursor.pos !== end) throw new ShortReadError(`stream ended at offset ${cursor.pos}, expected ${end}`);
    };

    const writeNonZero = async (buf: Buffer, length: number, fileOffset: number): Promise<void> => {
      const holes: Extent[] = [];
      let runStart = -1; // start of the current run of non-zero blocks within buf
      for (let i = 0; i < length; i += ZERO_BLOCK) {
        const blockEnd = Math.min(i + ZERO_BLOCK, length);
        const zero = isZero(buf, i, blockEnd);
        if (!zero && runStart < 0) runStart = i;
        if (zero) {
          if (runStart >= 0) {
            await writeAll(buf, runStart, i - runStart, fileOffset + runStart);
            runStart = -1;
          }
          counters.bytesZero += blockEnd - i;
          if (!options.targetIsZero) addHole(holes, fileOffset + i, blockEnd - i);
        }
      }
      if (runStart >= 0) await writeAll(buf, runStart, length - runStart, fileOffset + runStart);
      if (holes.length > 0) await target.zero(holes);
      counters.bytesDone += length;
      options.onProgress?.({ bytesDone: counters.bytesDone, bytesPlanned, bytesWritten: counters.bytesWritten });
    };

    const writeAll = async (buf: Buffer, off: number, len: number, position: number): Promise<void> => {
      const w = target.write(buf.subarray(off, off + len), position);
      inFlight.add(w);
      try {
        await w;
      } finally {
        inFlight.delete(w);
      }
      counters.bytesWritten += len;
    };

    // One failing stream stops the others before the file is closed under them.
    await together(
      Array.from({ length: Math.min(streams, Math.max(1, work.length)) }, () => worker),
      options.signal,
    );
    await target.flush();
  } finally {
    await Promise.allSettled([...inFlight]);
  }

  return {
    bytesPlanned,
    bytesRead: counters.bytesRead,
    bytesWritten: counters.bytesWritten,
    bytesZero: counters.bytesZero,
    requests: counters.requests,
    retries: counters.retries,
    durationMs: Date.now() - started,
  };
}

/** A source stream that delivered fewer or more bytes than asked: worth a retry. */
export class ShortReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShortReadError';
  }
}

/** A Node stream (an HTTP body): read through its events, not an async iterator. */
function isReadable(body: AsyncIterable<Uint8Array>): body is Readable {
  return body instanceof Readable;
}

/**
 * Feeds a Node Readable into the staging buffer. An HTTPS body arrives in TLS records of 16 KiB
 * at most; reading them through `for await` costs a promise and a few microtasks per record, a
 * large share of the CPU a fast copy uses. Here a record is one synchronous copy. A body that
 * offers the direct-chunk protocol (DIRECT_CHUNKS) lends each record from its own read buffer,
 * so that copy is the only one; otherwise its 'data' events are used. The source is held back
 * only while a full staging buffer is written, so memory stays one buffer per stream (plus the
 * source's own small buffer).
 */
function pumpReadable(
  body: Readable,
  take: (chunk: Uint8Array, off: number) => number,
  flush: () => Promise<void>,
  full: () => boolean,
  signal: AbortSignal,
): Promise<void> {
  const direct = (body as Partial<Record<typeof DIRECT_CHUNKS, DirectChunks>>)[DIRECT_CHUNKS];
  return new Promise<void>((resolve, reject) => {
    let done = false;
    let ended = false; // the source delivered everything
    let writing: Promise<void> | undefined;
    // Chunks (own copies) that came while a write was running: a source may deliver a little
    // after being told to wait (Node emits every TLS record it has already decrypted).
    const backlog: Uint8Array[] = [];
    let resumeDirect: (() => void) | undefined;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', finish);
      body.off('close', onClose);
      body.on('error', () => undefined); // the source may still report its own end of the story
      signal.removeEventListener('abort', onAbort);
      if (err === undefined) resolve();
      else {
        body.destroy();
        // Settle only once a write in progress is over: the caller closes the file next.
        void (writing ?? Promise.resolve()).catch(() => undefined).then(() => reject(err));
      }
    };
    // Copies chunk[off..]; a full staging buffer is written while the source waits. Returns
    // false when the source must wait for resume().
    const consume = (chunk: Uint8Array, off: number, lent: boolean): boolean => {
      try {
        while (off < chunk.length) {
          off = take(chunk, off);
          if (full()) {
            if (direct === undefined) body.pause();
            // A lent chunk is only valid now: keep a copy of its unread tail (under one record).
            if (off < chunk.length) backlog.unshift(lent ? Buffer.from(chunk.subarray(off)) : chunk.subarray(off));
            writing = flush();
            writing.then(afterWrite, finish);
            return false;
          }
        }
        return true;
      } catch (err) {
        finish(err);
        return false;
      }
    };
    const afterWrite = (): void => {
      writing = undefined;
      if (done) return;
      for (let c = backlog.shift(); c !== undefined; c = backlog.shift()) if (!consume(c, 0, false)) return;
      if (ended) finish();
      else if (direct === undefined) body.resume();
      else resumeDirect?.();
    };
    const accept = (chunk: Uint8Array, lent: boolean): boolean => {
      if (done) return false;
      if (writing !== undefined) {
        backlog.push(lent ? Buffer.from(chunk) : chunk);
        return false;
      }
      return consume(chunk, 0, lent);
    };
    const onData = (chunk: Uint8Array): void => {
      accept(chunk, false);
    };
    const onEnd = (): void => {
      ended = true;
      if (writing === undefined) finish();
    };
    // A stream that ended closes too, possibly while its last buffer is still being written.
    const onClose = (): void => {
      if (!ended) finish(new ShortReadError('the stream closed before its end'));
    };
    const onAbort = (): void => finish(signal.reason);
    body.once('error', finish);
    body.once('close', onClose);
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) return onAbort();
    // A body that failed or closed before we got to it has nothing more to say.
    if (body.errored) return finish(body.errored);
    if (body.destroyed) return finish(new ShortReadError('the stream was closed before it was read'));
    if (direct !== undefined) resumeDirect = direct.call(body, { data: (chunk) => accept(chunk, true), end: onEnd });
    else {
      body.on('data', onData);
      body.once('end', onEnd);
    }
  });
}

function isZero(buf: Buffer, start: number, end: number): boolean {
  if (end - start === ZERO_BLOCK) return buf.compare(ZEROS, 0, ZERO_BLOCK, start, end) === 0;
  for (let i = start; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

function addHole(holes: Extent[], start: number, length: number): void {
  const last = holes[holes.length - 1];
  if (last && last.start + last.length === start) holes[holes.length - 1] = { start: last.start, length: last.length + length };
  else holes.push({ start, length });
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function isRetryable(err: unknown): boolean {
  if (err instanceof ShortReadError) return true;
  if (err instanceof OneswapError) return err.kind === 'connection';
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|ECONNABORTED|EAI_AGAIN|UND_ERR_|ERR_STREAM_PREMATURE_CLOSE)/.test(code);
}

function wrapReadError(err: unknown, source: string, offset: number): unknown {
  if (err instanceof OneswapError) return err;
  return new OneswapError('connection', `reading ${source} failed at offset ${offset}: ${(err as Error).message}`, {
    hint: 'run the same command again: finished ranges are not copied again',
    cause: err,
  });
}
