// Displays that write whole lines: JSON lines for programs (--progress json) and plain text for
// logs and pipes (--progress plain). Disk progress is thinned out so a pipe is not flooded.

import type { EventSink, MigrationEvent } from '../supervisor/index.js';
import { describeEvent } from './text.js';

/** One JSON object per line with a timestamp; disk progress at most once per interval per disk. */
export function jsonLines(write: (line: string) => void, diskIntervalMs = 1000): EventSink {
  const last = new Map<string, number>();
  return (e: MigrationEvent) => {
    if (e.type === 'disk' && e.state === 'copying') {
      const key = `${e.vm}\u0000${e.disk}`;
      const now = Date.now();
      if (now - (last.get(key) ?? 0) < diskIntervalMs) return;
      last.set(key, now);
    }
    write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
  };
}

/** Human lines; disk progress every `stepPercent` percent. */
export function plainLines(write: (line: string) => void, stepPercent = 10, stamp = false): EventSink {
  const lastStep = new Map<string, number>();
  return (e: MigrationEvent) => {
    if (e.type === 'disk' && e.state === 'copying') {
      const key = `${e.vm}\u0000${e.disk}`;
      const pct = e.bytesPlanned > 0 ? (e.bytesDone * 100) / e.bytesPlanned : 100;
      const step = Math.floor(pct / stepPercent);
      if (step <= (lastStep.get(key) ?? -1)) return;
      lastStep.set(key, step);
    }
    const text = describeEvent(e);
    if (text !== undefined) write(`${stamp ? `${new Date().toISOString()} ` : ''}${text}\n`);
  };
}
