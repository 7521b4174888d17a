// Awaits a promise that must fail with a OneswapError and returns that error for assertions.

import assert from 'node:assert/strict';
import { OneswapError } from '../../lib/errors/index.js';

export async function refusal(promise: Promise<unknown>): Promise<OneswapError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof OneswapError, `expected a OneswapError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}
