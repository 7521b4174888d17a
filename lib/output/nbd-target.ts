// A TargetWriter over an image qemu-nbd serves (qemu-nbd.ts): writes spread over its NBD
// connections, each request within the server's maximum, zeroing as WRITE_ZEROES that may
// deallocate, a flush on every connection. What a failure means is the caller's to say (a qcow2
// file and an RBD pool fail differently), through `explain`.

import { OneswapError } from '../errors/index.js';
import type { Extent } from '../extents/index.js';
import type { TargetWriter } from '../copy/index.js';
import type { NbdClient } from '../nbd/index.js';
import type { QemuNbd } from './qemu-nbd.js';

/** Turns a failed NBD request (or a server gone) into the error the user reads. */
export type ExplainWriteError = (err: unknown, server: QemuNbd) => OneswapError | Promise<OneswapError>;

/**
 * Largest WRITE_ZEROES sent: the length field has 32 bits; 1 GiB pieces stay aligned to any block
 * or object size.
 */
const ZERO_SPAN = 1024 * 1024 * 1024;

/**
 * After a failed request, how long qemu-nbd may take to close the image before it is terminated
 * (and then killed): what it still has to write is lost anyway, and the copy resumes from its
 * journal. A storage that holds writes back (a Ceph pool at its quota) keeps it from exiting.
 */
const FAILED_GRACE_MS = 5000;

export interface NbdWriterSpec {
  readonly server: QemuNbd;
  /** The image as the user knows it: the file's path, or "rbd one/one-12". */
  readonly name: string;
  /** The disk's capacity; the image may be larger (a placeholder rounded up to MiB). */
  readonly size: number;
  readonly explain: ExplainWriteError;
  /** Runs after qemu-nbd has exited (a private Ceph configuration is removed there). */
  readonly afterClose?: () => Promise<void>;
  /**
   * Asked while requests have waited `afterMs` (and again every `afterMs`): the error to fail
   * with at once, or undefined to keep waiting. A storage may hold writes back instead of failing
   * them (a Ceph pool at its quota holds them until there is room, or until librados' operation
   * timeout); this tells the user why without waiting that long.
   */
  readonly stalled?: { readonly afterMs: number; readonly check: () => Promise<OneswapError | undefined> };
}

export function nbdWriter(spec: NbdWriterSpec): TargetWriter {
  return new NbdWriter(spec);
}

class NbdWriter implements TargetWriter {
  readonly name: string;
  readonly size: number;
  private readonly busy: number[];
  private readonly maxRequest: number;
  private closing: Promise<void> | undefined;
  /** A request failed: closing need not wait long for a storage that is failing. */
  private failed = false;

  constructor(private readonly spec: NbdWriterSpec) {
    this.name = spec.name;
    this.size = spec.size;
    this.busy = spec.server.connections.map(() => 0);
    this.maxRequest = Math.min(...spec.server.connections.map((c) => c.maxRequest));
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.check(position, data.length);
    const pieces: Array<Promise<void>> = [];
    for (let off = 0; off < data.length; off += this.maxRequest) {
      const piece = data.subarray(off, Math.min(data.length, off + this.maxRequest));
      pieces.push(this.on((c) => c.write(position + off, piece)));
    }
    await this.settle(pieces);
  }

  async zero(areas: readonly Extent[]): Promise<void> {
    const pieces: Array<Promise<void>> = [];
    for (const a of areas) {
      this.check(a.start, a.length);
      for (let pos = a.start, end = a.start + a.length; pos < end; ) {
        const next = Math.min(end, (Math.floor(pos / ZERO_SPAN) + 1) * ZERO_SPAN);
        const at = pos;
        // No NO_HOLE flag: qemu (--discard=unmap) deallocates what it can and zeroes the rest.
        pieces.push(this.on((c) => c.writeZeroes(at, next - at)));
        pos = next;
      }
    }
    await this.settle(pieces);
  }

  async flush(): Promise<void> {
    // Each connection flushes what it wrote: with several connections, one flush need not cover
    // the others' writes unless the server says so (NBD_FLAG_CAN_MULTI_CONN), so all are asked.
    await this.settle(this.spec.server.connections.map((c) => c.flush()));
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.spec.server.stop(this.failed ? FAILED_GRACE_MS : undefined);
      } finally {
        await this.spec.afterClose?.();
      }
    })();
    return this.closing;
  }

  private check(start: number, length: number): void {
    if (start < 0 || length < 0 || start + length > this.size)
      throw new OneswapError('internal', `write of [${start}, ${start + length}) lies outside ${this.name} (${this.size} bytes)`);
    if (this.closing) throw new OneswapError('internal', `${this.name} is already closed`);
  }

  /** Runs one request on the connection with the fewest in flight. */
  private async on(request: (c: NbdClient) => Promise<void>): Promise<void> {
    let i = 0;
    for (let j = 1; j < this.busy.length; j++) if (this.busy[j]! < this.busy[i]!) i = j;
    this.busy[i]!++;
    try {
      await request(this.spec.server.connections[i]!);
    } finally {
      this.busy[i]!--;
    }
  }

  /**
   * Waits for every piece (the caller's buffer is in use until then), then reports the first
   * failure. A stalled storage that says why fails the call before its pieces settle: the writer
   * is then failed, and closing it stops qemu-nbd with what it holds, which no journal recorded.
   */
  private async settle(pieces: Array<Promise<void>>): Promise<void> {
    const all = Promise.allSettled(pieces);
    const results = this.spec.stalled ? await this.watch(all, this.spec.stalled) : await all;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.failed = true;
      throw await this.spec.explain(failed.reason, this.spec.server);
    }
  }

  private async watch<T>(all: Promise<T>, stalled: NonNullable<NbdWriterSpec['stalled']>): Promise<T> {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<'waited'>((resolve) => (timer = setTimeout(() => resolve('waited'), stalled.afterMs)));
      const first = await Promise.race([all, waited]).finally(() => clearTimeout(timer));
      if (first !== 'waited') return first as T;
      const why = await stalled.check();
      if (why) {
        this.failed = true;
        throw why;
      }
    }
  }
}
