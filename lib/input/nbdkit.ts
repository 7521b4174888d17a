// Runs nbdkit for one VMware disk with the vddk plugin (the user's VMware VDDK) or the open nfc
// plugin, serving it read-only on a private Unix socket, and maps what nbdkit says when it cannot
// open the disk to a one-line OneswapError. The parameters are exactly the vddk plugin's
// documented ones (nbdkit-vddk-plugin(1)); the nfc plugin takes the same, without libdir.
//
// The password never appears on a command line (any local user can read argv through ps): it goes
// to a 0600 file in a 0700 directory, given as password=+FILE, and is removed as soon as nbdkit
// listens (nbdkit reads it while parsing its parameters).

import { spawn, type ChildProcess } from 'node:child_process';
import { lstat, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError, type ErrorKind } from '../errors/index.js';
import { formatThumbprint, parseThumbprint } from '../vsphere/thumbprint.js';
import { NbdClient, NbdError } from '../nbd/index.js';

export type NbdkitPlugin = 'vddk' | 'nfc';

/** One disk of a VM as the vddk (or nfc) plugin opens it. */
export interface NbdkitDisk {
  readonly plugin: NbdkitPlugin;
  /** The VDDK distribution directory, holding lib64/ (vddk only). */
  readonly libdir?: string;
  /** vCenter or ESXi host name. */
  readonly server: string;
  /** HTTPS port of the server, when not 443. */
  readonly port?: number;
  readonly user: string;
  readonly password: string;
  /** The server certificate's SHA-1 thumbprint (the form VDDK checks), any common notation. */
  readonly thumbprint: string;
  /** The VM's managed object id, e.g. "vm-42". */
  readonly vm: string;
  /** The disk's descriptor, e.g. "[datastore1] web01/web01.vmdk". */
  readonly file: string;
  /** Read the disk as of this snapshot (managed object id, e.g. "snapshot-7"). */
  readonly snapshot?: string;
  /** VDDK transport modes in order of preference, e.g. ['nbdssl', 'nbd']. */
  readonly transports?: readonly string[];
  readonly compression?: 'none' | 'zlib' | 'fastlz' | 'skipz';
}

export interface NbdkitServer {
  readonly socket: string;
  readonly pid: number;
  /** A new NBD connection to the disk; a refusal becomes a OneswapError naming the disk. */
  connect(signal?: AbortSignal): Promise<NbdClient>;
  /** SIGTERM, wait for the exit, remove the socket directory; safe to call twice. */
  close(): Promise<void>;
}

const NBDKIT = 'nbdkit';
const START_TIMEOUT_MS = 60_000;
const STDERR_KEEP = 64 * 1024;

/** The nbdkit command line for a disk (without the program name). Exported for tests. */
export function nbdkitArgs(disk: NbdkitDisk, socket: string, passwordFile: string): string[] {
  const sha1 = parseThumbprint(disk.thumbprint);
  if (sha1.algorithm !== 'sha1') {
    throw new OneswapError('usage', `nbdkit ${disk.plugin} checks the server by its SHA-1 thumbprint; a ${sha1.algorithm.toUpperCase()} one was given`);
  }
  const args = ['--readonly', '--exit-with-parent', '-f', '--unix', socket, disk.plugin];
  if (disk.plugin === 'vddk') {
    if (!disk.libdir) throw new OneswapError('usage', 'the vddk reader needs the VDDK directory (libdir)');
    args.push(`libdir=${disk.libdir}`);
  }
  args.push(
    `server=${disk.server}`,
    `user=${disk.user}`,
    `password=+${passwordFile}`,
    `thumbprint=${formatThumbprint(sha1.hex)}`,
    `vm=moref=${disk.vm}`,
    `file=${disk.file}`,
  );
  if (disk.snapshot) args.push(`snapshot=${disk.snapshot}`);
  if (disk.transports && disk.transports.length > 0) args.push(`transports=${disk.transports.join(':')}`);
  if (disk.compression) args.push(`compression=${disk.compression}`);
  if (disk.port !== undefined && disk.port !== 443) args.push(`port=${disk.port}`);
  return args;
}

/**
 * Whether nbdkit and the plugin are usable here: `nbdkit vddk libdir=DIR --dump-plugin` (or
 * `nbdkit nfc --dump-plugin`) exits 0. Resolves to undefined when available, else to the reason.
 */
export async function nbdkitPluginMissing(plugin: NbdkitPlugin, libdir?: string): Promise<string | undefined> {
  const args = plugin === 'vddk' ? ['vddk', ...(libdir ? [`libdir=${libdir}`] : []), '--dump-plugin'] : ['nfc', '--dump-plugin'];
  return new Promise((resolve) => {
    let err = '';
    const child = spawn(NBDKIT, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4096)));
    child.once('error', (e: NodeJS.ErrnoException) => {
      resolve(e.code === 'ENOENT' ? 'nbdkit is not installed (no nbdkit in PATH)' : `nbdkit cannot be run: ${e.message}`);
    });
    child.once('close', (code) => {
      if (code === 0) return resolve(undefined);
      const why = errorLines(err)[0] ?? `exit code ${code}`;
      resolve(`nbdkit ${plugin} plugin is not usable${plugin === 'vddk' && libdir ? ` with libdir=${libdir}` : ''}: ${why}`);
    });
  });
}

/** Starts nbdkit for the disk and opens it once, so a wrong password or thumbprint fails here. */
export async function startNbdkit(disk: NbdkitDisk, signal?: AbortSignal): Promise<NbdkitServer> {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-nbdkit-'));
  const socket = join(dir, 'nbd.sock');
  const passwordFile = join(dir, 'password');
  let child: ChildProcess | undefined;
  let server: Server | undefined;
  try {
    await writeFile(passwordFile, disk.password, { mode: 0o600, flag: 'wx' });
    const args = nbdkitArgs(disk, socket, passwordFile);
    child = spawn(NBDKIT, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    server = new Server(disk, dir, socket, passwordFile, child);
    server.spare = await server.firstConnection(signal);
    return server;
  } catch (err) {
    if (server) await server.close();
    else {
      child?.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    }
    throw err;
  }
}

class Server implements NbdkitServer {
  /** The connection the start-up opened, handed to the first connect(). */
  spare: NbdClient | undefined;
  private log = '';
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private spawnError: Error | undefined;
  private readonly exited: Promise<void>;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly disk: NbdkitDisk,
    private readonly dir: string,
    readonly socket: string,
    private readonly passwordFile: string,
    private readonly child: ChildProcess,
  ) {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.log = (this.log + d).slice(-STDERR_KEEP);
    });
    this.exited = new Promise((resolve) => {
      child.once('error', (e) => {
        this.spawnError = e;
        resolve();
      });
      child.once('close', (code, sig) => {
        this.exit = { code, signal: sig };
        resolve();
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /**
   * Connects once nbdkit listens (it exits at start on bad parameters or a missing library), and
   * removes the password file then: nbdkit has read it while parsing its parameters.
   */
  async firstConnection(signal?: AbortSignal): Promise<NbdClient> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      signal?.throwIfAborted();
      if (this.spawnError) {
        const missing = (this.spawnError as NodeJS.ErrnoException).code === 'ENOENT';
        throw new OneswapError('usage', `cannot run nbdkit for disk ${this.disk.file}: ${missing ? 'nbdkit is not installed (no nbdkit in PATH)' : this.spawnError.message}`);
      }
      if (this.exit) throw this.failure(0, `nbdkit exited at start (${this.exit.signal ?? `code ${this.exit.code}`})`);
      if (Date.now() > deadline) throw this.failure(0, `nbdkit did not listen within ${START_TIMEOUT_MS / 1000} s`);
      // Probing with a bare connect would make nbdkit log a broken handshake: try the real thing.
      const listening = await listens(this.socket);
      if (listening) {
        await rm(this.passwordFile, { force: true });
        const conn = await this.connect(signal, true);
        if (conn) return conn;
      }
      await sleep(25, undefined, { signal });
    }
  }

  connect(signal?: AbortSignal): Promise<NbdClient>;
  connect(signal: AbortSignal | undefined, refusedIsUndefined: true): Promise<NbdClient | undefined>;
  async connect(signal?: AbortSignal, refusedIsUndefined = false): Promise<NbdClient | undefined> {
    const spare = this.spare;
    this.spare = undefined;
    if (spare && !spare.broken) return spare;
    if (this.closing) throw new OneswapError('interrupted', `the nbdkit reader of disk ${this.disk.file} is closed`);
    const logMark = this.log.length;
    try {
      return await NbdClient.connect(this.socket, { signal });
    } catch (err) {
      if (signal?.aborted) throw err;
      // Between bind() and listen() nbdkit refuses connections: not yet an answer.
      if (refusedIsUndefined && /^(ECONNREFUSED|ENOENT)$/.test(String(((err as Error).cause as NodeJS.ErrnoException | undefined)?.code))) return undefined;
      // nbdkit logs why the plugin could not open the disk just before it refuses: let it arrive.
      for (let i = 0; i < 20 && errorLines(this.log.slice(logMark)).length === 0 && !this.exit; i++) await sleep(25);
      const fallback = err instanceof NbdError ? err.message : String(err);
      throw this.failure(logMark, this.exit ? `nbdkit exited (${this.exit.signal ?? `code ${this.exit.code}`})` : fallback, err);
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.spare?.close().catch(() => undefined);
      if (!this.exit && !this.spawnError) {
        this.child.kill('SIGTERM');
        const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
        await this.exited;
        clearTimeout(timer);
      }
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.closing;
  }

  /** The error for a failed start or open, from what nbdkit logged since `logMark`. */
  private failure(logMark: number, fallback: string, cause?: unknown): OneswapError {
    const lines = errorLines(this.log.slice(logMark));
    return explainNbdkitFailure(this.disk, lines.length > 0 ? lines : errorLines(this.log), fallback, cause);
  }
}

/** nbdkit's error lines ("nbdkit: vddk[1]: error: …"), without the prefix, duplicates dropped. */
export function errorLines(log: string): string[] {
  const out: string[] = [];
  for (const line of log.split('\n')) {
    const m = /^nbdkit: (?:[\w.-]+(?:\[\d+\])?: )?error: (.*\S)\s*$/.exec(line);
    if (m && !out.includes(m[1]!)) out.push(m[1]!);
  }
  return out;
}

const CAUSES: ReadonlyArray<{ test: RegExp; kind: ErrorKind; say: string; hint?: string }> = [
  {
    test: /libvixDiskLib|VDDK library|cannot open VDDK/i,
    kind: 'usage',
    say: 'the VDDK library cannot be loaded',
    hint: 'give the directory of the unpacked VMware VDDK, the one holding lib64/',
  },
  {
    test: /incorrect user name or password|InvalidLogin|authenticat|not authori[sz]ed|login failed/i,
    kind: 'auth',
    say: 'the server refused the user name or password',
  },
  {
    test: /thumbprint|SSL|TLS|certificate/i,
    kind: 'connection',
    say: "the server's certificate does not match the thumbprint",
    hint: 'make sure this is the right server, then give its current SHA-1 thumbprint',
  },
  {
    test: /FileLocked|locked|in use/i,
    kind: 'conflict',
    say: 'the disk is in use',
    hint: "a running VM's disks are read from a snapshot",
  },
  {
    test: /ManagedObjectNotFound|FileNotFound|not found|cannot find|does not exist|No such file/i,
    kind: 'not-found',
    say: 'the VM, snapshot or disk does not exist',
  },
  {
    test: /unknown parameter|parameter .* is required|invalid|could not parse/i,
    kind: 'usage',
    say: 'nbdkit refused its parameters',
  },
];

/** Maps nbdkit's error lines to one OneswapError naming the disk. Exported for tests. */
export function explainNbdkitFailure(disk: NbdkitDisk, lines: readonly string[], fallback: string, cause?: unknown): OneswapError {
  const what = `nbdkit ${disk.plugin} could not open disk ${disk.file} of VM ${disk.vm}${disk.snapshot ? ` (snapshot ${disk.snapshot})` : ''} on ${disk.server}`;
  // The line that explains the failure best: the first one a known cause matches.
  for (const c of CAUSES) {
    const line = lines.find((l) => c.test.test(l));
    if (line) return new OneswapError(c.kind, `${what}: ${c.say}: ${line}`, { cause, ...(c.hint ? { hint: c.hint } : {}) });
  }
  return new OneswapError('connection', `${what}: ${lines[0] ?? fallback}`, { cause });
}

/**
 * True once nbdkit listens on the socket. nbdkit creates the socket file with bind() and listens
 * right after; the file is enough (a connect-and-drop probe would be logged as an error), and a
 * connect that comes in between is refused and retried by the caller's next look.
 */
async function listens(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSocket();
  } catch {
    return false;
  }
}
