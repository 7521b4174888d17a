import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCutoverAt, parseDuration, parseSize } from '../../lib/progress/index.js';
import { changeTrack } from '../../lib/supervisor/cbt-round.js';
import { measuredRates, predictDowntime } from '../../lib/supervisor/warm-status.js';
import { conversionSkipped } from '../../lib/supervisor/warm.js';
import { Journal, type WarmRound } from '../../lib/supervisor/journal.js';
import { OneswapError } from '../../lib/errors/index.js';

const MiB = 1024 * 1024;

test('sizes, durations and the cutover time as the warm options take them', () => {
  assert.equal(parseSize('256M', 'x'), 256 * MiB);
  assert.equal(parseSize('1.5G', 'x'), 1.5 * 1024 * MiB);
  assert.equal(parseSize('64MiB', 'x'), 64 * MiB);
  assert.equal(parseSize('4096', 'x'), 4096);
  assert.throws(() => parseSize('lots', '--cutover-when-below'), (e: OneswapError) => e.kind === 'usage' && /--cutover-when-below "lots" is not a size/.test(e.message));
  assert.equal(parseDuration('0', 'x'), 0);
  assert.equal(parseDuration('90s', 'x'), 90_000);
  assert.equal(parseDuration('5m', 'x'), 300_000);
  assert.equal(parseDuration('1h', 'x'), 3_600_000);
  assert.throws(() => parseDuration('soon', '--sync-interval'), /not a duration/);

  const now = new Date(2026, 10, 24, 21, 0, 0);
  assert.equal(parseCutoverAt('22:30', now).getTime(), new Date(2026, 10, 24, 22, 30).getTime());
  assert.equal(parseCutoverAt('06:00', now).getTime(), new Date(2026, 10, 25, 6, 0).getTime(), 'a time already past today means tomorrow');
  assert.equal(parseCutoverAt('2026-11-25T01:00:00Z', now).toISOString(), '2026-11-25T01:00:00.000Z');
  assert.throws(() => parseCutoverAt('25:00', now), /not a time of day/);
  assert.throws(() => parseCutoverAt('tonight', now), /not a time/);
});

test('a changeId track is the part before the slash: a new track means CBT was reset', () => {
  assert.equal(changeTrack('52 8f 0c 11 a4 5e 39 02-6d 77 c1 e0 9b 3a 12 f4/7'), '52 8f 0c 11 a4 5e 39 02-6d 77 c1 e0 9b 3a 12 f4');
  assert.notEqual(changeTrack('52 aa-bb/3'), changeTrack('52 cc-dd/4'));
  assert.equal(changeTrack('52 aa-bb/3'), changeTrack('52 aa-bb/9'));
});

const round = (n: number, at: string, bytes: number, copyMs: number, full = false): WarmRound => ({ round: n, full, final: false, snapshotAt: at, snapshotMs: 500, copyMs, bytes: { '2000': bytes } });

test('rates and the predicted downtime come from what the rounds measured', () => {
  const rounds = [round(0, '2026-11-24T10:00:00Z', 1024 * MiB, 8000, true), round(1, '2026-11-24T10:10:00Z', 60 * MiB, 500)];
  const rates = measuredRates(rounds);
  assert.equal(rates.copyRate, ((1024 + 60) * MiB * 1000) / 8500);
  assert.equal(rates.changeRate, (60 * MiB) / 600, 'bytes changed between the two snapshots per second');
  // Five minutes after the last snapshot: 30 MiB changed, plus 4 MiB an interrupted round left.
  const now = Date.parse('2026-11-24T10:15:00Z');
  const pending = [{ index: 0, label: 'd', imageId: 1, pendingBytes: 4 * MiB, bytesPerRound: [], cutoverReader: 'vddk' as const }];
  const p = predictDowntime(rounds, rates, { ok: true, durationMs: 150_000 }, undefined, pending, now);
  // The cutover takes no snapshot: the VM is off.
  const delta = p.parts.find((x) => x.step === 'final delta (vddk)')!.ms;
  assert.equal(delta, Math.round((34 * MiB * 1000) / rates.copyRate!));
  assert.deepEqual(p.parts.map((x) => x.step), ['final delta (vddk)', 'conversion']);
  assert.equal(p.totalMs, delta + 150_000);
  // Without a rehearsal, the prediction says what it leaves out.
  const q = predictDowntime(rounds.slice(0, 1), measuredRates(rounds.slice(0, 1)), undefined, undefined, [], now);
  assert.ok(q.notes.some((n) => /not rehearsed/.test(n)) && q.notes.some((n) => /needs two rounds/.test(n)));
});

test('a disk the cutover reads through an export lease streams whole: its full round counts, and the note says why', () => {
  const rounds = [round(0, '2026-11-24T10:00:00Z', 1024 * MiB, 8000, true), round(1, '2026-11-24T10:10:00Z', 60 * MiB, 500)];
  const rates = measuredRates(rounds);
  const now = Date.parse('2026-11-24T10:10:00Z');
  const disks = [{ index: 0, label: 'd', imageId: 1, pendingBytes: 0, bytesPerRound: [1024 * MiB, 60 * MiB], cutoverReader: 'lease' as const }];
  const p = predictDowntime(rounds, rates, undefined, 'the migration runs with --no-convert', disks, now);
  assert.deepEqual(p.parts, [{ step: 'final delta (lease)', ms: Math.round((1024 * MiB * 1000) / rates.copyRate!) }]);
  assert.ok(p.notes.some((n) => /disk 0 is read through an export lease at the cutover, which streams the whole allocated disk/.test(n)), p.notes.join('; '));
});

test('the prediction follows what the cutover will do: no conversion for --no-convert or a guest without an OS', () => {
  const rounds = [round(0, '2026-11-24T10:00:00Z', 1024 * MiB, 8000, true), round(1, '2026-11-24T10:10:00Z', 60 * MiB, 500)];
  const rates = measuredRates(rounds);
  const now = Date.parse('2026-11-24T10:15:00Z');
  const noOs = { ok: true, at: '2026-11-24T10:01:00Z', durationMs: 40_000, detail: 'no operating system', noOs: true };
  assert.equal(conversionSkipped({ rounds, convert: true }), undefined, 'converts, not rehearsed yet');
  assert.equal(conversionSkipped({ rounds }), undefined, 'a journal from before the choice was recorded converts');
  assert.equal(conversionSkipped({ rounds, convert: false }), 'the migration runs with --no-convert');
  assert.equal(conversionSkipped({ rounds, convert: true, rehearsal: noOs }), 'the rehearsal found no operating system (data disks only)');
  for (const warm of [{ rounds, convert: false }, { rounds, convert: true, rehearsal: noOs }]) {
    const p = predictDowntime(rounds, rates, warm.rehearsal, conversionSkipped(warm), [], now);
    assert.deepEqual(p.parts.map((x) => x.step), ['final delta'], 'no conversion time counted');
    assert.equal(p.totalMs, p.parts[0]!.ms);
    assert.ok(p.notes.includes(`no conversion at the cutover: ${conversionSkipped(warm)!}`), p.notes.join('; '));
    assert.ok(!p.notes.some((n) => /not rehearsed/.test(n)));
  }
});

test('one process per migrated VM: the lock names its holder, a dead holder is taken over, a cutover request is taken once', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-lock-'));
  try {
    const { journal } = await Journal.open(dir, 'vc/uuid-1', 1);
    // A live process that is not us holds it.
    const sleeper = spawn('sleep', ['30']);
    await mkdir(join(dir, 'journal'), { recursive: true });
    await writeFile(`${journal.file}.lock`, String(sleeper.pid));
    await assert.rejects(journal.lock('vm1'), (e: OneswapError) => e.kind === 'conflict' && new RegExp(`pid ${sleeper.pid}`).test(e.message));
    sleeper.kill('SIGKILL');
    await new Promise((r) => sleeper.once('exit', r));
    await journal.lock('vm1');
    assert.equal(await journal.lockHolder(), process.pid);
    await journal.unlock();
    assert.equal(await journal.lockHolder(), undefined);

    assert.equal(await journal.takeCutoverRequest(), false);
    await journal.requestCutover();
    assert.equal(await journal.takeCutoverRequest(), true);
    assert.equal(await journal.takeCutoverRequest(), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
