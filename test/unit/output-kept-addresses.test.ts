import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressesToKeep } from '../../lib/output/index.js';

test('--keep-ip: a static address is the guest\'s own and wins over what VMware Tools reported', () => {
  const kept = addressesToKeep([{ nic: 0, mode: 'static', address: '10.0.0.5' }], new Map([[0, '10.0.0.99']]));
  assert.deepEqual([...kept], [[0, '10.0.0.5']]);
});

test('--keep-ip: for DHCP the address Tools saw is newer than a lease file; the lease is kept without it', () => {
  const uses = [
    { nic: 0, mode: 'dhcp' as const, address: '10.0.0.7' },
    { nic: 1, mode: 'dhcp' as const, address: '10.0.1.7' },
    { nic: 2, mode: 'dhcp' as const },
  ];
  assert.deepEqual([...addressesToKeep(uses, new Map([[0, '10.0.0.8']]))], [[0, '10.0.0.8'], [1, '10.0.1.7']]);
});

test('--keep-ip: NICs the conversion did not read (Windows, --no-convert) keep what Tools saw; a static stanza without an address too', () => {
  assert.deepEqual([...addressesToKeep([], new Map([[0, '10.0.0.8'], [1, '10.0.1.8']]))], [[0, '10.0.0.8'], [1, '10.0.1.8']]);
  assert.deepEqual([...addressesToKeep([{ nic: 0, mode: 'static' }], new Map([[0, '10.0.0.8']]))], [[0, '10.0.0.8']]);
  assert.deepEqual([...addressesToKeep([{ nic: 0, mode: 'manual' }], new Map())], []);
});
