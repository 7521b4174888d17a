// One round of a warm migration: snapshot the VM, ask CBT what changed since the changeId each
// image was brought to, copy those areas from the snapshot, record the new changeIds, remove the
// snapshot. oneswap's snapshot is the only one it ever creates or removes, and there is at most
// one at any moment: leftovers of a killed run are removed before the next is taken.
//
// The invariant that makes every interruption safe: each image equals the disk at the snapshot
// whose changeId the journal holds for it, except inside its `pending` areas. A round first
// plans pending ∪ (changes since that changeId), then moves the anchor to the new snapshot, then
// copies; finished ranges leave `pending`. A re-run plans the same way and converges.

import { OneswapError, describeError } from '../errors/index.js';
import { isFault, type MoRef, type Snapshot, type VmDisk, type VmSummary } from '../vsphere/index.js';
import { clearTargetFile, type RangeSource } from '../copy/index.js';
import { isOwnSnapshot, openVcenterDisks, ownSnapshotSpec, type VmDescription } from '../input/index.js';
import { normalizeExtents, subtractExtents, totalLength, type Extent } from '../extents/index.js';
import { recordWarmRound, markImage } from '../output/index.js';
import type { Journal, JournalDisk, WarmRound } from './journal.js';
import { copyIntoImages, type DiskCopy, type DiskTarget, type ImportContext, type StepLog } from './steps.js';

/**
 * Range streams per disk in a round. A delta is many small areas: each costs a request's round
 * trip more than its bytes, so more requests in flight, not more bandwidth per request, is what
 * shortens it.
 */
function roundStreams(streams: number, full: boolean): number {
  return full ? streams : streams * 4;
}

export interface RoundOptions {
  /** The cutover's round: the VM is off, the images become final, the snapshot stays for the caller to remove. */
  readonly final: boolean;
  readonly streams: number;
}

export interface RoundResult {
  readonly round: WarmRound;
  /** The final round's snapshot, still there; undefined after a normal round. */
  readonly snapshot?: MoRef;
}

/** The part of a changeId before "/": it changes when CBT is reset for the disk. */
export function changeTrack(changeId: string): string {
  const slash = changeId.lastIndexOf('/');
  return slash < 0 ? changeId : changeId.slice(0, slash);
}

export async function runRound(
  ctx: ImportContext,
  journal: Journal,
  summary: VmSummary,
  vm: VmDescription,
  targets: readonly DiskTarget[],
  opts: RoundOptions,
  log: StepLog,
): Promise<RoundResult> {
  const warm = (journal.data.warm ??= { rounds: [] });
  const number = (warm.baseRound ?? 0) + warm.rounds.length;
  await removeLeftovers(ctx, journal, summary, log);

  const t0 = Date.now();
  // The copy's connections are opened while vCenter takes the snapshot (a disk never copied is
  // copied in full: the guess the plan confirms below).
  const firstRound = targets.some((t) => journal.disk(t.disk.description.sourceKey)?.changeId === undefined);
  const warming = ctx.vsphere.prepareRangeStreams(roundStreams(opts.streams, firstRound) * targets.length);
  const snapshot = await takeSnapshot(ctx, summary, opts.final ? 'cutover' : `round-${number}`, !opts.final && summary.toolsRunning, log).finally(() => warming);
  const snapshotMs = Date.now() - t0;
  warm.snapshot = snapshot.ref.value;
  await journal.flush();
  try {
    const snapDisks = snapshot.disks ?? (await ctx.vsphere.snapshotDisks(snapshot.ref));
    const sources = await snapshotSources(ctx, summary, vm, targets, snapDisks);
    const changeIds = targets.map((t) => {
      const d = t.disk.description;
      const changeId = snapDisks.find((f) => String(f.key) === d.sourceKey)?.changeId;
      if (!changeId)
        throw new OneswapError('conflict', `vCenter reports no changeId for disk "${d.label}" of VM ${vm.name} in oneswap's snapshot: change tracking is not active on that disk`, {
          hint: 'per-disk tracking starts at the next stun after CBT is enabled; power-cycle the VM or take and delete a snapshot in vCenter, then run again',
        });
      return changeId;
    });
    const plans = await Promise.all(targets.map((t, i) => planDisk(ctx, summary, snapshot.ref, t, journal.disk(t.disk.description.sourceKey)!, changeIds[i]!, log)));
    const full = plans.some((p) => p.full);
    const copies: DiskCopy[] = targets.map((t, i) => {
      const jd = journal.disk(t.disk.description.sourceKey)!;
      jd.changeId = changeIds[i]!;
      jd.pending = plans[i]!.areas;
      jd.done = [];
      return { target: t, source: sources.get(t.disk.description.sourceKey)!, planned: plans[i]!.areas, targetIsZero: plans[i]!.targetIsZero };
    });
    await journal.flush();

    const t1 = Date.now();
    await copyIntoImages(ctx, journal, vm.name, copies, roundStreams(opts.streams, full), async (c) => {
      const jd = journal.disk(c.target.disk.description.sourceKey)!;
      jd.pending = [];
      jd.done = [];
      await journal.flush();
      if (opts.final) await markImage(ctx.one, c.target.imageId, 'COPIED');
      else await recordWarmRound(ctx.one, c.target.imageId, jd.changeId!, number);
    });
    const round: WarmRound = {
      round: number,
      full,
      final: opts.final,
      snapshotAt: new Date(t0 + snapshotMs).toISOString(),
      snapshotMs,
      copyMs: Date.now() - t1,
      bytes: Object.fromEntries(copies.map((c) => [c.target.disk.description.sourceKey, totalLength(c.planned)])),
    };
    warm.rounds.push(round);
    await journal.flush();
    if (opts.final) return { round, snapshot: snapshot.ref };
    await removeSnapshot(ctx, journal, snapshot.ref, log);
    return { round };
  } catch (err) {
    // Before the cutover the source keeps running; our snapshot must not stay on it.
    await removeSnapshot(ctx, journal, snapshot.ref, log).catch(() => undefined);
    throw err;
  }
}

/**
 * The copy reads the disk files the snapshot froze. With no other snapshot those are the files the
 * precheck opened already (the base disks); any other (a redo log) is opened from its descriptor.
 */
async function snapshotSources(ctx: ImportContext, summary: VmSummary, vm: VmDescription, targets: readonly DiskTarget[], snapDisks: readonly VmDisk[]): Promise<Map<string, RangeSource>> {
  const sources = new Map<string, RangeSource>();
  const others: VmDisk[] = [];
  for (const t of targets) {
    const frozen = snapDisks.find((f) => String(f.key) === t.disk.description.sourceKey);
    if (frozen && frozen.fileName === t.disk.device.fileName) sources.set(t.disk.description.sourceKey, t.disk.source);
    else if (frozen) others.push(frozen);
  }
  if (others.length > 0) {
    const keys = new Set(others.map((o) => String(o.key)));
    const opened = await openVcenterDisks(ctx.vsphere, { ...summary, disks: others }, { ...vm, disks: vm.disks.filter((d) => keys.has(d.sourceKey)) });
    for (const o of opened) sources.set(o.description.sourceKey, o.source);
  }
  return sources;
}

interface DiskPlan {
  readonly areas: Extent[];
  readonly full: boolean;
  readonly targetIsZero: boolean;
}

async function planDisk(ctx: ImportContext, summary: VmSummary, snapshot: MoRef, t: DiskTarget, jd: JournalDisk, changeId: string, log: StepLog): Promise<DiskPlan> {
  const d = t.disk.description;
  const cap = d.capacityBytes;
  const allocated = async (): Promise<Extent[]> => ctx.vsphere.queryChangedDiskAreas(summary.ref, snapshot, t.disk.device.key, '*', cap);
  if (jd.changeId === undefined) {
    // No round yet. An image a cold import (kept after a failure) already wrote to is cleared
    // first: only an image of holes can take a full copy without punching every zero block.
    if (jd.complete || jd.done.length > 0) {
      await clearTargetFile(t.path, cap);
      jd.complete = false;
    }
    return { areas: await allocated(), full: true, targetIsZero: true };
  }
  const reset = async (why: string): Promise<DiskPlan> => {
    log(`change tracking of disk "${d.label}" was reset (${why}): copying it in full again`, 'warn');
    await clearTargetFile(t.path, cap);
    return { areas: await allocated(), full: true, targetIsZero: true };
  };
  if (changeTrack(jd.changeId) !== changeTrack(changeId)) return reset('its changeId has a new identity');
  let changed: Extent[];
  try {
    changed = await ctx.vsphere.queryChangedDiskAreas(summary.ref, snapshot, t.disk.device.key, jd.changeId, cap);
  } catch (err) {
    if (!isFault(err, 'FileFault')) throw err;
    return reset(`vCenter no longer knows changeId ${jd.changeId}`);
  }
  const pending = subtractExtents(jd.pending ?? [], jd.done);
  return { areas: normalizeExtents([...pending, ...changed], cap), full: false, targetIsZero: false };
}

/** Snapshot without memory; quiesced through VMware Tools when they run, plain if quiescing fails. */
async function takeSnapshot(ctx: ImportContext, summary: VmSummary, purpose: string, quiesce: boolean, log: StepLog): Promise<Snapshot> {
  const spec = ownSnapshotSpec(`warm-${purpose}`);
  if (quiesce) {
    try {
      return await ctx.vsphere.createSnapshot(summary.ref, { ...spec, memory: false, quiesce: true });
    } catch (err) {
      log(`a quiesced snapshot of ${summary.name} failed (${describeError(err)}); taking a crash-consistent one`, 'warn');
    }
  }
  return ctx.vsphere.createSnapshot(summary.ref, { ...spec, memory: false, quiesce: false });
}

/** Removes oneswap's snapshot and forgets it; one that is already gone counts as removed. */
export async function removeSnapshot(ctx: ImportContext, journal: Journal, ref: MoRef, log: StepLog): Promise<void> {
  try {
    await ctx.vsphere.removeSnapshot(ref);
  } catch (err) {
    if (!(err instanceof OneswapError && err.kind === 'not-found')) {
      log(`could not remove oneswap's snapshot ${ref.value}: ${describeError(err)}; the next run removes it, or delete it in vCenter`, 'error');
      throw err;
    }
  }
  if (journal.data.warm?.snapshot === ref.value) {
    journal.data.warm.snapshot = undefined;
    await journal.flush();
  }
}

/** Snapshots oneswap left behind (a killed run): removed, so at most one of ours ever exists. */
export async function removeLeftovers(ctx: ImportContext, journal: Journal, summary: VmSummary, log: StepLog): Promise<number> {
  const own = (await ctx.vsphere.snapshots(summary.ref)).filter(isOwnSnapshot);
  for (const s of own) {
    log(`removing oneswap's leftover snapshot "${s.name}"`, 'warn');
    await removeSnapshot(ctx, journal, s.ref, log);
  }
  if (journal.data.warm?.snapshot !== undefined) {
    journal.data.warm.snapshot = undefined;
    await journal.flush();
  }
  return own.length;
}
