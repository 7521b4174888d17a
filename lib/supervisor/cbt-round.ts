// One round of a warm migration: snapshot the VM, ask CBT what changed since the changeId each
// image was brought to, copy those areas from the snapshot through a reader ESXi allows for a
// running VM (VDDK/nfc, else an export lease of the snapshot), record the new changeIds, remove the
// snapshot. oneswap's snapshot is the only one it ever creates or removes, and there is at most
// one at any moment: leftovers of a killed run are removed before the next is taken. The
// cutover's round takes none: the VM is off, CBT answers for the disk as it is.
//
// The invariant that makes every interruption safe: each image equals the disk at the snapshot
// whose changeId the journal holds for it, except inside its `pending` areas. A round first
// plans pending ∪ (changes since that changeId), then moves the anchor to the new snapshot, then
// copies; finished ranges leave `pending`. A re-run plans the same way and converges.

import { OneswapError, describeError } from '../errors/index.js';
import { isFault, type MoRef, type Snapshot, type VmSummary } from '../vsphere/index.js';
import { isOwnSnapshot, ownSnapshotSpec, type ReaderSettings, type ReadState, type Readings, type VmDescription } from '../input/index.js';
import { normalizeExtents, subtractExtents, totalLength, type Extent } from '../extents/index.js';
import { recordWarmRound, markImage } from '../output/index.js';
import type { Journal, JournalDisk, WarmRound } from './journal.js';
import { copyIntoImages, openDiskReaders, type DiskCopy, type DiskTarget, type ImportContext, type StepLog } from './steps.js';

/**
 * Range streams per disk in a round. A delta is many small areas: each costs a request's round
 * trip more than its bytes, so more requests in flight, not more bandwidth per request, is what
 * shortens it.
 */
function roundStreams(streams: number, full: boolean): number {
  return full ? streams : streams * 4;
}

export interface RoundOptions {
  /**
   * The cutover's round: the VM is off, so no snapshot is taken: CBT answers for the disk as it is
   * (vSphere allows that on a powered-off VM) and the reader opens the disks themselves.
   */
  readonly final: boolean;
  readonly streams: number;
  readonly readers: ReaderSettings;
  readonly dcPath: string;
}

export interface RoundResult {
  readonly round: WarmRound;
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
  const snapshot = opts.final ? undefined : await takeSnapshot(ctx, summary, `round-${number}`, summary.toolsRunning, log);
  const snapshotMs = Date.now() - t0;
  if (snapshot) {
    warm.snapshot = snapshot.ref.value;
    await journal.flush();
  }
  let readings: Readings | undefined;
  try {
    // The disk list and changeIds of a snapshot come from its own config (vSphere's contract).
    const frozen = snapshot ? (snapshot.disks ?? (await ctx.vsphere.snapshotDisks(snapshot.ref))) : summary.disks;
    const disks = targets.map((t) => {
      const d = t.disk.description;
      const device = frozen.find((f) => String(f.key) === d.sourceKey);
      if (!device) throw new OneswapError('conflict', `disk "${d.label}" of VM ${vm.name} is no longer in its configuration`, { hint: `oneswap warm abort ${vm.name}, then start again` });
      return { ...t.disk, device };
    });
    const changeIds = disks.map((d) => {
      if (!snapshot || d.device.changeId) return d.device.changeId;
      throw new OneswapError('conflict', `vCenter reports no changeId for disk "${d.description.label}" of VM ${vm.name} in oneswap's snapshot: change tracking is not active on that disk`, {
        hint: 'per-disk tracking starts at the next stun after CBT is enabled; power-cycle the VM or take and delete a snapshot in vCenter, then run again',
      });
    });
    const plans = await Promise.all(targets.map((t, i) => planDisk(ctx, summary, snapshot?.ref, t, journal.disk(t.disk.description.sourceKey)!, changeIds[i], log)));
    const full = plans.some((p) => p.full);
    // The cutover keeps each image's anchor: the powered-off disk does not change any more, and a
    // re-run plans pending ∪ (changes since that anchor) again.
    for (const [i, t] of targets.entries()) {
      const jd = journal.disk(t.disk.description.sourceKey)!;
      if (snapshot) jd.changeId = changeIds[i]!;
      jd.pending = plans[i]!.areas;
      jd.done = [];
    }
    await journal.flush();

    const state: ReadState = snapshot ? { kind: 'snapshot', snapshot: snapshot.ref, vmRunning: summary.powerState === 'poweredOn' } : { kind: 'powered-off' };
    const opened = await openDiskReaders(ctx, summary, opts.dcPath, disks, state, opts.readers);
    readings = opened.readings;
    const copies: DiskCopy[] = targets.map((t, i) => ({ target: t, reading: readings!.get(disks[i]!.device.key), planned: plans[i]!.areas, targetIsZero: plans[i]!.targetIsZero }));
    const streamed = copies.filter((c, i) => c.reading.access === 'stream' && !plans[i]!.full);
    if (streamed.length > 0)
      log(`round ${number} reads through an export lease, which streams each whole allocated disk over the network to write ${totalLength(streamed.flatMap((c) => c.planned))} bytes of changed areas`, 'warn');

    const t1 = Date.now();
    await copyIntoImages(ctx, journal, { name: vm.name, host: summary.host }, copies, roundStreams(opts.streams, full), async (c) => {
      const jd = journal.disk(c.target.disk.description.sourceKey)!;
      jd.pending = [];
      jd.done = [];
      await journal.flush();
      if (opts.final) await markImage(ctx.one, c.target.imageId, 'COPIED');
      else await recordWarmRound(ctx.one, c.target.imageId, jd.changeId!, number);
    });
    await readings.finish(true);
    const round: WarmRound = {
      round: number,
      full,
      final: opts.final,
      snapshotAt: new Date(t0 + snapshotMs).toISOString(),
      snapshotMs,
      copyMs: Date.now() - t1,
      bytes: Object.fromEntries(copies.map((c) => [c.target.disk.description.sourceKey, totalLength(c.planned)])),
      readers: Object.fromEntries(disks.map((d) => [d.description.sourceKey, opened.choices.get(d.device.key)!.reader])),
    };
    warm.rounds.push(round);
    await journal.flush();
    if (snapshot) await removeSnapshot(ctx, journal, snapshot.ref, log);
    return { round };
  } catch (err) {
    await readings?.finish(false, describeError(err)).catch(() => undefined);
    // Before the cutover the source keeps running; our snapshot must not stay on it.
    if (snapshot) await removeSnapshot(ctx, journal, snapshot.ref, log).catch(() => undefined);
    throw err;
  }
}

interface DiskPlan {
  readonly areas: Extent[];
  readonly full: boolean;
  readonly targetIsZero: boolean;
}

async function planDisk(ctx: ImportContext, summary: VmSummary, snapshot: MoRef | undefined, t: DiskTarget, jd: JournalDisk, changeId: string | undefined, log: StepLog): Promise<DiskPlan> {
  const d = t.disk.description;
  const cap = d.capacityBytes;
  const allocated = async (): Promise<Extent[]> => ctx.vsphere.queryChangedDiskAreas(summary.ref, snapshot, t.disk.device.key, '*', cap);
  if (jd.changeId === undefined) {
    // No round yet. An image a cold import (kept after a failure) already wrote to is cleared
    // first: only an image of holes can take a full copy without punching every zero block.
    if (jd.complete || jd.done.length > 0) {
      await t.target.clear();
      jd.complete = false;
    }
    return { areas: await allocated(), full: true, targetIsZero: true };
  }
  const reset = async (why: string): Promise<DiskPlan> => {
    log(`change tracking of disk "${d.label}" was reset (${why}): copying it in full again`, 'warn');
    await t.target.clear();
    return { areas: await allocated(), full: true, targetIsZero: true };
  };
  if (changeId !== undefined && changeTrack(jd.changeId) !== changeTrack(changeId)) return reset('its changeId has a new identity');
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
