// Test harness for the vCenter simulator peer (bin/vcsim-cbt, built by build.sh).
// Starts one simulator per call on 127.0.0.1 with a free port, its own TMPDIR
// (datastores live there) and explicit credentials, and parses its start-up
// lines. See README.md and /work/shared/reference/vsphere-simulator.md.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { reapOnExit } from '../../support/reap-on-exit.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Command to build the simulator, for skip messages. */
export const VCSIM_BUILD_HINT = `sh ${join(here, 'build.sh')} (needs apt packages golang-go golang-github-vmware-govmomi-dev qemu-utils)`;

export interface VcsimOptions {
  /** -cbt-block: CBT block size in bytes (default 65536). */
  cbtBlock?: number;
  /** -cbt-window: largest range one QueryChangedDiskAreas answer covers (default 0 = whole disk). */
  cbtWindow?: number;
  /** -folder-auth: /folder requires the session cookie (default true). */
  folderAuth?: boolean;
  /** -folder-rate: bytes per second one /folder download may send (default unlimited). */
  folderRate?: number;
  /**
   * -folder-lock: /folder refuses GET/HEAD of the disk extents of running or suspended VMs with
   * HTTP 500, as ESXi does (default true; false only while moving off that shortcut).
   */
  folderLock?: boolean;
  /** -lease-timeout, a Go duration: an export lease without HttpNfcLeaseProgress for this long expires (default '5m'). */
  leaseTimeout?: string;
  /** -nfc-rate: bytes per second one /nfc export download may send (default unlimited). */
  nfcRate?: number;
  /** -host-rate: bytes per second all disk reads of one ESXi host share, in fair turns (default unlimited). */
  hostRate?: number;
  /** -delay: SOAP method -> Go duration; the method is processed only after it (a slow vCenter). */
  delay?: Record<string, string>;
  /** Two datastores (-ds 2), LocalDS_1 presented as vSAN (-vsan LocalDS_1); see Vcsim.vsanDatastore. */
  vsan?: boolean;
  /** -ds: number of datastores LocalDS_0, LocalDS_1, … (default 1; with vsan at least 2). */
  datastores?: number;
  /** Defaults to 'user'. */
  username?: string;
  /** Defaults to a random password. */
  password?: string;
  /** -session-idle-timeout, a Go duration such as '2s' (default: never expire). */
  sessionIdleTimeout?: string;
  /** Further simulator flags, e.g. ['-vm', '1']. */
  extraArgs?: string[];
}

export interface Vcsim {
  host: '127.0.0.1';
  port: number;
  /** https://127.0.0.1:<port>/sdk */
  url: string;
  username: string;
  password: string;
  /** SHA-1 thumbprint of the server certificate, upper-case colon-separated hex. */
  thumbprint: string;
  /** SHA-256 thumbprint, same format. */
  thumbprintSha256: string;
  /** The server certificate (PEM); use it as `ca` to verify TLS properly. */
  certPem: string;
  certFile: string;
  /** Datastore name -> local directory holding its files. */
  datastores: Record<string, string>;
  /** Name of the vSAN datastore (with `vsan: true`), else undefined. */
  vsanDatastore?: string;
  pid: number;
  /** The simulator's private TMPDIR (removed by stop()). */
  tmpDir: string;
  /** Everything the simulator wrote to stderr so far (its log). */
  stderr(): string;
  /** SIGTERM (the simulator deletes its datastores), wait for exit, remove tmpDir. */
  stop(): Promise<void>;
}

/**
 * For `describe(name, { skip })`: false when the simulator is built; otherwise the reason, printed
 * loudly so a green run without it is never mistaken for a full run. In CI (CI=true) or with
 * ONESWAP_REQUIRE_PEERS=1 a missing simulator is an error instead.
 */
export function vcsimSkip(): string | false {
  if (vcsimAvailable()) return false;
  const reason = `the vCenter simulator is not built (run ${VCSIM_BUILD_HINT})`;
  if (process.env.CI === 'true' || process.env.ONESWAP_REQUIRE_PEERS === '1') throw new Error(`${reason}; CI requires it`);
  process.stderr.write(`\n*** SKIPPED: ${reason} ***\n\n`);
  return reason;
}

/** Path of the built vcsim-cbt binary, or undefined when it has not been built. */
export function vcsimBinary(): string | undefined {
  const bin = join(here, 'bin', 'vcsim-cbt');
  try {
    accessSync(bin, constants.X_OK);
    return bin;
  } catch {
    return undefined;
  }
}

export function vcsimAvailable(): boolean {
  return vcsimBinary() !== undefined;
}


export async function startVcsim(opts: VcsimOptions = {}): Promise<Vcsim> {
  const bin = vcsimBinary();
  if (bin === undefined) throw new Error(`vcsim-cbt is not built; run ${VCSIM_BUILD_HINT}`);

  const username = opts.username ?? 'user';
  const password = opts.password ?? randomBytes(12).toString('base64url');
  const tmpDir = await mkdtemp(join(tmpdir(), 'oneswap-vcsim-'));
  const certFile = join(tmpDir, 'vcsim.pem');
  const args = ['-l', '127.0.0.1:0', '-cert-out', certFile, '-username', username, '-password', password];
  if (opts.cbtBlock !== undefined) args.push('-cbt-block', String(opts.cbtBlock));
  if (opts.cbtWindow !== undefined) args.push('-cbt-window', String(opts.cbtWindow));
  if (opts.folderAuth !== undefined) args.push(`-folder-auth=${opts.folderAuth}`);
  if (opts.folderRate !== undefined) args.push('-folder-rate', String(opts.folderRate));
  if (opts.folderLock !== undefined) args.push(`-folder-lock=${opts.folderLock}`);
  if (opts.leaseTimeout !== undefined) args.push('-lease-timeout', opts.leaseTimeout);
  if (opts.nfcRate !== undefined) args.push('-nfc-rate', String(opts.nfcRate));
  if (opts.hostRate !== undefined) args.push('-host-rate', String(opts.hostRate));
  const delays = Object.entries(opts.delay ?? {});
  if (delays.length > 0) args.push('-delay', delays.map(([m, d]) => `${m}=${d}`).join(','));
  const datastoreCount = opts.vsan ? Math.max(2, opts.datastores ?? 2) : (opts.datastores ?? 1);
  if (opts.vsan || opts.datastores !== undefined) args.push('-ds', String(datastoreCount));
  if (opts.vsan) args.push('-vsan', 'LocalDS_1');
  if (opts.sessionIdleTimeout !== undefined) args.push('-session-idle-timeout', opts.sessionIdleTimeout);
  args.push(...(opts.extraArgs ?? []));

  const child = spawn(bin, args, { env: { ...process.env, TMPDIR: tmpDir }, stdio: ['ignore', 'pipe', 'pipe'] });
  // Still running when the test process exits: SIGTERM, so it removes its datastore directories.
  reapOnExit(child, 'SIGTERM');
  let log = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    log += s;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const cleanup = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(tmpDir, { recursive: true, force: true });
  };

  try {
    // The simulator writes all start-up lines with one flush. The datastore
    // record stays attached to the stream anyway, so a late line is not lost.
    const datastores: Record<string, string> = {};
    const lines = createInterface({ input: child.stdout });
    const startup = await new Promise<Map<string, string>>((resolve, reject) => {
      const seen = new Map<string, string>();
      const timer = setTimeout(() => reject(new Error(`vcsim-cbt did not start within 30 s\n${log}`)), 30_000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`vcsim-cbt exited during start-up (code ${code}, signal ${signal}):\n${log}`));
      });
      lines.on('line', (line) => {
        const govc = /^export GOVC_URL=(\S+) GOVC_SIM_PID=(\d+)$/.exec(line);
        if (govc) {
          seen.set('GOVC_URL', govc[1] ?? '');
          seen.set('GOVC_SIM_PID', govc[2] ?? '');
          return;
        }
        const eq = line.indexOf('=');
        if (eq < 0) return;
        const key = line.slice(0, eq);
        const value = line.slice(eq + 1);
        if (key.startsWith('VCSIM_DS_')) datastores[key.slice('VCSIM_DS_'.length)] = value;
        else seen.set(key, value);
        const tls = !(seen.get('GOVC_URL') ?? '').startsWith('http:');
        const haveCert = !tls || (seen.has('VCSIM_THUMBPRINT') && seen.has('VCSIM_THUMBPRINT_SHA256'));
        if (seen.has('GOVC_URL') && haveCert && Object.keys(datastores).length >= datastoreCount) {
          clearTimeout(timer);
          resolve(seen);
        }
      });
    });

    const govcUrl = new URL(startup.get('GOVC_URL') ?? '');
    const port = Number(govcUrl.port);
    const certPem = govcUrl.protocol === 'https:' ? await readFile(certFile, 'utf8') : '';
    await waitForPort(port, certPem, 10_000);
    return {
      host: '127.0.0.1',
      port,
      url: `https://127.0.0.1:${port}/sdk`,
      username,
      password,
      thumbprint: startup.get('VCSIM_THUMBPRINT') ?? '',
      thumbprintSha256: startup.get('VCSIM_THUMBPRINT_SHA256') ?? '',
      certPem,
      certFile,
      datastores,
      ...(startup.has('VCSIM_VSAN') ? { vsanDatastore: startup.get('VCSIM_VSAN') } : {}),
      pid: child.pid ?? Number(startup.get('GOVC_SIM_PID')),
      tmpDir,
      stderr: () => log,
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

// Waits until the port completes a TLS handshake with the announced
// certificate (a bare TCP probe would make the server log a handshake error);
// plain TCP with -tls=false.
async function waitForPort(port: number, ca: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = ca ? tlsConnect({ host: '127.0.0.1', port, ca }) : tcpConnect({ host: '127.0.0.1', port });
      sock.once(ca ? 'secureConnect' : 'connect', () => {
        sock.end();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`vcsim-cbt port ${port} does not accept connections`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
