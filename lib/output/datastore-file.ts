// A new, empty image file in a file datastore, for the datastore driver's `cp`: named and placed as
// the stock fs driver's cp places its copies (BASE_PATH/<md5 of "epoch:id">, directly under
// BASE_PATH, which is all its rm removes), raw and sparse or qcow2 as the datastore keeps its
// images, of the disk's exact (virtual) size.

import { createHash } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import { createQcow2File } from './qcow2-target.js';

export interface NewImageFile {
  readonly path: string;
  /** Removes the file (a failed copy); nothing else. */
  remove(): Promise<void>;
}

export async function createImageFile(basePath: string, imageId: number, capacity: number, format: 'raw' | 'qcow2', signal?: AbortSignal): Promise<NewImageFile> {
  // Kept as text: BASE_PATH carries oned's "//", and fs's rm compares SOURCE's dirname with it.
  const base = basePath.replace(/\/+$/, '');
  await mkdir(base, { recursive: true });
  const path = `${base}/${createHash('md5').update(`${Math.floor(Date.now() / 1000)}:${imageId}`).digest('hex')}`;
  // 'wx' claims the name: an image file that is already there is never overwritten or removed.
  const fh = await open(path, 'wx', 0o644);
  const remove = (): Promise<void> => rm(path, { force: true });
  try {
    try {
      if (format === 'raw') await fh.truncate(capacity);
    } finally {
      await fh.close();
    }
    // qemu-img's defaults, as the stock cp's `qemu-img convert -O qcow2` leaves an image.
    if (format === 'qcow2') await createQcow2File(path, capacity, signal, (r) => new OneswapError('internal', `cannot create the qcow2 image ${path}: ${r}`));
  } catch (err) {
    await remove();
    throw err;
  }
  return { path, remove };
}
