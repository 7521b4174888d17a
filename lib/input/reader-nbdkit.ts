// The vddk and nfc readers: a VMware disk served by nbdkit (nbdkit.ts) and read over NBD
// (lib/nbd) as a RangeReading. A range the copy engine asks for is read in pieces of a few
// MiB from a small pool of connections, a couple of pieces ahead, so memory stays
// streams x (ahead + 1) x piece whatever the range. A failed or dropped read fails the range with
// a retryable error (the engine retries it from where it got); the next piece reconnects.

import type { RangeSource } from '../copy/index.js';
import { OneswapError } from '../errors/index.js';
import { type Extent, normalizeExtents } from '../extents/index.js';
import type { RangeReading } from './disk-reader.js';
import { NbdError, type NbdClient } from '../nbd/index.js';
import { startNbdkit, type NbdkitDisk, type NbdkitServer } from './nbdkit.js';

export interface NbdkitReaderOptions {
  /** NBD connections to nbdkit, and the range streams the engine may run (default 4). */
  readonly connections?: number;
  /** Bytes per NBD read (default 4 MiB). */
  readonly pieceSize?: number;
  /** Reads ahead per range stream (default 2). */
  readonly ahead?: number;
  readonly signal?: AbortSignal;
}

export interface NbdkitReading extends RangeReading {
  readonly reader: 'vddk' | 'nfc';
  /** The disk's size as nbdkit serves it. */
  readonly capacity: number;
  readonly allocated: (signal: AbortSignal) => Promise<Extent[]>;
}

const MiB = 1024 * 1024;
/** Largest block status request: the length field is 32 bits. */
const STATUS_SPAN = 1024 * MiB;

/** Starts nbdkit for the disk and opens it; a wrong password, thumbprint or name fails here. */
export async function openNbdkitDisk(disk: NbdkitDisk, options: NbdkitReaderOptions = {}): Promise<NbdkitReading> {
  const server = await startNbdkit(disk, options.signal);
  try {
    const first = await server.connect(options.signal);
    const pool = new Pool(server, first, Math.max(1, options.connections ?? 4), disk.file);
    const pieceSize = Math.max(4096, Math.min(options.pieceSize ?? 4 * MiB, first.maxRequest));
    const ahead = Math.max(0, options.ahead ?? 2);
    const name = disk.file;
    const source: RangeSource = {
      name,
      open: async (start, end, signal) => {
        if (start < 0 || end > first.size || start > end) {
          throw new OneswapError('internal', `range [${start}, ${end}) is outside disk ${name} (${first.size} bytes)`);
        }
        return readPieces(pool, start, end, pieceSize, ahead, signal);
      },
    };
    return {
      access: 'ranges',
      reader: disk.plugin,
      source,
      capacity: first.size,
      maxStreams: pool.size,
      allocated: (signal) => pool.allocated(signal),
      close: () => pool.close(),
    };
  } catch (err) {
    await server.close();
    throw err;
  }
}

/** Streams [start, end) piece by piece, keeping up to `ahead` further pieces in flight. */
async function* readPieces(pool: Pool, start: number, end: number, pieceSize: number, ahead: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const inFlight: Array<Promise<Buffer>> = [];
  let next = start;
  const launch = (): void => {
    const len = Math.min(pieceSize, end - next);
    const p = pool.read(next, len, signal);
    p.catch(() => undefined); // awaited in order below; an early failure must not go unhandled
    inFlight.push(p);
    next += len;
  };
  try {
    while (next < end || inFlight.length > 0) {
      while (next < end && inFlight.length <= ahead) launch();
      yield await inFlight.shift()!;
    }
  } finally {
    // The consumer stopped early (error, abort): the remaining reads finish on their own.
    inFlight.length = 0;
  }
}

/** The connections of one nbdkit, created on demand, replaced when they break. */
class Pool {
  private readonly slots: Array<{ conn: Promise<NbdClient> | undefined; busy: number }>;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly server: NbdkitServer,
    first: NbdClient,
    readonly size: number,
    private readonly name: string,
  ) {
    this.slots = Array.from({ length: size }, () => ({ conn: undefined, busy: 0 }));
    this.slots[0]!.conn = Promise.resolve(first);
  }

  async read(offset: number, length: number, signal: AbortSignal): Promise<Buffer> {
    return this.use(signal, (c) => c.read(offset, length, signal), offset);
  }

  /** Data areas by NBD block status: holes and areas reading as zeros are left out. */
  async allocated(signal: AbortSignal): Promise<Extent[]> {
    const data: Extent[] = [];
    let size = 0;
    let pos = 0;
    do {
      const got = await this.use(
        signal,
        async (c) => {
          size = c.size;
          if (!c.hasBlockStatus) return [{ start: 0, length: c.size, hole: false, zero: false }];
          return c.blockStatus(pos, Math.min(STATUS_SPAN, c.size - pos), signal);
        },
        pos,
      );
      for (const e of got) if (!e.hole && !e.zero) data.push({ start: e.start, length: e.length });
      const last = got[got.length - 1]!;
      pos = Math.max(pos + 1, last.start + last.length);
    } while (pos < size);
    return normalizeExtents(data, size);
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      await Promise.allSettled(this.slots.map(async (s) => (await s.conn)?.close()));
      await this.server.close();
    })();
    return this.closed;
  }

  /** Runs one request on the least busy connection, (re)connecting it first when needed. */
  private async use<T>(signal: AbortSignal, fn: (c: NbdClient) => Promise<T>, offset: number): Promise<T> {
    if (this.closed) throw new OneswapError('interrupted', `the reader of disk ${this.name} is closed`);
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    slot.busy++;
    try {
      let conn = slot.conn;
      if (conn === undefined) {
        conn = this.server.connect(signal);
        slot.conn = conn;
        conn.catch(() => {
          if (slot.conn === conn) slot.conn = undefined;
        });
      }
      const c = await conn;
      try {
        return await fn(c);
      } finally {
        // A dropped connection is replaced by the next request on this slot.
        if (c.broken && slot.conn === conn) slot.conn = undefined;
      }
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw this.readError(err, offset);
    } finally {
      slot.busy--;
    }
  }

  private readError(err: unknown, offset: number): unknown {
    if (err instanceof OneswapError) return err;
    // Server errors and dropped connections are worth the engine's retry (kind 'connection').
    const detail = err instanceof NbdError ? err.message : String((err as Error)?.message ?? err);
    return new OneswapError('connection', `reading disk ${this.name} through nbdkit failed at offset ${offset}: ${detail}`, { cause: err });
  }
}
