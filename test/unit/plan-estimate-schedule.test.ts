// The simulated plan follows runFleet's rules exactly: schedules computed by hand, to the ms.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simulatePlan, type SimVm } from '../../lib/plan/estimate-schedule.js';

// Rates of 1000 B/s: a disk of N bytes reads in N ms.
const disk = (ms: number) => ({ bytes: ms, bytesPerSec: 1000 });
const cold = (key: string, host: string, copyMs: number, extra: Partial<SimVm> = {}): SimVm => ({
  key,
  wave: 'w1',
  priority: 0,
  host,
  disks: [disk(copyMs)],
  prepMs: 1000,
  shutdownMs: 0,
  conversionMs: 10_000,
  buildMs: 1000,
  ...extra,
});

test('5 VMs on 2 hosts, 1 read per host, 1 conversion, 3 in flight: every start and end', async () => {
  const vms = [cold('v1', 'A', 10_000), cold('v2', 'A', 20_000), cold('v3', 'B', 5000), cold('v4', 'B', 5000), cold('v5', 'A', 5000)];
  const r = await simulatePlan(vms, ['w1'], { readsPerHost: 1, converting: 1, inFlight: 3 });
  const s = Object.fromEntries(r.vms.map((t) => [t.key, [t.start, t.copyStart, t.copyEnd, t.convertStart, t.convertEnd, t.end].map((x) => x! / 1000)]));
  assert.deepEqual(s, {
    // v1, v2, v3 start at once; v1 and v3 read at 1 s, v2 waits for host A.
    v1: [0, 1, 11, 16, 26, 27],
    v2: [0, 11, 31, 36, 46, 47],
    v3: [0, 1, 6, 6, 16, 17],
    // v4 starts when v3 ends; converts after v1.
    v4: [17, 18, 23, 26, 36, 37],
    // v5 starts when v1 ends; waits for host A until v2's copy ends; converts after v2.
    v5: [27, 31, 36, 46, 56, 57],
  });
  assert.equal(r.totalMs, 57_000);
  assert.deepEqual(r.waves, [{ name: 'w1', start: 0, end: 57_000 }]);
  assert.deepEqual(r.vms.map((t) => t.downtimeMs), [27_000, 47_000, 17_000, 20_000, 30_000]);
});

test('priority first within a wave; all disks of a VM at once, each holding a slot of its host', async () => {
  const vms = [
    cold('low', 'A', 4000, { conversionMs: undefined }),
    cold('high', 'A', 0, { priority: 5, conversionMs: undefined, disks: [disk(3000), disk(2000), disk(1000)] }),
  ];
  const r = await simulatePlan(vms, ['w1'], { readsPerHost: 2, converting: 1, inFlight: 2 });
  const s = Object.fromEntries(r.vms.map((t) => [t.key, [t.start, t.copyStart, t.copyEnd, t.end]]));
  // high: disks of 3 s and 2 s read from 1 s; its 1 s disk, in line before low, takes the slot
  // freed at 3 s; all read by 4 s, built at 5 s. low: both slots are high's until 4 s; reads 4 → 8 s, built 9 s.
  assert.deepEqual(s, { high: [0, 1000, 4000, 5000], low: [0, 4000, 8000, 9000] });
});

test('waves: the next starts when each VM of the wave ended or, warm, copied its first round; a warm VM waits for its window', async () => {
  const vms: SimVm[] = [
    cold('w', 'A', 5000, { warm: { cutoverAt: 60_000, finalDisks: [disk(2000)] }, shutdownMs: 3000, conversionMs: 10_000 }),
    cold('c1', 'B', 8000, { conversionMs: undefined }),
    cold('c2', 'A', 4000, { wave: 'w2', conversionMs: 10_000 }),
  ];
  const r = await simulatePlan(vms, ['w1', 'w2'], { readsPerHost: 1, converting: 1, inFlight: 3 });
  const t = Object.fromEntries(r.vms.map((x) => [x.key, x]));
  // w: prep 0–1, first round 1–6, rehearsal 6–16, window at 60: shutdown 60–63, final delta 63–65, convert 65–75, build 75–76.
  assert.deepEqual(t.w, { key: 'w', start: 0, copyStart: 1000, copyEnd: 6000, convertStart: 65_000, convertEnd: 75_000, cutoverStart: 60_000, end: 76_000, downtimeMs: 16_000 });
  // c1: 0–1 prep, 1–9 copy, 9–10 build. Wave 2 starts at 10 (w passed at 6, c1 ended at 10).
  assert.deepEqual([t.c1!.start, t.c1!.end], [0, 10_000]);
  // c2: prep 10–11, copy 11–15, convert 16–26 (the rehearsal holds the slot until 16), build 26–27.
  assert.deepEqual([t.c2!.start, t.c2!.copyStart, t.c2!.copyEnd, t.c2!.convertStart, t.c2!.end], [10_000, 11_000, 15_000, 16_000, 27_000]);
  assert.deepEqual(r.waves, [
    { name: 'w1', start: 0, end: 76_000 },
    { name: 'w2', start: 10_000, end: 27_000 },
  ]);
  assert.equal(r.totalMs, 76_000);
});

test('reads at once share their host, their datastore budget and the machine fairly, each never faster than alone', async () => {
  // Rates of 1000 B/s alone. Host A delivers 1500 B/s to its reads together, the machine 2000.
  const vms = [
    cold('a1', 'A', 0, { conversionMs: undefined, prepMs: 0, buildMs: 0, disks: [{ bytes: 3000, bytesPerSec: 1000 }] }),
    cold('a2', 'A', 0, { conversionMs: undefined, prepMs: 0, buildMs: 0, disks: [{ bytes: 1500, bytesPerSec: 1000 }] }),
    cold('b1', 'B', 0, { conversionMs: undefined, prepMs: 0, buildMs: 0, disks: [{ bytes: 3000, bytesPerSec: 1000 }] }),
  ];
  const r = await simulatePlan(vms, ['w1'], { readsPerHost: 2, converting: 1, inFlight: 3 }, { hosts: new Map([['A', 1500]]), total: 2000 });
  const end = Object.fromEntries(r.vms.map((t) => [t.key, t.copyEnd]));
  // All three at once: the machine's 2000 B/s shared, 666.7 each (host A's 1333 under its 1500).
  // a2 ends at 1500 / 666.7 = 2.25 s; a1 and b1 have 1500 B left and now get 1000 each (alone-rate
  // bound, 2000 in all): they end 1.5 s later, at 3.75 s.
  assert.deepEqual(end, { a1: 3750, a2: 2250, b1: 3750 });

  // A datastore budget of 600 B/s shared by two reads: 300 each; the third, elsewhere, reads alone.
  const onDs = (key: string, ds: string) => cold(key, key === 'z' ? 'B' : 'A', 0, { conversionMs: undefined, prepMs: 0, buildMs: 0, disks: [{ bytes: 600, bytesPerSec: 1000, datastore: ds }] });
  const d = await simulatePlan([onDs('x', 'slow'), onDs('y', 'slow'), onDs('z', 'fast')], ['w1'], { readsPerHost: 2, converting: 1, inFlight: 3 }, { datastores: new Map([['slow', 600]]) });
  assert.deepEqual(Object.fromEntries(d.vms.map((t) => [t.key, t.copyEnd])), { x: 2000, y: 2000, z: 600 });
});

test('inFlight 1: a warm VM waiting for its window gives its slot to the next wave, and its cutover queues behind those already waiting', async () => {
  const vms: SimVm[] = [
    cold('w', 'A', 5000, { warm: { cutoverAt: 20_000, finalDisks: [disk(2000)] }, shutdownMs: 3000, conversionMs: undefined }),
    cold('c1', 'B', 30_000, { wave: 'w2', conversionMs: undefined }),
    cold('c2', 'B', 1000, { wave: 'w2', conversionMs: undefined }),
  ];
  const r = await simulatePlan(vms, ['w1', 'w2'], { readsPerHost: 1, converting: 1, inFlight: 1 });
  const t = Object.fromEntries(r.vms.map((x) => [x.key, [x.start, x.copyStart, x.copyEnd, x.cutoverStart, x.end].map((v) => (v === undefined ? undefined : v / 1000))]));
  assert.deepEqual(t, {
    // Prep 0–1, first round 1–6, then the slot goes to c1 while it waits; its window at 20 finds c2
    // in line already (queued when c1 took the slot): the cutover starts at 41.
    w: [0, 1, 6, 41, 47],
    // c1: 6–7 prep, 7–37 copy, 37–38 build; c2: 38–39 prep, 39–40 copy, 40–41 build.
    c1: [6, 7, 37, undefined, 38],
    c2: [38, 39, 40, undefined, 41],
  });
  assert.equal(r.vms.find((x) => x.key === 'w')!.downtimeMs, 6000);
});
