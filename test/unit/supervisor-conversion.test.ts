// The convert phase's pure parts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sourceMacsNetwork } from '../../lib/supervisor/conversion.js';
import type { NicDescription } from '../../lib/input/index.js';

test('the network step of a directory import: the source MACs, or none with --no-keep-mac', async () => {
  const nics = [
    { index: 0, label: 'Network adapter 1', mac: '00:50:56:8a:00:01', network: 'VM Network', adapter: 'vmxnet3', pciSlot: 192 },
    { index: 1, label: 'Network adapter 2', mac: '', network: 'backend', adapter: 'e1000e' },
  ] as unknown as NicDescription[];
  assert.deepEqual([...(await sourceMacsNetwork(nics).assign([]))], [[0, '00:50:56:8a:00:01'], [1, undefined]]);
  assert.deepEqual([...(await sourceMacsNetwork(nics, false).assign([]))], [[0, undefined], [1, undefined]]);
});
