// Progress of a datastore copy, shown where OpenNebula users look: the image's ONESWAP_PROGRESS
// attribute (`oneimage show`, Sunstone's image tab). Updated at most once per interval, so a
// hundred parallel copies stay a trickle of calls to oned. An image that vanished meanwhile
// (force-deleted while LOCKED) stops the copy: nobody would ever find the file.

import { OneswapError } from '../errors/index.js';
import { OneApiError, OneErrorCode, Template, type OneClient } from '../one/index.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export class ImageProgress {
  private last = 0;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly one: OneClient | undefined,
    private readonly imageId: number,
    private readonly intervalMs: number,
    private readonly onGone: (err: OneswapError) => void,
  ) {}

  /** Copy progress; sent only when the interval has passed and no update is under way. */
  copying(done: number, total: number, startedAt: number): void {
    const now = Date.now();
    if (now - this.last < this.intervalMs || this.inFlight) return;
    this.last = now;
    const pct = total === 0 ? 100 : Math.floor((done / total) * 100);
    const secs = (now - startedAt) / 1000;
    const rate = secs > 0 ? ` at ${Math.round(done / MiB / secs)} MiB/s` : '';
    this.send(`copying ${pct}% (${size(done)} of ${size(total)}${rate})`);
  }

  /** A step worth showing at once (copied, waiting for the other disks, converting …). */
  async say(text: string, extra: Record<string, string | number> = {}): Promise<void> {
    await this.inFlight;
    this.last = Date.now();
    this.send(text, extra);
    await this.inFlight;
  }

  private send(text: string, extra: Record<string, string | number> = {}): void {
    if (!this.one) return;
    const one = this.one;
    this.inFlight = one
      .imageUpdate(this.imageId, Template.of({ ONESWAP_PROGRESS: text, ...extra }), 'merge')
      .catch((err: unknown) => {
        if (err instanceof OneApiError && err.code === OneErrorCode.NO_EXISTS)
          this.onGone(new OneswapError('interrupted', `image ${this.imageId} was deleted while its disk was being copied; copy stopped`));
        // Anything else: progress is a courtesy, the copy goes on.
      })
      .finally(() => (this.inFlight = undefined));
  }
}

function size(bytes: number): string {
  return bytes >= GiB ? `${(bytes / GiB).toFixed(1)} GiB` : `${Math.round(bytes / MiB)} MiB`;
}
