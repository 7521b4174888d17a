// node --import tsx bench/target-write.bench.ts — the copy engine's writers against qemu-img on the
// same targets: a 1 GiB disk with 25 % data (4 MiB islands every 16 MiB) in a sparse raw file is
// copied into a raw file (file-target), a qcow2 placeholder (qcow2-target, qemu-nbd) and an RBD
// image in the one-node Ceph peer (rbd-target, qemu-nbd), and by `qemu-img convert -n` from the
// same file into the same kinds of targets: once with `-t writeback`, which flushes at the end as
// the engine does, and once with its default cache mode, `unsafe`, which never flushes (not
// durable when it returns; for RBD, librbd still flushes its cache when the image is closed).
// The engine reads the file's data areas (as a reader with an allocation map would); qemu-img
// finds them itself (SEEK_DATA). Every target is fresh and compared with the source (qemu-img
// compare). Median of BENCH_RUNS (3). Not a test: it prints wall times, their ratios, bytes
// written and bytes allocated.

import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { execa } from 'execa';
import { copyExtents, type RangeSource, type TargetWriter } from '../lib/copy/index.js';
import { openFileWriter } from '../lib/output/file-target.js';
import { openQcow2Writer } from '../lib/output/qcow2-target.js';
import { openRbdAccess, type RbdAccess } from '../lib/output/rbd-access.js';
import { openRbdAccessWriter } from '../lib/output/rbd-target.js';
import { cephMissingTools, startCeph, type Ceph } from '../test/peers/ceph/index.js';

const MiB = 1024 ** 2;
const size = Number(process.env.BENCH_DISK_GIB ?? 1) * 1024 * MiB;
const runs = Number(process.env.BENCH_RUNS ?? 3);
const ISLAND = 4 * MiB;
const islands = Array.from({ length: size / (4 * ISLAND) }, (_, i) => ({ start: i * 4 * ISLAND, length: ISLAND }));

interface Target {
  readonly kind: 'raw' | 'qcow2' | 'rbd';
  /** A fresh, empty target; returns what qemu-img names it and its format. */
  fresh(run: string): Promise<{ filename: string; format: 'raw' | 'qcow2'; rbd?: RbdAccess }>;
  open(t: { filename: string; rbd?: RbdAccess }): Promise<TargetWriter>;
  /** Bytes the target allocates. */
  allocated(t: { filename: string; rbd?: RbdAccess }): Promise<number>;
  remove(t: { filename: string; rbd?: RbdAccess }): Promise<void>;
}

const dir = await mkdtemp(join(tmpdir(), 'oneswap-bench-target-'));
const src = join(dir, 'source.raw');
let ceph: Ceph | undefined;
try {
  const fh = await open(src, 'w');
  await fh.truncate(size);
  const piece = Buffer.allocUnsafe(ISLAND);
  for (const isl of islands) await fh.write(randomFillSync(piece), 0, ISLAND, isl.start);
  await fh.close();
  const dataBytes = islands.length * ISLAND;

  const targets: Target[] = [
    {
      kind: 'raw',
      fresh: async (run) => {
        const filename = join(dir, `${run}.raw`);
        await writeFile(filename, '');
        await truncate(filename, size);
        return { filename, format: 'raw' };
      },
      open: (t) => openFileWriter(t.filename, size),
      allocated: async (t) => (await stat(t.filename)).blocks * 512,
      remove: (t) => rm(t.filename),
    },
    {
      kind: 'qcow2',
      fresh: async (run) => {
        const filename = join(dir, `${run}.qcow2`);
        await execa('qemu-img', ['create', '-q', '-f', 'qcow2', filename, String(size)]);
        return { filename, format: 'qcow2' };
      },
      open: (t) => openQcow2Writer(t.filename, size),
      allocated: async (t) => {
        const map = JSON.parse((await execa('qemu-img', ['map', '--output=json', t.filename])).stdout) as Array<{ length: number; data: boolean }>;
        return map.reduce((s, e) => (e.data ? s + e.length : s), 0);
      },
      remove: (t) => rm(t.filename),
    },
  ];
  if (cephMissingTools().length === 0) {
    ceph = await startCeph({ memstoreBytes: 2 * 1024 * MiB });
    const c = ceph;
    targets.push({
      kind: 'rbd',
      fresh: async (run) => {
        await c.rbd(['create', '--size', String(size / MiB), `one/${run}`]);
        const rbd = await openRbdAccess({ pool: 'one', image: run, user: c.user, conf: c.conf, keyfile: c.keyring });
        return { filename: rbd.qemu.filename, format: 'raw', rbd };
      },
      open: (t) => openRbdAccessWriter(t.rbd!, size),
      allocated: async (t) => {
        const du = JSON.parse(await c.rbd(['du', '--format', 'json', `one/${t.rbd!.location.image}`])) as { images: Array<{ used_size: number }> };
        return du.images[0]!.used_size;
      },
      remove: async (t) => {
        await t.rbd!.dispose();
        await c.rbd(['rm', '--no-progress', `one/${t.rbd!.location.image}`]);
      },
    });
  } else process.stderr.write(`*** no Ceph (${cephMissingTools().join(', ')} missing): RBD not measured ***\n`);

  const source: RangeSource = {
    name: src,
    open: async (start, end) => createReadStream(src, { start, end: end - 1, highWaterMark: 256 * 1024 }),
  };
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows: string[] = [];
  let n = 0;
  for (const target of targets) {
    const times = { oneswap: [] as number[], qemuImg: [] as number[], unsafe: [] as number[] };
    let written = 0;
    const alloc = { oneswap: 0, qemuImg: 0, unsafe: 0 };
    for (let r = 0; r < runs; r++) {
      for (const who of ['oneswap', 'qemuImg', 'unsafe'] as const) {
        const t = await target.fresh(`t${++n}`);
        const t0 = performance.now();
        if (who === 'oneswap') {
          const writer = await target.open(t);
          try {
            written = (await copyExtents({ source, target: writer, capacity: size, extents: islands, targetIsZero: true })).bytesWritten;
          } finally {
            await writer.close();
          }
        } else {
          const cache = who === 'qemuImg' ? ['-t', 'writeback'] : [];
          await execa('qemu-img', ['convert', '-n', ...cache, '-f', 'raw', ...(t.rbd ? [] : ['-O', t.format]), src, t.filename]);
        }
        times[who].push(performance.now() - t0);
        alloc[who] = await target.allocated(t);
        await execa('qemu-img', ['compare', '-q', '-f', 'raw', ...(t.rbd ? [] : ['-F', t.format]), src, t.filename]);
        await target.remove(t);
      }
    }
    const [a, b, c] = [median(times.oneswap), median(times.qemuImg), median(times.unsafe)];
    const ms = (x: number): string => `${x.toFixed(0).padStart(5)} ms`;
    rows.push(
      `${target.kind.padEnd(6)} oneswap ${ms(a)} | qemu-img -t writeback ${ms(b)}, ratio ${(a / b).toFixed(2)} | qemu-img (unsafe) ${ms(c)}, ratio ${(a / c).toFixed(2)} | ` +
        `oneswap wrote ${written / MiB} MiB | allocated: oneswap ${(alloc.oneswap / MiB).toFixed(2)}, qemu-img ${(alloc.qemuImg / MiB).toFixed(2)}, unsafe ${(alloc.unsafe / MiB).toFixed(2)} MiB`,
    );
  }
  process.stdout.write(`${size / MiB} MiB disk, ${dataBytes / MiB} MiB data, median of ${runs} runs (all outputs equal the source):\n${rows.join('\n')}\n`);
} finally {
  await ceph?.stop();
  await rm(dir, { recursive: true, force: true });
}
