// The figures both renderings of a run's summary show (report-text.ts, report-html.ts): the VMs
// grouped by wave in the plan's order, and counts and sums over a group, so the terminal and the
// HTML report never disagree.

import type { PlanRunSummary, VmOutcome, VmRunRecord, WaveRecord } from './run-summary.js';

export interface WaveGroup {
  readonly name: string;
  /** The wave's record; absent for a wave named only by its VMs (a summary written mid-run). */
  readonly wave?: WaveRecord;
  readonly vms: readonly VmRunRecord[];
}

export interface RunTotals {
  readonly vms: number;
  readonly outcomes: Readonly<Record<VmOutcome, number>>;
  readonly bytesCopied: number;
  readonly bytesWritten: number;
  /** Summed over the VMs that report one. */
  readonly downtimeMs: number;
}

/**
 * The VMs by wave: waves in the summary's order, each wave's VMs in the order it lists them, then
 * VMs the wave does not list, then waves only the VMs name, so every record is shown exactly once.
 */
export function wavesOf(summary: PlanRunSummary): WaveGroup[] {
  const byWave = new Map<string, VmRunRecord[]>();
  for (const vm of summary.vms) {
    const list = byWave.get(vm.wave);
    if (list) list.push(vm);
    else byWave.set(vm.wave, [vm]);
  }
  const groups: WaveGroup[] = [];
  for (const wave of summary.waves) {
    const records = byWave.get(wave.name) ?? [];
    byWave.delete(wave.name);
    const rank = new Map(wave.vms.map((key, i) => [key, i]));
    const ordered = records
      .map((vm, i) => ({ vm, at: rank.get(vm.key) ?? wave.vms.length + i }))
      .sort((a, b) => a.at - b.at)
      .map((x) => x.vm);
    groups.push({ name: wave.name, wave, vms: ordered });
  }
  for (const [name, vms] of byWave) groups.push({ name, vms });
  return groups;
}

export function totalsOf(vms: readonly VmRunRecord[]): RunTotals {
  const outcomes: Record<VmOutcome, number> = { done: 0, failed: 0, pending: 0, skipped: 0 };
  let bytesCopied = 0;
  let bytesWritten = 0;
  let downtimeMs = 0;
  for (const vm of vms) {
    outcomes[vm.outcome]++;
    bytesCopied += vm.bytesCopied;
    bytesWritten += vm.bytesWritten;
    downtimeMs += vm.downtimeMs ?? 0;
  }
  return { vms: vms.length, outcomes, bytesCopied, bytesWritten, downtimeMs };
}

/** Milliseconds between two ISO times; undefined when either is missing or unreadable. */
export function spanMs(start: string | undefined, end: string | undefined): number | undefined {
  if (start === undefined || end === undefined) return undefined;
  const ms = Date.parse(end) - Date.parse(start);
  return Number.isFinite(ms) ? Math.max(0, ms) : undefined;
}

/** "2026-12-07 12:00:05 UTC": a summary's times as people read them, whatever the reader's zone. */
export function formatTime(iso: string): string {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? `${new Date(t).toISOString().slice(0, 19).replace('T', ' ')} UTC` : iso;
}

/** "wave 2", or the name as it is when it says so itself ("wave-2", "Wave A"). */
export function waveTitle(name: string): string {
  return /^wave/i.test(name) ? name : `wave ${name}`;
}

/** Outcome counts as one phrase: "10 done, 1 failed, 1 pending" (zero counts left out, "0 VMs" when none). */
export function outcomePhrase(t: RunTotals): string {
  const parts = (['done', 'failed', 'pending', 'skipped'] as const).filter((o) => t.outcomes[o] > 0).map((o) => `${t.outcomes[o]} ${o}`);
  return parts.length > 0 ? parts.join(', ') : '0 VMs';
}
