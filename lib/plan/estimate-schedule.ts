// The plan's timeline under its budgets, simulated: the supervisor's own runFleet and Slots run
// on a virtual clock, with migrations that only wait (prechecks, copies, conversions, builds take
// the times given). So waves, priorities, the in-flight limit, one host slot per disk being read
// and one conversion slot per conversion are exactly what `plan run` does, not a copy of its
// rules; no system is touched, and the result depends on nothing but the input. The disks being
// read at once share their hosts', their datastores' and this machine's throughput as a fluid:
// each gets its fair share, never more than it reads alone (SharedReads).

import { idleWhile, runBudgets, runFleet, type FleetVm, type ImportContext, type VmResult } from '../supervisor/index.js';
import type { PlanBudgets } from './planned-vm.js';

/** One disk's read: its bytes, at its rate alone at most. */
export interface SimDisk {
  readonly bytes: number;
  readonly bytesPerSec: number;
  /** The vSphere datastore: reads of one share its budget. */
  readonly datastore?: string;
}

/** What the reads at once share (bytes per second); none given: nothing shared. */
export interface SimThroughput {
  /** hostKey → all the host's reads together. */
  readonly hosts?: ReadonlyMap<string, number>;
  /** Datastore name → the plan's byte budget of it. */
  readonly datastores?: ReadonlyMap<string, number>;
  /** All reads of the run together: this machine's. */
  readonly total?: number;
}

export interface SimWarm {
  /** When the cutover may start, in ms from the start of the plan; none: right after the rehearsal. */
  readonly cutoverAt?: number;
  /** The cutover's reads (the VM is off): what changed since the last round, per disk. */
  readonly finalDisks: readonly SimDisk[];
}

export interface SimVm {
  readonly key: string;
  readonly wave: string;
  readonly priority: number;
  /** hostKey of the ESXi host: the budget its disks count against. */
  readonly host: string;
  /** The copy (cold) or the first round (warm). */
  readonly disks: readonly SimDisk[];
  /** Precheck and placeholders. */
  readonly prepMs: number;
  /** Cold: the guest's shutdown before the copy (0 when off); warm: at the cutover. */
  readonly shutdownMs: number;
  /** The guest's conversion; undefined when the plan does not convert it. A warm VM also rehearses it once. */
  readonly conversionMs?: number;
  /** Template, VM and cleanup. */
  readonly buildMs: number;
  readonly warm?: SimWarm;
}

/** Times in ms from the start of the plan. */
export interface SimVmTimes {
  readonly key: string;
  readonly start: number;
  /** The first disk's read began (after waiting for its host's slot) … the last one ended. */
  readonly copyStart: number;
  readonly copyEnd: number;
  readonly convertStart?: number;
  readonly convertEnd?: number;
  /** Warm: the cutover began (the source stops). */
  readonly cutoverStart?: number;
  readonly end: number;
  /** Warm: cutover start → end; cold: the whole import. */
  readonly downtimeMs: number;
}

export interface SimWave {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

export interface SimResult {
  readonly vms: readonly SimVmTimes[];
  readonly waves: readonly SimWave[];
  readonly totalMs: number;
}

export type SimBudgets = Pick<PlanBudgets, 'readsPerHost' | 'converting' | 'inFlight'>;

/**
 * A clock that moves only when nothing else can: each timer fires alone, in time order (ties in
 * the order they were set), and everything it wakes settles before the next one fires.
 */
class VirtualClock {
  now = 0;
  private seq = 0;
  private readonly timers: { at: number; seq: number; fire: () => void }[] = [];

  sleep(ms: number): Promise<void> {
    return this.until(this.now + Math.max(0, ms));
  }

  until(at: number): Promise<void> {
    return new Promise((fire) => {
      this.timers.push({ at: Math.max(at, this.now), seq: this.seq++, fire });
    });
  }

  async run<T>(work: Promise<T>): Promise<T> {
    let settled = false;
    const watched = work.finally(() => {
      settled = true;
    });
    for (;;) {
      // Promise callbacks only: one turn of the event loop lets every woken task go as far as it can.
      await new Promise<void>((r) => setImmediate(r));
      if (settled) return watched;
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers.shift();
      if (!next) throw new Error('the simulated plan stopped with nothing left to wait for');
      this.now = next.at;
      next.fire();
    }
  }
}

interface Transfer {
  readonly host: string;
  readonly datastore: string | undefined;
  readonly cap: number;
  remaining: number;
  rate: number;
  readonly done: () => void;
}

/**
 * Disk reads going on at once, as a fluid: whenever one starts or ends, the rates are shared out
 * again by progressive filling (every read grows at the same pace until it reaches its own rate,
 * or its host, its datastore or the machine is full), and the next end is timed.
 */
class SharedReads {
  private readonly active = new Set<Transfer>();
  private last = 0;
  private generation = 0;

  constructor(
    private readonly clock: VirtualClock,
    private readonly caps: SimThroughput,
  ) {}

  read(host: string, d: SimDisk): Promise<void> {
    if (d.bytes <= 0) return Promise.resolve();
    return new Promise((done) => {
      this.progress();
      this.active.add({ host, datastore: d.datastore, cap: d.bytesPerSec, remaining: d.bytes, rate: 0, done });
      this.reschedule();
    });
  }

  private progress(): void {
    const dt = (this.clock.now - this.last) / 1000;
    this.last = this.clock.now;
    for (const t of this.active) t.remaining -= t.rate * dt;
  }

  private reschedule(): void {
    for (const t of this.active) {
      // Less than a byte left is a rounding of the fluid, not data.
      if (t.remaining < 1) {
        this.active.delete(t);
        t.done();
      }
    }
    share([...this.active], this.caps);
    let next = Number.POSITIVE_INFINITY;
    for (const t of this.active) next = Math.min(next, this.clock.now + (t.remaining * 1000) / t.rate);
    if (!Number.isFinite(next)) return;
    const generation = ++this.generation;
    void this.clock.until(next).then(() => {
      if (generation !== this.generation) return; // a read started or ended since: timed again
      this.progress();
      for (const t of this.active) if ((t.remaining * 1000) / t.rate < 1e-6) t.remaining = 0;
      this.reschedule();
    });
  }
}

/** Progressive filling: max-min fair rates under each read's own rate and the shared caps. */
function share(reads: Transfer[], caps: SimThroughput): void {
  const groups: { members: Transfer[]; cap: number }[] = reads.map((t) => ({ members: [t], cap: t.cap }));
  const by = (key: (t: Transfer) => string | undefined, cap: (k: string) => number | undefined): void => {
    const m = new Map<string, Transfer[]>();
    for (const t of reads) {
      const k = key(t);
      if (k !== undefined && cap(k) !== undefined) (m.get(k) ?? m.set(k, []).get(k)!).push(t);
    }
    for (const [k, members] of m) groups.push({ members, cap: cap(k)! });
  };
  by((t) => t.host, (h) => caps.hosts?.get(h));
  by((t) => t.datastore, (d) => caps.datastores?.get(d));
  if (caps.total !== undefined) groups.push({ members: reads, cap: caps.total });
  for (const t of reads) t.rate = 0;
  const frozen = new Set<Transfer>();
  while (frozen.size < reads.length) {
    let step = Number.POSITIVE_INFINITY;
    for (const g of groups) {
      const open = g.members.filter((t) => !frozen.has(t)).length;
      if (open > 0) step = Math.min(step, (g.cap - g.members.reduce((a, t) => a + t.rate, 0)) / open);
    }
    for (const t of reads) if (!frozen.has(t)) t.rate += Math.max(0, step);
    for (const g of groups) if (g.cap - g.members.reduce((a, t) => a + t.rate, 0) <= g.cap * 1e-9) for (const t of g.members) frozen.add(t);
  }
}

export async function simulatePlan(vms: readonly SimVm[], waves: readonly string[], budgets: SimBudgets, throughput: SimThroughput = {}): Promise<SimResult> {
  const clock = new VirtualClock();
  const reads = new SharedReads(clock, throughput);
  const times = new Map<string, SimVmTimes>();
  const never = new AbortController().signal;
  // The simulated migrations use only the budgets, the emitter and the signal.
  const ctx = { emit: () => undefined, signal: never, vcenterHost: '', vsphere: undefined, one: undefined } as unknown as Omit<ImportContext, 'budgets'>;

  const fleet: FleetVm[] = vms.map((vm) => ({
    key: vm.key,
    label: vm.key,
    wave: vm.wave,
    priority: vm.priority,
    warm: vm.warm !== undefined,
    migrate: async (run: ImportContext): Promise<VmResult> => {
      const b = run.budgets!;
      const start = clock.now;
      const read = async (disks: readonly SimDisk[]): Promise<number> => {
        let first = Number.POSITIVE_INFINITY;
        // As copyIntoImages: every disk at once, each holding one slot of its host while it reads.
        await Promise.all(
          disks.map(async (d) => {
            const release = await b.readsPerHost.of(vm.host).take();
            first = Math.min(first, clock.now);
            await reads.read(vm.host, d);
            release();
          }),
        );
        return disks.length === 0 ? clock.now : first;
      };
      const convert = async (): Promise<{ start: number; end: number } | undefined> => {
        if (vm.conversionMs === undefined) return undefined;
        let from = 0;
        await b.converting.with(async () => {
          from = clock.now;
          await clock.sleep(vm.conversionMs!);
        });
        return { start: from, end: clock.now };
      };
      await clock.sleep(vm.prepMs);
      if (!vm.warm) await clock.sleep(vm.shutdownMs);
      const copyStart = await read(vm.disks);
      const copyEnd = clock.now;
      let cutoverStart: number | undefined;
      if (vm.warm) {
        // The first round is done: runFleet lets the next wave go.
        run.emit({ type: 'phase', vm: vm.key, phase: 'sync', state: 'done' });
        await convert(); // the rehearsal
        // As warmImport in a plan: the wait for a window still to come holds no in-flight slot.
        const window = vm.warm.cutoverAt;
        if (window !== undefined && window > clock.now) await idleWhile(run, () => clock.until(window));
        cutoverStart = clock.now;
        await clock.sleep(vm.shutdownMs);
        await read(vm.warm.finalDisks);
      }
      const conv = await convert();
      await clock.sleep(vm.buildMs);
      const end = clock.now;
      times.set(vm.key, {
        key: vm.key,
        start,
        copyStart,
        copyEnd,
        ...(conv ? { convertStart: conv.start, convertEnd: conv.end } : {}),
        ...(cutoverStart !== undefined ? { cutoverStart } : {}),
        end,
        downtimeMs: end - (cutoverStart ?? start),
      });
      return { vm: vm.key, ok: true, imageIds: [] };
    },
  }));

  await clock.run(runFleet(ctx, fleet, { waves, inFlight: budgets.inFlight, budgets: runBudgets(budgets) }));
  // Every VM runs: nothing is finished before, nothing stops the simulation.
  const out = vms.map((vm) => times.get(vm.key)!);
  const simWaves = waves.flatMap((name) => {
    const members = out.filter((t) => vms.find((v) => v.key === t.key)!.wave === name);
    if (members.length === 0) return [];
    return [{ name, start: Math.min(...members.map((t) => t.start)), end: Math.max(...members.map((t) => t.end)) }];
  });
  return { vms: out, waves: simWaves, totalMs: Math.max(0, ...out.map((t) => t.end)) };
}
