// What the datastore tests run against every kind of image datastore: warm rounds over a running
// VM whose disks change (data written, data turned to zeros) between them, and a one-disk OVA with
// islands. Each test says how to run oneswap there and how to read its images back.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeDiskData, type TestVm } from '../peers/vcsim/fixture.js';
import { buildOva } from '../peers/ova/index.js';
import { importResult } from '../peers/migration.js';

const MiB = 1024 * 1024;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export interface WarmScenario {
  /** The running VM (a 2-disk ISLAND_DISKS VM). */
  readonly vm: TestVm;
  /** Runs `oneswap warm <stage> …` for this VM. */
  warm(stage: 'start' | 'sync' | 'cutover'): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** The bytes image `id` holds, read with the storage's own tools. */
  imageBytes(id: number): Promise<Buffer>;
}

/**
 * start → sync → cutover, each leaving every image byte-equal to its disk: before the sync data is
 * written into disk 0 and a MiB of data there becomes zeros (the round must zero it, not leave the
 * old bytes); before the cutover disk 1 changes.
 */
export async function warmRounds(s: WarmScenario): Promise<void> {
  const start = await s.warm('start');
  assert.equal(start.exitCode, 0, start.stderr);
  const ids = importResult(start.stdout).imageIds;
  const equal = async (): Promise<void> => {
    for (const [i, d] of s.vm.disks.entries()) {
      const bytes = await s.imageBytes(ids[i]!);
      assert.equal(bytes.length, d.sizeBytes, `image ${ids[i]} is disk ${i}'s size`);
      assert.equal(sha(bytes), sha(await readFile(d.flatPath)), `image ${ids[i]} equals disk ${i}`);
    }
  };
  await equal();
  await writeDiskData(s.vm.disks[0]!.flatPath, 20 * MiB, 128 * 1024, 77);
  const fh = await open(s.vm.disks[0]!.flatPath, 'r+');
  await fh.write(Buffer.alloc(MiB), 0, MiB, 0);
  await fh.close();
  const sync = await s.warm('sync');
  assert.equal(sync.exitCode, 0, sync.stderr);
  await equal();
  await writeDiskData(s.vm.disks[1]!.flatPath, 0, 64 * 1024, 78);
  const cut = await s.warm('cutover');
  assert.equal(cut.exitCode, 0, cut.stderr);
  await equal();
}

/** A one-disk OVA (streamOptimized, SHA256 manifest) of 24 MiB + 4608 bytes with three islands, and the disk's bytes. */
export async function islandOva(workDir: string, name: string): Promise<{ ova: string; source: Buffer }> {
  const dir = await mkdtemp(join(workDir, `${name}-`));
  const raw = join(dir, 'disk.raw');
  const h = await open(raw, 'w');
  await h.truncate(24 * MiB + 4608);
  for (const [offset, length] of [[0, MiB], [7 * MiB + 4096, 3 * MiB], [24 * MiB + 4608 - 8192, 8192]] as const) await h.write(randomBytes(length), 0, length, offset);
  await h.close();
  const ova = await buildOva({ name, cpus: 1, memoryMiB: 512, disks: [{ raw, subformat: 'streamOptimized' }], manifest: 'sha256' }, join(dir, `${name}.ova`));
  return { ova: ova.ova, source: await readFile(raw) };
}
