// Measured copy rates per ESXi host, datastore and reader: a probe stands until a real run's copy
// replaces it; runs add up, bytes-weighted, older samples fading; the file is private and whole.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyRatesFile, rateKey, readCopyRates, recordCopySample, throughputCap, withCopySample, type CopyRates, type CopySample } from '../../lib/supervisor/copy-rates.js';

const empty: CopyRates = { version: 1, rates: {} };
const place = { host: 'esx1', datastore: 'ds1', reader: 'folder' as const };
const sample = (how: 'probe' | 'run', bytes: number, ms: number, at = '2026-12-01T10:00:00.000Z'): CopySample => ({ ...place, how, bytes, ms, at });

test('a probe stands alone; a run replaces it; runs add up weighted by bytes', () => {
  const probed = withCopySample(empty, sample('probe', 32_000_000, 400));
  assert.deepEqual(probed.rates[rateKey(place)], { ...place, bytesPerSec: 80_000_000, bytes: 32_000_000, ms: 400, at: '2026-12-01T10:00:00.000Z', how: 'probe', count: 1 });
  const reprobed = withCopySample(probed, sample('probe', 10_000_000, 200, '2026-12-02T10:00:00.000Z'));
  assert.equal(reprobed.rates[rateKey(place)]!.bytesPerSec, 50_000_000, 'a newer probe replaces an older one');

  const run1 = withCopySample(reprobed, sample('run', 1_000_000_000, 20_000));
  assert.deepEqual(run1.rates[rateKey(place)], { ...place, bytesPerSec: 50_000_000, bytes: 1_000_000_000, ms: 20_000, at: '2026-12-01T10:00:00.000Z', how: 'run', count: 1 });
  assert.equal(withCopySample(run1, sample('probe', 1000, 1)), run1, 'a probe never overrides what runs measured');
  // A small quick disk barely moves the figure: (1e9 + 1e6) bytes in (20 000 + 5) ms.
  const run2 = withCopySample(run1, sample('run', 1_000_000, 5));
  assert.equal(run2.rates[rateKey(place)]!.bytesPerSec, (1_001_000_000 * 1000) / 20_005);
  assert.equal(run2.rates[rateKey(place)]!.count, 2);
  assert.equal(withCopySample(run2, sample('run', 0, 10)), run2, 'nothing read: nothing learnt');
});

test('after 8 runs the older samples fade to 7 runs\' weight', () => {
  let r = empty;
  for (let i = 0; i < 8; i++) r = withCopySample(r, sample('run', 8_000_000, 100));
  assert.deepEqual([r.rates[rateKey(place)]!.bytes, r.rates[rateKey(place)]!.ms, r.rates[rateKey(place)]!.count], [64_000_000, 800, 8]);
  r = withCopySample(r, sample('run', 8_000_000, 200));
  // 7/8 of (64e6 B, 800 ms) plus the new sample.
  assert.deepEqual([r.rates[rateKey(place)]!.bytes, r.rates[rateKey(place)]!.ms, r.rates[rateKey(place)]!.count], [64_000_000, 900, 8]);
});

test('places are kept apart: another host, datastore or reader is another rate', () => {
  let r = withCopySample(empty, sample('probe', 1000, 1));
  r = withCopySample(r, { ...sample('probe', 2000, 1), reader: 'lease' });
  r = withCopySample(r, { ...sample('probe', 3000, 1), host: 'esx2' });
  assert.deepEqual(Object.values(r.rates).map((x) => [x.host, x.reader, x.bytesPerSec]).sort(), [['esx1', 'folder', 1_000_000], ['esx1', 'lease', 2_000_000], ['esx2', 'folder', 3_000_000]]);
});

test('recorded one after another (parallel copies lose nothing), mode 0600, no temporary left', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-rates-'));
  try {
    const state = join(dir, 'state');
    await Promise.all([1, 2, 3, 4].map((i) => recordCopySample(state, { ...sample('run', 1000 * i, 1), host: `esx${i}` })));
    const r = await readCopyRates(state);
    assert.deepEqual(Object.values(r.rates).map((x) => x.host).sort(), ['esx1', 'esx2', 'esx3', 'esx4']);
    assert.equal((await stat(copyRatesFile(state))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(state), ['copy-rates.json']);
    assert.deepEqual(await readCopyRates(join(dir, 'none')), empty, 'no file yet: nothing measured');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a read shared with others is only a floor of the disk rate; its rate times the reads at once is what the host and the machine delivered', () => {
  const shared = { ...sample('run', 32_000_000, 1000), hostLevel: 2, totalLevel: 4 };
  const r = withCopySample(empty, shared);
  assert.deepEqual(r.rates[rateKey(place)], { ...place, bytesPerSec: 32_000_000, bytes: 32_000_000, ms: 1000, at: '2026-12-01T10:00:00.000Z', how: 'run', count: 1, shared: true });
  assert.equal(r.hosts!.esx1!['2']!.bytesPerSec, 64_000_000);
  assert.equal(r.total!['4']!.bytesPerSec, 128_000_000);
  assert.equal(throughputCap(r, 'esx1')!.bytesPerSec, 64_000_000);
  assert.deepEqual(throughputCap(r), { bytesPerSec: 128_000_000, level: 4, how: 'run', at: '2026-12-01T10:00:00.000Z' });
  // Alone, the disk reads at 50 MB/s: that replaces the floor, and runs add up from there.
  const alone = withCopySample(r, sample('run', 50_000_000, 1000));
  assert.equal(alone.rates[rateKey(place)]!.bytesPerSec, 50_000_000);
  assert.equal(alone.rates[rateKey(place)]!.shared, undefined);
  assert.equal(withCopySample(alone, { ...shared, bytes: 60_000_000 }).rates[rateKey(place)]!.bytesPerSec, 50_000_000, 'a shared read never moves a rate measured alone');
  // Reads alone tell nothing of how far a host goes with several.
  assert.equal(throughputCap(withCopySample(empty, sample('run', 50_000_000, 1000)), 'esx1'), undefined);
});
