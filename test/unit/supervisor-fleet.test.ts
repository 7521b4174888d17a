import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runBudgets, runFleet, type FleetVm, type ImportContext, type MigrationEvent, type VmResult } from '../../lib/supervisor/index.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A VM whose migration ends when the test says so, recording when it started. */
function controlled(key: string, wave: string, priority = 0, warm = false) {
  let finish!: (ok: boolean) => void;
  let ctxSeen: ImportContext | undefined;
  const started = { value: false };
  const vm: FleetVm = {
    key,
    label: key,
    wave,
    priority,
    warm,
    migrate: (ctx) => {
      started.value = true;
      ctxSeen = ctx;
      return new Promise<VmResult>((resolve) => {
        finish = (ok) => resolve({ vm: key, ok, imageIds: [], ...(ok ? {} : { error: new Error(`${key} failed`) }) });
      });
    },
  };
  return { vm, started, finish: (ok = true) => finish(ok), ctx: () => ctxSeen! };
}

/** A warm VM of wave w1: its first round, then idle until the test opens its window, then its cutover; `order` says when. */
function warmUntilWindow(order: string[]) {
  let openWindow!: () => void;
  const window = new Promise<void>((r) => (openWindow = r));
  const vm: FleetVm = {
    key: 'w',
    label: 'w',
    wave: 'w1',
    priority: 0,
    warm: true,
    migrate: async (ctx) => {
      order.push('w round 0');
      ctx.emit({ type: 'phase', vm: 'w', phase: 'sync', state: 'done' });
      await ctx.idle!(async () => {
        order.push('w waits for its window');
        await window;
        order.push('w window open');
      });
      order.push('w cutover');
      return { vm: 'w', ok: true, imageIds: [] };
    },
  };
  return { vm, openWindow };
}

function fleetCtx(events: MigrationEvent[] = [], signal = new AbortController().signal): Omit<ImportContext, 'budgets'> {
  return { emit: (e) => events.push(e), signal, vcenterHost: 'vc', vsphere: {} as never, one: {} as never };
}

test('fleet: waves one after another, by priority then plan order, at most inFlight at once', async () => {
  const a = controlled('a', 'w1', 0);
  const b = controlled('b', 'w1', 5);
  const c = controlled('c', 'w1', 0);
  const d = controlled('d', 'w2', 0);
  const run = runFleet(fleetCtx(), [a.vm, b.vm, c.vm, d.vm], { waves: ['w1', 'w2'], inFlight: 2, budgets: runBudgets({ readsPerHost: 2, converting: 1 }) });
  await tick();
  // b first (priority), then a (plan order); c waits for a slot, d for its wave.
  assert.deepEqual([a.started.value, b.started.value, c.started.value, d.started.value], [true, true, false, false]);
  b.finish(false); // a failure never stops the others
  await tick();
  assert.equal(c.started.value, true);
  assert.equal(d.started.value, false);
  a.finish();
  await tick();
  assert.equal(d.started.value, false, 'the next wave waits for every VM of this one');
  c.finish();
  await tick();
  await tick();
  assert.equal(d.started.value, true);
  d.finish();
  const results = await run;
  assert.deepEqual(results.map((r) => [r.key, r.result?.ok]), [['a', true], ['b', false], ['c', true], ['d', true]]);
  assert.ok(a.ctx().budgets, 'each VM gets the run\'s budgets');
});

test('fleet: a warm VM lets its wave go on once its first round is done; finished VMs are skipped', async () => {
  const w = controlled('w', 'w1', 0, true);
  const done = controlled('done', 'w1');
  const n = controlled('n', 'w2');
  const events: MigrationEvent[] = [];
  const ctx = fleetCtx(events);
  const run = runFleet(ctx, [w.vm, done.vm, n.vm], { waves: ['w1', 'w2'], inFlight: 4, budgets: runBudgets({ readsPerHost: 1, converting: 1 }), finished: new Set(['done']) });
  await tick();
  assert.equal(done.started.value, false);
  assert.equal(n.started.value, false);
  w.ctx().emit({ type: 'phase', vm: 'w', phase: 'sync', state: 'done' });
  await tick();
  await tick();
  assert.equal(n.started.value, true, 'the warm VM only syncs until its window now');
  assert.ok(events.some((e) => e.type === 'phase' && e.vm === 'w'), 'events reach the run\'s sink');
  n.finish();
  w.finish();
  const results = await run;
  assert.deepEqual(results.map((r) => [r.key, r.skipped ?? r.result?.ok]), [['w', true], ['done', 'finished'], ['n', true]]);
});

test('fleet: a warm VM waiting for its window holds no in-flight slot: a cold VM of the next wave runs meanwhile, the cutover queues for the slot', async () => {
  const order: string[] = [];
  const { vm: warm, openWindow } = warmUntilWindow(order);
  const c = controlled('c', 'w2');
  const c2 = controlled('c2', 'w2');
  const events: MigrationEvent[] = [];
  const run = runFleet(fleetCtx(events), [warm, c.vm, c2.vm], { waves: ['w1', 'w2'], inFlight: 1, budgets: runBudgets({ readsPerHost: 1, converting: 1 }) });
  for (let i = 0; i < 4; i++) await tick();
  assert.equal(c.started.value, true, 'the cold VM has the slot the warm one gave back');
  assert.equal(c2.started.value, false);
  order.push('c started');
  openWindow();
  for (let i = 0; i < 4; i++) await tick();
  assert.ok(!order.includes('w cutover'), 'the window has come, the slot has not');
  // c2 queued for the slot as soon as c had it, before the window came: first come, first served.
  c.finish();
  for (let i = 0; i < 4; i++) await tick();
  if (c2.started.value) order.push('c2 started');
  c2.finish();
  const results = await run;
  assert.deepEqual(order, ['w round 0', 'w waits for its window', 'c started', 'w window open', 'c2 started', 'w cutover']);
  assert.deepEqual(results.map((r) => [r.key, r.result?.ok]), [['w', true], ['c', true], ['c2', true]]);
  const slotEvents = events.flatMap((e) => (e.type === 'slot' ? [`${e.vm} ${e.state}${e.waitedMs === undefined ? '' : ' after a wait'}`] : []));
  assert.deepEqual(slotEvents, ['w released', 'w waiting', 'w taken after a wait']);
});

test('fleet: a run stopped while a warm VM queues for its slot again: it fails with the stop, holds no slot, and the VM with the slot ends as it does', async () => {
  const stop = new AbortController();
  const { vm: warm, openWindow } = warmUntilWindow([]);
  const c = controlled('c', 'w2');
  const events: MigrationEvent[] = [];
  const budgets = runBudgets({ readsPerHost: 1, converting: 1 });
  const run = runFleet(fleetCtx(events, stop.signal), [warm, c.vm], { waves: ['w1', 'w2'], inFlight: 1, budgets });
  for (let i = 0; i < 4; i++) await tick();
  assert.equal(c.started.value, true);
  openWindow();
  for (let i = 0; i < 4; i++) await tick();
  stop.abort(new Error('Ctrl-C'));
  c.finish();
  const results = await run;
  assert.deepEqual(results.map((r) => [r.key, r.result?.ok, r.result?.error instanceof Error ? r.result.error.message : undefined]), [['w', false, 'Ctrl-C'], ['c', true, undefined]]);
  assert.deepEqual(events.flatMap((e) => (e.type === 'slot' ? [e.state] : [])), ['released', 'waiting']);
});

test('fleet: a stopped run starts nothing more; the VMs not reached say so', async () => {
  const stop = new AbortController();
  const a = controlled('a', 'w1');
  const b = controlled('b', 'w1');
  const run = runFleet(fleetCtx([], stop.signal), [a.vm, b.vm], { waves: ['w1'], inFlight: 1, budgets: runBudgets({ readsPerHost: 1, converting: 1 }) });
  await tick();
  stop.abort(new Error('Ctrl-C'));
  a.finish(false);
  const results = await run;
  assert.equal(b.started.value, false);
  assert.deepEqual(results.map((r) => [r.key, r.skipped ?? r.result?.ok]), [['a', false], ['b', 'stopped']]);
});
