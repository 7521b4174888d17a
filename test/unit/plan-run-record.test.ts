import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RunRecord } from '../../lib/plan/index.js';

const MiB = 1024 * 1024;

/** A clock the test moves by hand. */
function clock(start: string) {
  let t = Date.parse(start);
  return { now: () => new Date(t), step: (ms: number) => void (t += ms) };
}

function record(c: ReturnType<typeof clock>) {
  return new RunRecord(
    { plan: 'estate.yaml', runId: 'r1', logFile: '/logs/r1.log', start: c.now(), waves: ['one', 'two'], budgets: { readsPerHost: 2, converting: 1, inFlight: 4, datastoreBytesPerSec: {} } },
    [
      { key: 'web', label: 'web', wave: 'one', mode: 'cold' },
      { key: 'db', label: '/DC0/vm/db', wave: 'one', mode: 'warm' },
      { key: 'old', label: 'old', wave: 'two', mode: 'cold' },
      { key: 'late', label: 'late', wave: 'two', mode: 'cold' },
    ],
    c.now,
  );
}

test('run record: phases, bytes, rate and ETA while running; warm rounds add up; the end of each VM and wave', () => {
  const c = clock('2027-01-12T22:00:00Z');
  const r = record(c);
  r.finishedBefore('old');
  r.sink({ type: 'phase', vm: 'web', phase: 'precheck', state: 'start' });
  c.step(1000);
  r.sink({ type: 'phase', vm: 'web', phase: 'precheck', state: 'done' });
  r.sink({ type: 'phase', vm: 'web', phase: 'copy', state: 'start' });
  r.sink({ type: 'disk', vm: 'web', disk: 0, name: 'disk0', bytesDone: 0, bytesPlanned: 8 * MiB, bytesWritten: 0, capacityBytes: 16 * MiB, state: 'copying' });
  c.step(2000);
  r.sink({ type: 'disk', vm: 'web', disk: 0, name: 'disk0', bytesDone: 4 * MiB, bytesPlanned: 8 * MiB, bytesWritten: 4 * MiB, capacityBytes: 16 * MiB, state: 'copying' });
  const mid = r.status(false).vms.find((v) => v.key === 'web')!;
  assert.deepEqual(mid, { key: 'web', wave: 'one', mode: 'cold', state: 'running', phase: 'copy', bytesDone: 4 * MiB, bytesPlanned: 8 * MiB, bytesPerSecond: 2 * MiB, etaSeconds: 2, startedAt: '2027-01-12T22:00:00.000Z' });

  // A warm VM: two rounds, a downtime, a failure.
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'sync', state: 'start' });
  r.sink({ type: 'disk', vm: '/DC0/vm/db', disk: 0, name: 'disk0', bytesDone: 10 * MiB, bytesPlanned: 10 * MiB, bytesWritten: 10 * MiB, capacityBytes: 32 * MiB, state: 'done' });
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'sync', state: 'done' });
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'final-sync', state: 'start' });
  r.sink({ type: 'disk', vm: '/DC0/vm/db', disk: 0, name: 'disk0', bytesDone: MiB, bytesPlanned: MiB, bytesWritten: MiB, capacityBytes: 32 * MiB, state: 'done' });
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'final-sync', state: 'done' });
  r.sink({ type: 'downtime', vm: '/DC0/vm/db', totalMs: 42_000, parts: [] });
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'convert', state: 'start' });
  c.step(1000);
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'convert', state: 'failed', detail: 'guest conversion failed: no room' });
  r.sink({ type: 'result', vm: '/DC0/vm/db', ok: false, imageIds: [7], error: 'guest conversion failed: no room', durationMs: 4000, host: 'esx2' });

  c.step(1000);
  r.sink({ type: 'disk', vm: 'web', disk: 0, name: 'disk0', bytesDone: 8 * MiB, bytesPlanned: 8 * MiB, bytesWritten: 6 * MiB, capacityBytes: 16 * MiB, state: 'done' });
  r.sink({ type: 'phase', vm: 'web', phase: 'copy', state: 'done' });
  r.sink({ type: 'result', vm: 'web', ok: true, imageIds: [5], templateId: 9, durationMs: 4000, host: 'esx1' });
  r.sink({ type: 'phase', vm: 'nobody', phase: 'copy', state: 'start' }); // not of this plan: ignored

  const status = r.status(true);
  assert.deepEqual(status.vms.map((v) => [v.key, v.state, v.phase ?? '-', v.bytesDone, v.lastError ?? '']), [
    ['web', 'done', 'copy', 8 * MiB, ''],
    ['db', 'failed', 'convert', 11 * MiB, 'guest conversion failed: no room'],
    ['old', 'done', '-', 0, ''],
    ['late', 'pending', '-', 0, ''],
  ]);
  assert.equal(status.ended, true);

  const s = r.summary();
  assert.deepEqual(s.waves, [
    { name: 'one', start: '2027-01-12T22:00:00.000Z', end: '2027-01-12T22:00:05.000Z', vms: ['web', 'db'] },
    { name: 'two', vms: ['old', 'late'] },
  ]);
  const web = s.vms[0]!;
  assert.deepEqual(
    { phases: web.phases.map((p) => [p.phase, p.start.slice(11, 19), p.end.slice(11, 19), p.state]), copied: web.bytesCopied, written: web.bytesWritten, down: web.downtimeMs, host: web.host, tpl: web.templateId, dur: web.durationMs },
    { phases: [['precheck', '22:00:00', '22:00:01', 'done'], ['copy', '22:00:01', '22:00:05', 'done']], copied: 8 * MiB, written: 6 * MiB, down: 4000, host: 'esx1', tpl: 9, dur: 5000 },
  );
  const db = s.vms[1]!;
  assert.deepEqual([db.outcome, db.bytesCopied, db.bytesWritten, db.downtimeMs, db.error, db.host, db.imageIds], ['failed', 11 * MiB, 11 * MiB, 42_000, 'guest conversion failed: no room', 'esx2', [7]]);
  assert.deepEqual(s.vms.slice(2).map((v) => [v.key, v.outcome, v.durationMs]), [['old', 'done', 0], ['late', 'pending', 0]]);
});

test('run record: a VM the run did not reach is skipped; an open phase at the end is cut there, failed', () => {
  const c = clock('2027-01-12T22:00:00Z');
  const r = record(c);
  r.sink({ type: 'phase', vm: 'web', phase: 'copy', state: 'start' });
  c.step(3000);
  r.notReached('late');
  const s = r.summary();
  assert.deepEqual(s.vms[0]!.phases, [{ phase: 'copy', start: '2027-01-12T22:00:00.000Z', end: '2027-01-12T22:00:03.000Z', state: 'failed' }]);
  assert.equal(s.vms[0]!.outcome, 'pending');
  assert.equal(s.vms[3]!.outcome, 'skipped');
});

test('run record: a VM finished by an earlier run is done without starting, said so in status and summary, with what OpenNebula showed of it', () => {
  const c = clock('2027-01-12T22:00:00Z');
  const r = record(c);
  r.finishedBefore('old');
  r.finishedBefore('late', { templateId: 12, imageIds: [30, 31] });
  r.finishedBefore('late', { templateId: 99, imageIds: [] }); // once done, it stays as it was
  assert.deepEqual(r.status(false).vms.slice(2).map((v) => [v.key, v.state, v.finishedEarlier, v.phase]), [['old', 'done', true, undefined], ['late', 'done', true, undefined]]);
  assert.deepEqual(r.summary().vms.slice(2).map((v) => [v.key, v.outcome, v.finishedEarlier, v.templateId, v.imageIds, v.durationMs]), [['old', 'done', true, undefined, [], 0], ['late', 'done', true, 12, [30, 31], 0]]);
  assert.equal(r.status(false).vms[0]!.finishedEarlier, undefined);
});

test('run record: a warm VM between rounds shows as waiting without its slot, then waiting for a slot, then in its next phase', () => {
  const c = clock('2027-01-12T22:00:00Z');
  const r = record(c);
  const phase = (): string | undefined => r.status(false).vms.find((v) => v.key === 'db')!.phase;
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'sync', state: 'start' });
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'sync', state: 'done' });
  assert.equal(phase(), 'sync');
  r.sink({ type: 'slot', vm: '/DC0/vm/db', state: 'released' });
  assert.equal(phase(), 'waiting');
  r.sink({ type: 'slot', vm: '/DC0/vm/db', state: 'waiting' });
  assert.equal(phase(), 'waiting for a slot');
  r.sink({ type: 'slot', vm: '/DC0/vm/db', state: 'taken', waitedMs: 5000 });
  r.sink({ type: 'phase', vm: '/DC0/vm/db', phase: 'shutdown', state: 'start' });
  assert.equal(phase(), 'shutdown');
  // Only phases make the timeline: the waits are its gaps.
  assert.deepEqual(r.summary().vms.find((v) => v.key === 'db')!.phases.map((p) => p.phase), ['sync', 'shutdown']);
});
