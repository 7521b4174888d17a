// qemu-nbd serving one image (a qcow2 file, an RBD image) for writing, on a Unix socket in a
// private 0700 directory, with the NBD connections oneswap writes through. qemu does the image
// format and the storage's protocol; we only speak NBD to it.
//
// qemu-nbd ends with us, whatever happens to us:
// - not --persistent: it exits by itself once the last of our connections is gone, which the
//   kernel sees to when our process dies, even by SIGKILL;
// - before the first connection is accepted (qemu opens the image only after it listens, which
//   takes a while with Ceph) that does not hold, so it runs under `setpriv --pdeathsig SIGTERM`:
//   the kernel signals it when we die. No --fork: a forked server would lose that signal and not
//   be ours to wait for;
// - its own session (detached): a Ctrl-C at the terminal reaches only us, and we close it after
//   the writes in flight are over, instead of it dying under them.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError } from '../errors/index.js';
import type { QemuImage } from '../convert/index.js';
import { NbdClient, NbdError } from '../nbd/index.js';
import { shellQuote, unreachable } from './bridge-host.js';

/** What qemu-nbd opens, and how. */
export interface QemuNbdImage {
  /** A file name, or a `json:{…}` pseudo-file name whose options name the driver (then no format). */
  readonly filename: string;
  readonly format?: 'raw' | 'qcow2';
  /** How qemu caches the image: see `startQemuNbd`'s callers for the measured choice. */
  readonly cache: 'none' | 'writeback';
  /** --aio for file-backed images (none for network drivers, which have their own threads). */
  readonly aio?: 'threads' | 'native' | 'io_uring';
}

export interface QemuNbdOptions {
  /** NBD connections to open (qemu-nbd's --shared); the copy engine runs about four streams. */
  readonly connections: number;
  /**
   * A BRIDGE_LIST host to run qemu-nbd on (`ssh <host>`, as OpenNebula's drivers reach it): its
   * socket is forwarded to ours over that one ssh connection, so the image never leaves the
   * bridge host but through the NBD requests.
   */
  readonly host?: string;
  /**
   * Clients besides ours that may connect while ours are open (qemu opening the image as an
   * overlay's backing, then qemu-img committing into it): qemu-nbd refuses more than --shared.
   */
  readonly otherClients?: number;
  /**
   * A directory on the bridge host that the image's opening needs (an RBD access's private conf)
   * and that is removed there should the ssh session end without `stop()`: oneswap gone.
   */
  readonly removeOnExit?: string;
  /** Gives up waiting for qemu-nbd to open the image (Ceph has its own, shorter timeouts). */
  readonly startTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** A running qemu-nbd and our connections to it. */
export interface QemuNbd {
  readonly pid: number;
  /** The Unix socket qemu-nbd serves on here (forwarded from the bridge host's, if any). */
  readonly socket: string;
  readonly connections: readonly NbdClient[];
  /** What qemu-nbd said on stderr (its last lines), for explaining a failure. */
  stderr(): string;
  /** Whether qemu-nbd has exited, and how. */
  readonly exit: { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined;
  /**
   * Disconnects (the writes in flight answered first), waits for qemu-nbd to flush, close the
   * image and exit, removes the socket directory. After `graceMs` (default 30 s) qemu-nbd is
   * terminated, killed `graceMs` later: closing an RBD image on a full pool waits for Ceph's
   * timeouts, and a caller whose writes already failed gives it less time.
   */
  stop(graceMs?: number): Promise<void>;
}

/**
 * How qemu opens what the server exports: the guest's raw bytes whatever the image's format, so
 * it can be a conversion overlay's backing file while qemu-nbd serves it.
 */
export function exportImage(server: QemuNbd): QemuImage {
  // The URI form: a json: name of the nbd driver alone is taken as the raw format's file and refused.
  return { filename: `nbd+unix:///?socket=${server.socket}`, format: 'raw' };
}

/** Why qemu-nbd could not serve the image: its error line (without the echoed image options) and what exited. */
export class QemuNbdStartError extends Error {
  constructor(
    readonly reason: string,
    readonly stderr: string,
  ) {
    super(reason);
    this.name = 'QemuNbdStartError';
  }
}

const DEFAULT_START_TIMEOUT_MS = 180_000;
const STDERR_KEEP = 16 * 1024;

/**
 * The qemu-nbd command line (after `setpriv … --`). Left at their defaults, on purpose: no
 * --persistent (see above), no --fork, --detect-zeroes=off (the engine never sends a zero
 * block, so scanning every write for zeros would only cost CPU). Exported for tests.
 */
export function qemuNbdArgs(image: QemuNbdImage, socket: string, connections: number): string[] {
  return [
    `--socket=${socket}`,
    ...(image.format ? [`--format=${image.format}`] : []),
    `--cache=${image.cache}`,
    ...(image.aio ? [`--aio=${image.aio}`] : []),
    // Zeroing without NO_HOLE may then deallocate (file holes, qcow2 clusters, RBD objects).
    '--discard=unmap',
    `--shared=${connections}`,
    image.filename,
  ];
}

/**
 * Starts qemu-nbd on the image and opens `connections` NBD connections to it. A failure to open
 * the image rejects with a QemuNbdStartError carrying qemu's reason, for the caller to explain in
 * its own terms (a missing qcow2 file, a Ceph pool that does not exist).
 */
export async function startQemuNbd(image: QemuNbdImage, options: QemuNbdOptions): Promise<QemuNbd> {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-qemu-nbd-'));
  const socket = join(dir, 'nbd.sock');
  const count = Math.max(1, options.connections);
  const shared = count + (options.otherClients ?? 0);
  const server = new Server(options.host === undefined ? spawnQemuNbd(image, socket, shared) : spawnRemoteQemuNbd(options.host, image, socket, shared, options.removeOnExit), dir, options.host);
  try {
    if (options.host !== undefined) await server.remoteReady(options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, options.signal);
    const first = await server.firstConnection(socket, options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, options.signal);
    const rest = await Promise.allSettled(Array.from({ length: count - 1 }, () => NbdClient.connect(socket, { signal: options.signal })));
    server.connections.push(first, ...rest.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])));
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return server;
  } catch (err) {
    await server.stop();
    throw err;
  }
}

/** Starts qemu-nbd as described at the top: in its own session, signalled when we die. Exported for tests. */
export function spawnQemuNbd(image: QemuNbdImage, socket: string, connections: number): ChildProcess {
  return spawn('setpriv', ['--pdeathsig', 'SIGTERM', '--', 'qemu-nbd', ...qemuNbdArgs(image, socket, connections)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
}

/**
 * qemu-nbd on a bridge host: one ssh connection runs it (in a private directory there) and
 * forwards its socket to ours. Its stdin is our lifeline: when oneswap dies, ssh dies with it
 * (pdeathsig), the remote side reads the end of its stdin and stops qemu-nbd. It prints `ready`
 * once qemu-nbd listens, so our first connection reaches qemu-nbd and not an empty forward.
 * `removeOnExit` is removed there too unless stop() said `keep` first (the directory outlives this
 * server: its owner removes it); the lifeline's reader writes nowhere, so the session ends with
 * qemu-nbd and a failure to open the image is seen at once.
 */
export function spawnRemoteQemuNbd(host: string, image: QemuNbdImage, socket: string, connections: number, removeOnExit?: string): ChildProcess {
  const remoteDir = `/tmp/oneswap-nbd-${randomBytes(8).toString('hex')}`;
  const remoteSocket = `${remoteDir}/nbd.sock`;
  const args = qemuNbdArgs(image, remoteSocket, connections).map(shellQuote).join(' ');
  const script = [
    `d=${shellQuote(remoteDir)}`,
    'umask 077',
    'mkdir "$d" || exit 1',
    'trap \'rm -rf "$d"\' EXIT',
    `qemu-nbd ${args} </dev/null &`,
    'p=$!',
    'while [ ! -S "$d/nbd.sock" ] && kill -0 $p 2>/dev/null; do sleep 0.05; done',
    'kill -0 $p 2>/dev/null && echo ready',
    // An asynchronous list reads /dev/null unless told otherwise: our stdin, kept on fd 3.
    'exec 3<&0',
    `x=${shellQuote(removeOnExit ?? '')}`,
    '( read -r w <&3; cat <&3 >/dev/null; kill $p 2>/dev/null; [ "$w" = keep ] || [ -z "$x" ] || rm -rf -- "$x" ) >/dev/null 2>&1 &',
    'wait $p',
  ].join('\n');
  return spawn(
    'setpriv',
    [
      '--pdeathsig', 'SIGTERM', '--',
      'ssh', '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes', '-o', 'StreamLocalBindUnlink=yes', '-o', 'StreamLocalBindMask=0177',
      '-L', `${socket}:${remoteSocket}`, host, `sh -c ${shellQuote(script)}`,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'], detached: true },
  );
}

class Server implements QemuNbd {
  readonly connections: NbdClient[] = [];
  readonly socket: string;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private log = '';
  private spawnError: Error | undefined;
  private readonly exited: Promise<void>;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    /** The bridge host qemu-nbd runs on through `child` (ssh), or undefined: here. */
    private readonly host?: string,
  ) {
    this.socket = join(dir, 'nbd.sock');
    // A bridge session's stdin is written to and closed at stop(); ssh may be gone by then.
    child.stdin?.on('error', () => undefined);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.log = (this.log + d).slice(-STDERR_KEEP);
    });
    this.exited = new Promise((resolve) => {
      child.once('error', (err) => {
        this.spawnError = err;
        resolve();
      });
      child.once('close', (code, signal) => {
        this.exit = { code, signal };
        resolve();
      });
    });
  }

  /** Waits for the remote side's `ready`: qemu-nbd listens on the bridge host. */
  async remoteReady(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const out = this.child.stdout!.setEncoding('utf8');
    let seen = '';
    const ready = new Promise<boolean>((resolve) => {
      const onData = (d: string): void => {
        seen += d;
        if (/^ready$/m.test(seen)) {
          out.off('data', onData);
          resolve(true);
        }
      };
      out.on('data', onData);
      void this.exited.then(() => resolve(false));
    });
    // Cancelled once decided: a pending sleep would keep oneswap alive for the whole timeout.
    const decided = new AbortController();
    const timer = sleep(timeoutMs, false, { signal: signal ? AbortSignal.any([signal, decided.signal]) : decided.signal }).catch(() => false);
    const listening = await Promise.race([ready, timer]);
    decided.abort();
    if (listening) return;
    signal?.throwIfAborted();
    if (this.spawnError) throw missingTool(this.spawnError);
    if (this.exit) throw this.startError();
    throw new QemuNbdStartError(`qemu-nbd on ${this.host} did not listen within ${Math.round(timeoutMs / 1000)} s`, this.log);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  stderr(): string {
    return this.log;
  }

  /**
   * Connects as soon as qemu-nbd listens. A probe connection would count as a client and end a
   * non-persistent qemu-nbd when it closes, so the first real connection is the probe: it waits
   * in the listen queue while qemu opens the image and is served (or dropped) after.
   */
  async firstConnection(socket: string, timeoutMs: number, signal?: AbortSignal): Promise<NbdClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      if (this.spawnError) throw missingTool(this.spawnError);
      if (this.exit) throw this.startError();
      if (Date.now() > deadline) throw new QemuNbdStartError(`qemu-nbd did not open the image within ${Math.round(timeoutMs / 1000)} s`, this.log);
      try {
        const remaining = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
        return await NbdClient.connect(socket, { signal: signal ? AbortSignal.any([signal, remaining]) : remaining });
      } catch (err) {
        signal?.throwIfAborted();
        const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
        // Not listening yet (no socket, or between bind and listen): try again shortly.
        if (code !== 'ENOENT' && code !== 'ECONNREFUSED') {
          // Dropped during the handshake: qemu-nbd failed to open the image and is exiting.
          await Promise.race([this.exited, sleep(2000)]);
          if (this.exit || this.spawnError) continue;
          throw err instanceof NbdError ? new QemuNbdStartError(err.message, this.log) : err;
        }
      }
      await sleep(20, undefined, { signal });
    }
  }

  stop(graceMs = 30_000): Promise<void> {
    this.stopping ??= (async () => {
      // Stopped by us: what the remote side would remove for a vanished oneswap stays (see spawnRemoteQemuNbd).
      if (this.host !== undefined && !this.exit) this.child.stdin?.write('keep\n');
      await Promise.allSettled(this.connections.map((c) => c.close()));
      if (!this.exit && !this.spawnError) {
        // The last connection closed: qemu-nbd flushes, closes the image and exits on its own.
        // Told to, should a connection never have been made. On a bridge host the end of the
        // remote side's stdin tells it (a signal to ssh would cut qemu-nbd's flush short).
        const grace = this.connections.length > 0 ? graceMs : 0;
        if (this.host !== undefined) this.child.stdin?.end();
        const term = setTimeout(() => this.child.kill('SIGTERM'), grace);
        const kill = setTimeout(() => this.child.kill('SIGKILL'), grace + graceMs);
        await this.exited;
        clearTimeout(term);
        clearTimeout(kill);
      }
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.stopping;
  }

  private startError(): QemuNbdStartError | OneswapError {
    if (this.host !== undefined) {
      if (/qemu-nbd: (command )?not found|qemu-nbd: No such file/.test(this.log))
        return new OneswapError('usage', `qemu-nbd is not installed on the bridge host ${this.host}`, { hint: `install it there: ./install.sh --bridge on ${this.host} (Debian packages qemu-utils, qemu-block-extra)` });
      if (this.exit?.code === 255 && !/^qemu-nbd: /m.test(this.log)) return unreachable(this.host, this.log);
    }
    if (/^setpriv: failed to execute qemu-nbd/m.test(this.log))
      return new OneswapError('usage', 'qemu-nbd is not installed', { hint: 'install the Debian package qemu-utils (./install.sh does)' });
    const how = this.exit?.signal ? `killed by ${this.exit.signal}` : `exit code ${this.exit?.code}`;
    return new QemuNbdStartError(qemuNbdReason(this.log) ?? `qemu-nbd exited (${how}) without saying why`, this.log);
  }
}

/**
 * qemu-nbd's reason from its stderr: "qemu-nbd: Failed to blk_new_open '<options>': <reason>"
 * becomes "<reason>" (the options are ours and may be long), other "qemu-nbd: …" lines stay whole.
 * Library lines before it (Ceph's log lines) are left out: they may quote a malformed key.
 */
export function qemuNbdReason(stderr: string): string | undefined {
  const lines = stderr.split('\n').filter((l) => l.startsWith('qemu-nbd: '));
  const last = lines.at(-1);
  if (last === undefined) return undefined;
  const open = /^qemu-nbd: Failed to blk_new_open '.*': (.+)$/.exec(last);
  return (open ? open[1]! : last.slice('qemu-nbd: '.length)).trim();
}

function missingTool(err: Error): OneswapError {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT')
    return new OneswapError('usage', 'setpriv is not installed (it keeps qemu-nbd from outliving oneswap)', { hint: 'install the Debian package util-linux' });
  return new OneswapError('internal', `cannot run qemu-nbd: ${err.message}`, { cause: err });
}
