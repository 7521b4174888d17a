// plan estimate for people: a table per wave with each figure's basis, the total, the rates and
// where they come from, the disks counted at their provisioned size, the probes, the assumptions.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderEstimateText } from '../../lib/plan/estimate-text.js';
import type { PlanEstimate } from '../../lib/plan/estimate.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

test('renders every wave, figure basis, rate, probe and assumption', () => {
  const rate = { value: 100 * MiB, basis: 'measured' as const, how: 'folder reads of esx1 and ds1: a probe at 2027-01-11T12:00:00.000Z' };
  const e: PlanEstimate = {
    version: 1,
    at: '2027-01-11T12:00:00.000Z',
    budgets: { readsPerHost: 2, converting: 1, inFlight: 4 },
    vms: [
      {
        key: 'web1',
        wave: 'w1',
        mode: 'cold',
        host: 'esx1',
        disks: [{ label: 'Hard disk 1', datastore: 'ds1', reader: 'folder', bytes: { value: 10 * GiB, basis: 'measured', how: 'CBT allocated areas' }, rate, copyMs: { value: 102_400, basis: 'measured', how: 'bytes / rate' } }],
        bytes: { value: 10 * GiB, basis: 'measured', how: 'sum of the disks' },
        copyMs: { value: 102_400, basis: 'measured', how: 'x' },
        conversionMs: { value: 180_000, basis: 'from-history', how: "a debian11_64Guest guest's conversion at 2027-01-01T00:00:00.000Z (same OS family)" },
        startMs: 0,
        endMs: 290_400,
        downtimeMs: { value: 290_400, basis: 'assumed', how: 'the whole import' },
      },
      {
        key: 'db1',
        wave: 'w2',
        mode: 'warm',
        host: 'esx1',
        disks: [{ label: 'Hard disk 1', datastore: 'ds1', reader: 'lease', bytes: { value: 20 * GiB, basis: 'assumed', how: 'provisioned size (change tracking off)' }, rate: { ...rate, how: `${rate.how}; the run reads through lease` }, copyMs: { value: 204_800, basis: 'assumed', how: 'bytes / rate' } }],
        bytes: { value: 20 * GiB, basis: 'assumed', how: 'sum of the disks' },
        copyMs: { value: 204_800, basis: 'assumed', how: 'x' },
        startMs: 290_400,
        endMs: 3_600_000,
        downtimeMs: { value: 266_800, basis: 'assumed', how: 'x' },
      },
    ],
    waves: [
      { name: 'w1', vms: ['web1'], bytes: { value: 10 * GiB, basis: 'measured', how: 'x' }, startMs: 0, endMs: 290_400 },
      { name: 'w2', vms: ['db1'], bytes: { value: 20 * GiB, basis: 'assumed', how: 'x' }, startMs: 290_400, endMs: 3_600_000 },
    ],
    totalMs: { value: 3_600_000, basis: 'assumed', how: 'simulated' },
    probes: [
      { host: 'esx1', datastore: 'ds1', disk: '[ds1] old/old.vmdk', bytes: 32 * MiB, ms: 320.4 },
      { host: 'esx2', datastore: 'ds2', failed: 'no powered-off VM there' },
      { host: 'esx1', datastore: 'ds1', disk: '[ds1] old/old.vmdk', bytes: 96 * MiB, ms: 1500, together: 3 },
      { host: 'esx3', datastore: 'ds3', together: 3, failed: 'connection refused' },
    ],
    assumptions: ['a guest shuts down in 60 s'],
  };
  assert.equal(
    renderEstimateText(e),
    [
      'Plan estimate of 2027-01-11T12:00:00.000Z: at most 2 disk reads per ESXi host, 1 conversion at once, 4 VMs in flight',
      'm = measured, h = from past runs, a = assumed; times from the start of the plan',
      '',
      'Wave w1: 1 VM, 10.0 GiB m, 0:00 → 4:50',
      'VM    MODE  HOST  BYTES       COPY    CONVERSION  START  END   DOWNTIME',
      'web1  cold  esx1  10.0 GiB m  1:42 m  3:00 h      0:00   4:50  4:50 a',
      '',
      'Wave w2: 1 VM, 20.0 GiB a, 4:50 → 1:00:00',
      'VM   MODE  HOST  BYTES       COPY    CONVERSION  START  END      DOWNTIME',
      'db1  warm  esx1  20.0 GiB a  3:25 a  -           4:50   1:00:00  4:27 a',
      '',
      'Total: 30.0 GiB in 1:00:00 a (simulated)',
      '',
      'Copy rates:',
      'HOST  DATASTORE  READER  RATE       BASIS     FROM',
      'esx1  ds1        folder  100 MiB/s  measured  folder reads of esx1 and ds1: a probe at 2027-01-11T12:00:00.000Z',
      'esx1  ds1        lease   100 MiB/s  measured  folder reads of esx1 and ds1: a probe at 2027-01-11T12:00:00.000Z; the run reads through lease',
      '',
      'Disks counted at their provisioned size:',
      '  db1 Hard disk 1: provisioned size (change tracking off)',
      '',
      'Conversions:',
      "  web1: a debian11_64Guest guest's conversion at 2027-01-01T00:00:00.000Z (same OS family)",
      '',
      'Probes:',
      '  esx1 ds1: read 32.0 MiB of [ds1] old/old.vmdk in 320 ms',
      '  esx2 ds2: no powered-off VM there; its rate is assumed',
      '  esx1 ds1 (3 reads at once on all hosts): read 96.0 MiB of [ds1] old/old.vmdk in 1500 ms',
      '  esx3 ds3 (3 reads at once on all hosts): connection refused; reads at once are assumed not to hold each other back',
      '',
      'Assumed:',
      '  a guest shuts down in 60 s',
      '',
    ].join('\n'),
  );
});
