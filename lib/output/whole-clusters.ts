// A TargetWriter for an image that takes whole clusters only, each once: a qcow2 file behind
// qemu's compress filter (qcow2-target.ts), which pads a partial write to its cluster with what
// the image holds and then compresses the whole cluster, and which fails (EIO) on a cluster that
// is already allocated. So a cluster must reach it in one write, complete.
//
// Whole clusters go straight through, several in one write. A cluster that arrives in parts is
// assembled in memory and written once its parts cover it, or at the flush, the rest being zeros
// (the image is fresh: what nobody wrote reads as zeros). An assembled cluster that is all zeros
// is not written, so it stays unallocated. The disk's last cluster, when the disk is not a whole
// number of clusters, is written padded with zeros: the image is that much larger while it is
// written (the compress filter refuses an image whose size is not a multiple of its cluster).
//
// Writing a cluster a second time is refused here, where it is clear, rather than as qemu's EIO.
// Memory: the clusters being assembled, at most `maxPending`; producers that honour `blockSize`
// (the VMDK decoder) leave only the few their pieces' edges cut.

import { OneswapError } from '../errors/index.js';
import type { Extent } from '../extents/index.js';
import type { TargetWriter } from '../copy/index.js';

export interface WholeClustersSpec {
  /** The disk's capacity; the inner writer holds it rounded up to a whole cluster. */
  readonly size: number;
  readonly cluster: number;
  /** Clusters assembled at once at most (default 1024: 64 MiB of 64 KiB clusters). */
  readonly maxPending?: number;
  /** What the user can do when the data comes too scattered to assemble (an option to drop). */
  readonly scatteredHint?: string;
}

const MAX_PENDING = 1024;

/** A cluster being assembled: its bytes so far and the parts of it they cover. */
interface Assembly {
  readonly data: Buffer;
  /** Covered [start, end) offsets in the cluster, sorted and merged. */
  covered: Array<[number, number]>;
}

export function wholeClusters(inner: TargetWriter, spec: WholeClustersSpec): TargetWriter {
  const padded = Math.ceil(spec.size / spec.cluster) * spec.cluster;
  if (inner.size < padded) throw new OneswapError('internal', `${inner.name} holds ${inner.size} bytes, whole clusters of the disk need ${padded}`);
  return new WholeClusters(inner, spec);
}

class WholeClusters implements TargetWriter {
  readonly name: string;
  readonly size: number;
  readonly blockSize: number;
  private readonly zeros: Buffer;
  private readonly maxPending: number;
  /** One bit per cluster: handed to the inner writer (or found all zeros and settled). */
  private readonly sent: Uint8Array;
  private readonly pending = new Map<number, Assembly>();

  constructor(
    private readonly inner: TargetWriter,
    private readonly spec: WholeClustersSpec,
  ) {
    this.name = inner.name;
    this.size = spec.size;
    this.blockSize = spec.cluster;
    this.zeros = Buffer.alloc(spec.cluster);
    this.maxPending = spec.maxPending ?? MAX_PENDING;
    this.sent = new Uint8Array(Math.ceil(Math.ceil(spec.size / spec.cluster) / 8));
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.check(position, data.length);
    if (data.length === 0) return;
    const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
    const C = this.blockSize;
    const end = position + data.length;
    const sends: Array<Promise<void>> = [];
    // A run of whole clusters [runStart, c * C) not yet handed on.
    let runStart = -1;
    const endRun = (at: number): void => {
      if (runStart < 0) return;
      sends.push(this.inner.write(buf.subarray(runStart - position, at - position), runStart));
      runStart = -1;
    };
    try {
      for (let c = Math.floor(position / C); c * C < end; c++) {
        const start = c * C;
        const stop = Math.min(start + C, this.size);
        const from = Math.max(position, start);
        const to = Math.min(end, stop);
        this.claim(c);
        if (from === start && to === stop && !this.pending.has(c)) {
          if (stop - start === C) {
            if (runStart < 0) runStart = start;
            this.markSent(c);
            continue;
          }
          // The disk's last cluster, shorter than a cluster: written padded.
          endRun(start);
          this.sendAssembled(c, Buffer.concat([buf.subarray(from - position, to - position)], C), sends);
          continue;
        }
        endRun(start);
        const complete = this.assemble(c, buf.subarray(from - position, to - position), from - start);
        if (complete) this.sendAssembled(c, complete, sends);
      }
      endRun(end);
    } finally {
      // The caller's buffer is in use until every write of it settled.
      await this.settle(sends);
    }
  }

  /**
   * Zeros where nothing was written yet: parts of clusters being assembled count as covered (by
   * zeros), whole clusters need nothing. A cluster already written cannot be taken back.
   */
  async zero(areas: readonly Extent[]): Promise<void> {
    const C = this.blockSize;
    const sends: Array<Promise<void>> = [];
    try {
      for (const a of areas) {
        this.check(a.start, a.length);
        if (a.length === 0) continue;
        const end = a.start + a.length;
        for (let c = Math.floor(a.start / C); c * C < end; c++) {
          const start = c * C;
          const stop = Math.min(start + C, this.size);
          const from = Math.max(a.start, start);
          const to = Math.min(end, stop);
          this.claim(c);
          if (from === start && to === stop) {
            this.pending.delete(c);
            continue;
          }
          const complete = this.assemble(c, this.zeros.subarray(0, to - from), from - start);
          if (complete) this.sendAssembled(c, complete, sends);
        }
      }
    } finally {
      await this.settle(sends);
    }
  }

  /** The clusters still being assembled are written as they are (zeros where nothing came), then the inner flush. */
  async flush(): Promise<void> {
    const sends: Array<Promise<void>> = [];
    for (const [c, a] of this.pending) {
      this.pending.delete(c);
      this.sendAssembled(c, a.data, sends);
    }
    await this.settle(sends);
    await this.inner.flush();
  }

  close(): Promise<void> {
    this.pending.clear();
    return this.inner.close();
  }

  private check(start: number, length: number): void {
    if (start < 0 || length < 0 || start + length > this.size)
      throw new OneswapError('internal', `write of [${start}, ${start + length}) lies outside ${this.name} (${this.size} bytes)`);
  }

  /** Refuses a cluster already written: the image would fail it (compressed clusters are written once). */
  private claim(c: number): void {
    if ((this.sent[c >>> 3]! & (1 << (c & 7))) !== 0)
      throw new OneswapError('internal', `the cluster at byte ${c * this.blockSize} of ${this.name} is written twice; a compressed image takes each cluster once`);
  }

  private markSent(c: number): void {
    this.sent[c >>> 3]! |= 1 << (c & 7);
  }

  /** Adds `part` at `offset` of cluster `c`; returns the cluster's bytes once its parts cover it. */
  private assemble(c: number, part: Buffer, offset: number): Buffer | undefined {
    let a = this.pending.get(c);
    if (a === undefined) {
      if (this.pending.size >= this.maxPending)
        throw new OneswapError('usage', `${this.name}: the data comes in parts scattered over more than ${this.maxPending} clusters at once, too many to assemble into compressed clusters`, {
          ...(this.spec.scatteredHint ? { hint: this.spec.scatteredHint } : {}),
        });
      a = { data: Buffer.alloc(this.blockSize), covered: [] };
      this.pending.set(c, a);
    }
    part.copy(a.data, offset);
    a.covered = cover(a.covered, offset, offset + part.length);
    const length = Math.min(this.blockSize, this.size - c * this.blockSize);
    if (a.covered.length !== 1 || a.covered[0]![0] !== 0 || a.covered[0]![1] < length) return undefined;
    this.pending.delete(c);
    return a.data;
  }

  /** Hands a whole (or padded) cluster on; one that is all zeros stays unallocated. */
  private sendAssembled(c: number, data: Buffer, sends: Array<Promise<void>>): void {
    this.markSent(c);
    if (!data.equals(this.zeros)) sends.push(this.inner.write(data, c * this.blockSize));
  }

  private async settle(sends: Array<Promise<void>>): Promise<void> {
    const results = await Promise.allSettled(sends);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

/** `ranges` (sorted, merged) with [from, to) added. */
function cover(ranges: ReadonlyArray<[number, number]>, from: number, to: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let cur: [number, number] = [from, to];
  let placed = false;
  for (const r of ranges) {
    if (r[1] < cur[0]) out.push(r);
    else if (r[0] > cur[1]) {
      if (!placed) out.push(cur);
      placed = true;
      out.push(r);
    } else cur = [Math.min(r[0], cur[0]), Math.max(r[1], cur[1])];
  }
  if (!placed) out.push(cur);
  return out;
}
