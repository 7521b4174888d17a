import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile, stat, truncate } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ShortReadError, type RangeSource } from '../../lib/copy/engine.js';
import { copyToFile } from '../support/copy-to-file.js';
import { together } from '../../lib/copy/together.js';
import { OneswapError } from '../../lib/errors/index.js';

const MiB = 1024 * 1024;

function sourceImage(size: number, islands: Array<[number, number]>): Buffer {
  const buf = Buffer.alloc(size);
  let x = 12345;
  for (const [start, len] of islands) {
    for (let i = start; i < start + len; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      buf[i] = (x >>> 16) & 0xff || 1;
    }
  }
  return buf;
}

/** Serves ranges from memory in 64 KiB chunks; can cut streams to exercise retries. */
function memorySource(data: Buffer, opts: { cutEvery?: number; log?: Array<[number, number]> } = {}): RangeSource {
  let opened = 0;
  return {
    name: 'memory',
    async open(start, end) {
      opened++;
      opts.log?.push([start, end]);
      const cut = opts.cutEvery !== undefined && opened % opts.cutEvery === 1;
      return (async function* () {
        for (let p = start; p < end; p += 65536) {
          if (cut && p - start >= 131072) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
          yield data.subarray(p, Math.min(end, p + 65536));
        }
      })();
    },
  };
}

async function withTarget(size: number, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-copy-'));
  try {
    const path = join(dir, 'target.raw');
    await writeFile(path, '');
    await truncate(path, size);
    await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');


test('copies only data blocks, leaves holes, bytes equal the source', async () => {
  const size = 32 * MiB;
  const data = sourceImage(size, [[0, 65536], [5 * MiB + 100, 3 * MiB], [size - 4096, 4096]]);
  await withTarget(size, async (target) => {
    const stats = await copyToFile({
      source: memorySource(data),
      target,
      capacity: size,
      extents: [{ start: 0, length: size }],
      targetIsZero: true,
      streams: 3,
      requestSize: 4 * MiB,
    });
    assert.equal(sha(await readFile(target)), sha(data));
    assert.equal(stats.bytesRead, size);
    // Data rounded out to 4 KiB blocks: 64 KiB + (3 MiB spanning 769 blocks) + 4 KiB.
    assert.equal(stats.bytesWritten, 65536 + 769 * 4096 + 4096);
    const st = await stat(target);
    assert.ok(st.blocks * 512 <= stats.bytesWritten + 64 * 1024, `allocated ${st.blocks * 512} vs written ${stats.bytesWritten}`);
  });
});

test('reads only the given extents (CBT "*" areas)', async () => {
  const size = 16 * MiB;
  const data = sourceImage(size, [[MiB, 262144]]);
  const log: Array<[number, number]> = [];
  await withTarget(size, async (target) => {
    const stats = await copyToFile({
      source: memorySource(data, { log }),
      target,
      capacity: size,
      extents: [{ start: MiB, length: 262144 }],
      targetIsZero: true,
    });
    assert.equal(stats.bytesRead, 262144);
    assert.deepEqual(log, [[MiB, MiB + 262144]]);
    assert.equal(sha(await readFile(target)), sha(data));
  });
});

test('a cut stream is retried from where it stopped', async () => {
  const size = 8 * MiB;
  const data = sourceImage(size, [[0, size]]);
  const log: Array<[number, number]> = [];
  await withTarget(size, async (target) => {
    const stats = await copyToFile({
      source: memorySource(data, { cutEvery: 2, log }),
      target,
      capacity: size,
      extents: [{ start: 0, length: size }],
      targetIsZero: true,
      streams: 2,
      requestSize: 2 * MiB,
      bufferSize: 65536,
      retryDelayMs: 1,
    });
    assert.ok(stats.retries > 0);
    assert.equal(sha(await readFile(target)), sha(data));
    // Resumed requests start past the range start (at the last flushed offset), not at its beginning.
    assert.ok(log.some(([s]) => s % (2 * MiB) !== 0));
  });
});

test('gives up after the retry budget with a one-line connection error', async () => {
  const size = 4 * MiB;
  const failing: RangeSource = {
    name: '[ds] vm/vm-flat.vmdk',
    async open() {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    },
  };
  await withTarget(size, async (target) => {
    await assert.rejects(
      copyToFile({ source: failing, target, capacity: size, extents: [{ start: 0, length: size }], targetIsZero: true, retries: 2, retryDelayMs: 1 }),
      (err: Error & { kind?: string }) => err.kind === 'connection' && /\[ds\] vm\/vm-flat\.vmdk/.test(err.message) && !err.message.includes('\n'),
    );
  });
});

test('a short stream is detected, not silently accepted', async () => {
  const size = MiB;
  const short: RangeSource = {
    name: 'short',
    async open(start, end) {
      return (async function* () {
        yield Buffer.alloc(Math.max(0, end - start - 10), 1);
      })();
    },
  };
  await withTarget(size, async (target) => {
    await assert.rejects(
      copyToFile({ source: short, target, capacity: size, extents: [{ start: 0, length: size }], targetIsZero: true, retries: 1, retryDelayMs: 1 }),
      /stream ended at offset/,
    );
  });
  assert.ok(new ShortReadError('x') instanceof Error);
});

test('zero blocks over old data become holes when the target is not known zero', async () => {
  const size = 4 * MiB;
  const data = sourceImage(size, [[0, 4096]]);
  await withTarget(size, async (target) => {
    await writeFile(target, Buffer.alloc(size, 0xaa));
    await copyToFile({ source: memorySource(data), target, capacity: size, extents: [{ start: 0, length: size }], targetIsZero: false });
    assert.equal(sha(await readFile(target)), sha(data));
    const st = await stat(target);
    assert.ok(st.blocks * 512 < 256 * 1024, `allocated ${st.blocks * 512}`);
  });
});

test('Ctrl-C (abort) stops all streams promptly', async () => {
  const size = 64 * MiB;
  const slow: RangeSource = {
    name: 'slow',
    async open(start, end, signal) {
      return (async function* () {
        for (let p = start; p < end; p += 65536) {
          await new Promise((r) => setTimeout(r, 5));
          signal.throwIfAborted();
          yield Buffer.alloc(Math.min(65536, end - p), 7);
        }
      })();
    },
  };
  const ac = new AbortController();
  setTimeout(() => ac.abort(new Error('interrupted')), 50);
  await withTarget(size, async (target) => {
    const t0 = Date.now();
    await assert.rejects(
      copyToFile({ source: slow, target, capacity: size, extents: [{ start: 0, length: size }], targetIsZero: true, signal: ac.signal }),
      /interrupted/,
    );
    assert.ok(Date.now() - t0 < 2000);
  });
});

test('together: the first failure stops the others and is reported only after all have settled', async () => {
  const events: string[] = [];
  const slow = async (signal: AbortSignal): Promise<string> => {
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => setTimeout(resolve, 50), { once: true }));
    events.push('slow settled');
    throw Object.assign(new Error('stopped'), { name: 'AbortError' });
  };
  const failing = async (): Promise<string> => {
    await new Promise((r) => setTimeout(r, 10));
    throw new Error('disk 2 broke');
  };
  await assert.rejects(together([slow, failing], undefined), (err: Error) => {
    events.push('rejected');
    return err.message === 'disk 2 broke';
  });
  assert.deepEqual(events, ['slow settled', 'rejected']);

  assert.deepEqual(await together([async () => 1, async () => 2], undefined), [1, 2]);

  const outer = new AbortController();
  const run = together([slow], outer.signal);
  outer.abort(new Error('Ctrl-C'));
  await assert.rejects(run, /Ctrl-C/);
});

test('together: a sibling stopped with its own error (a cancelled GET) never hides the failure that stopped it', async () => {
  // A stream cancelled by the stop reports itself as interrupted, and it comes first in task order;
  // the vCenter that died took the other stream down first, and that is what the user must hear.
  const cancelled = async (signal: AbortSignal): Promise<string> => {
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    throw new OneswapError('interrupted', 'GET [LocalDS_0] vm/vm-flat.vmdk on 127.0.0.1 was cancelled');
  };
  const lost = async (): Promise<string> => {
    await new Promise((r) => setTimeout(r, 10));
    throw new OneswapError('connection', 'cannot reach vCenter 127.0.0.1 (connection refused)');
  };
  await assert.rejects(together([cancelled, cancelled, lost], undefined), (err: OneswapError) => err.kind === 'connection' && err.exitCode === 4);
});
