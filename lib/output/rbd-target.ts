// An RBD image of an OpenNebula Ceph datastore as a copy target: qemu-nbd serves it through
// qemu's rbd driver and the private conf of an RbdAccess (rbd-access.ts), so no credential is on
// a command line. The image ends up exactly the disk's size; zeroed areas are discarded (whole
// objects removed, partial ones zeroed), so `rbd du` shows only the objects holding data.
// Ceph's failures are told as the user must act on them: monitors unreachable, key refused, pool
// or image missing, pool full.

import { OneswapError } from '../errors/index.js';
import type { TargetWriter } from '../copy/index.js';
import { NbdError } from '../nbd/index.js';
import { nbdWriter } from './nbd-target.js';
import { qemuImg } from './qemu-img.js';
import { QemuNbdStartError, qemuNbdReason, startQemuNbd, type QemuNbd } from './qemu-nbd.js';
import { DEFAULT_CEPH_CONF, openRbdAccess, type RbdAccess, type RbdLocation, type RbdTimeouts } from './rbd-access.js';

export interface RbdWriterOptions {
  /** NBD connections (default 4, the copy engine's streams). */
  readonly connections?: number;
  readonly signal?: AbortSignal;
  /** qemu's cache mode, which sets librbd's cache (default: the measured best, `RBD_CACHE`). */
  readonly cache?: 'none' | 'writeback';
}

export interface RbdWriterSpec extends RbdLocation, RbdWriterOptions {
  /** The disk's capacity: the image is made exactly this size. */
  readonly size: number;
  readonly timeouts?: RbdTimeouts;
}

/**
 * librbd without its cache (qemu's cache=none sets rbd_cache=false). With cache=writeback librbd
 * stays writethrough until the first flush (rbd_cache_writethrough_until_flush), and the copy
 * flushes only at its end, so the cache would change little but hold written data back from the
 * write that failed. Measured against the one-node test Ceph (memstore, 1 GiB with 25 % data,
 * 1 MiB writes over 4 connections, three runs each): none 0.91–1.30 s, writeback 0.81–1.00 s,
 * within this machine's noise.
 */
const RBD_CACHE: 'none' | 'writeback' = 'none';

/**
 * An RBD image's size may exceed the disk's by OpenNebula's rounding of SIZE up to whole MiB; it
 * is then cut to the disk's size, as OpenNebula's own import of a raw file leaves it. A larger
 * image is not this disk's placeholder.
 */
const ROUNDING = 1024 * 1024;

/** Opens the RBD image for writing with a private access of its own, removed on close. */
export async function openRbdWriter(spec: RbdWriterSpec): Promise<TargetWriter> {
  const access = await openRbdAccess(spec, spec.timeouts);
  try {
    return await openRbdAccessWriter(access, spec.size, spec, () => access.dispose());
  } catch (err) {
    await access.dispose();
    throw err;
  }
}

/**
 * Opens the RBD image for writing through an access the caller keeps (and disposes of after the
 * writer is closed), e.g. to open the same image as an overlay's backing file afterwards.
 */
export async function openRbdAccessWriter(access: RbdAccess, size: number, options: RbdWriterOptions = {}, afterClose?: () => Promise<void>): Promise<TargetWriter> {
  let server = await serve(access, options);
  const actual = server.connections[0]!.size;
  if (actual !== size) {
    await server.stop();
    if (actual < size) throw new OneswapError('capacity', `the RBD image ${access.location.pool}/${access.location.image} holds ${actual} bytes, the disk needs ${size}`);
    if (actual - size >= ROUNDING)
      throw new OneswapError('conflict', `the RBD image ${access.location.pool}/${access.location.image} holds ${actual} bytes, the disk only ${size}: it is not this disk's placeholder`);
    await qemuImg(['resize', '--shrink', access.qemu.filename, String(size)], {
      signal: options.signal,
      explain: (reason) => new OneswapError('internal', `cannot set the size of ${access.name} to ${size} bytes: ${reason}`),
    });
    server = await serve(access, options);
  }
  return nbdWriter({ server, name: access.name, size, explain: (err, s) => writeError(err, s, access), ...(afterClose ? { afterClose } : {}) });
}

async function serve(access: RbdAccess, options: RbdWriterOptions): Promise<QemuNbd> {
  try {
    // The json: name says the driver (raw over rbd): no format option, nothing probed.
    return await startQemuNbd({ filename: access.qemu.filename, cache: options.cache ?? RBD_CACHE }, { connections: options.connections ?? 4, signal: options.signal });
  } catch (err) {
    throw await openError(err, access);
  }
}

/** qemu's reason for not opening the image, in the datastore's terms. */
async function openError(err: unknown, access: RbdAccess): Promise<unknown> {
  if (!(err instanceof QemuNbdStartError)) return err;
  const { pool, image } = access.location;
  const user = `client.${access.user}`;
  const reason = err.reason;
  const conf = access.location.conf ?? DEFAULT_CEPH_CONF;
  if (/error connecting: (Connection timed out|Timer expired)/.test(reason))
    return new OneswapError('connection', `cannot reach the Ceph monitors named in ${conf} (for ${access.name})`, {
      hint: "check the datastore's CEPH_CONF (mon_host) and that the monitors run and are reachable from this host",
      cause: err,
    });
  if (/error connecting: Permission denied/.test(reason))
    return new OneswapError('auth', `Ceph refused ${user} with the given key (for ${access.name})`, { hint: "check the datastore's CEPH_USER and CEPH_KEY", cause: err });
  if (/error connecting: (No such file or directory|Invalid argument)/.test(reason))
    return new OneswapError('auth', `no usable cephx key for ${user} (for ${access.name})`, {
      hint: "set the datastore's CEPH_KEY to the user's keyring or key file, readable by oneswap",
      cause: err,
    });
  if (/error opening pool .*: No such file or directory/.test(reason))
    return new OneswapError('not-found', `the Ceph pool ${pool} does not exist (for ${access.name})`, { hint: "check the datastore's POOL_NAME", cause: err });
  if (/: (Permission denied|Operation not permitted)/.test(reason))
    return new OneswapError('auth', `${user} may not use the Ceph pool ${pool} (for ${access.name})`, { hint: `give ${user} the caps "profile rbd pool=${pool}"`, cause: err });
  if (/error reading header from .*: No such file or directory/.test(reason))
    return new OneswapError('not-found', `the RBD image ${pool}/${image} does not exist`, { cause: err });
  if (/timed out/i.test(reason)) {
    const full = await poolFull(access);
    if (full) return poolFullError(access, full, err);
    return new OneswapError('connection', `Ceph did not answer while opening ${access.name}: ${reason}`, {
      hint: 'check `ceph health`: the OSDs holding the pool may be down',
      cause: err,
    });
  }
  return new OneswapError('internal', `qemu cannot open ${access.name}: ${reason}`, { cause: err });
}

async function writeError(err: unknown, server: QemuNbd, access: RbdAccess): Promise<OneswapError> {
  if (err instanceof OneswapError) return err;
  const code = err instanceof NbdError ? err.code : undefined;
  if (code === 'ECONNRESET' && server.exit) {
    const why = qemuNbdReason(server.stderr()) ?? `exit ${server.exit.signal ?? server.exit.code}`;
    return new OneswapError('internal', `qemu-nbd serving ${access.name} stopped: ${why}`, { cause: err });
  }
  // A full pool does not fail writes: Ceph holds them until there is room, and librados gives up
  // after its operation timeout, which qemu reports as EINVAL or EIO. Ask Ceph why.
  const full = code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG' ? ((await poolFull(access)) ?? 'full') : await poolFull(access);
  if (full) return poolFullError(access, full, err);
  return new OneswapError('connection', `Ceph did not complete a write to ${access.name}: ${(err as Error).message}`, {
    hint: 'check `ceph health`: the OSDs holding the pool may be down; then run the same command again to resume',
    cause: err,
  });
}

function poolFullError(access: RbdAccess, full: 'full' | 'quota', cause: unknown): OneswapError {
  const pool = access.location.pool;
  return new OneswapError('capacity', full === 'quota' ? `the Ceph pool ${pool} has reached its quota (writing ${access.name})` : `the Ceph pool ${pool} is full (writing ${access.name})`, {
    hint: full === 'quota' ? `raise it (ceph osd pool set-quota ${pool} max_bytes …) or free space, then run the same command again to resume` : 'free space or add OSDs, then run the same command again to resume',
    cause,
  });
}

/** Whether Ceph flags the pool full (its quota, or the OSDs); undefined when not, or unknown. */
async function poolFull(access: RbdAccess): Promise<'full' | 'quota' | undefined> {
  try {
    const { execa } = await import('execa');
    const r = await execa('ceph', ['--conf', access.conf, '--id', access.user, '--connect-timeout', '15', 'osd', 'pool', 'ls', 'detail', '--format', 'json'], {
      reject: false,
      stdin: 'ignore',
      timeout: 30_000,
    });
    if (r.exitCode !== 0) return undefined;
    const pools = JSON.parse(String(r.stdout)) as Array<{ pool_name: string; flags_names?: string }>;
    const flags = (pools.find((p) => p.pool_name === access.location.pool)?.flags_names ?? '').split(',');
    if (flags.includes('full_quota')) return 'quota';
    if (flags.includes('full')) return 'full';
    return undefined;
  } catch {
    return undefined;
  }
}
