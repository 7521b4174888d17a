// Live display for a terminal: one line per disk (bar, bytes, rate, ETA) and one per running
// conversion (time spent on the whole and on its current step, against the time an earlier
// conversion took), redrawn in place, with phase and log lines scrolling above them. A conversion
// says nothing for minutes at a time, so its line is redrawn every second: a terminal that stops
// ticking is a stuck process, one that ticks is working.

import type { EventSink, ExpectedConversion, MigrationEvent } from '../supervisor/index.js';
import { DiskBoard, type DiskView } from './disk-state.js';
import { formatAbout, formatBytes, formatDuration } from './rate.js';
import { describeEvent } from './text.js';

/** Time for the display: the system's, or a test's. */
export interface Clock {
  now(): number;
  /** Calls `fn` every `ms` until the returned function is called. */
  every(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  every: (ms, fn) => {
    const timer = setInterval(fn, ms);
    // The ticking line must never keep a finished command alive.
    timer.unref();
    return () => clearInterval(timer);
  },
};

interface ConversionView {
  readonly vm: string;
  readonly rehearsal: boolean;
  readonly startedAt: number;
  readonly expected?: ExpectedConversion;
  step?: string;
  stepAt: number;
}

export function ttyDisplay(out: NodeJS.WriteStream, refreshMs = 200, clock: Clock = systemClock): EventSink {
  const board = new DiskBoard();
  const conversions = new Map<string, ConversionView>();
  let stopTicking: (() => void) | undefined;
  let drawn = 0; // lines of the live block currently on screen
  let lastDraw = 0;

  const clearBlock = (): void => {
    if (drawn > 0) out.write(`\x1b[${drawn}A\x1b[J`);
    drawn = 0;
  };
  const drawBlock = (): void => {
    const width = Math.max(40, (out.columns ?? 100) - 1);
    const now = clock.now();
    const lines = [
      ...[...board.disks.values()].filter((d) => d.event.state === 'copying').map((d) => diskLine(d, width)),
      ...[...conversions.values()].map((c) => conversionLine(c, now, width)),
    ];
    for (const l of lines) out.write(`${l}\n`);
    drawn = lines.length;
    lastDraw = now;
  };
  const redraw = (): void => {
    clearBlock();
    drawBlock();
  };
  const conversionEnded = (vm: string): void => {
    conversions.delete(vm);
    if (conversions.size === 0 && stopTicking) {
      stopTicking();
      stopTicking = undefined;
    }
  };

  return (e: MigrationEvent) => {
    if (e.type === 'disk') {
      board.update(e);
      if (e.state !== 'copying') {
        clearBlock();
        out.write(`${describeEvent(e)}\n`);
        drawBlock();
      } else if (clock.now() - lastDraw >= refreshMs) {
        redraw();
      }
      return;
    }
    if (e.type === 'conversion') {
      if (e.state === 'start') {
        const now = clock.now();
        conversions.set(e.vm, { vm: e.vm, rehearsal: e.rehearsal === true, startedAt: now, stepAt: now, ...(e.expected ? { expected: e.expected } : {}) });
        stopTicking ??= clock.every(1000, redraw);
      } else if (e.state === 'step') {
        const c = conversions.get(e.vm);
        if (c) {
          c.step = e.step;
          c.stepAt = clock.now();
        }
      } else {
        conversionEnded(e.vm);
      }
    }
    if (e.type === 'result') conversionEnded(e.vm);
    if (e.type === 'run' && e.state === 'end') for (const vm of [...conversions.keys()]) conversionEnded(vm);
    const text = describeEvent(e);
    if (text !== undefined) {
      clearBlock();
      out.write(`${text}\n`);
      drawBlock();
    } else {
      redraw();
    }
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

/** "  web01 convert 1:52 (expected about 3 min), step 0:45: Converting … to run on KVM": times first, so a narrow terminal cuts the step's text. */
function conversionLine(c: ConversionView, now: number, width: number): string {
  const expected = c.expected ? ` (expected about ${formatAbout(c.expected.ms)})` : '';
  const step = `step ${formatDuration((now - c.stepAt) / 1000)}: ${c.step ?? 'starting'}`;
  return `  ${c.vm} ${c.rehearsal ? 'rehearsal' : 'convert'} ${formatDuration((now - c.startedAt) / 1000)}${expected}, ${step}`.slice(0, width);
}
