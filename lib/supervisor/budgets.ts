// The limits a run keeps across its VMs, so a whole estate can move without melting an ESXi host
// or this host: disks read at once from one ESXi host, guests converting at once. Each is a slot
// a step holds while it works. Waiting is first come, first served and ends with the run's signal.

/** Gives the slot back; a second call does nothing. */
export type Release = () => void;

interface Waiter {
  readonly grant: () => void;
}

/** At most `limit` holders at once; the others wait in line. */
export class Slots {
  private held = 0;
  private readonly line: Waiter[] = [];
  /** The most holders there ever were at once: what a test or a summary reports. */
  peak = 0;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`a budget of ${limit}: at least 1`);
  }

  get inUse(): number {
    return this.held;
  }

  get waiting(): number {
    return this.line.length;
  }

  async take(signal?: AbortSignal): Promise<Release> {
    signal?.throwIfAborted();
    if (this.held < this.limit && this.line.length === 0) return this.granted();
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        const i = this.line.indexOf(waiter);
        if (i >= 0) this.line.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.line.push(waiter);
    });
    // The slot was handed over by the releaser (held was not decremented for us).
    return this.releaser();
  }

  /** Runs `fn` holding a slot. */
  async with<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.take(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private granted(): Release {
    this.held++;
    this.peak = Math.max(this.peak, this.held);
    return this.releaser();
  }

  private releaser(): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.line.shift();
      // Handed straight to the next in line: nobody can slip in between.
      if (next) next.grant();
      else this.held--;
    };
  }
}

/** Slots per key (an ESXi host), made on first use, all of the same size. */
export class KeyedSlots {
  private readonly byKey = new Map<string, Slots>();

  constructor(readonly limit: number) {
    void new Slots(limit); // validates
  }

  of(key: string): Slots {
    let s = this.byKey.get(key);
    if (!s) this.byKey.set(key, (s = new Slots(this.limit)));
    return s;
  }

  /** The peak of each key. */
  peaks(): Map<string, number> {
    return new Map([...this.byKey].map(([k, s]) => [k, s.peak]));
  }
}

/**
 * Bytes per second shared by every reader of one vSphere datastore: each range request (or each
 * piece of data of an export stream) waits for its turn. A quarter second of credit at most, so a
 * pause does not turn into a burst.
 */
export class ByteRate {
  private free = 0;

  constructor(readonly bytesPerSecond: number) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`a rate of ${bytesPerSecond} bytes/s`);
  }

  /** Resolves when `bytes` more may go; the signal ends the wait. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = Date.now();
    const start = Math.max(this.free, now - 250);
    this.free = start + (bytes * 1000) / this.bytesPerSecond;
    // Never before its turn: a timer may fire a millisecond early (whole milliseconds, and the
    // event loop's clock lags Date.now), which would let bytes go ahead of the rate.
    for (let wait = start - now; wait > 0; wait = start - Date.now()) await sleep(Math.ceil(wait), signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `wait` without the VM's in-flight slot of a plan run, then takes a slot again, behind the
 * VMs already waiting for one, before it returns: a warm VM between its rounds only waits, and a
 * slot it held meanwhile would keep a later wave's VM from working. Rejects when the run stops.
 */
export type Idle = <T>(wait: () => Promise<T>) => Promise<T>;

/** `wait` as idle time: without the in-flight slot when the VM runs in a plan, as is otherwise. */
export function idleWhile<T>(ctx: { readonly idle?: Idle }, wait: () => Promise<T>): Promise<T> {
  return ctx.idle ? ctx.idle(wait) : wait();
}

/** What a run's steps hold while they work. */
export interface RunBudgets {
  /** One slot per disk being read, per ESXi host the VM runs on. */
  readonly readsPerHost: KeyedSlots;
  /** One slot per guest conversion (or rehearsal) under way. */
  readonly converting: Slots;
  /** By vSphere datastore name: the bytes per second all reads from it share. */
  readonly datastoreRates: ReadonlyMap<string, ByteRate>;
}

export function runBudgets(limits: { readonly readsPerHost: number; readonly converting: number; readonly datastoreBytesPerSec?: ReadonlyMap<string, number> }): RunBudgets {
  return {
    readsPerHost: new KeyedSlots(limits.readsPerHost),
    converting: new Slots(limits.converting),
    datastoreRates: new Map([...(limits.datastoreBytesPerSec ?? [])].map(([ds, rate]) => [ds, new ByteRate(rate)])),
  };
}

/** The key of a VM's host; a VM whose host vCenter does not say shares one budget with the others. */
export function hostKey(host: string | undefined): string {
  return host ?? '(host unknown)';
}
