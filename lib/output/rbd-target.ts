// An RBD image of an OpenNebula Ceph datastore as a copy target: qemu-nbd serves it through
// qemu's rbd driver and the private conf of an RbdAccess (rbd-access.ts), so no credential is on
// a command line. The image ends up exactly the disk's size; zeroed areas are discarded (whole
// objects removed, partial ones zeroed), so `rbd du` shows only the objects holding data.
// Ceph's failures are told as the user must act on them, naming the datastore: monitors
// unreachable, key refused, pool or image missing, pool full. probeRbdPool asks the same of a pool
// before anything is created in it.
// For a datastore reached from a BRIDGE_LIST host (location.host), all of it runs there: qemu-nbd
// (its socket forwarded here), qemu-img and the `ceph` command, with the same explanations.

import { OneswapError, type ErrorKind } from '../errors/index.js';
import type { TargetWriter } from '../copy/index.js';
import { NbdError } from '../nbd/index.js';
import { nbdWriter } from './nbd-target.js';
import { qemuImg } from './qemu-img.js';
import { QemuNbdStartError, qemuNbdReason, startQemuNbd, type QemuNbd } from './qemu-nbd.js';
import { DEFAULT_CEPH_CONF, openRbdAccess, privateConfDir, type RbdAccess, type RbdLocation, type RbdTimeouts } from './rbd-access.js';
import { onBridge, shellQuote } from './bridge-host.js';

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

/**
 * How long a write may wait before Ceph is asked whether the pool is full: Ceph holds writes to a
 * full pool until there is room (or librados' operation timeout, 120 s), which a write to a healthy
 * pool never comes near.
 */
const STALL_CHECK_MS = 10_000;

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
  let server = await serveRbd(access, options);
  const actual = server.connections[0]!.size;
  if (actual !== size) {
    await server.stop();
    if (actual < size) throw new OneswapError('capacity', inDatastore(access, `the RBD image ${access.location.pool}/${access.location.image} holds ${actual} bytes, the disk needs ${size}`));
    if (actual - size >= ROUNDING)
      throw new OneswapError('conflict', inDatastore(access, `the RBD image ${access.location.pool}/${access.location.image} holds ${actual} bytes, the disk only ${size}: it is not this disk's placeholder`));
    await qemuImg(['resize', '--shrink', access.qemu.filename, String(size)], {
      signal: options.signal,
      ...onHost(access),
      explain: (reason) => new OneswapError('internal', inDatastore(access, `cannot set the size of ${access.name} to ${size} bytes: ${reason}`)),
    });
    server = await serveRbd(access, options);
  }
  return nbdWriter({
    server,
    name: access.name,
    size,
    explain: (err, s) => writeError(err, s, access),
    stalled: { afterMs: STALL_CHECK_MS, check: async () => poolFullError(access, await poolFull(access), `writing ${access.name}`) },
    ...(afterClose ? { afterClose } : {}),
  });
}

/** A name for the probe's image that no RBD image has: qemu opens the pool to look for it. */
const PROBE_IMAGE = 'oneswap-probe-nonexistent';

/**
 * Refuses a pool oneswap cannot write into from here, before anything is created in it: the
 * monitors out of reach, the key refused, the pool missing or not the user's, the pool full (when
 * the `ceph` command is here to ask). qemu opens the pool as it will for the copy, looking for an
 * image that does not exist.
 */
export async function probeRbdPool(location: Omit<RbdLocation, 'image'>, options: { readonly signal?: AbortSignal; readonly timeouts?: RbdTimeouts } = {}): Promise<void> {
  const access = await openRbdAccess({ ...location, image: PROBE_IMAGE }, options.timeouts);
  try {
    const subject = `the Ceph pool ${location.pool}`;
    try {
      await qemuImg(['info', '--output=json', access.qemu.filename], { signal: options.signal, ...onHost(access), explain: (reason) => new QemuOpenError(reason) });
    } catch (err) {
      if (!(err instanceof QemuOpenError)) throw err;
      // Not finding the image is the answer hoped for: the pool is there and readable.
      if (!/error reading header from .*: No such file or directory/.test(err.reason)) throw await openError(err.reason, access, subject, err);
    }
    const full = poolFullError(access, await poolFull(access));
    if (full) throw full;
  } finally {
    await access.dispose();
  }
}

/** qemu's reason for not opening an image, for openError to explain. */
class QemuOpenError extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** The message as the user reads it: the datastore first, when the image belongs to one. */
function inDatastore(access: RbdAccess, message: string): string {
  return access.location.datastore ? `${access.location.datastore}: ${message}` : message;
}

/** Where the access's commands run: its bridge host, or here. */
function onHost(access: RbdAccess): { host?: string } {
  return access.location.host === undefined ? {} : { host: access.location.host };
}

/** The host the access works from, as a hint names it. */
function whereFrom(access: RbdAccess): string {
  return access.location.host === undefined ? 'this host' : `the bridge host ${access.location.host}`;
}

/**
 * qemu-nbd serving the RBD image through the access, where the access reaches the pool (on a
 * bridge host: forwarded here). `otherClients`: qemu's own, when the export is a conversion's
 * backing file.
 */
export async function serveRbd(access: RbdAccess, options: RbdWriterOptions & { readonly otherClients?: number }): Promise<QemuNbd> {
  const host = access.location.host;
  try {
    // The json: name says the driver (raw over rbd): no format option, nothing probed.
    return await startQemuNbd(
      { filename: access.qemu.filename, cache: options.cache ?? RBD_CACHE },
      {
        connections: options.connections ?? 4,
        signal: options.signal,
        ...(options.otherClients ? { otherClients: options.otherClients } : {}),
        ...(host === undefined ? {} : { host, removeOnExit: privateConfDir(access) }),
      },
    );
  } catch (err) {
    throw err instanceof QemuNbdStartError ? await openError(err.reason, access, access.name, err) : err;
  }
}

/** qemu's reason for not opening `subject` (the image, or the pool a probe opened), in the datastore's terms. */
async function openError(reason: string, access: RbdAccess, subject: string, cause: unknown): Promise<OneswapError> {
  const { pool, image, keyfile } = access.location;
  const user = `client.${access.user}`;
  const conf = access.location.conf ?? DEFAULT_CEPH_CONF;
  const error = (kind: ErrorKind, message: string, hint?: string): OneswapError => new OneswapError(kind, inDatastore(access, message), { ...(hint ? { hint } : {}), cause });
  if (/error connecting: (Connection timed out|Timer expired)/.test(reason))
    return error('connection', `cannot reach the Ceph monitors named in ${conf} (for ${subject})`, `check the datastore's CEPH_CONF (mon_host) and that the monitors run and are reachable from ${whereFrom(access)}`);
  if (/error connecting: Permission denied/.test(reason))
    return error(
      'auth',
      `Ceph refused ${user} with the key ${keyfile ? `in ${keyfile}` : `the keyring of ${conf} names`} (for ${subject})`,
      `check the datastore's CEPH_USER and CEPH_KEY: the key must be the one \`ceph auth get ${user}\` shows`,
    );
  if (/error connecting: (No such file or directory|Invalid argument)/.test(reason))
    return error('auth', `no usable cephx key for ${user} (for ${subject})`, `set the datastore's CEPH_KEY to the user's keyring or key file, readable by oneswap on ${whereFrom(access)}`);
  if (/error opening pool .*: No such file or directory/.test(reason))
    return error('not-found', `the Ceph pool ${pool} does not exist`, "check the datastore's POOL_NAME, or create the pool (ceph osd pool create, then rbd pool init)");
  if (/: (Permission denied|Operation not permitted)/.test(reason)) return error('auth', `${user} may not use the Ceph pool ${pool} (for ${subject})`, `give ${user} the caps "profile rbd pool=${pool}"`);
  if (/error reading header from .*: No such file or directory/.test(reason)) return error('not-found', `the RBD image ${pool}/${image} does not exist`);
  if (/timed out/i.test(reason)) {
    const full = poolFullError(access, await poolFull(access), `opening ${subject}`, cause);
    if (full) return full;
    return error('connection', `Ceph did not answer while opening ${subject}: ${reason}`, 'check `ceph health`: the OSDs holding the pool may be down');
  }
  return error('internal', `qemu cannot open ${subject}: ${reason}`);
}

async function writeError(err: unknown, server: QemuNbd, access: RbdAccess): Promise<OneswapError> {
  if (err instanceof OneswapError) return err;
  const code = err instanceof NbdError ? err.code : undefined;
  if (code === 'ECONNRESET' && server.exit) {
    const why = qemuNbdReason(server.stderr()) ?? `exit ${server.exit.signal ?? server.exit.code}`;
    return new OneswapError('internal', inDatastore(access, `qemu-nbd serving ${access.name} stopped: ${why}`), { cause: err });
  }
  // A full pool does not fail writes: Ceph holds them until there is room, and librados gives up
  // after its operation timeout, which qemu reports as EINVAL or EIO. Ask Ceph why.
  const full = code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG' ? ((await poolFull(access)) ?? 'full') : await poolFull(access);
  const fullError = poolFullError(access, full, `writing ${access.name}`, err);
  if (fullError) return fullError;
  return new OneswapError('connection', inDatastore(access, `Ceph did not complete a write to ${access.name}: ${(err as Error).message}`), {
    hint: 'check `ceph health`: the OSDs holding the pool may be down; then run the same command again to resume',
    cause: err,
  });
}

/** The pool full or at its quota, told while `doing` (e.g. "writing rbd one/one-7"); undefined when it is not. */
function poolFullError(access: RbdAccess, full: 'full' | 'quota' | undefined, doing?: string, cause?: unknown): OneswapError | undefined {
  if (full === undefined) return undefined;
  const pool = access.location.pool;
  const message = full === 'quota' ? `the Ceph pool ${pool} has reached its quota` : `the Ceph pool ${pool} is full`;
  return new OneswapError('capacity', inDatastore(access, doing ? `${message} (${doing})` : message), {
    hint: full === 'quota' ? `raise the quota (ceph osd pool set-quota ${pool} max_bytes …) or free space in the pool, then run the same command again` : 'free space or add OSDs, then run the same command again',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Whether Ceph flags the pool full (its quota, or the OSDs); undefined when not, or unknown (no `ceph` command where the access works). */
async function poolFull(access: RbdAccess): Promise<'full' | 'quota' | undefined> {
  try {
    const args = ['--conf', access.conf, '--id', access.user, '--connect-timeout', '15', 'osd', 'pool', 'ls', 'detail', '--format', 'json'];
    const out = await cephCommand(access, args);
    if (out === undefined) return undefined;
    const pools = JSON.parse(out) as Array<{ pool_name: string; flags_names?: string }>;
    const flags = (pools.find((p) => p.pool_name === access.location.pool)?.flags_names ?? '').split(',');
    if (flags.includes('full_quota')) return 'quota';
    if (flags.includes('full')) return 'full';
    return undefined;
  } catch {
    return undefined;
  }
}

/** `ceph <args>`'s output where the access works (here or on its bridge host); undefined when it failed. */
async function cephCommand(access: RbdAccess, args: readonly string[]): Promise<string | undefined> {
  const host = access.location.host;
  if (host !== undefined) {
    const r = await onBridge(host, `exec ceph ${args.map(shellQuote).join(' ')} </dev/null`, { timeoutMs: 30_000 });
    return r.code === 0 ? r.stdout : undefined;
  }
  const { execa } = await import('execa');
  const r = await execa('ceph', args, { reject: false, stdin: 'ignore', timeout: 30_000 });
  return r.exitCode === 0 ? String(r.stdout) : undefined;
}
