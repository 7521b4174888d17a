import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeExtents, coalesceExtents, splitExtents, subtractExtents } from '../../lib/extents/index.js';

test('extent arithmetic: normalize, coalesce, split, subtract', () => {
  assert.deepEqual(normalizeExtents([{ start: 10, length: 5 }, { start: 0, length: 10 }, { start: 30, length: 100 }], 50), [
    { start: 0, length: 15 },
    { start: 30, length: 20 },
  ]);
  assert.deepEqual(coalesceExtents([{ start: 0, length: 10 }, { start: 15, length: 5 }, { start: 100, length: 1 }], 5), [
    { start: 0, length: 20 },
    { start: 100, length: 1 },
  ]);
  assert.deepEqual(splitExtents([{ start: 5, length: 20 }], 10), [
    { start: 5, length: 5 },
    { start: 10, length: 10 },
    { start: 20, length: 5 },
  ]);
  assert.deepEqual(subtractExtents([{ start: 0, length: 100 }], [{ start: 10, length: 10 }, { start: 50, length: 60 }]), [
    { start: 0, length: 10 },
    { start: 20, length: 30 },
  ]);
});

test('sorts, merges overlapping and adjacent extents, drops empty ones, clips to the limit', () => {
  assert.deepEqual(
    normalizeExtents(
      [
        { start: 100, length: 50 },
        { start: 0, length: 10 },
        { start: 10, length: 5 },
        { start: 120, length: 100 },
        { start: 500, length: 0 },
        { start: 900, length: 200 },
      ],
      1000,
    ),
    [
      { start: 0, length: 15 },
      { start: 100, length: 120 },
      { start: 900, length: 100 },
    ],
  );
  assert.deepEqual(normalizeExtents([], Number.MAX_SAFE_INTEGER), []);
});
