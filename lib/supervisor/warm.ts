// Warm migration of one vCenter VM: copy while it runs (CBT rounds, cbt-round.ts), then a short
// cutover. The stages are separate so an operator can stage them in a change window
// (`oneswap warm start|sync|cutover|abort|status`) or let `oneswap import --warm` run them all:
//   start:   precheck → placeholders → round 0 (allocated areas) → rehearsal conversion
//   sync:    one more round of the areas changed since the last one
//   cutover: shutdown → final round (no snapshot: the VM is off) → convert → build (template, VM)
// Until the cutover a failure leaves the source running, removes oneswap's snapshot and keeps the
// images with their changeIds: the same command resumes. A failed cutover powers the source on
// again as long as the images were not converted yet.

import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError, describeError } from '../errors/index.js';
import type { VmSummary } from '../vsphere/index.js';
import { describeVcenterVm, vmIdentity, type VmDescription } from '../input/index.js';
import { convertedGuestOf, forQemu, markImage, type ConvertedGuest } from '../output/index.js';
import { Journal, type WarmRound, type WarmState } from './journal.js';
import { rehearseConversion, vmConversionRequest } from './conversion.js';
import { removeLeftovers, runRound } from './cbt-round.js';
import { idleWhile } from './budgets.js';
import { Phases, adoptWarmImages, build, convert, placeholders, precheck, rollback, type DiskTarget, type ImportContext, type ImportOptions, type Prechecked, type StepLog, type VmResult } from './steps.js';

export interface WarmOptions extends ImportOptions {
  /** Turn CBT on when it is off. */
  readonly enableCbt: boolean;
  /** Try the conversion on throw-away overlays after the first round. */
  readonly rehearse: boolean;
  /** Power the source off when the guest does not shut down in time. */
  readonly forcePoweroff: boolean;
  /**
   * Rounds after the first even when a disk is read through an export lease, which streams the
   * whole allocated disk to write the changed areas: `oneswap import --warm` skips them otherwise.
   */
  readonly leaseRounds: boolean;
}

/** When `oneswap import --warm` stops the rounds and cuts over. */
export interface CutoverPolicy {
  readonly at?: Date;
  /** Cut over once a round copied at most this many bytes. */
  readonly whenBelowBytes?: number;
  /** Time from the start of one round to the start of the next. */
  readonly intervalMs: number;
}

export interface WarmResult extends VmResult {
  readonly rounds: number;
  readonly downtimeMs?: number;
}

/** A warm migration that the journal (or the images) know of, ready for its next stage. */
interface Started extends Prechecked {
  readonly targets: DiskTarget[];
}

async function open(ctx: ImportContext, phases: Phases, vmName: string, opts: WarmOptions): Promise<Started> {
  const pre = await phases.run('precheck', () => precheck(ctx, vmName, opts, phases.log, { enableCbt: opts.enableCbt }));
  try {
    const targets = await phases.run(
      'placeholders',
      () => placeholders(ctx, pre.journal, pre.description, pre.disks, pre.ds, opts),
      (t) => `images ${t.map((x) => x.imageId).join(', ')}`,
    );
    const warm = (pre.journal.data.warm ??= { rounds: [] });
    if (warm.convert === undefined || (warm.convert && !opts.convert)) {
      if (warm.convert) phases.log(`the cutover of ${pre.summary.name} will not convert the guest (--no-convert): turned off for this migration`, 'warn');
      warm.convert = opts.convert;
      await pre.journal.flush();
    }
    return { ...pre, targets };
  } catch (err) {
    await pre.journal.unlock();
    throw err;
  }
}

/** Images a cutover converted must not be synced again: the conversion's writes are not in CBT. */
async function refuseIfConverted(ctx: ImportContext, s: Started): Promise<void> {
  if (convertedGuestOf(await ctx.one.image(s.targets[0]!.imageId)))
    throw new OneswapError('conflict', `the images of ${s.summary.name} were converted by a cutover; they cannot take more rounds`, {
      hint: `finish with: oneswap warm cutover ${s.summary.name}, or start over after: oneswap warm abort ${s.summary.name}`,
    });
}

async function round(ctx: ImportContext, s: Started, phases: Phases, opts: WarmOptions): Promise<WarmRound> {
  const r = await phases.run(
    'sync',
    () => runRound(ctx, s.journal, s.summary, s.description, s.targets, { final: false, streams: opts.streams, readers: opts.readers, dcPath: s.dcPath }, phases.log),
    (x) => describeRound(x.round),
  );
  return r.round;
}

async function rehearse(ctx: ImportContext, s: Started, phases: Phases, opts: WarmOptions): Promise<void> {
  const warm = s.journal.data.warm!;
  if (!opts.rehearse || warm.convert === false || warm.rehearsal?.ok) return;
  const t0 = Date.now();
  try {
    const r = await phases.run(
      'rehearse',
      () =>
        forQemu(s.targets.map((t) => t.target), (qemu) =>
          rehearseConversion(ctx, vmConversionRequest(s.description, s.targets.map((t, k) => ({ id: t.imageId, image: qemu[k]!, bus: t.disk.description.bus })), opts)),
        ),
      (x) => (x.kind === 'no-os' ? 'no operating system found (data disks only): the cutover will not convert' : `${x.guest.productName || x.guest.distro} converts`),
    );
    warm.rehearsal = { ok: true, at: new Date().toISOString(), durationMs: Date.now() - t0, ...(r.kind === 'no-os' ? { detail: 'no operating system', noOs: true } : { detail: r.guest.productName }) };
    await s.journal.flush();
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    warm.rehearsal = { ok: false, at: new Date().toISOString(), durationMs: Date.now() - t0, detail: describeError(err) };
    await s.journal.flush();
    throw new OneswapError('conversion', `the rehearsal conversion of ${s.summary.name} failed, so a cutover would fail too: ${describeError(err)}`, {
      hint: `the source keeps running and the images keep their rounds; fix the cause, then: oneswap warm sync ${s.summary.name} (rehearses again), or pass --no-rehearse`,
      cause: err,
    });
  }
}

/** Failure before the cutover: the source runs on, no snapshot of ours stays, the images stay for a resume. */
function keptForResume(s: Started | undefined, phases: Phases, vm: string): void {
  const ids = s?.journal.data.disks.map((d) => d.imageId) ?? [];
  if (ids.length > 0)
    phases.log(`the source VM keeps running; images ${ids.join(', ')} keep the finished rounds: run the same command again to resume, or remove them with: oneswap warm abort ${vm}`, 'warn');
}

/** `oneswap warm start`: placeholders, the first (full) round and the rehearsal. */
export async function warmStart(ctx: ImportContext, vmName: string, opts: WarmOptions): Promise<WarmResult> {
  return stage(ctx, vmName, opts, async (s, phases) => {
    await refuseIfConverted(ctx, s);
    const warm = s.journal.data.warm!;
    const unfinished = s.journal.data.disks.some((d) => d.changeId === undefined || (d.pending?.length ?? 0) > 0);
    if (warm.rounds.length === 0 && warm.baseRound === undefined) await round(ctx, s, phases, opts);
    else if (unfinished) await round(ctx, s, phases, opts);
    else phases.log(`the warm migration of ${s.summary.name} was started already (${roundCount(s)} rounds); run oneswap warm sync or cutover`);
    await rehearse(ctx, s, phases, opts);
  });
}

/** `oneswap warm sync`: one more round while the VM runs. */
export async function warmSync(ctx: ImportContext, vmName: string, opts: WarmOptions): Promise<WarmResult> {
  return stage(ctx, vmName, opts, async (s, phases) => {
    await refuseIfConverted(ctx, s);
    await round(ctx, s, phases, opts);
    await rehearse(ctx, s, phases, opts);
  });
}

/** `oneswap import --warm`: start, rounds until the policy says so (or the operator asks), cutover. */
export async function warmImport(ctx: ImportContext, vmName: string, opts: WarmOptions, policy: CutoverPolicy): Promise<WarmResult> {
  return stage(ctx, vmName, opts, async (s, phases) => {
    if (!convertedGuestOf(await ctx.one.image(s.targets[0]!.imageId))) {
      let last = await round(ctx, s, phases, opts);
      await rehearse(ctx, s, phases, opts);
      const streamed = !opts.leaseRounds && Object.values(last.readers ?? {}).includes('lease');
      if (streamed) phases.log(`more rounds would stream every disk read through the export lease again (no VDDK): skipped; the cutover reads only the areas changed since round ${last.round} (--lease-rounds runs them anyway)`);
      for (;;) {
        const why = await cutoverReason(s.journal, policy, last);
        if (why) {
          phases.log(`cutting over: ${why}`);
          break;
        }
        if (streamed && policy.at === undefined && policy.whenBelowBytes !== undefined) {
          // No round will come to measure against --cutover-when-below: the cutover reads what changed.
          phases.log(`cutting over: --cutover-when-below has no rounds to measure (export lease); the cutover reads only what changed since round ${last.round}`);
          break;
        }
        const started = Date.parse(last.snapshotAt) - last.snapshotMs;
        // In a plan the wait does not hold an in-flight slot: the next round or the cutover may start late.
        const wake = await idleWhile(ctx, () => waitForNextRound(ctx.signal, s.journal, policy, streamed ? Number.POSITIVE_INFINITY : started + policy.intervalMs));
        if (wake !== 'round') {
          phases.log(`cutting over: ${wake}`);
          break;
        }
        last = await round(ctx, s, phases, opts);
      }
    }
    return cutover(ctx, s, phases, opts);
  });
}

async function cutoverReason(journal: Journal, policy: CutoverPolicy, last: WarmRound): Promise<string | undefined> {
  if (await journal.takeCutoverRequest()) return 'the operator asked for it (oneswap warm cutover)';
  if (policy.at && Date.now() >= policy.at.getTime()) return `--cutover-at ${policy.at.toISOString()} has come`;
  const bytes = roundBytes(last);
  if (policy.whenBelowBytes !== undefined && bytes <= policy.whenBelowBytes) return `round ${last.round} copied ${bytes} bytes, not more than --cutover-when-below ${policy.whenBelowBytes}`;
  return undefined;
}

/** Sleeps until the next round is due, waking early for a cutover request or --cutover-at. */
async function waitForNextRound(signal: AbortSignal, journal: Journal, policy: CutoverPolicy, due: number): Promise<'round' | string> {
  for (;;) {
    if (await journal.takeCutoverRequest()) return 'the operator asked for it (oneswap warm cutover)';
    const now = Date.now();
    if (policy.at && now >= policy.at.getTime()) return `--cutover-at ${policy.at.toISOString()} has come`;
    if (now >= due) return 'round';
    await sleep(Math.min(1000, due - now), undefined, { signal });
  }
}

/** `oneswap warm cutover`: the downtime window. */
/** Where a VM's migration into a datastore stands, found without any check or lock. */
export async function findMigration(
  ctx: Pick<ImportContext, 'vsphere' | 'vcenterHost'>,
  vmName: string,
  opts: { readonly datastoreId: number; readonly stateDir: string; readonly datacenter?: string },
): Promise<{ summary: VmSummary; description: VmDescription; journal: Journal; resumed: boolean }> {
  const summary = await ctx.vsphere.findVm(vmName, { datacenter: opts.datacenter });
  const description = describeVcenterVm(ctx.vcenterHost, summary);
  return { summary, description, ...(await Journal.open(opts.stateDir, vmIdentity(description), opts.datastoreId)) };
}

export async function warmCutover(ctx: ImportContext, vmName: string, opts: WarmOptions): Promise<WarmResult> {
  // A running `oneswap import --warm` owns the rounds: it is asked to cut over, not raced.
  const { summary, journal } = await findMigration(ctx, vmName, opts);
  const holder = await journal.lockHolder();
  if (holder !== undefined && holder !== process.pid) {
    await journal.requestCutover();
    ctx.emit({ type: 'log', level: 'info', vm: vmName, message: `oneswap (pid ${holder}) is running the warm migration of ${summary.name}: asked it to cut over after its current round` });
    return { vm: vmName, ok: true, imageIds: journal.data.disks.map((d) => d.imageId), rounds: journal.data.warm?.rounds.length ?? 0 };
  }
  return stage(ctx, vmName, opts, (s, phases) => cutover(ctx, s, phases, opts));
}

async function cutover(ctx: ImportContext, s: Started, phases: Phases, opts: WarmOptions): Promise<Partial<WarmResult>> {
  const { journal, summary, description, targets } = s;
  const warm = journal.data.warm!;
  if (!warm.cutover) {
    warm.cutover = { startedAt: new Date().toISOString(), sourceWasOn: (await ctx.vsphere.powerState(summary.ref)) === 'poweredOn' };
    await journal.flush();
  }
  const downtimeStart = Date.parse(warm.cutover.startedAt);
  const parts: { step: string; ms: number }[] = [];
  const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      parts.push({ step, ms: Date.now() - t0 });
    }
  };
  let converted = convertedGuestOf(await ctx.one.image(targets[0]!.imageId)) !== undefined;
  try {
    if (!converted) {
      if ((await ctx.vsphere.powerState(summary.ref)) !== 'poweredOff') {
        await timed('shutdown', () =>
          phases.run('shutdown', async () => {
            journal.data.shutDownByUs = true;
            await journal.flush();
            await stopSource(ctx, summary, opts, phases.log);
          }),
        );
      }
      await timed('final delta', () =>
        phases.run('final-sync', () => runRound(ctx, journal, summary, description, targets, { final: true, streams: opts.streams, readers: opts.readers, dcPath: s.dcPath }, phases.log), (r) => describeRound(r.round)),
      );
    }
    let guest: ConvertedGuest | undefined;
    const skip = conversionSkipped(warm);
    if (skip === undefined) {
      guest = await timed('conversion', () => phases.run('convert', () => convert(ctx, journal, description, targets, s.nics, opts, phases.log), (g) => g.detail).then((g) => g.guest));
      converted = true;
    } else {
      ctx.emit({ type: 'phase', vm: description.name, phase: 'convert', state: 'skipped', detail: skip });
    }
    const built = await timed(opts.instantiate ? 'template and VM' : 'template', () =>
      phases.run('build', () => build(ctx, journal, description, targets, s.nics, guest, { ...opts, convert: warm.convert !== false }, phases.log), (b) => `template ${b.templateId}${b.vmId === undefined ? '' : `, VM ${b.vmId}`}`),
    );
    const downtimeMs = Date.now() - downtimeStart;
    ctx.emit({ type: 'downtime', vm: description.name, totalMs: downtimeMs, parts: withResumedTime(parts, downtimeMs) });

    await phases.run('cleanup', async () => {
      await removeLeftovers(ctx, journal, summary, phases.log);
      for (const t of targets) await markImage(ctx.one, t.imageId, 'DONE');
      await journal.remove();
    });
    return { ...built, downtimeMs };
  } catch (err) {
    await failedCutover(ctx, s, converted, phases.log);
    throw err;
  }
}

/**
 * Why the cutover does not convert, or undefined when it does. A rehearsal that found no operating
 * system settled it while the source ran: the downtime is not spent booting an appliance to find
 * nothing again (warm-status predicts the same).
 */
export function conversionSkipped(warm: WarmState | undefined): string | undefined {
  if (warm?.convert === false) return 'the migration runs with --no-convert';
  if (warm?.rehearsal?.noOs) return 'the rehearsal found no operating system (data disks only)';
  return undefined;
}

/** Guest shutdown through VMware Tools; a hard power-off only when asked for. */
async function stopSource(ctx: ImportContext, summary: VmSummary, opts: WarmOptions, log: StepLog): Promise<void> {
  try {
    await ctx.vsphere.shutdownGuest(summary.ref, opts.shutdownTimeoutMs, ctx.signal);
  } catch (err) {
    if (ctx.signal.aborted || !opts.forcePoweroff) throw err;
    log(`the guest did not shut down (${describeError(err)}); powering ${summary.name} off (--force-poweroff)`, 'warn');
    await ctx.vsphere.powerOff(summary.ref);
  }
}

/** The parts measured in this process; time spent by an earlier, interrupted cutover shows as such. */
function withResumedTime(parts: { step: string; ms: number }[], totalMs: number): { step: string; ms: number }[] {
  const measured = parts.reduce((a, p) => a + p.ms, 0);
  return totalMs - measured > 1000 ? [{ step: 'earlier attempts', ms: totalMs - measured }, ...parts] : parts;
}

/** Says what state each side is in after a failed cutover, and puts the source back when it is safe. */
async function failedCutover(ctx: ImportContext, s: Started, converted: boolean, log: StepLog): Promise<void> {
  const { journal, summary } = s;
  const ids = journal.data.disks.map((d) => d.imageId).join(', ');
  await removeLeftovers(ctx, journal, summary, log).catch((e: unknown) => log(`could not remove oneswap's snapshot: ${describeError(e)}; delete snapshots named oneswap-* in vCenter`, 'error'));
  if (journal.data.vmId !== undefined || converted) {
    // Converted images hold writes CBT does not know of: another round would mix two disks.
    log(
      `source ${summary.name}: stays powered off (its disks are converted in images ${ids}${journal.data.vmId === undefined ? '' : `, VM ${journal.data.vmId} exists`}); run oneswap warm cutover ${summary.name} again to finish, or oneswap warm abort ${summary.name} to power the source on and remove the images`,
      'error',
    );
    await journal.flush();
    return;
  }
  if (journal.data.shutDownByUs && journal.data.warm?.cutover?.sourceWasOn) {
    try {
      await ctx.vsphere.powerOn(summary.ref);
      journal.data.shutDownByUs = false;
      log(`source ${summary.name}: powered on again in vCenter`);
    } catch (err) {
      log(`source ${summary.name}: could not power it on again (${describeError(err)}); power it on in vCenter`, 'error');
    }
  }
  if (journal.data.warm) journal.data.warm.cutover = undefined;
  await journal.flush();
  log(`OpenNebula: images ${ids} kept with their rounds (not converted); run oneswap warm cutover ${summary.name} again, or keep syncing`, 'warn');
}

/** `oneswap warm abort`: oneswap's snapshots, images, template and VM removed; the source as it was. */
export async function warmAbort(ctx: ImportContext, vmName: string, opts: WarmOptions): Promise<WarmResult> {
  const started = Date.now();
  const phases = new Phases(ctx, vmName);
  const { summary, description, journal, resumed } = await findMigration(ctx, vmName, opts);
  await journal.lock(summary.name);
  try {
    const snapshots = await removeLeftovers(ctx, journal, summary, phases.log);
    if (!resumed) await adoptWarmImages(ctx.one, journal, description, opts, phases.log);
    if (journal.data.disks.length === 0 && snapshots === 0)
      throw new OneswapError('not-found', `no warm migration of ${summary.name} into datastore ${opts.datastoreId} to abort`);
    await rollback(ctx, journal, summary, undefined, phases.log);
    ctx.emit({ type: 'result', vm: vmName, ok: true, imageIds: [], durationMs: Date.now() - started });
    return { vm: vmName, ok: true, imageIds: [], rounds: 0 };
  } finally {
    await journal.unlock();
  }
}

/** Runs one stage with the journal locked, and turns a failure into a result. */
async function stage(ctx: ImportContext, vmName: string, opts: WarmOptions, fn: (s: Started, phases: Phases) => Promise<Partial<WarmResult> | void>): Promise<WarmResult> {
  const started = Date.now();
  const phases = new Phases(ctx, vmName);
  let s: Started | undefined;
  try {
    s = await open(ctx, phases, vmName, opts);
    const r = (await fn(s, phases)) ?? {};
    const imageIds = s.journal.data.disks.map((d) => d.imageId);
    ctx.emit({ type: 'result', vm: vmName, ok: true, imageIds, templateId: r.templateId, vmId: r.vmId, durationMs: Date.now() - started, host: s.summary.host });
    return { vm: vmName, ok: true, imageIds, rounds: roundCount(s), ...r };
  } catch (err) {
    const error = ctx.signal.aborted ? (ctx.signal.reason ?? err) : err;
    if (!s?.journal.data.warm?.cutover) keptForResume(s, phases, vmName);
    const imageIds = s?.journal.data.disks.map((d) => d.imageId) ?? [];
    ctx.emit({ type: 'result', vm: vmName, ok: false, imageIds, error: describeError(error), durationMs: Date.now() - started, host: s?.summary.host });
    return { vm: vmName, ok: false, imageIds, rounds: s ? roundCount(s) : 0, error };
  } finally {
    await s?.journal.unlock();
  }
}

function roundCount(s: Started): number {
  const w = s.journal.data.warm;
  return (w?.baseRound ?? 0) + (w?.rounds.length ?? 0);
}

export function roundBytes(r: WarmRound): number {
  return Object.values(r.bytes).reduce((a, b) => a + b, 0);
}

function describeRound(r: WarmRound): string {
  return `round ${r.round}${r.full ? ' (full)' : ''}: ${roundBytes(r)} bytes of changed areas copied in ${(r.copyMs / 1000).toFixed(1)} s, snapshot ${(r.snapshotMs / 1000).toFixed(1)} s`;
}
