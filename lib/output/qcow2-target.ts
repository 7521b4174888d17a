// A qcow2 image file (a placeholder a qcow2 datastore created, `qemu-img create -f qcow2`) as a
// copy target: written through qemu-nbd, so the file stays a valid qcow2 of the same virtual size
// with clusters allocated only where data was written; zeroed areas become zero clusters with
// their space freed. Also what a caller needs around it: whether the file already holds data, and
// how qemu opens it as a conversion overlay's backing file.
//
// Or written with compressed clusters (an output directory's --compressed): qemu-nbd serves the
// file through qemu's `compress` filter, which compresses every write (zlib; a cluster that does
// not shrink is stored as it is). It takes a cluster only whole and once, and an image only of
// whole clusters: the file is created fresh with its virtual size rounded up to a cluster, written
// through whole-clusters.ts, and cut to the disk's size once qemu-nbd has closed it (the last
// cluster stays compressed; what qemu writes later, the conversion's commit, is stored uncompressed).

import { OneswapError } from '../errors/index.js';
import type { TargetWriter } from '../copy/index.js';
import type { QemuImage } from '../convert/index.js';
import { NbdError } from '../nbd/index.js';
import { nbdWriter } from './nbd-target.js';
import { QemuNbdStartError, qemuNbdReason, startQemuNbd, type QemuNbd, type QemuNbdImage } from './qemu-nbd.js';
import { qemuImg } from './qemu-img.js';
import { wholeClusters } from './whole-clusters.js';

export interface Qcow2WriterOptions {
  /** The BRIDGE_LIST host the file lives on (served there, see qemu-nbd.ts); undefined: this host. */
  readonly host?: string;
  /** NBD connections (default 4, the copy engine's streams). */
  readonly connections?: number;
  readonly signal?: AbortSignal;
  /** qemu's cache and aio modes; the defaults are the measured best (see `QCOW2_IO`). */
  readonly io?: Pick<QemuNbdImage, 'cache' | 'aio'>;
}

/**
 * O_DIRECT with qemu's thread pool. Measured on ext4 (1 GiB, 25 % data, 1 MiB writes over 4
 * connections, six runs each): none+threads 0.57–1.6 s, none+io_uring 0.56–1.4 s, writeback
 * 0.77–2.4 s (the final flush of the page cache varies most), none+native 0.79–1.7 s. Without
 * the page cache the copy does not push the host's other files out of memory for data nobody
 * reads again, and the flush at the end has little left to do.
 */
const QCOW2_IO: Pick<QemuNbdImage, 'cache' | 'aio'> = { cache: 'none', aio: 'threads' };
/** For a file system that refuses O_DIRECT. */
const QCOW2_IO_CACHED: Pick<QemuNbdImage, 'cache' | 'aio'> = { cache: 'writeback', aio: 'threads' };

/** The cluster size of the qcow2 files oneswap creates (qemu's default). */
const QCOW2_CLUSTER = 65536;

/**
 * Opens the qcow2 file `path` for writing a disk of `size` bytes. The file must exist and be a
 * qcow2 image of at least that virtual size; it is not resized.
 */
export function openQcow2Writer(path: string, size: number, options: Qcow2WriterOptions = {}): Promise<TargetWriter> {
  return openImageFileWriter(path, 'qcow2', size, options);
}

/**
 * Opens an image file (raw or qcow2) through qemu-nbd for writing a disk of `size` bytes: how a
 * qcow2 file is written anywhere, and a raw file on a bridge host.
 */
export async function openImageFileWriter(path: string, format: 'raw' | 'qcow2', size: number, options: Qcow2WriterOptions = {}): Promise<TargetWriter> {
  const name = imageFileName(path, options.host);
  const server = await serveImageFile(path, format, { connections: options.connections ?? 4, ...options });
  const virtual = server.connections[0]!.size;
  if (virtual < size) {
    await server.stop();
    throw new OneswapError('capacity', `the ${format} image ${name} has a virtual size of ${virtual} bytes, the disk needs ${size}`);
  }
  return nbdWriter({ server, name, size, explain: (err, s) => writeError(err, s, name) });
}

/** An image file served by qemu-nbd, here or on a bridge host, with the measured I/O modes. */
export async function serveImageFile(
  path: string,
  format: 'raw' | 'qcow2',
  options: Qcow2WriterOptions & {
    readonly connections: number;
    readonly otherClients?: number;
    /** What qemu-nbd opens instead of the plain file (a filter over it); `format` is then the file's. */
    readonly opened?: Pick<QemuNbdImage, 'filename' | 'format'>;
  },
): Promise<QemuNbd> {
  const start = (io: Pick<QemuNbdImage, 'cache' | 'aio'>): Promise<QemuNbd> =>
    startQemuNbd(
      { ...(options.opened ?? { filename: path, format }), ...io },
      { connections: options.connections, signal: options.signal, ...(options.otherClients ? { otherClients: options.otherClients } : {}), ...(options.host ? { host: options.host } : {}) },
    );
  try {
    try {
      return await start(options.io ?? QCOW2_IO);
    } catch (err) {
      // O_DIRECT refused by the file system, or a raw file whose size is not a whole number of its blocks.
      if (options.io || !(err instanceof QemuNbdStartError && /O_DIRECT|request alignment/.test(err.reason))) throw err;
      return await start(QCOW2_IO_CACHED);
    }
  } catch (err) {
    throw openError(err, imageFileName(path, options.host), format);
  }
}

/** The file as the user finds it: its path, on a bridge host `host:path`. */
export function imageFileName(path: string, host: string | undefined): string {
  return host === undefined ? path : `${host}:${path}`;
}

/**
 * Creates the qcow2 file `path` afresh for a disk of `size` bytes and opens it for writing with
 * compressed clusters: whatever the file held is gone (a compressed cluster is written once, so
 * writing starts from an empty image). Closing the writer cuts the file to `size`.
 */
export async function openCompressedQcow2Writer(path: string, size: number, options: Qcow2WriterOptions = {}): Promise<TargetWriter> {
  const padded = Math.ceil(size / QCOW2_CLUSTER) * QCOW2_CLUSTER;
  await createQcow2File(path, padded, options.signal);
  const filter = { driver: 'compress', file: { driver: 'qcow2', file: { driver: 'file', filename: path } } };
  const server = await serveImageFile(path, 'qcow2', { ...options, connections: options.connections ?? 4, opened: { filename: `json:${JSON.stringify(filter)}` } });
  // The filter's request alignment, which qemu-nbd advertises as the minimum block: the cluster.
  const cluster = server.connections[0]!.minBlock;
  if (server.connections[0]!.size !== padded || cluster !== QCOW2_CLUSTER) {
    await server.stop();
    throw new OneswapError('internal', `qemu-nbd serves ${path} as ${server.connections[0]!.size} bytes in blocks of ${cluster}, not the ${padded} bytes in clusters of ${QCOW2_CLUSTER} it was created with`);
  }
  const inner = nbdWriter({
    server,
    name: path,
    size: padded,
    explain: (err, s) => writeError(err, s, path),
    afterClose: async () => {
      if (padded > size) await setQcow2Size(path, size, (r) => new OneswapError('internal', `cannot cut ${path} to the disk's ${size} bytes: ${r}`));
    },
  });
  return wholeClusters(inner, { size, cluster, scatteredHint: 'import without --compressed' });
}

/**
 * Creates the qcow2 file `path` (replacing what is there) with nothing allocated, in 64 KiB
 * clusters (qemu-img's default, which the stock drivers' images have too). `explain`: the error for
 * qemu-img's reason, by default one the user fixes (a directory they named).
 */
export async function createQcow2File(
  path: string,
  virtualSize: number,
  signal?: AbortSignal,
  explain: (reason: string) => unknown = (r) => new OneswapError('usage', `cannot create ${path}: ${r}`),
  host?: string,
): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${QCOW2_CLUSTER}`, path, String(virtualSize)], { signal, explain, ...(host ? { host } : {}) });
}

/** Sets the qcow2 file's virtual size (shrinking drops whole clusters past the new end). */
export async function setQcow2Size(path: string, size: number, explain: (reason: string) => unknown, signal?: AbortSignal, host?: string): Promise<void> {
  await qemuImg(['resize', '-q', '--shrink', '-f', 'qcow2', path, String(size)], { signal, explain, ...(host ? { host } : {}) });
}


/**
 * Bytes of the qcow2 file's virtual disk that hold data (allocated clusters, also a backing
 * file's): 0 for a fresh placeholder. A caller refuses to write into an image that is not empty.
 * Fails when another process has the image open for writing.
 */
export async function qcow2Allocated(path: string, signal?: AbortSignal, host?: string): Promise<number> {
  const out = await qemuImg(['map', '--output=json', '-f', 'qcow2', path], { signal, ...(host ? { host } : {}), explain: (reason) => openError(new QemuNbdStartError(reason, ''), imageFileName(path, host)) });
  const map = JSON.parse(out) as Array<{ length: number; data: boolean }>;
  return map.reduce((sum, e) => (e.data ? sum + e.length : sum), 0);
}

/** How qemu opens the qcow2 file as the backing file of a conversion overlay. */
export function qcow2Image(path: string): QemuImage {
  return { filename: path, format: 'qcow2' };
}

function openError(err: unknown, path: string, format: 'raw' | 'qcow2' = 'qcow2'): unknown {
  if (!(err instanceof QemuNbdStartError)) return err;
  const reason = err.reason;
  if (/No such file or directory/.test(reason)) return new OneswapError('not-found', `target image file ${path} does not exist`, { cause: err });
  if (/Permission denied|Operation not permitted|Read-only file system/.test(reason))
    return new OneswapError('auth', `cannot write the image file ${path}: ${reason.replace(/^.*: /, '')}`, {
      hint: 'run oneswap as the OpenNebula user (oneadmin) or as root',
      cause: err,
    });
  if (/write" lock|another process/.test(reason))
    return new OneswapError('conflict', `the image file ${path} is in use by another process`, { hint: 'stop the VM or program that has it open', cause: err });
  if (/not in qcow2 format/.test(reason)) return new OneswapError('data', `the image file ${path} is not a qcow2 image`, { cause: err });
  return new OneswapError('internal', `qemu cannot open the ${format} image ${path}: ${reason}`, { cause: err });
}

function writeError(err: unknown, server: QemuNbd, path: string): OneswapError {
  if (err instanceof OneswapError) return err;
  const code = err instanceof NbdError ? err.code : undefined;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG')
    return new OneswapError('capacity', `the file system holding ${path} is full`, {
      hint: 'free space in the image datastore, then run the same command again to resume',
      cause: err,
    });
  if (code === 'ECONNRESET' && server.exit) {
    const why = qemuNbdReason(server.stderr()) ?? `exit ${server.exit.signal ?? server.exit.code}`;
    return new OneswapError('internal', `qemu-nbd serving ${path} stopped: ${why}`, { cause: err });
  }
  return new OneswapError('internal', `writing ${path} failed: ${(err as Error).message}`, { cause: err });
}
