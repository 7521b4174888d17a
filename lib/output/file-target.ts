// A raw image file reachable from this host (a file datastore's placeholder, a directory target's
// disk file) as a copy target: positional writes, background writeback beside the copy, holes
// punched where a warm round finds zeros, and the errors a user can act on (missing file,
// permission, disk full) told as such.

import { open, type FileHandle } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import type { Extent } from '../extents/index.js';
import type { TargetWriter } from '../copy/index.js';

/** Background fdatasync after every this many bytes written: the disk works while the network does. */
const WRITEBACK_BYTES = 64 * 1024 * 1024;

/** Opens `path` for positional writes; it must exist and, when `minSize` is given, be that large. */
export async function openFileWriter(path: string, size: number, opts: { readonly writebackBytes?: number } = {}): Promise<TargetWriter> {
  const fh = await openExisting(path);
  try {
    const s = await fh.stat();
    if (s.size < size) throw new OneswapError('capacity', `the image file ${path} holds ${s.size} bytes, the disk needs ${size}`);
  } catch (err) {
    await fh.close();
    throw err;
  }
  return new FileWriter(fh, path, size, opts.writebackBytes ?? WRITEBACK_BYTES);
}

async function openExisting(path: string): Promise<FileHandle> {
  try {
    // r+ : never create or truncate; the placeholder must exist (its size is OpenNebula's).
    return await open(path, 'r+');
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
}

class FileWriter implements TargetWriter {
  private unsynced = 0;
  private syncing: Promise<void> | undefined;
  /** A background sync's error, kept for flush: the kernel reports a writeback error to one fsync only. */
  private syncError: unknown;
  private closed = false;

  constructor(
    private readonly fh: FileHandle,
    readonly name: string,
    readonly size: number,
    private readonly writebackBytes: number,
  ) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await this.fh.write(data, done, data.length - done, position + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw fileWriteError(err, this.name);
    }
    this.wrote(data.length);
  }

  async zero(areas: readonly Extent[]): Promise<void> {
    try {
      await punchHoles(this.name, areas);
    } catch (err) {
      throw fileWriteError(err, this.name);
    }
  }

  async flush(): Promise<void> {
    try {
      await this.syncing;
      if (this.syncError !== undefined) throw this.syncError;
      await this.fh.datasync();
    } catch (err) {
      throw fileWriteError(err, this.name);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.syncing;
    await this.fh.close();
  }

  private wrote(bytes: number): void {
    this.unsynced += bytes;
    if (this.writebackBytes <= 0 || this.unsynced < this.writebackBytes || this.syncing !== undefined) return;
    this.unsynced = 0;
    this.syncing = this.fh
      .datasync()
      .catch((err: unknown) => {
        this.syncError ??= err;
      })
      .finally(() => {
        this.syncing = undefined;
      });
  }
}

/**
 * Makes a raw file read as zeros again (what an interrupted copy wrote is dropped) and exactly
 * `size` bytes long, the disk's capacity. It is never shorter than `size` on the way, so a process
 * killed in the middle leaves a file an OpenNebula image can still be (a truncate to 0 and back
 * could leave it empty).
 */
export async function clearFile(path: string, size: number): Promise<void> {
  const fh = await openExisting(path);
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

/** A failed write or sync of a file as the user should read it. */
export function fileWriteError(err: unknown, path: string): OneswapError {
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
 * Hole punching. Node has no fallocate(2) binding, so this runs util-linux's fallocate(1); it is
 * only needed where a previously written area became zero (warm rounds) or an interrupted copy is
 * started over, never on a fresh placeholder.
 */
async function punchHoles(path: string, holes: readonly Extent[]): Promise<void> {
  if (holes.length === 0) return;
  // Loaded here: execa takes a fifth of oneswap's start-up, and most runs punch nothing.
  const { execa } = await import('execa');
  for (const h of holes) {
    await execa('fallocate', ['--punch-hole', '--keep-size', '--offset', String(h.start), '--length', String(h.length), path]);
  }
}
