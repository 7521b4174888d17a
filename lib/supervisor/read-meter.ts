// How many disk reads share an ESXi host, and this machine, while one disk is read. A copy's rate
// alone says nothing of its host: 32 MiB/s with another read of the same host beside it is a host
// delivering 64 MiB/s, not a disk that reads at 32. copy-rates.ts keeps the rate with these levels.

export interface ReadLevels {
  /** Disk reads at once, itself included, averaged over its time: of its host, and in all. */
  readonly hostLevel: number;
  readonly totalLevel: number;
}

export interface MeteredRead {
  /** The read is over: the levels it saw. Once only. */
  end(): ReadLevels;
}

interface Open {
  readonly host: string;
  readonly t0: number;
  /** ∫ reads at once dt, over the read's time so far (ms × reads). */
  hostArea: number;
  totalArea: number;
}

export class ReadMeter {
  private readonly open = new Set<Open>();
  private last = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  begin(host: string): MeteredRead {
    this.advance();
    const r: Open = { host, t0: this.now(), hostArea: 0, totalArea: 0 };
    this.open.add(r);
    let levels: ReadLevels | undefined;
    return {
      end: () => {
        if (levels) return levels;
        this.advance();
        this.open.delete(r);
        const ms = this.now() - r.t0;
        levels = ms > 0 ? { hostLevel: r.hostArea / ms, totalLevel: r.totalArea / ms } : { hostLevel: this.countOn(host) + 1, totalLevel: this.open.size + 1 };
        return levels;
      },
    };
  }

  /** Adds the time since the last change, at the levels that held during it, to every open read. */
  private advance(): void {
    const now = this.now();
    const dt = now - this.last;
    this.last = now;
    if (dt <= 0 || this.open.size === 0) return;
    const perHost = new Map<string, number>();
    for (const r of this.open) perHost.set(r.host, (perHost.get(r.host) ?? 0) + 1);
    for (const r of this.open) {
      r.hostArea += dt * perHost.get(r.host)!;
      r.totalArea += dt * this.open.size;
    }
  }

  private countOn(host: string): number {
    let n = 0;
    for (const r of this.open) if (r.host === host) n++;
    return n;
  }
}

/** This process's disk reads: every copy of every VM of a run is metered together. */
export const diskReads = new ReadMeter();
