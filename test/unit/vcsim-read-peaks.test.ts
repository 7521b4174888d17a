// readPeaks (test/peers/vcsim/fixture.ts): the most disks read at once per host from the
// simulator's disk-read record, with each disk's reads closer than a gap joined.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readPeaks, type SimDiskReads, type SimReadInterval } from '../peers/vcsim/fixture.js';

const read = (host: string, disk: string, start: number, end: number | null): SimReadInterval => ({ host, vm: `vm-${disk}`, disk, via: 'folder', start, end });
const record = (intervals: SimReadInterval[], open: SimReadInterval[] = [], dropped = 0): SimDiskReads => ({ hosts: {}, intervals, open, dropped, ranges: [], rangesDropped: 0 });

test('each disk read in pieces (one per request): pieces closer than the gap are one read', () => {
  // Disk a on h1: requests 0-10, 12-20, 23-30 (pauses of 2 and 3 ms); disk b: 11-11.5 (in a's first pause) and 25-29.
  const r = record([read('h1', 'a', 0, 10), read('h1', 'b', 11, 11.5), read('h1', 'a', 12, 20), read('h1', 'a', 23, 30), read('h1', 'b', 25, 29)]);
  assert.deepEqual(readPeaks(r, 0), { h1: 2 }, 'without joining only the requests in flight overlap (b 25-29 with a 23-30)');
  assert.deepEqual(readPeaks(r, 5), { h1: 2 });
  // With a gap of 15 b's pieces (11-11.5, 25-29) join as well: still two disks.
  assert.deepEqual(readPeaks(r, 15), { h1: 2 });
});

test('a third disk read in the pauses of two others is seen only once the pauses are joined', () => {
  const r = record([
    read('h1', 'a', 0, 10),
    read('h1', 'a', 14, 24),
    read('h1', 'b', 0, 10),
    read('h1', 'b', 14, 24),
    read('h1', 'c', 11, 13),
    read('h2', 'd', 0, 24),
  ]);
  assert.deepEqual(readPeaks(r, 1), { h1: 2, h2: 1 });
  assert.deepEqual(readPeaks(r, 5), { h1: 3, h2: 1 });
});

test('one disk after another is never an overlap, even back to back; open reads go on', () => {
  assert.deepEqual(readPeaks(record([read('h1', 'a', 0, 10), read('h1', 'b', 10, 20), read('h1', 'c', 20.5, 30)]), 0), { h1: 1 });
  assert.deepEqual(readPeaks(record([read('h1', 'a', 0, 10)], [read('h1', 'b', 5, null)]), 0), { h1: 2 });
  assert.deepEqual(readPeaks(record([]), 50), {});
});

test('a record that dropped reads cannot answer', () => {
  assert.throws(() => readPeaks(record([], [], 3), 10), /3 disk reads were dropped/);
});
