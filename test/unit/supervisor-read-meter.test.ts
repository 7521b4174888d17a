// The levels a disk read saw: how many reads shared its host and the machine, averaged over its time.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadMeter } from '../../lib/supervisor/read-meter.js';

test('each read gets the reads at once of its host and in all, averaged over its own time', () => {
  let now = 0;
  const meter = new ReadMeter(() => now);
  const a1 = meter.begin('A'); // 0 → 10: alone for 4 ms, then with a2 (same host) 4 ms, then with a2 and b 2 ms
  now = 4;
  const a2 = meter.begin('A'); // 4 → 12
  now = 8;
  const b = meter.begin('B'); // 8 → 12
  now = 10;
  assert.deepEqual(a1.end(), { hostLevel: (4 * 1 + 4 * 2 + 2 * 2) / 10, totalLevel: (4 * 1 + 4 * 2 + 2 * 3) / 10 });
  assert.deepEqual(a1.end(), { hostLevel: 1.6, totalLevel: 1.8 }, 'ended once; asked again, the same');
  now = 12;
  assert.deepEqual(a2.end(), { hostLevel: (4 * 2 + 2 * 2 + 2 * 1) / 8, totalLevel: (4 * 2 + 2 * 3 + 2 * 2) / 8 });
  assert.deepEqual(b.end(), { hostLevel: 1, totalLevel: (2 * 3 + 2 * 2) / 4 });
  const c = meter.begin('C');
  assert.deepEqual(c.end(), { hostLevel: 1, totalLevel: 1 }, 'no time: the reads open at its end');
});
