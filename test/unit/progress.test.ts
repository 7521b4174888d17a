import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonLines, plainLines, RateMeter, formatBytes, formatDuration, describeEvent } from '../../lib/progress/index.js';
import type { MigrationEvent } from '../../lib/supervisor/index.js';

const disk = (done: number): MigrationEvent => ({ type: 'disk', vm: 'web01', disk: 0, name: 'disk0', bytesDone: done, bytesPlanned: 100, bytesWritten: done, capacityBytes: 1000, state: 'copying' });

test('JSON lines: one parseable object per line, disk progress thinned', () => {
  const lines: string[] = [];
  const sink = jsonLines((l) => lines.push(l), 60_000);
  sink({ type: 'phase', vm: 'web01', phase: 'copy', state: 'start' });
  sink(disk(10));
  sink(disk(20));
  sink({ ...disk(100), state: 'done' } as MigrationEvent);
  assert.equal(lines.length, 3);
  for (const l of lines) assert.ok(l.endsWith('\n') && !l.slice(0, -1).includes('\n'));
  const parsed = lines.map((l) => JSON.parse(l) as { type: string; time: string });
  assert.deepEqual(parsed.map((p) => p.type), ['phase', 'disk', 'disk']);
  assert.ok(!Number.isNaN(Date.parse(parsed[0]!.time)));
});

test('plain lines: a disk line every 10 %', () => {
  const lines: string[] = [];
  const sink = plainLines((l) => lines.push(l));
  for (let i = 0; i <= 100; i += 5) sink(disk(i));
  assert.equal(lines.length, 11);
  assert.match(lines[10]!, /web01: disk0 copying 100%/);
});

test('rate, ETA and formatting', () => {
  const m = new RateMeter(10_000);
  m.add(0, 0);
  m.add(100 * 1024 * 1024, 1000);
  assert.equal(Math.round(m.rate()), 100 * 1024 * 1024);
  assert.equal(m.eta(200 * 1024 * 1024), 2);
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatDuration(3725), '1:02:05');
  assert.equal(describeEvent({ type: 'result', vm: 'a', ok: false, imageIds: [], error: 'boom', durationMs: 61000 }), 'a: FAILED after 1:01: boom');
});

test('TTY display: a live bar line per copying disk, redrawn in place, logs scroll above', async () => {
  const { ttyDisplay } = await import('../../lib/progress/index.js');
  let screen = '';
  const out = { columns: 100, write: (s: string) => ((screen += s), true) } as unknown as NodeJS.WriteStream;
  const sink = ttyDisplay(out, 0);
  sink({ type: 'phase', vm: 'web01', phase: 'copy', state: 'start' });
  sink(disk(25));
  sink({ ...disk(10), disk: 1, name: 'disk1' } as MigrationEvent);
  sink(disk(50));
  const lines = screen.split('\n');
  assert.match(lines[0]!, /web01: copy start/);
  assert.ok(screen.includes('\x1b[2A\x1b[J'), 'the two-line block is redrawn in place');
  const bar = /web01 disk0 \[#+\.+\]\s+50% 50 B\/100 B .*ETA/;
  assert.match(screen, bar);
  assert.ok(lines.every((l) => l.replace(/\x1b\[[0-9]*[A-Z]/g, '').length <= 99), 'lines fit the terminal');
});

/** A clock the test moves: `every` timers fire as time passes. */
function fakeClock(start = 0): { now(): number; every(ms: number, fn: () => void): () => void; advance(ms: number): void; timers(): number } {
  let t = start;
  const timers = new Set<{ ms: number; next: number; fn: () => void }>();
  return {
    now: () => t,
    every: (ms, fn) => {
      const timer = { ms, next: t + ms, fn };
      timers.add(timer);
      return () => timers.delete(timer);
    },
    advance: (ms) => {
      const end = t + ms;
      for (;;) {
        const due = [...timers].filter((x) => x.next <= end).sort((a, b) => a.next - b.next)[0];
        if (!due) break;
        t = due.next;
        due.next += due.ms;
        due.fn();
      }
      t = end;
    },
    timers: () => timers.size,
  };
}

test('TTY display: a running conversion ticks every second with its own and its step\'s time, and the time to expect', async () => {
  const { ttyDisplay } = await import('../../lib/progress/index.js');
  const writes: string[] = [];
  const out = { columns: 120, write: (s: string) => (writes.push(s), true) } as unknown as NodeJS.WriteStream;
  const clock = fakeClock(1_000_000);
  const sink = ttyDisplay(out, 200, clock);
  const expected = { ms: 170_000, from: 'this-vm' as const, at: '2025-12-01T10:00:00.000Z' };
  sink({ type: 'conversion', vm: 'demo', state: 'start', expected });
  assert.equal(clock.timers(), 1, 'a ticker runs while the conversion does');
  assert.equal(writes.at(-1), '  demo convert 0:00 (expected about 3 min), step 0:00: starting\n');
  clock.advance(30_000);
  sink({ type: 'conversion', vm: 'demo', state: 'step', step: 'Converting 12.15 to run on KVM' });
  assert.equal(writes.at(-2), 'demo: convert: Converting 12.15 to run on KVM\n', 'the step scrolls above');
  assert.equal(writes.at(-1), '  demo convert 0:30 (expected about 3 min), step 0:00: Converting 12.15 to run on KVM\n');
  const before = writes.length;
  clock.advance(1000);
  assert.deepEqual(writes.slice(before), ['\x1b[1A\x1b[J', '  demo convert 0:31 (expected about 3 min), step 0:01: Converting 12.15 to run on KVM\n'], 'one tick: the line redrawn in place');
  clock.advance(119_000);
  assert.equal(writes.length, before + 2 * 120, 'a redraw every second, nothing else');
  assert.equal(writes.at(-1), '  demo convert 2:30 (expected about 3 min), step 2:00: Converting 12.15 to run on KVM\n');

  sink({ type: 'conversion', vm: 'demo', state: 'end', ok: true, durationMs: 150_000, expected, steps: [{ step: 'Converting 12.15 to run on KVM', ms: 120_000 }] });
  assert.equal(clock.timers(), 0, 'the ticker stops with the conversion');
  assert.equal(writes.at(-1), 'demo: convert: conversion took 2:30 (expected about 3 min); steps: Converting 12.15 to run on KVM 2:00\n');
  const after = writes.length;
  clock.advance(5000);
  assert.equal(writes.length, after, 'no line left to tick');

  // Nothing measured yet: the times, and no number invented.
  sink({ type: 'conversion', vm: 'web01', state: 'start', rehearsal: true });
  sink({ type: 'conversion', vm: 'web01', state: 'step', rehearsal: true, step: 'Opening the source' });
  clock.advance(2000);
  assert.equal(writes.at(-1), '  web01 rehearsal 0:02, step 0:02: Opening the source\n');
  sink({ type: 'result', vm: 'web01', ok: false, imageIds: [], error: 'boom', durationMs: 2000 });
  assert.equal(clock.timers(), 0, 'a failed VM stops its line');
});

test('conversion events as lines: start with the time to expect and where it comes from, steps, end with the durations; a rehearsal\'s steps stay off', () => {
  const lines: string[] = [];
  const sink = plainLines((l) => lines.push(l));
  sink({ type: 'conversion', vm: 'demo', state: 'start', expected: { ms: 243_989, from: 'same-os', at: '2026-12-06T19:24:38.323Z', osKey: 'debian12_64Guest', os: 'Debian GNU/Linux 12 (bookworm)' } });
  sink({ type: 'conversion', vm: 'demo', state: 'step', step: 'Opening the source' });
  sink({ type: 'conversion', vm: 'demo', state: 'end', ok: false, durationMs: 22_000, steps: [{ step: 'Opening the source', ms: 22_000 }] });
  sink({ type: 'conversion', vm: 'web01', state: 'start', rehearsal: true, expected: { ms: 40_000, from: 'this-vm-rehearsal', at: '2025-12-03T08:00:00.000Z' } });
  sink({ type: 'conversion', vm: 'web01', state: 'step', rehearsal: true, step: 'Opening the source' });
  sink({ type: 'conversion', vm: 'db01', state: 'start' });
  assert.deepEqual(lines, [
    'demo: convert: conversion started; expected about 4 min (a Debian GNU/Linux 12 (bookworm) conversion (debian12_64Guest) took 4:04 on 2026-12-06)\n',
    'demo: convert: Opening the source\n',
    'demo: convert: conversion stopped after 0:22; steps: Opening the source 0:22\n',
    "web01: rehearsal: conversion started; expected about 40 s (this VM's rehearsal took 0:40 on 2025-12-03)\n",
    'db01: convert: conversion started; no earlier conversion of this VM or of its OS to say how long it takes\n',
  ]);
});
