// `oneswap plan check|estimate|run|status PLAN`: every precheck for every VM before anything
// changes; what a run would move and take (a dry run); the plan migrated under its budgets as one run (log, display, one exit code; the summary as text,
// JSON and HTML next to the run log); and where that run stands, from any shell.

import { join } from 'node:path';
import { OneswapError } from '../errors/index.js';
import { PlanRunLock, checkFleet, estimatePlan, loadPlan, readStatus, renderCheck, renderEstimateText, renderStatus, runPlan, writerAlive } from '../plan/index.js';
import { defaultStateDir, newRunId, type VmResult } from '../supervisor/index.js';
import { connectOne, connectVcenter } from './connect.js';
import { positiveInt } from './import.js';
import { planVcenterOptions } from './plan.js';
import { inRun, type RunCliOptions } from './run-options.js';
import { parseDuration } from '../progress/index.js';

export interface PlanRunCliOptions extends RunCliOptions {
  streams: string;
  syncInterval: string;
  shutdownTimeout: string;
  vddkLibdir?: string;
}

export async function runPlanRun(planPath: string, o: PlanRunCliOptions, signal: AbortSignal): Promise<number> {
  const plan = await loadPlan(planPath);
  const stateDir = o.stateDir ?? defaultStateDir();
  const logDir = o.logDir ?? join(stateDir, 'logs');
  const runId = newRunId();
  const streams = positiveInt(o.streams, '--streams');
  const syncIntervalMs = parseDuration(o.syncInterval, '--sync-interval');
  const shutdownTimeoutMs = positiveInt(o.shutdownTimeout, '--shutdown-timeout') * 1000;
  const vddkLibdir = o.vddkLibdir ?? (process.env.ONESWAP_VDDK_LIBDIR || undefined);
  // Before the run's log: a plan another process runs is refused with nothing left behind.
  const lock = await PlanRunLock.take(stateDir, plan.source);
  try {
    return await inRun({ ...o, endpoint: o.endpoint ?? plan.endpoint }, { logDir, runId }, async (emit, warn, logFile) => {
      const vsphere = await connectVcenter(planVcenterOptions(plan.vcenter), warn);
      try {
        const one = await connectOne(o.endpoint ?? plan.endpoint);
        try {
          const outcome = await runPlan(
            { vsphere, one, emit, signal, vcenterHost: plan.vcenter.host },
            lock,
            {
              planPath: plan.source,
              vms: plan.vms,
              waves: plan.waves,
              budgets: plan.budgets,
              ...(plan.vcenter.datacenter === undefined ? {} : { datacenter: plan.vcenter.datacenter }),
              stateDir,
              logDir,
              logFile,
              runId,
              streams,
              syncIntervalMs,
              shutdownTimeoutMs,
              ...(vddkLibdir === undefined ? {} : { vddkLibdir }),
            },
          );
          emit({ type: 'log', level: 'info', message: `plan summary: ${outcome.files.text}, ${outcome.files.json}, report ${outcome.files.html}` });
          const results: VmResult[] = outcome.summary.vms
            .filter((v) => v.outcome === 'done' || v.outcome === 'failed')
            .map((v) => ({ vm: v.key, ok: v.outcome === 'done', imageIds: [...v.imageIds], ...(v.outcome === 'failed' ? { error: outcome.failed.find((f) => f.key === v.key)?.error ?? new OneswapError('internal', v.error ?? 'failed') } : {}) }));
          const notReached = outcome.summary.vms.filter((v) => v.outcome === 'skipped' || v.outcome === 'pending');
          if (signal.aborted && notReached.length > 0) warn(`stopped before ${notReached.length} VM(s) started: ${notReached.map((v) => v.key).join(', ')}; run the same plan again to go on`);
          return results;
        } finally {
          one.close();
        }
      } finally {
        await vsphere.logout().catch(() => undefined);
      }
    });
  } finally {
    await lock.release();
  }
}

export interface PlanStatusCliOptions {
  stateDir?: string;
  json?: boolean;
}

export async function runPlanStatus(planPath: string, o: PlanStatusCliOptions): Promise<string> {
  const stateDir = o.stateDir ?? defaultStateDir();
  const status = await readStatus(stateDir, planPath);
  if (!status) throw new OneswapError('not-found', `plan ${planPath} has not run on this host (no status under ${stateDir})`, { hint: `oneswap plan run ${planPath}` });
  const alive = !status.ended && writerAlive(status);
  if (o.json) return `${JSON.stringify({ ...status, running: alive }, null, 2)}\n`;
  return renderStatus(status, alive);
}

export interface PlanCheckCliOptions {
  json?: boolean;
  endpoint?: string;
  stateDir?: string;
  vddkLibdir?: string;
}

/** Every precheck for every VM; the report on stdout; exit 6 when anything blocks. */
export async function runPlanCheck(planPath: string, o: PlanCheckCliOptions, signal: AbortSignal, warn: (m: string) => void): Promise<number> {
  const plan = await loadPlan(planPath);
  const vsphere = await connectVcenter(planVcenterOptions(plan.vcenter), warn);
  try {
    const one = await connectOne(o.endpoint ?? plan.endpoint);
    try {
      const vddkLibdir = o.vddkLibdir ?? (process.env.ONESWAP_VDDK_LIBDIR || undefined);
      const check = await checkFleet({ vsphere, one, vcenterHost: plan.vcenter.host, vddkLibdir, stateDir: o.stateDir ?? defaultStateDir() }, plan.vms, signal);
      if (o.json) {
        const { vms, ...rest } = check;
        process.stdout.write(`${JSON.stringify({ ...rest, vms: vms.map(({ vm, ...v }) => ({ ...v, ...(vm ? { found: { name: vm.name, path: vm.path, host: vm.host, powerState: vm.powerState } } : {}) })) }, null, 2)}\n`);
      } else {
        process.stdout.write(renderCheck(check));
      }
      return check.blocked ? 6 : 0;
    } finally {
      one.close();
    }
  } finally {
    await vsphere.logout().catch(() => undefined);
  }
}

export interface PlanEstimateCliOptions {
  json?: boolean;
  stateDir?: string;
  syncInterval: string;
  vddkLibdir?: string;
}

/** What a run of the plan would move and take, changing nothing; measured figures told from assumed ones. */
export async function runPlanEstimate(planPath: string, o: PlanEstimateCliOptions, signal: AbortSignal, warn: (m: string) => void): Promise<string> {
  const plan = await loadPlan(planPath);
  const vsphere = await connectVcenter(planVcenterOptions(plan.vcenter), warn);
  try {
    const vddkLibdir = o.vddkLibdir ?? (process.env.ONESWAP_VDDK_LIBDIR || undefined);
    const estimate = await estimatePlan(
      { vsphere, ...(vddkLibdir === undefined ? {} : { vddkLibdir }), syncIntervalMs: parseDuration(o.syncInterval, '--sync-interval') },
      plan.vms,
      plan.budgets,
      plan.waves,
      o.stateDir ?? defaultStateDir(),
      signal,
    );
    return o.json ? `${JSON.stringify(estimate, null, 2)}\n` : renderEstimateText(estimate);
  } finally {
    await vsphere.logout().catch(() => undefined);
  }
}
