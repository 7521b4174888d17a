// `plan run`: every VM of a plan through the supervisor's own migrations (cold imports, warm
// imports that sync until their window), under the plan's budgets. One run of a plan at a time;
// a re-run after a crash or Ctrl-C skips the VMs the plan already finished (those its status says
// are done, and those OpenNebula shows finished although a kill came before the status said so:
// finished-earlier.ts) and resumes the others from their journals (kept on failure: a plan run
// never throws a copy away).

import { join } from 'node:path';
import { writeFileAtomically } from '../atomic-write/index.js';
import { OneswapError } from '../errors/index.js';
import {
  PidLock,
  coldImportVm,
  fanOut,
  runBudgets,
  runFleet,
  warmImport,
  type EventSink,
  type FleetVm,
  type ImportContext,
  type VmResult,
  type WarmOptions,
} from '../supervisor/index.js';
import type { PlanBudgets, PlannedVm } from './planned-vm.js';
import { RunRecord } from './run-record.js';
import type { PlanRunSummary } from './run-summary.js';
import { finishedEarlier } from './finished-earlier.js';
import { StatusWriter, planStateDir, readStatus, statusFile } from './status-file.js';
import { renderHtmlReport } from './report-html.js';
import { renderTextSummary } from './report-text.js';

export interface PlanRunSettings {
  readonly planPath: string;
  readonly vms: readonly PlannedVm[];
  /** In the order they run. */
  readonly waves: readonly string[];
  readonly budgets: PlanBudgets;
  readonly datacenter?: string;
  readonly stateDir: string;
  readonly logDir: string;
  readonly logFile: string;
  readonly runId: string;
  readonly streams: number;
  /** Warm: from the start of one round to the start of the next while waiting for the window. */
  readonly syncIntervalMs: number;
  readonly shutdownTimeoutMs: number;
  readonly vddkLibdir?: string;
}

export interface PlanRunOutcome {
  readonly summary: PlanRunSummary;
  readonly files: { readonly json: string; readonly text: string; readonly html: string };
  readonly failed: readonly { readonly key: string; readonly error: unknown }[];
}

/**
 * This process alone runs the plan (a pid lock in its state directory). Taken before anything of
 * the run exists, so a run refused because another one goes on leaves nothing behind, not even a
 * log; whoever took it releases it.
 */
export class PlanRunLock {
  private constructor(
    readonly stateDir: string,
    readonly planPath: string,
    private readonly lock: PidLock,
  ) {}

  /** The plan's lock, or a conflict naming the process that runs it. */
  static async take(stateDir: string, planPath: string): Promise<PlanRunLock> {
    const lock = new PidLock(join(planStateDir(stateDir, planPath), 'run.lock'));
    const holder = await lock.tryAcquire();
    if (holder !== undefined)
      throw new OneswapError('conflict', `plan ${planPath} is being run by process ${holder}`, { hint: `watch it with oneswap plan status ${planPath}, or stop that process first` });
    return new PlanRunLock(stateDir, planPath, lock);
  }

  release(): Promise<void> {
    return this.lock.release();
  }
}

/** Runs the plan under `lock`, which must be this plan's (the caller releases it). */
export async function runPlan(ctx: Omit<ImportContext, 'budgets'>, lock: PlanRunLock, s: PlanRunSettings): Promise<PlanRunOutcome> {
  if (lock.stateDir !== s.stateDir || lock.planPath !== s.planPath) throw new OneswapError('internal', `plan ${s.planPath} run under the lock of ${lock.planPath} in ${lock.stateDir}`);
  const previous = await readStatus(s.stateDir, s.planPath);
  const finished = new Set(previous?.vms.filter((v) => v.state === 'done').map((v) => v.key) ?? []);
  const recognised = await finishedEarlier({ ...ctx, stateDir: s.stateDir }, s.vms.filter((v) => !finished.has(v.key)));
  const start = new Date();
  const budgets = runBudgets(s.budgets);
  const record = new RunRecord(
    {
      plan: s.planPath,
      runId: s.runId,
      logFile: s.logFile,
      start,
      waves: s.waves,
      budgets: { readsPerHost: s.budgets.readsPerHost, converting: s.budgets.converting, inFlight: s.budgets.inFlight, datastoreBytesPerSec: Object.fromEntries(s.budgets.datastoreBytesPerSec) },
    },
    s.vms.map((v) => ({ key: v.key, label: v.query.value, wave: v.wave, mode: v.mode.kind })),
  );
  for (const key of finished) record.finishedBefore(key);
  for (const [key, made] of recognised) {
    record.finishedBefore(key, made);
    finished.add(key);
    const vm = s.vms.find((v) => v.key === key)!;
    ctx.emit({ type: 'log', level: 'info', vm: vm.query.value, message: `finished by an earlier run: template ${made.templateId}, images ${made.imageIds.join(', ')}; not started again` });
  }
  const status = new StatusWriter(statusFile(s.stateDir, s.planPath), record);
  const onEvent: EventSink = (e) => {
    // A VM that ended is on disk before anything else happens: a run killed now still knows it.
    if (e.type === 'result') status.now(false);
    else status.changed();
  };
  status.now(false);
  const fleetCtx = { ...ctx, emit: fanOut(record.sink, onEvent, ctx.emit) };
  const results = await runFleet(
    fleetCtx,
    s.vms.map((v) => fleetVm(v, s)),
    { waves: s.waves, inFlight: s.budgets.inFlight, budgets, finished },
  );
  for (const r of results) if (r.skipped === 'stopped') record.notReached(r.key);
  status.now(true);

  const summary = record.summary();
  const base = join(s.logDir, `${s.runId}-plan`);
  const files = { json: `${base}.json`, text: `${base}.txt`, html: `${base}.html` };
  await writeFileAtomically(files.json, `${JSON.stringify(summary, null, 2)}\n`);
  await writeFileAtomically(files.text, renderTextSummary(summary));
  await writeFileAtomically(files.html, renderHtmlReport(summary));
  const failed = results.flatMap((r) => (r.result && !r.result.ok ? [{ key: r.key, error: r.result.error }] : []));
  return { summary, files, failed };
}

/** One planned VM as the fleet runs it: the single-VM migrations, with the plan's settings. */
function fleetVm(v: PlannedVm, s: PlanRunSettings): FleetVm {
  const opts: WarmOptions = {
    convert: v.convert,
    networkMap: v.networkMap,
    keepMac: v.keepMac,
    keepIp: v.keepIp,
    instantiate: v.output === 'vm',
    // What a run copied is never thrown away: the next run of the plan resumes it.
    keepOnFailure: true,
    namePrefix: v.namePrefix,
    streams: s.streams,
    stateDir: s.stateDir,
    logDir: s.logDir,
    runId: s.runId,
    additions: { guestAgent: false },
    ...(s.datacenter === undefined ? {} : { datacenter: s.datacenter }),
    datastoreId: v.datastoreId,
    shutdown: v.mode.kind === 'cold' && v.mode.shutdown,
    shutdownTimeoutMs: s.shutdownTimeoutMs,
    readers: { transport: v.transport, ...(s.vddkLibdir === undefined ? {} : { vddkLibdir: s.vddkLibdir }) },
    enableCbt: v.mode.kind === 'warm' && v.mode.enableCbt,
    rehearse: true,
    forcePoweroff: false,
    leaseRounds: false,
  };
  const label = v.query.value;
  const migrate = (ctx: ImportContext): Promise<VmResult> => {
    if (v.mode.kind === 'cold') return coldImportVm(ctx, label, opts);
    // No window: cut over as soon as the first round and the rehearsal are done.
    return warmImport(ctx, label, opts, { at: v.mode.cutover?.start ?? new Date(0), intervalMs: s.syncIntervalMs });
  };
  return { key: v.key, label, wave: v.wave, priority: v.priority, warm: v.mode.kind === 'warm', migrate };
}
