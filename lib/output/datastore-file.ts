// A new, empty image file in a file datastore, for the datastore driver's `cp`: named and placed as
// the stock fs driver's cp places its copies (BASE_PATH/<md5 of "epoch:id">, directly under
// BASE_PATH, which is all its rm removes), raw and sparse or qcow2 as the datastore keeps its
// images, of the disk's exact (virtual) size. Made here, or on the BRIDGE_LIST host that works on
// the image when the datastore's files live there (the stock cp streams into STAGING_DIR there and
// moves the file into BASE_PATH; oneswap writes in place, so the file is made where it stays).

import { createHash } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import { imageFileName, createQcow2File } from './qcow2-target.js';
import { lastLine, onBridge, shellQuote } from './bridge-host.js';

export interface NewImageFile {
  readonly path: string;
  /** Removes the file (a failed copy); nothing else. */
  remove(): Promise<void>;
}

export interface ImageFileSpec {
  readonly basePath: string;
  readonly imageId: number;
  readonly capacity: number;
  readonly format: 'raw' | 'qcow2';
  /** The BRIDGE_LIST host that holds the datastore's files; undefined: this host. */
  readonly host?: string | undefined;
}

export async function createImageFile(spec: ImageFileSpec, signal?: AbortSignal): Promise<NewImageFile> {
  // Kept as text: BASE_PATH carries oned's "//", and fs's rm compares SOURCE's dirname with it.
  const base = spec.basePath.replace(/\/+$/, '');
  const path = `${base}/${createHash('md5').update(`${Math.floor(Date.now() / 1000)}:${spec.imageId}`).digest('hex')}`;
  const { host, capacity, format } = spec;
  const remove = host === undefined ? (): Promise<void> => rm(path, { force: true }) : (): Promise<void> => removeOnBridge(host, path);
  if (host === undefined) await createHere(base, path, capacity, format);
  else await createOnBridge(host, base, path, capacity, format, signal);
  try {
    // qemu-img's defaults, as the stock cp's `qemu-img convert -O qcow2` leaves an image.
    if (format === 'qcow2')
      await createQcow2File(path, capacity, signal, (r) => new OneswapError('internal', `cannot create the qcow2 image ${imageFileName(path, host)}: ${r}`), host);
  } catch (err) {
    await remove().catch(() => undefined);
    throw err;
  }
  return { path, remove };
}

async function createHere(base: string, path: string, capacity: number, format: 'raw' | 'qcow2'): Promise<void> {
  await mkdir(base, { recursive: true });
  // 'wx' claims the name: an image file that is already there is never overwritten or removed.
  const fh = await open(path, 'wx', 0o644);
  try {
    if (format === 'raw') await fh.truncate(capacity);
  } catch (err) {
    await fh.close();
    await rm(path, { force: true });
    throw err;
  }
  await fh.close();
}

/** The same on the bridge host: noclobber claims the name as 'wx' does here. */
async function createOnBridge(host: string, base: string, path: string, capacity: number, format: 'raw' | 'qcow2', signal?: AbortSignal): Promise<void> {
  const script = [
    `b=${shellQuote(base)}`,
    `f=${shellQuote(path)}`,
    'mkdir -p "$b" || exit 4',
    'umask 022',
    '(set -C; : > "$f") 2>/dev/null || { [ -e "$f" ] && exit 5; exit 4; }',
    ...(format === 'raw' ? [`truncate -s ${capacity} "$f" || { rm -f "$f"; exit 6; }`] : []),
  ].join('\n');
  const r = await onBridge(host, script, { signal, timeoutMs: 60_000 });
  const name = imageFileName(path, host);
  if (r.code === 4) throw new OneswapError('usage', `cannot create ${name}: ${base} is not writable by this user on the bridge host ${host}`, { hint: 'reach the bridge hosts as the OpenNebula user (oneadmin), as its drivers do' });
  if (r.code === 5) throw new OneswapError('conflict', `cannot create ${name}: a file of that name is already there`, { hint: 'run the same command again (the name comes from the time)' });
  if (r.code !== 0) throw new OneswapError('remote', `cannot create ${name}: ${lastLine(r.stderr) || `exit ${r.code}`}`);
}

async function removeOnBridge(host: string, path: string): Promise<void> {
  const r = await onBridge(host, `rm -f ${shellQuote(path)}`, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new OneswapError('remote', `cannot remove ${imageFileName(path, host)}: ${lastLine(r.stderr) || `exit ${r.code}`}`);
}
