// The time a conversion is expected to take: the VM's own earlier conversion (or rehearsal),
// else a conversion of a guest declaring the same OS, else nothing; and the file that keeps them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  conversionTimesFile,
  expectedConversion,
  readConversionTimes,
  recordConversionTime,
  withConversion,
  type ConversionTimes,
} from '../../lib/supervisor/conversion-times.js';

const empty: ConversionTimes = { version: 1, vms: {}, os: {} };
const web01 = { identity: 'vc.example.com/4203-aaaa', osKey: 'debian12_64Guest' };
const web02 = { identity: 'vc.example.com/4203-bbbb', osKey: 'debian12_64Guest' };
const db01 = { identity: 'vc.example.com/4203-cccc', osKey: 'rhel9_64Guest' };
const debian = 'Debian GNU/Linux 12 (bookworm)';

test('expected time: the VM itself first, then the same OS, else none', () => {
  assert.equal(expectedConversion(empty, web01), undefined, 'nothing measured: no number invented');
  const one = withConversion(empty, web01, { ms: 170_000, at: '2025-12-01T10:00:00.000Z', os: debian });
  assert.deepEqual(expectedConversion(one, web01), { ms: 170_000, from: 'this-vm', at: '2025-12-01T10:00:00.000Z' });
  assert.deepEqual(expectedConversion(one, web02), { ms: 170_000, from: 'same-os', at: '2025-12-01T10:00:00.000Z', osKey: 'debian12_64Guest', os: debian });
  assert.equal(expectedConversion(one, db01), undefined, 'another OS is no guide');
  assert.equal(expectedConversion(one, { identity: 'x' }), undefined, 'no OS declared, no VM entry');

  // A later conversion of another Debian guest is the OS's time, not web01's.
  const two = withConversion(one, web02, { ms: 230_000, at: '2025-12-02T10:00:00.000Z', os: debian });
  assert.equal(expectedConversion(two, web01)!.ms, 170_000);
  assert.deepEqual(expectedConversion(two, { identity: 'new', osKey: 'debian12_64Guest' }), { ms: 230_000, from: 'same-os', at: '2025-12-02T10:00:00.000Z', osKey: 'debian12_64Guest', os: debian });
});

test("expected time: a warm migration's rehearsal counts as the VM's own, the newer one wins", () => {
  const rehearsal = { ms: 150_000, at: '2025-12-03T08:00:00.000Z' };
  assert.deepEqual(expectedConversion(empty, web01, rehearsal), { ms: 150_000, from: 'this-vm-rehearsal', at: rehearsal.at });
  const older = withConversion(empty, web01, { ms: 170_000, at: '2025-12-01T10:00:00.000Z', os: debian });
  assert.deepEqual(expectedConversion(older, web01, rehearsal), { ms: 150_000, from: 'this-vm-rehearsal', at: rehearsal.at });
  const newer = withConversion(empty, web01, { ms: 175_000, at: '2025-12-04T10:00:00.000Z', os: debian, rehearsal: true });
  assert.deepEqual(expectedConversion(newer, web01, rehearsal), { ms: 175_000, from: 'this-vm-rehearsal', at: '2025-12-04T10:00:00.000Z' });
});

test('the times file: mode 0600, read back, bounded, absent or broken means no expectation', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-times-'));
  try {
    assert.deepEqual(await readConversionTimes(dir), empty);
    await recordConversionTime(join(dir, 'state'), web01, { ms: 200_000, at: '2025-12-01T10:00:00.000Z', os: debian });
    const file = conversionTimesFile(join(dir, 'state'));
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), {
      version: 1,
      vms: { 'vc.example.com/4203-aaaa': { ms: 200_000, at: '2025-12-01T10:00:00.000Z', os: debian } },
      os: { debian12_64Guest: { ms: 200_000, at: '2025-12-01T10:00:00.000Z', os: debian } },
    });
    assert.equal(expectedConversion(await readConversionTimes(join(dir, 'state')), web01)!.ms, 200_000);

    let many = empty;
    for (let i = 0; i < 250; i++) many = withConversion(many, { identity: `vm${i}`, osKey: `os${i}` }, { ms: 1000 + i, at: new Date(Date.UTC(2025, 0, 1, 0, i)).toISOString(), os: 'x' });
    assert.equal(Object.keys(many.vms).length, 200);
    assert.equal(Object.keys(many.os).length, 50);
    assert.ok(many.vms.vm249 && !many.vms.vm49, 'the oldest go first');

    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, '{not json');
    assert.deepEqual(await readConversionTimes(join(dir, 'state')), empty);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('OS families: releases and word sizes of one distribution share their times', async () => {
  const { osFamily, latestOfFamily } = await import('../../lib/supervisor/conversion-times.js');
  assert.deepEqual(
    ['debian12_64Guest', 'debian11Guest', 'ubuntu64Guest', 'rhel9_64Guest', 'windows2019srv_64Guest', 'winNetStandardGuest', 'otherLinux64Guest', 'sles15_64Guest'].map(osFamily),
    ['debian', 'debian', 'ubuntu', 'rhel', 'windows', 'windows', 'otherlinux', 'sles'],
  );
  let t = withConversion(empty, web01, { ms: 170_000, at: '2025-12-01T10:00:00.000Z', os: debian });
  t = withConversion(t, { identity: 'vc/x', osKey: 'debian11_64Guest' }, { ms: 150_000, at: '2025-12-02T10:00:00.000Z', os: 'Debian GNU/Linux 11' });
  t = withConversion(t, db01, { ms: 400_000, at: '2025-12-03T10:00:00.000Z', os: 'RHEL 9' });
  assert.deepEqual(latestOfFamily(t, 'debian'), { ms: 150_000, at: '2025-12-02T10:00:00.000Z', os: 'Debian GNU/Linux 11', osKey: 'debian11_64Guest' }, 'the latest of the family');
  assert.equal(latestOfFamily(t, 'ubuntu'), undefined);
});
