import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdClient, NbdError } from '../../lib/nbd/index.js';
import { startNbdkit } from '../support/nbd-server.js';

const MiB = 1024 * 1024;

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

test('reads a file export exactly, many requests in flight on one connection', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-nbd-'));
  const data = pattern(8 * MiB + 12345, 7);
  await writeFile(join(dir, 'disk.raw'), data);
  const server = await startNbdkit(['-r', 'file', join(dir, 'disk.raw')]);
  try {
    const nbd = await NbdClient.connect(server.socket);
    assert.equal(nbd.size, data.length);
    assert.equal(nbd.readOnly, true);
    assert.equal(nbd.canMultiConn, true);
    // Out-of-order sizes and offsets, all at once: replies are matched by cookie.
    const asks: Array<[number, number]> = [];
    for (let off = 0; off < data.length; off += 700_001) asks.push([off, Math.min(1 * MiB + 3, data.length - off)]);
    const got = await Promise.all(asks.map(([o, l]) => nbd.read(o, l)));
    got.forEach((b, i) => assert.ok(b.equals(data.subarray(asks[i]![0], asks[i]![0] + asks[i]![1])), `read ${i}`));
    assert.equal((await nbd.read(data.length - 1, 1))[0], data[data.length - 1]);
    await nbd.close();
    await nbd.close();
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test('block status and holes from the data plugin', async () => {
  const server = await startNbdkit(['-r', 'data', '1 2 3 @0x200000 4 5 6 @0x800000 ( 0x55 )*65536', 'size=32M']);
  try {
    const nbd = await NbdClient.connect(server.socket);
    assert.equal(nbd.hasBlockStatus, true);
    const map = [];
    for (let pos = 0; pos < nbd.size; ) {
      const got = await nbd.blockStatus(pos, nbd.size - pos);
      map.push(...got);
      pos = got[got.length - 1]!.start + got[got.length - 1]!.length;
    }
    const data = map.filter((e) => !e.hole && !e.zero).map((e) => [e.start, e.length]);
    assert.deepEqual(data, [[0, 32768], [0x200000, 32768], [0x800000, 65536]]);
    assert.ok(map.filter((e) => e.hole).every((e) => e.zero));

    // A read across holes comes back as OFFSET_DATA and OFFSET_HOLE chunks; holes read as zeros.
    const buf = await nbd.read(0x1f0000, 0x20000);
    assert.equal(buf.length, 0x20000);
    const at = 0x200000 - 0x1f0000;
    assert.deepEqual([...buf.subarray(at, at + 4)], [4, 5, 6, 0]);
    assert.equal(buf.subarray(0, at).every((b) => b === 0), true);
    const tail = await nbd.read(0x800000 - 10, 20);
    assert.deepEqual([...tail], [...Buffer.alloc(10), ...Buffer.alloc(10, 0x55)]);
    await nbd.close();
  } finally {
    await server.stop();
  }
});

test('server errors reach the caller with their code, the connection stays usable', async () => {
  // The error filter fails every read; block status still works.
  const errServer = await startNbdkit(['-r', '--filter=error', 'pattern', 'size=4M', 'error-pread=EIO', 'error-pread-rate=100%']);
  try {
    const nbd = await NbdClient.connect(errServer.socket);
    await assert.rejects(nbd.read(0, 4096), (err: unknown) => err instanceof NbdError && err.code === 'EIO' && /input\/output error/.test(err.message));
    await assert.rejects(nbd.read(0, 4096), (err: unknown) => err instanceof NbdError && err.code === 'EIO');
    await assert.rejects(nbd.read(4 * MiB - 1, 2), (err: unknown) => err instanceof NbdError && err.code === 'EINVAL');
    const bs = await nbd.blockStatus(0, 4096);
    assert.ok(bs.length > 0);
    await nbd.close();
  } finally {
    await errServer.stop();
  }
});

test('a dropped connection fails what is in flight with ECONNRESET', async () => {
  const server = await startNbdkit(['-r', '--filter=delay', 'memory', 'size=64M', 'rdelay=2']);
  const nbd = await NbdClient.connect(server.socket);
  const inFlight = nbd.read(0, MiB);
  await new Promise((r) => setTimeout(r, 100));
  server.process.kill('SIGKILL');
  await assert.rejects(inFlight, (err: unknown) => err instanceof NbdError && err.code === 'ECONNRESET');
  assert.ok(nbd.broken);
  await assert.rejects(nbd.read(0, 1), (err: unknown) => err instanceof NbdError && err.code === 'ECONNRESET');
  await nbd.close();
  await server.stop();
});

test('an abandoned read rejects at once; the late reply is still consumed', async () => {
  const server = await startNbdkit(['-r', '--filter=delay', 'pattern', 'size=16M', 'rdelay=300ms']);
  try {
    const nbd = await NbdClient.connect(server.socket);
    const ac = new AbortController();
    const slow = nbd.read(0, MiB, ac.signal);
    ac.abort(new Error('stop'));
    await assert.rejects(slow, /stop/);
    const b = await nbd.read(8, 8);
    assert.equal(b.readBigUInt64BE(0), 8n); // the pattern plugin writes each 8-byte offset
    await nbd.close();
  } finally {
    await server.stop();
  }
});

test('connecting to nothing fails clearly', async () => {
  await assert.rejects(NbdClient.connect('/nonexistent/nbd.sock'), (err: unknown) => err instanceof NbdError && /cannot talk to the NBD server/.test(err.message));
});
