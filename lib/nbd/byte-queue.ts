// Bytes received from the server and not yet consumed. Chunks stay as they came (a READ's data is
// copied once, into its own buffer); only small headers are joined.

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // consumed bytes of chunks[0]
  available = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  /** Removes and returns n bytes (n <= available). */
  take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.skip(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyTo(out, 0, n);
    return out;
  }

  /** Moves n bytes (n <= available) into target at pos. */
  copyTo(target: Buffer | undefined, pos: number, n: number): void {
    while (n > 0) {
      const first = this.chunks[0]!;
      const k = Math.min(n, first.length - this.head);
      if (target) first.copy(target, pos, this.head, this.head + k);
      this.skip(k);
      pos += k;
      n -= k;
    }
  }

  private skip(n: number): void {
    this.available -= n;
    this.head += n;
    while (this.chunks.length > 0 && this.head >= this.chunks[0]!.length) {
      this.head -= this.chunks[0]!.length;
      this.chunks.shift();
    }
  }
}
