// The NBD client's write side against real servers: qemu-nbd on a raw file (what oneswap's qcow2
// and RBD targets talk to) and nbdkit's error filter for the errors a storage reports.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdClient, NbdError } from '../../lib/nbd/index.js';
import { startNbdkit, startQemuNbd } from '../support/nbd-server.js';
import { withTempDir } from '../support/temp-dir.js';

const MiB = 1024 * 1024;

const nbdError = (code: string, text?: RegExp) => (err: unknown) => err instanceof NbdError && err.code === code && (!text || text.test(err.message));

/** A sparse raw file of `size` bytes served writable by qemu-nbd, as the targets serve images. */
async function withRawExport(size: number, extra: readonly string[], fn: (file: string, socket: string) => Promise<void>): Promise<void> {
  await withTempDir('oneswap-nbdw-', async (dir) => {
    const file = join(dir, 'disk.raw');
    await writeFile(file, '');
    await truncate(file, size);
    const server = await startQemuNbd(['--format=raw', '--cache=writeback', '--discard=unmap', '--shared=4', ...extra, file]);
    try {
      await fn(file, server.socket);
    } finally {
      await server.stop();
    }
  });
}

test('a writable export says what it takes; a read-only one refuses writes without sending them', async () => {
  await withRawExport(4 * MiB, [], async (_file, socket) => {
    const nbd = await NbdClient.connect(socket);
    assert.deepEqual(
      [nbd.readOnly, nbd.canFlush, nbd.canFua, nbd.canTrim, nbd.canWriteZeroes, nbd.canFastZero, nbd.canMultiConn],
      [false, true, true, true, true, true, true],
    );
    assert.equal(nbd.maxRequest, 32 * MiB);
    assert.equal(nbd.minBlock, 1);
    await nbd.close();
  });
  await withTempDir('oneswap-nbdw-', async (dir) => {
    const file = join(dir, 'ro.raw');
    await writeFile(file, Buffer.alloc(MiB, 7));
    const server = await startQemuNbd(['--format=raw', '--read-only', file]);
    try {
      const nbd = await NbdClient.connect(server.socket);
      assert.equal(nbd.readOnly, true);
      assert.deepEqual([nbd.canFlush, nbd.canTrim, nbd.canWriteZeroes], [false, false, false]);
      await assert.rejects(nbd.write(0, Buffer.alloc(512)), nbdError('EPERM', /read-only/));
      await assert.rejects(nbd.writeZeroes(0, 512), nbdError('EPERM'));
      await assert.rejects(nbd.flush(), nbdError('EPERM'));
      // Nothing was sent: the connection still reads.
      assert.equal((await nbd.read(0, 1))[0], 7);
      await nbd.close();
    } finally {
      await server.stop();
    }
  });
});

test('many writes in flight on one connection, odd sizes and offsets, land exactly; flush; the file holds them', async () => {
  const size = 16 * MiB + 4096;
  await withRawExport(size, [], async (file, socket) => {
    const nbd = await NbdClient.connect(socket);
    const expect = Buffer.alloc(size);
    const writes: Array<Promise<void>> = [];
    // Disjoint pieces of 1 B to 2 MiB + 1, sent all at once: replies come in any order.
    let pos = 3;
    for (let i = 0; pos < size; i++) {
      const len = Math.min(size - pos, [1, 4095, 65536, 2 * MiB + 1, 777_777][i % 5]!);
      const data = randomBytes(len);
      data.copy(expect, pos);
      writes.push(nbd.write(pos, data));
      pos += len + (i % 3) * 4096; // some gaps stay unwritten
    }
    await Promise.all(writes);
    await nbd.flush();
    assert.ok((await nbd.read(0, size)).equals(expect), 'reads back what was written');
    await nbd.close();
    assert.ok((await readFile(file)).equals(expect), 'the file holds it');
  });
});

test('write zeroes: without NO_HOLE the area is deallocated, with it the area stays allocated; trim deallocates', async () => {
  const size = 8 * MiB;
  await withRawExport(size, [], async (file, socket) => {
    const nbd = await NbdClient.connect(socket);
    await nbd.write(0, randomBytes(size));
    await nbd.flush();
    const full = (await stat(file)).blocks * 512;
    assert.equal(full, size);

    await nbd.writeZeroes(0, 2 * MiB); // may punch a hole
    await nbd.writeZeroes(2 * MiB, 2 * MiB, { noHole: true }); // must stay allocated
    await nbd.trim(4 * MiB, 2 * MiB);
    await nbd.flush();
    assert.ok((await nbd.read(0, 4 * MiB)).equals(Buffer.alloc(4 * MiB)), 'zeroed areas read as zeros');
    const after = (await stat(file)).blocks * 512;
    assert.equal(after, size - 4 * MiB, 'the hole and the trimmed area are deallocated, the NO_HOLE area is not');
    const map = await nbd.blockStatus(0, size);
    assert.ok(map.some((e) => e.start === 0 && e.hole && e.zero), JSON.stringify(map));
    await nbd.close();
  });
});

test('requests the server could not take are refused before they are sent', async () => {
  await withRawExport(4 * MiB, [], async (_file, socket) => {
    const nbd = await NbdClient.connect(socket);
    await assert.rejects(nbd.write(4 * MiB - 1, Buffer.alloc(2)), nbdError('EINVAL', /outside the export/));
    await assert.rejects(nbd.write(0, Buffer.alloc(nbd.maxRequest + 1)), nbdError('EINVAL', /longer than/));
    await assert.rejects(nbd.writeZeroes(0, 2 ** 32), nbdError('EINVAL', /longer than/));
    await nbd.write(0, Buffer.from('still usable'));
    assert.equal((await nbd.read(0, 12)).toString(), 'still usable');
    await nbd.close();
  });
});

test("the storage's errors arrive with their errno names; the connection stays usable", async () => {
  const server = await startNbdkit(['--filter=error', 'memory', 'size=4M', 'error-pwrite=ENOSPC', 'error-pwrite-rate=100%', 'error-zero=EIO', 'error-zero-rate=100%', 'error-trim=EPERM', 'error-trim-rate=100%']);
  try {
    const nbd = await NbdClient.connect(server.socket);
    await assert.rejects(nbd.write(0, Buffer.alloc(4096, 1)), nbdError('ENOSPC', /NBD write of \[0, 4096\).*no space left/));
    await assert.rejects(nbd.writeZeroes(4096, 4096), nbdError('EIO', /NBD write zeroes of \[4096, 8192\)/));
    await assert.rejects(nbd.trim(0, 4096), nbdError('EPERM', /NBD trim/));
    await nbd.flush();
    assert.equal((await nbd.read(0, 4096)).every((b) => b === 0), true);
    await nbd.close();
  } finally {
    await server.stop();
  }
});

test('writes in flight when the server dies fail with ECONNRESET', async () => {
  const server = await startNbdkit(['--filter=delay', 'memory', 'size=64M', 'wdelay=2']);
  const nbd = await NbdClient.connect(server.socket);
  const inFlight = [nbd.write(0, Buffer.alloc(MiB, 1)), nbd.write(MiB, Buffer.alloc(MiB, 2))];
  await new Promise((r) => setTimeout(r, 100));
  server.process.kill('SIGKILL');
  for (const w of inFlight) await assert.rejects(w, nbdError('ECONNRESET'));
  await assert.rejects(nbd.write(0, Buffer.alloc(1)), nbdError('ECONNRESET'));
  await nbd.close();
  await server.stop();
});
