// One human line per event, shared by the TTY display, the plain display and the log file.

import type { ExpectedConversion, MigrationEvent } from '../supervisor/index.js';
import { formatAbout, formatBytes, formatDuration } from './rate.js';

export function describeEvent(e: MigrationEvent): string | undefined {
  switch (e.type) {
    case 'run':
      return e.state === 'start' ? `run ${e.runId} started${e.logFile ? `, log: ${e.logFile}` : ''}` : `run ${e.runId} ${e.ok ? 'finished' : 'failed'}`;
    case 'phase': {
      const took = e.durationMs === undefined ? '' : ` (${formatDuration(e.durationMs / 1000)})`;
      const detail = e.detail ? `: ${e.detail}` : '';
      return `${e.vm}: ${e.phase} ${e.state}${took}${detail}`;
    }
    case 'disk': {
      const pct = e.bytesPlanned > 0 ? Math.floor((e.bytesDone * 100) / e.bytesPlanned) : 100;
      return `${e.vm}: ${e.name} ${e.state} ${pct}% (${formatBytes(e.bytesDone)} of ${formatBytes(e.bytesPlanned)} to read, ${formatBytes(e.bytesWritten)} written, disk ${formatBytes(e.capacityBytes)})`;
    }
    case 'reader':
      return `${e.vm}: disk ${e.disk} (${e.name}) is read with the ${e.reader} reader: ${e.why}`;
    case 'downtime': {
      const parts = e.parts.map((p) => `${p.step} ${formatDuration(p.ms / 1000)} (${e.totalMs > 0 ? Math.round((p.ms * 100) / e.totalMs) : 0} %)`);
      return `${e.vm}: downtime ${formatDuration(e.totalMs / 1000)}: ${parts.join(', ')}`;
    }
    case 'conversion': {
      const what = `${e.vm}: ${e.rehearsal ? 'rehearsal' : 'convert'}:`;
      // A rehearsal runs while the source runs on: its steps are for the live line only.
      if (e.state === 'step') return e.rehearsal ? undefined : `${what} ${e.step}`;
      if (e.state === 'start')
        return `${what} conversion started; ${e.expected ? `expected about ${formatAbout(e.expected.ms)} (${basisOf(e.expected)})` : 'no earlier conversion of this VM or of its OS to say how long it takes'}`;
      const took = `${e.ok ? 'took' : 'stopped after'} ${formatDuration((e.durationMs ?? 0) / 1000)}${e.expected ? ` (expected about ${formatAbout(e.expected.ms)})` : ''}`;
      const steps = (e.steps ?? []).map((s) => `${s.step} ${formatDuration(s.ms / 1000)}`).join(', ');
      return `${what} conversion ${took}${steps ? `; steps: ${steps}` : ''}`;
    }
    case 'slot':
      if (e.state === 'released') return `${e.vm}: in-flight slot given back while it waits for its next round or its cutover window`;
      if (e.state === 'waiting') return `${e.vm}: waiting for an in-flight slot (the plan's inFlight budget) before it goes on`;
      // Taken at once: the line that it was given back says enough.
      return e.waitedMs === undefined ? undefined : `${e.vm}: in-flight slot taken again after ${formatDuration(e.waitedMs / 1000)}`;
    case 'log':
      return `${e.level === 'info' ? '' : `${e.level}: `}${e.vm ? `${e.vm}: ` : ''}${e.message}`;
    case 'result':
      if (!e.ok) return `${e.vm}: FAILED after ${formatDuration(e.durationMs / 1000)}: ${e.error ?? 'unknown error'}`;
      if (e.templateFile) return `${e.vm}: done in ${formatDuration(e.durationMs / 1000)}: ${e.templateFile} and the disk files beside it`;
      return `${e.vm}: done in ${formatDuration(e.durationMs / 1000)}: images ${e.imageIds.join(', ')}${e.templateId === undefined ? '' : `, template ${e.templateId}`}${e.vmId === undefined ? '' : `, VM ${e.vmId}`}`;
  }
}

/** Where an expected conversion time comes from, for the log. */
function basisOf(x: ExpectedConversion): string {
  const took = `took ${formatDuration(x.ms / 1000)} on ${x.at.slice(0, 10)}`;
  if (x.from === 'same-os') return `a ${x.os || 'guest'} conversion (${x.osKey}) ${took}`;
  return `this VM's ${x.from === 'this-vm-rehearsal' ? 'rehearsal' : 'conversion'} ${took}`;
}
