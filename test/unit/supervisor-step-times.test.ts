// The steps around a VM's copy, as past imports took them: the mean of the last 8, older fading.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withStepSample, type StepTimes } from '../../lib/supervisor/step-times.js';

test('the mean of the imports so far, then of the last 8 (older ones fading)', () => {
  let t: StepTimes = { version: 1 };
  t = withStepSample(t, { prepMs: 1000, buildMs: 100, at: 'a' });
  t = withStepSample(t, { prepMs: 3000, buildMs: 300, at: 'b' });
  assert.deepEqual(t, { version: 1, prep: { ms: 2000, count: 2, at: 'b' }, build: { ms: 200, count: 2, at: 'b' } });
  for (let i = 0; i < 6; i++) t = withStepSample(t, { prepMs: 2000, buildMs: 200, at: 'c' });
  assert.deepEqual(t.prep, { ms: 2000, count: 8, at: 'c' });
  // A ninth weighs 1/8.
  t = withStepSample(t, { prepMs: 10_000, buildMs: 200, at: 'd' });
  assert.deepEqual(t.prep, { ms: 3000, count: 8, at: 'd' });
});
