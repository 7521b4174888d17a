import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteRate, KeyedSlots, Slots, hostKey } from '../../lib/supervisor/budgets.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('slots: at most the limit hold at once, the others are served in the order they came', async () => {
  const s = new Slots(2);
  const order: string[] = [];
  const a = await s.take();
  const b = await s.take();
  const c = s.take().then((r) => (order.push('c'), r));
  const d = s.take().then((r) => (order.push('d'), r));
  await tick();
  assert.deepEqual([s.inUse, s.waiting, order], [2, 2, []]);
  b();
  b(); // a second release gives nothing back twice
  const rc = await c;
  await tick();
  assert.deepEqual([s.inUse, s.waiting, order], [2, 1, ['c']]);
  a();
  const rd = await d;
  assert.deepEqual(order, ['c', 'd']);
  rc();
  rd();
  assert.deepEqual([s.inUse, s.waiting, s.peak], [0, 0, 2]);
});

test('slots: a slot freed while others wait goes to the first in line, never to a newcomer', async () => {
  const s = new Slots(1);
  const first = await s.take();
  const waiting = s.take();
  first();
  // The newcomer comes after the hand-over: it must wait for the one in line.
  const newcomer = s.take();
  const got = await waiting;
  await tick();
  assert.equal(s.waiting, 1);
  got();
  (await newcomer)();
  assert.equal(s.inUse, 0);
});

test('slots: a wait ends with the signal, leaves the line, and the reason is the signal\'s', async () => {
  const s = new Slots(1);
  const held = await s.take();
  const stop = new AbortController();
  const waiting = s.take(stop.signal);
  await tick();
  assert.equal(s.waiting, 1);
  stop.abort(new Error('run stopped'));
  await assert.rejects(waiting, /run stopped/);
  assert.equal(s.waiting, 0);
  held();
  assert.equal(s.inUse, 0);
  await assert.rejects(s.take(stop.signal), /run stopped/, 'an aborted signal takes nothing');
  assert.equal(s.inUse, 0);
});

test('slots: with() releases on failure too', async () => {
  const s = new Slots(1);
  await assert.rejects(s.with(async () => { throw new Error('boom'); }), /boom/);
  assert.equal(s.inUse, 0);
  assert.equal(await s.with(async () => 7), 7);
});

test('slots: a budget below 1 is refused', () => {
  assert.throws(() => new Slots(0), RangeError);
  assert.throws(() => new KeyedSlots(1.5), RangeError);
});

test('keyed slots: each key has its own limit and peak; an unknown host is one key', async () => {
  const k = new KeyedSlots(2);
  const r = [await k.of('esx1').take(), await k.of('esx1').take(), await k.of('esx2').take()];
  let third = false;
  const pending = k.of('esx1').take().then((rel) => ((third = true), rel));
  await tick();
  assert.equal(third, false);
  r[0]!();
  (await pending)();
  for (const x of r) x();
  assert.deepEqual([...k.peaks()], [['esx1', 2], ['esx2', 1]]);
  assert.equal(hostKey(undefined), hostKey(undefined));
  assert.notEqual(hostKey('esx1'), hostKey(undefined));
});

test('byte rate: chunks wait their turn, with at most a quarter second of credit; a wait ends with the signal', async () => {
  const rate = new ByteRate(8 * 1024 * 1024);
  const t0 = Date.now();
  for (let i = 0; i < 64; i++) await rate.take(64 * 1024);
  // The last chunk waits for the 63 before it: 63 × 64 KiB at 8 MiB/s is 492 ms, less 250 of credit.
  assert.ok(Date.now() - t0 >= 242, `4 MiB took ${Date.now() - t0} ms`);
  const stop = new AbortController();
  const slow = new ByteRate(1);
  await slow.take(1); // uses the credit
  const waiting = slow.take(1, stop.signal);
  stop.abort(new Error('stopped'));
  await assert.rejects(waiting, /stopped/);
  assert.throws(() => new ByteRate(0), RangeError);
});
