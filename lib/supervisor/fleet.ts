// Many VMs as one run: waves one after the other, the VMs of a wave by priority, at most so many
// in flight, and every step that reads disks or converts a guest holding a slot of the run's
// budgets (budgets.ts). A VM that fails never stops the others. A wave lets the next one start
// once each of its VMs has finished, or, when warm, has copied its first round and only syncs
// until its cutover window. A warm VM gives its in-flight slot back while it waits between rounds
// (ImportContext.idle) and queues for one again before it works: late windows do not hold the
// run's slots, and a window that comes while every slot is busy starts its cutover late.

import type { EventSink, MigrationEvent } from './events.js';
import { Slots, type Idle, type Release, type RunBudgets } from './budgets.js';
import type { ImportContext, VmResult } from './steps.js';

export interface FleetVm {
  /** The VM's key in the plan, unique in the run. */
  readonly key: string;
  /** What its events carry as `vm`: the name, path or UUID it is looked up by. */
  readonly label: string;
  readonly wave: string;
  readonly priority: number;
  readonly warm: boolean;
  /** Migrates the VM in the run's context (budgets included); resolves with its result, never rejects. */
  readonly migrate: (ctx: ImportContext) => Promise<VmResult>;
}

export interface FleetRun {
  readonly waves: readonly string[];
  readonly inFlight: number;
  readonly budgets: RunBudgets;
  /** VMs an earlier run of the plan finished: not started again. */
  readonly finished?: ReadonlySet<string>;
}

export interface FleetVmResult {
  readonly key: string;
  readonly result?: VmResult;
  /** Not started: finished by an earlier run, or the run was stopped before its turn. */
  readonly skipped?: 'finished' | 'stopped';
}

/**
 * Runs every VM under the run's budgets. `ctx` is the run's connections, signal and event sink;
 * each VM gets it with the budgets added. Resolves when every VM has ended or been skipped.
 */
export async function runFleet(ctx: Omit<ImportContext, 'budgets'>, vms: readonly FleetVm[], run: FleetRun): Promise<FleetVmResult[]> {
  const byKey = new Map<string, FleetVmResult>();
  const inFlight = new Slots(run.inFlight);
  // A warm VM lets its wave go on once its first round is copied.
  const through = new Map<string, () => void>();
  const emit: EventSink = (e: MigrationEvent) => {
    if (e.type === 'phase' && e.phase === 'sync' && e.state === 'done') {
      const vm = vms.find((v) => v.label === e.vm && v.warm);
      if (vm) through.get(vm.key)?.();
    }
    ctx.emit(e);
  };
  const vmCtx: ImportContext = { ...ctx, emit, budgets: run.budgets };
  const running: Promise<void>[] = [];

  for (const wave of run.waves) {
    const members = vms
      .map((vm, order) => ({ vm, order }))
      .filter((x) => x.vm.wave === wave)
      .sort((a, b) => b.vm.priority - a.vm.priority || a.order - b.order)
      .map((x) => x.vm);
    const gates: Promise<void>[] = [];
    for (const vm of members) {
      if (run.finished?.has(vm.key)) {
        byKey.set(vm.key, { key: vm.key, skipped: 'finished' });
        continue;
      }
      if (ctx.signal.aborted) {
        byKey.set(vm.key, { key: vm.key, skipped: 'stopped' });
        continue;
      }
      let slot: { release?: Release };
      try {
        slot = { release: await inFlight.take(ctx.signal) };
      } catch {
        byKey.set(vm.key, { key: vm.key, skipped: 'stopped' });
        continue;
      }
      const passed = new Promise<void>((resolve) => through.set(vm.key, resolve));
      const done = vm
        .migrate({ ...vmCtx, idle: idleOutside(inFlight, slot, vm.label, { emit, signal: ctx.signal }) })
        .catch((error: unknown): VmResult => ({ vm: vm.label, ok: false, imageIds: [], error }))
        .then((result) => {
          byKey.set(vm.key, { key: vm.key, result });
        })
        .finally(() => {
          // None when the run stopped while the VM waited to take one again.
          slot.release?.();
          through.get(vm.key)?.();
        });
      running.push(done);
      gates.push(passed);
    }
    await Promise.all(gates);
  }
  await Promise.all(running);
  return vms.map((vm) => byKey.get(vm.key) ?? { key: vm.key, skipped: 'stopped' });
}

/** The VM's `idle`: its slot of `inFlight` given back for the wait, then taken again in line. */
function idleOutside(inFlight: Slots, slot: { release?: Release }, vm: string, run: { readonly emit: EventSink; readonly signal: AbortSignal }): Idle {
  return async (wait) => {
    slot.release?.();
    slot.release = undefined;
    run.emit({ type: 'slot', vm, state: 'released' });
    const r = await wait();
    // The same test take() makes first: whether the VM has to queue.
    const queued = inFlight.inUse >= inFlight.limit || inFlight.waiting > 0;
    const t0 = Date.now();
    if (queued) run.emit({ type: 'slot', vm, state: 'waiting' });
    slot.release = await inFlight.take(run.signal);
    run.emit({ type: 'slot', vm, state: 'taken', ...(queued ? { waitedMs: Date.now() - t0 } : {}) });
    return r;
  };
}
