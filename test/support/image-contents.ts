// What an image of a Ceph pool or a qcow2 file holds and allocates, read with the storage's own
// tools (rbd export and du, qemu-img convert and map), for tests that compare it with the source
// disk: the bytes, and the allocation against what the disk's data islands must take; and the
// disks with islands those tests copy.

import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Ceph } from '../peers/ceph/index.js';

const MiB = 1024 * 1024;
/** RBD's default object size. */
export const RBD_OBJECT = 4 * MiB;
/** qcow2's default cluster size. */
export const QCOW2_CLUSTER = 64 * 1024;

/**
 * The disks of the datastore tests' 2-disk VM (for createTestVm): 256 MiB with islands of data and
 * holes between them, one in the last 64 KiB, and 8 MiB + 64 KiB (not a whole MiB).
 */
export const ISLAND_DISKS: ReadonlyArray<{ readonly sizeBytes: number; readonly data: ReadonlyArray<{ offset: number; length: number }> }> = [
  {
    sizeBytes: 256 * MiB,
    data: [{ offset: 0, length: MiB }, { offset: 37 * MiB + 4096, length: 5 * MiB }, { offset: 200 * MiB, length: 3 * MiB }, { offset: 256 * MiB - 65536, length: 65536 }],
  },
  { sizeBytes: 8 * MiB + 64 * 1024, data: [{ offset: 4 * MiB, length: 12288 }, { offset: 8 * MiB, length: 64 * 1024 }] },
];

/**
 * Bytes a store allocates for data islands when it allocates in `unit`s (RBD objects, qcow2
 * clusters): every unit an island touches, the last one only up to the disk's end.
 */
export function unitsTouched(islands: ReadonlyArray<{ offset: number; length: number }>, size: number, unit: number): number {
  const units = new Set<number>();
  for (const i of islands) for (let u = Math.floor(i.offset / unit); u * unit < i.offset + i.length; u++) units.add(u);
  return [...units].reduce((s, u) => s + Math.min(unit, size - u * unit), 0);
}

/** The RBD image's bytes (`rbd export` through a file in `workDir`). */
export async function rbdBytes(ceph: Ceph, source: string, workDir: string): Promise<Buffer> {
  const out = join(workDir, `export-${randomBytes(4).toString('hex')}`);
  await ceph.rbd(['export', source, out]);
  try {
    return await readFile(out);
  } finally {
    await rm(out, { force: true });
  }
}

/** `rbd du`: the image's size and the bytes of the objects it holds. */
export async function rbdUsage(ceph: Ceph, source: string): Promise<{ provisioned: number; used: number }> {
  const du = JSON.parse(await ceph.rbd(['du', '--format', 'json', source])) as { images: Array<{ provisioned_size: number; used_size: number }> };
  return { provisioned: du.images[0]!.provisioned_size, used: du.images[0]!.used_size };
}

/** The qcow2 image's virtual disk (`qemu-img convert -O raw` through a file in `workDir`). */
export async function qcow2Bytes(file: string, workDir: string): Promise<Buffer> {
  const out = join(workDir, `raw-${randomBytes(4).toString('hex')}`);
  await execa('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, out]);
  try {
    return await readFile(out);
  } finally {
    await rm(out, { force: true });
  }
}

/**
 * Bytes of the image's virtual disk that hold data (`qemu-img map`): a qcow2's allocated data
 * clusters, a raw file's data extents (SEEK_DATA; st_blocks would count ext4's extent blocks too).
 */
export async function imageDataBytes(file: string, format: 'qcow2' | 'raw' = 'qcow2'): Promise<number> {
  const map = JSON.parse((await execa('qemu-img', ['map', '--output=json', '-f', format, file])).stdout) as Array<{ length: number; data: boolean }>;
  return map.reduce((s, e) => (e.data ? s + e.length : s), 0);
}
