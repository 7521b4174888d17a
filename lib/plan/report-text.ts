// A plan run's summary for the terminal: a line for the run, a table per wave, a line of totals.
// The JSON form is the summary itself; the HTML report is report-html.ts.

import { formatBytes, formatDuration, renderTable } from '../progress/index.js';
import type { PlanRunSummary, VmRunRecord } from './run-summary.js';
import { formatTime, outcomePhrase, spanMs, totalsOf, waveTitle, wavesOf, type RunTotals } from './run-totals.js';

export function renderTextSummary(summary: PlanRunSummary): string {
  const out = [`plan ${summary.plan}, run ${summary.runId}: ${period(summary.start, summary.end)}\n`];
  for (const group of wavesOf(summary)) {
    const t = totalsOf(group.vms);
    const when = group.wave?.start !== undefined ? `; ${period(group.wave.start, group.wave.end)}` : '; not started';
    out.push(`\n${waveTitle(group.name)}: ${countVms(t)}${when}\n`);
    if (group.vms.length > 0) {
      out.push(renderTable(['VM', 'OUTCOME', 'DURATION', 'DOWNTIME', 'COPIED', 'WRITTEN', 'ERROR'], group.vms.map(row)));
    }
  }
  const all = totalsOf(summary.vms);
  const wall = spanMs(summary.start, summary.end);
  out.push(
    `\ntotal: ${countVms(all)}${wall === undefined ? '' : ` in ${formatDuration(wall / 1000)}`}; ` +
      `${formatBytes(all.bytesCopied)} copied, ${formatBytes(all.bytesWritten)} written, downtime ${formatDuration(all.downtimeMs / 1000)} in all\n`,
  );
  return out.join('');
}

function row(vm: VmRunRecord): string[] {
  return [
    vm.key,
    vm.finishedEarlier ? 'done (earlier run)' : vm.outcome,
    vm.outcome === 'pending' || vm.finishedEarlier ? '-' : formatDuration(vm.durationMs / 1000),
    vm.downtimeMs === undefined ? '-' : formatDuration(vm.downtimeMs / 1000),
    formatBytes(vm.bytesCopied),
    formatBytes(vm.bytesWritten),
    vm.error ?? '',
  ];
}

function countVms(t: RunTotals): string {
  return t.vms === 0 ? '0 VMs' : `${t.vms} VM${t.vms === 1 ? '' : 's'}, ${outcomePhrase(t)}`;
}

function period(start: string, end: string | undefined): string {
  const ms = spanMs(start, end);
  return end === undefined ? `${formatTime(start)} → running` : `${formatTime(start)} → ${formatTime(end)}${ms === undefined ? '' : ` (${formatDuration(ms / 1000)})`}`;
}
