import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PowerControl } from '../../lib/vsphere/power.js';
import { OneswapError } from '../../lib/errors/index.js';
import type { PropertyCollector } from '../../lib/vsphere/property-collector.js';
import type { SoapTransport } from '../../lib/vsphere/soap.js';

// A guest that never goes down: ShutdownGuest is accepted, the VM stays poweredOn.
const transport = { endpoint: { host: 'vc.example' }, call: async () => undefined } as unknown as SoapTransport;
const pc = { retrieveOne: async () => new Map([['runtime.powerState', 'poweredOn']]) } as unknown as PropertyCollector;

test('waiting for a guest shutdown ends at once on Ctrl-C, as an interruption', async () => {
  const power = new PowerControl(transport, pc);
  power.pollMs = 10_000;
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  const t0 = Date.now();
  await assert.rejects(power.shutdownGuest({ type: 'VirtualMachine', value: 'vm-7' }, 600_000, ac.signal), (e: unknown) => e instanceof OneswapError && e.kind === 'interrupted' && /vm-7/.test(e.message));
  assert.ok(Date.now() - t0 < 2000, 'did not wait for the poll interval or the timeout');
});

test('a guest that ignores the shutdown request is a timeout that says what to do', async () => {
  const power = new PowerControl(transport, pc);
  power.pollMs = 10;
  await assert.rejects(power.shutdownGuest({ type: 'VirtualMachine', value: 'vm-7' }, 50), (e: unknown) => e instanceof OneswapError && e.kind === 'conflict' && /still poweredOn/.test(e.message) && /power the VM off/.test(e.message));
});
