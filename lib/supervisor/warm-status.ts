// `oneswap warm status`: where a warm migration stands, per disk, and what a cutover now would
// cost. The prediction uses only what the rounds measured: the copy rate of the rounds, the rate
// at which the guest changed its disks between the last two snapshots, the snapshot time, and the
// rehearsal's conversion time (none where the cutover will not convert).

import { warmImagesOf } from '../output/index.js';
import { availablePlugins, chooseReader, placeVcenterDisks, type ReaderKind, type ReaderSettings } from '../input/index.js';
import { subtractExtents, totalLength } from '../extents/index.js';
import type { WarmRound } from './journal.js';
import type { ImportContext } from './steps.js';
import { conversionSkipped, findMigration, roundBytes } from './warm.js';

export interface WarmDiskStatus {
  readonly index: number;
  readonly label: string;
  readonly imageId: number;
  readonly changeId?: string;
  /** Bytes of the round under way not written yet (an interrupted round). */
  readonly pendingBytes: number;
  readonly bytesPerRound: readonly number[];
  /** The reader the cutover will read this disk with (the VM is off by then). */
  readonly cutoverReader?: ReaderKind;
}

export interface DowntimePrediction {
  readonly totalMs: number;
  readonly parts: readonly { readonly step: string; readonly ms: number }[];
  /** What the prediction leaves out or guesses. */
  readonly notes: readonly string[];
}

export interface WarmStatus {
  readonly vm: string;
  readonly state: 'not started' | 'syncing' | 'cutting over';
  readonly rounds: number;
  readonly lastSnapshotAt?: string;
  readonly disks: readonly WarmDiskStatus[];
  /** Bytes per second the rounds copied. */
  readonly copyRate?: number;
  /** Bytes per second the guest changed between the last two snapshots. */
  readonly changeRate?: number;
  readonly rehearsal?: { readonly ok: boolean; readonly durationMs: number; readonly detail: string };
  readonly prediction?: DowntimePrediction;
  /** pid of a oneswap process working on it now. */
  readonly runningPid?: number;
}

export async function warmStatus(
  ctx: Pick<ImportContext, 'vsphere' | 'one' | 'vcenterHost'>,
  vmName: string,
  opts: { datastoreId: number; stateDir: string; namePrefix: string; datacenter?: string; readers: ReaderSettings },
  now = Date.now(),
): Promise<WarmStatus> {
  const { summary, description: vm, journal, resumed } = await findMigration(ctx, vmName, opts);
  const plugins = await availablePlugins(opts.readers);
  const placed = (await placeVcenterDisks(ctx.vsphere, summary, vm)).disks;
  const readerOf = (index: number): ReaderKind | undefined => {
    const p = placed.find((d) => d.description.index === index);
    return p && chooseReader(opts.readers, plugins, p, false).reader;
  };
  const runningPid = await journal.lockHolder();
  const warm = journal.data.warm;
  const rounds = warm?.rounds ?? [];
  let disks: WarmDiskStatus[];
  if (resumed && warm) {
    disks = vm.disks.flatMap((d) => {
      const jd = journal.disk(d.sourceKey);
      if (!jd) return [];
      return [{ index: d.index, label: d.label, imageId: jd.imageId, changeId: jd.changeId, pendingBytes: totalLength(subtractExtents(jd.pending ?? [], jd.done)), bytesPerRound: rounds.map((r) => r.bytes[d.sourceKey] ?? 0), cutoverReader: readerOf(d.index) }];
    });
  } else {
    // No local state: what the images say.
    disks = (await warmImagesOf(ctx.one, vm, opts.datastoreId, opts.namePrefix)).resumable.map((f) => ({ index: f.diskIndex, label: vm.disks[f.diskIndex]?.label ?? '?', imageId: f.imageId, changeId: f.changeId, pendingBytes: 0, bytesPerRound: [], cutoverReader: readerOf(f.diskIndex) }));
  }
  const count = (warm?.baseRound ?? 0) + rounds.length;
  const state = warm?.cutover ? 'cutting over' : disks.length > 0 ? 'syncing' : 'not started';
  const rates = measuredRates(rounds);
  const last = rounds[rounds.length - 1];
  return {
    vm: vm.name,
    state,
    rounds: count,
    lastSnapshotAt: last?.snapshotAt,
    disks,
    ...rates,
    rehearsal: warm?.rehearsal,
    prediction: last ? predictDowntime(rounds, rates, warm?.rehearsal, conversionSkipped(warm), disks, now) : undefined,
    runningPid,
  };
}

export function measuredRates(rounds: readonly WarmRound[]): { copyRate?: number; changeRate?: number } {
  const timed = rounds.filter((r) => r.copyMs > 0 && roundBytes(r) > 0);
  const copyRate = timed.length > 0 ? (timed.reduce((a, r) => a + roundBytes(r), 0) * 1000) / timed.reduce((a, r) => a + r.copyMs, 0) : undefined;
  const [prev, last] = rounds.slice(-2);
  let changeRate: number | undefined;
  if (prev && last && !last.full) {
    const gapMs = Date.parse(last.snapshotAt) - Date.parse(prev.snapshotAt);
    if (gapMs > 0) changeRate = (roundBytes(last) * 1000) / gapMs;
  }
  return { copyRate, changeRate };
}

/**
 * Final delta = what the guest changed since the last snapshot (change rate × time since) plus
 * any unfinished areas, at the measured copy rate; the cutover takes no snapshot (the VM is off).
 * A disk the cutover reads through an export lease streams whole: its last full round's bytes.
 * Conversion = the rehearsal.
 */
export function predictDowntime(
  rounds: readonly WarmRound[],
  rates: { copyRate?: number; changeRate?: number },
  rehearsal: { ok: boolean; durationMs: number } | undefined,
  /** Why the cutover will not convert (conversionSkipped), or undefined when it will. */
  noConversion: string | undefined,
  disks: readonly WarmDiskStatus[],
  now: number,
): DowntimePrediction {
  const last = rounds[rounds.length - 1]!;
  const notes: string[] = ['the guest\'s own shutdown time is not included'];
  const pending = disks.reduce((a, d) => a + d.pendingBytes, 0);
  let changed: number;
  if (rates.changeRate !== undefined) changed = rates.changeRate * Math.max(0, (now - Date.parse(last.snapshotAt)) / 1000);
  else {
    changed = last.full ? 0 : roundBytes(last);
    notes.push('no change rate yet (needs two rounds): the final delta is guessed from the last round');
  }
  const streamed = disks.filter((d) => d.cutoverReader === 'lease');
  const streamedBytes = streamed.reduce((a, d) => a + (d.bytesPerRound.find((_, i) => rounds[i]?.full) ?? 0), 0);
  const readers = [...new Set(disks.map((d) => d.cutoverReader).filter((r) => r !== undefined))];
  const deltaBytes = changed + pending + streamedBytes;
  const copyMs = rates.copyRate ? (deltaBytes * 1000) / rates.copyRate : 0;
  const parts = [{ step: `final delta${readers.length > 0 ? ` (${readers.join(', ')})` : ''}`, ms: Math.round(copyMs) }];
  if (streamed.length > 0) notes.push(`disk ${streamed.map((d) => d.index).join(', ')} is read through an export lease at the cutover, which streams the whole allocated disk (give a VDDK with --vddk-libdir to read only the changes)`);
  if (noConversion !== undefined) notes.push(`no conversion at the cutover: ${noConversion}`);
  else if (rehearsal?.ok) parts.push({ step: 'conversion', ms: rehearsal.durationMs });
  else notes.push('conversion not rehearsed: its time is not included');
  notes.push('template and VM creation take seconds and are not included');
  return { totalMs: parts.reduce((a, p) => a + p.ms, 0), parts, notes };
}
