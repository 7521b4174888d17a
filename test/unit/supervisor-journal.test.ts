import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal, mapLimited } from '../../lib/supervisor/index.js';

test('journal: persisted atomically with mode 0600, resumed by the next run, removed when done', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-journal-'));
  try {
    const { journal, resumed } = await Journal.open(dir, 'vc.example/4211-aa', 100);
    assert.equal(resumed, false);
    journal.data.disks.push({ sourceKey: '2000', imageId: 7, imagePath: '/ds/100/abc', capacityBytes: 1 << 20, done: [], complete: false });
    journal.rangeDone('2000', { start: 0, length: 4096 }, 0);
    journal.rangeDone('2000', { start: 4096, length: 4096 }, 1e9);
    await journal.flush();
    assert.equal((await stat(journal.file)).mode & 0o777, 0o600);

    const again = await Journal.open(dir, 'vc.example/4211-aa', 100);
    assert.equal(again.resumed, true);
    assert.deepEqual(again.journal.disk('2000')!.done, [{ start: 0, length: 8192 }]);
    // Another datastore is another migration.
    assert.equal((await Journal.open(dir, 'vc.example/4211-aa', 101)).resumed, false);

    await again.journal.remove();
    assert.equal((await Journal.open(dir, 'vc.example/4211-aa', 100)).resumed, false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('mapLimited keeps order and the concurrency bound', async () => {
  let running = 0;
  let peak = 0;
  const out = await mapLimited([5, 1, 4, 2, 3], 2, async (n) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, n * 3));
    running--;
    return n * 10;
  });
  assert.deepEqual(out, [50, 10, 40, 20, 30]);
  assert.equal(peak, 2);
});
