// Live display for a terminal: one line per disk (bar, bytes, rate, ETA) redrawn in place, with
// phase and log lines scrolling above it.

import type { EventSink, MigrationEvent } from '../supervisor/index.js';
import { DiskBoard, type DiskView } from './disk-state.js';
import { formatBytes, formatDuration } from './rate.js';
import { describeEvent } from './text.js';

export function ttyDisplay(out: NodeJS.WriteStream, refreshMs = 200): EventSink {
  const board = new DiskBoard();
  let drawn = 0; // lines of the live block currently on screen
  let lastDraw = 0;

  const clearBlock = (): void => {
    if (drawn > 0) out.write(`\x1b[${drawn}A\x1b[J`);
    drawn = 0;
  };
  const drawBlock = (): void => {
    const width = Math.max(40, (out.columns ?? 100) - 1);
    const lines = [...board.disks.values()].filter((d) => d.event.state === 'copying').map((d) => diskLine(d, width));
    for (const l of lines) out.write(`${l}\n`);
    drawn = lines.length;
    lastDraw = Date.now();
  };

  return (e: MigrationEvent) => {
    if (e.type === 'disk') {
      board.update(e);
      if (e.state !== 'copying') {
        clearBlock();
        out.write(`${describeEvent(e)}\n`);
        drawBlock();
      } else if (Date.now() - lastDraw >= refreshMs) {
        clearBlock();
        drawBlock();
      }
      return;
    }
    const text = describeEvent(e);
    if (text === undefined) return;
    clearBlock();
    out.write(`${text}\n`);
    drawBlock();
  };
}

function diskLine(d: DiskView, width: number): string {
  const e = d.event;
  const frac = e.bytesPlanned > 0 ? e.bytesDone / e.bytesPlanned : 1;
  const eta = d.meter.eta(e.bytesPlanned - e.bytesDone);
  const right = ` ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(e.bytesDone)}/${formatBytes(e.bytesPlanned)} ${formatBytes(d.meter.rate())}/s ETA ${eta === undefined ? '--:--' : formatDuration(eta)}`;
  const left = `  ${e.vm} ${e.name} `;
  const barWidth = Math.max(10, width - left.length - right.length - 2);
  const filled = Math.round(frac * barWidth);
  return `${left}[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]${right}`.slice(0, width);
}
