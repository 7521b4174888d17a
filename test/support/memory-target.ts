// A TargetWriter in memory, standing for the targets that are no file (an NBD export of a qcow2
// or RBD image): what ends up in it, and every call in order, with what each write carried.

import type { TargetWriter } from '../../lib/copy/index.js';
import type { Extent } from '../../lib/extents/index.js';

export type TargetCall =
  | { readonly op: 'write'; readonly position: number; readonly data: Buffer }
  | { readonly op: 'zero'; readonly areas: readonly Extent[] }
  | { readonly op: 'flush' }
  | { readonly op: 'close' };

export interface MemoryTargetOptions {
  /** What the target holds before (its length is the size); zeros otherwise. */
  readonly content?: Buffer;
  /** The write with this number (1 is the first) fails with `error`, and every one after it. */
  readonly failAt?: number;
  readonly error?: unknown;
  /** Says it takes whole blocks of this size (TargetWriter.blockSize); it takes anything all the same. */
  readonly blockSize?: number;
}

export class MemoryTarget implements TargetWriter {
  readonly name = 'memory target';
  readonly bytes: Buffer;
  readonly blockSize?: number;
  readonly calls: TargetCall[] = [];
  /** Writes started and not settled yet; the most there ever were. */
  inFlight = 0;
  maxInFlight = 0;
  private writes = 0;

  constructor(
    readonly size: number,
    private readonly opts: MemoryTargetOptions = {},
  ) {
    this.bytes = opts.content === undefined ? Buffer.alloc(size) : Buffer.from(opts.content);
    if (opts.blockSize !== undefined) this.blockSize = opts.blockSize;
  }

  get written(): Array<{ readonly position: number; readonly data: Buffer }> {
    return this.calls.flatMap((c) => (c.op === 'write' ? [c] : []));
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    if (position < 0 || position + data.length > this.size) throw new Error(`write of ${data.length} bytes at ${position} outside ${this.size}`);
    const n = ++this.writes;
    this.calls.push({ op: 'write', position, data: Buffer.from(data) });
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      // Settles later, as a real target does: the caller must keep `data` until then.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.opts.failAt !== undefined && n >= this.opts.failAt) throw this.opts.error ?? new Error('write failed');
      this.bytes.set(data, position);
    } finally {
      this.inFlight--;
    }
  }

  zero(areas: readonly Extent[]): Promise<void> {
    this.calls.push({ op: 'zero', areas: areas.map((a) => ({ ...a })) });
    for (const a of areas) this.bytes.fill(0, a.start, a.start + a.length);
    return Promise.resolve();
  }

  flush(): Promise<void> {
    this.calls.push({ op: 'flush' });
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.calls.push({ op: 'close' });
    return Promise.resolve();
  }
}

/** Writes holding a disk-aligned block of `block` bytes whose part in the write is all zeros (none should). */
export function zeroBlocksWritten(target: MemoryTarget, block = 4096): string[] {
  const found: string[] = [];
  for (const { position, data } of target.written) {
    for (let b = Math.floor(position / block) * block; b < position + data.length; b += block) {
      const s = Math.max(b, position) - position;
      const e = Math.min(b + block, position + data.length) - position;
      if (data.subarray(s, e).every((x) => x === 0)) found.push(`${e - s} zero bytes at ${position + s}`);
    }
  }
  return found;
}
