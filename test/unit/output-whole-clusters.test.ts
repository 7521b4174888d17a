// The writer in front of a compressed qcow2 image (lib/output/whole-clusters.ts): each cluster
// reaches the image once and whole, whatever pieces the producer sends; zeros stay unwritten; the
// last, short cluster is padded; a second write of a cluster and data too scattered to assemble
// are refused with a one-line error.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OneswapError } from '../../lib/errors/index.js';
import { wholeClusters } from '../../lib/output/whole-clusters.js';
import { MemoryTarget } from '../support/memory-target.js';

const C = 64 * 1024;

/** Bytes 1..255 repeating from `seed`: no zero byte, different per seed. */
function pattern(length: number, seed = 1): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = ((seed + i) % 255) + 1;
  return b;
}

/** The inner writes as [position, length]. */
const writes = (t: MemoryTarget): Array<[number, number]> => t.written.map((w) => [w.position, w.data.length]);

function isError(kind: string, text: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof OneswapError, String(err));
    assert.equal(err.kind, kind, err.message);
    assert.match(err.message, text);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  };
}

test('whole clusters go through as they come, several in one write; the writer says its block', async () => {
  const inner = new MemoryTarget(8 * C);
  const w = wholeClusters(inner, { size: 8 * C, cluster: C });
  assert.deepEqual([w.name, w.size, w.blockSize], [inner.name, 8 * C, C]);
  const data = pattern(3 * C);
  await w.write(data, 2 * C);
  await w.flush();
  assert.deepEqual(writes(inner), [[2 * C, 3 * C]]);
  assert.deepEqual(inner.calls.at(-1), { op: 'flush' });
  assert.ok(inner.bytes.subarray(2 * C, 5 * C).equals(data));
});

test('a cluster in parts is written once, whole, when its last part came; the parts of a write around it go straight on', async () => {
  const inner = new MemoryTarget(8 * C);
  const w = wholeClusters(inner, { size: 8 * C, cluster: C });
  const disk = pattern(8 * C, 7);
  // From the middle of cluster 0 to just inside cluster 3: clusters 1 and 2 are whole.
  await w.write(disk.subarray(C / 2, 3 * C + 100), C / 2);
  assert.deepEqual(writes(inner), [[C, 2 * C]], 'only the whole clusters so far');
  await w.write(disk.subarray(3 * C + 100, 4 * C), 3 * C + 100);
  assert.deepEqual(writes(inner), [[C, 2 * C], [3 * C, C]], 'cluster 3 complete: written whole');
  await w.write(disk.subarray(0, 1000), 0);
  await w.write(disk.subarray(1000, C / 2), 1000);
  assert.deepEqual(writes(inner), [[C, 2 * C], [3 * C, C], [0, C]]);
  await w.flush();
  assert.ok(inner.bytes.subarray(0, 4 * C).equals(disk.subarray(0, 4 * C)));
  assert.ok(inner.bytes.subarray(4 * C).every((b) => b === 0));
});

test('a cluster whose parts never all come is written at the flush, zeros where nothing came; an all-zero cluster never', async () => {
  const inner = new MemoryTarget(4 * C);
  const w = wholeClusters(inner, { size: 4 * C, cluster: C });
  const part = pattern(4096, 3);
  await w.write(part, C + 8192);
  // Parts of zeros (a producer sends the parts its pieces cut, even zero): assembled, never written.
  await w.write(Buffer.alloc(C / 2), 2 * C);
  await w.write(Buffer.alloc(C / 2), 2 * C + C / 2);
  await w.write(Buffer.alloc(100), 3 * C + 5);
  assert.deepEqual(writes(inner), []);
  await w.flush();
  assert.deepEqual(writes(inner), [[C, C]], 'cluster 1 at the flush; clusters 2 and 3 hold only zeros');
  const expected = Buffer.alloc(C);
  part.copy(expected, 8192);
  assert.ok(inner.bytes.subarray(C, 2 * C).equals(expected));
  assert.deepEqual(inner.calls.map((c) => c.op), ['write', 'flush'], 'the flush after the write');
});

test("the disk's last cluster, shorter than a cluster, is written padded with zeros into the image's whole-cluster size", async () => {
  const size = 2 * C + 1536;
  const inner = new MemoryTarget(3 * C);
  const w = wholeClusters(inner, { size, cluster: C });
  assert.equal(w.size, size);
  const tail = pattern(1536, 9);
  await w.write(tail, 2 * C);
  assert.deepEqual(writes(inner), [[2 * C, C]]);
  assert.ok(inner.bytes.subarray(2 * C, 2 * C + 1536).equals(tail));
  assert.ok(inner.bytes.subarray(2 * C + 1536).every((b) => b === 0));
  // In parts, with a whole cluster before it in the same write.
  const inner2 = new MemoryTarget(3 * C);
  const w2 = wholeClusters(inner2, { size, cluster: C });
  await w2.write(pattern(C + 500, 2), C);
  await w2.write(pattern(1036, 4), 2 * C + 500);
  assert.deepEqual(writes(inner2), [[C, C], [2 * C, C]]);
  await assert.rejects(w2.write(Buffer.alloc(1), size), isError('internal', /outside/));
  assert.throws(() => wholeClusters(new MemoryTarget(size), { size, cluster: C }), isError('internal', /whole clusters of the disk need 196608/));
});

test('zero() counts as parts of a cluster being assembled; a whole cluster needs nothing', async () => {
  const inner = new MemoryTarget(4 * C);
  const w = wholeClusters(inner, { size: 4 * C, cluster: C });
  const head = pattern(100, 5);
  await w.write(head, 0);
  await w.zero([{ start: 100, length: 2 * C - 100 }]);
  assert.deepEqual(writes(inner), [[0, C]], 'cluster 0 complete with the zeros');
  assert.deepEqual(inner.calls.filter((c) => c.op === 'zero'), [], 'nothing to zero in a fresh image');
  await w.write(pattern(C, 6), C);
  assert.deepEqual(writes(inner), [[0, C], [C, C]], 'zeroing a whole cluster did not take it');
});

test('a cluster written twice is refused before qemu fails it; so is zeroing one', async () => {
  const inner = new MemoryTarget(4 * C);
  const w = wholeClusters(inner, { size: 4 * C, cluster: C });
  await w.write(pattern(C), 0);
  await assert.rejects(w.write(pattern(10), 20), isError('internal', /cluster at byte 0 of memory target is written twice/));
  await w.write(pattern(10), C + 20);
  await w.flush();
  await assert.rejects(w.write(pattern(10), C + 40), isError('internal', /cluster at byte 65536 .* written twice/));
  await assert.rejects(w.zero([{ start: 0, length: C }]), isError('internal', /written twice/));
});

test('data scattered over more clusters than it may assemble at once: a usage error with the hint', async () => {
  const inner = new MemoryTarget(16 * C);
  const w = wholeClusters(inner, { size: 16 * C, cluster: C, maxPending: 4, scatteredHint: 'import without --compressed' });
  for (let c = 0; c < 4; c++) await w.write(pattern(10), c * C + 1);
  await assert.rejects(w.write(pattern(10), 4 * C + 1), (err) => {
    assert.ok(isError('usage', /scattered over more than 4 clusters/)(err));
    assert.equal((err as OneswapError).hint, 'import without --compressed');
    return true;
  });
});

test('a failing inner write comes through once every write of the buffer settled', async () => {
  const failure = new OneswapError('capacity', 'the file system holding x is full');
  const inner = new MemoryTarget(4 * C, { failAt: 1, error: failure });
  const w = wholeClusters(inner, { size: 4 * C, cluster: C });
  await assert.rejects(w.write(pattern(2 * C), 0), (err) => err === failure);
  assert.equal(inner.inFlight, 0);
  await w.close();
  assert.deepEqual(inner.calls.at(-1), { op: 'close' });
});
