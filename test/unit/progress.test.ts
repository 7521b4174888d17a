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
