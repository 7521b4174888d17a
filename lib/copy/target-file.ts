// The raw file a copy writes into (an image's placeholder, a directory target's disk file): opened
// without creating or truncating it, written with writeback running beside the copy, and the
// errors a user can act on (missing, permission, disk full) told as such. Shared by the range
// copy engine and the VMDK decoder.

import { open, type FileHandle } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import { punchHoles } from './holes.js';

/** Opens `path` for positional writes; it must exist and, when `minSize` is given, be that large. */
export async function openTargetFile(path: string, minSize?: number): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    // r+ : never create or truncate; the placeholder must exist (its size is OpenNebula's).
    fh = await open(path, 'r+');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new OneswapError('not-found', `target image file ${path} does not exist`, { cause: err });
    if (code === 'EACCES' || code === 'EPERM')
      throw new OneswapError('auth', `cannot write the image file ${path}: permission denied`, {
        hint: 'run oneswap as the OpenNebula user (oneadmin) or as root',
        cause: err,
      });
    throw new OneswapError('internal', `cannot open the image file ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (minSize !== undefined) {
    const { size } = await fh.stat();
    if (size < minSize) {
      await fh.close();
      throw new OneswapError('capacity', `the image file ${path} holds ${size} bytes, the disk needs ${minSize}`);
    }
  }
  return fh;
}

/**
 * Makes a target read as zeros again (what an interrupted copy wrote is dropped) and exactly
 * `size` bytes long, the disk's capacity. It is never shorter than `size` on the way, so a process
 * killed in the middle leaves a file an OpenNebula image can still be (a truncate to 0 and back
 * could leave it empty).
 */
export async function clearTargetFile(path: string, size: number): Promise<void> {
  const fh = await openTargetFile(path);
  let allocated: boolean;
  let block: number;
  try {
    const s = await fh.stat();
    if (s.size !== size) await fh.truncate(size);
    allocated = s.blocks > 0;
    block = s.blksize || 4096;
  } finally {
    await fh.close();
  }
  // Up to the end of the last block: a disk that ends inside a block (not a whole MiB) would keep
  // that block allocated, zeroed, if the hole stopped at the file's end.
  if (allocated) await punchHoles(path, [{ start: 0, length: Math.ceil(size / block) * block }]);
}

/** A failed write or sync of the target as the user should read it. */
export function targetWriteError(err: unknown, path: string): OneswapError {
  if (err instanceof OneswapError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT')
    return new OneswapError('capacity', `the file system holding ${path} is full`, {
      hint: 'free space in the image datastore, then run the same command again to resume',
      cause: err,
    });
  return new OneswapError('internal', `writing ${path} failed: ${(err as Error).message}`, { cause: err });
}

/**
 * Writeback beside the copy: after every `everyBytes` written a background fdatasync starts (one
 * at a time), so the disk works while the source is read and the final sync is short. An error
 * is kept for the end, since the kernel reports a writeback error to one fsync only.
 */
export class Writeback {
  private unsynced = 0;
  private running: Promise<void> | undefined;
  private error: unknown;

  constructor(
    private readonly fh: FileHandle,
    private readonly everyBytes: number,
  ) {}

  /** Counts bytes written; starts a background sync when enough have piled up. */
  wrote(bytes: number): void {
    this.unsynced += bytes;
    if (this.everyBytes <= 0 || this.unsynced < this.everyBytes || this.running !== undefined) return;
    this.unsynced = 0;
    this.running = this.fh
      .datasync()
      .catch((err: unknown) => {
        this.error ??= err;
      })
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Everything written is on stable storage, or the first writeback error is thrown. */
  async finish(path: string): Promise<void> {
    try {
      await this.running;
      if (this.error !== undefined) throw this.error;
      await this.fh.datasync();
    } catch (err) {
      throw targetWriteError(err, path);
    }
  }

  /** Waits for a background sync still running (before the file is closed), whatever happened. */
  async settle(): Promise<void> {
    await this.running;
  }
}
