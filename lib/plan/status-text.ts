// `plan status` for people: one line for the run (running, ended, or stopped without ending), a
// row per VM with its phase, progress, rate, ETA and last error.

import { formatBytes, formatDuration, renderTable } from '../progress/index.js';
import type { RunStatus, VmStatus } from './run-record.js';

/** `alive`: whether the process that wrote the status still runs. */
export function renderStatus(status: RunStatus, alive: boolean): string {
  const counts = new Map<string, number>();
  for (const v of status.vms) counts.set(v.state, (counts.get(v.state) ?? 0) + 1);
  const tally = [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
  const how = status.ended
    ? `ended (last update ${status.updated})`
    : alive
      ? `running as process ${status.pid} since ${status.start}`
      : `stopped without ending: process ${status.pid} is gone, last update ${status.updated}; run the same plan again to resume it`;
  const head = `plan ${status.plan}, run ${status.runId}: ${how}; ${tally}\nlog: ${status.logFile}\n`;
  return `${head}\n${renderTable(['WAVE', 'VM', 'MODE', 'STATE', 'PHASE', 'PROGRESS', 'RATE', 'ETA', 'LAST ERROR'], status.vms.map(row))}`;
}

function row(v: VmStatus): string[] {
  const progress = v.bytesPlanned > 0 ? `${formatBytes(v.bytesDone)} / ${formatBytes(v.bytesPlanned)}` : v.bytesDone > 0 ? formatBytes(v.bytesDone) : '-';
  return [
    v.wave,
    v.key,
    v.mode,
    v.state,
    v.finishedEarlier ? 'finished by an earlier run' : (v.phase ?? '-'),
    progress,
    v.bytesPerSecond > 0 ? `${formatBytes(v.bytesPerSecond)}/s` : '-',
    v.etaSeconds === undefined ? '-' : formatDuration(v.etaSeconds),
    v.lastError ?? '',
  ];
}
