// Test harness for a BRIDGE_LIST host (README.md): a private OpenSSH sshd on 127.0.0.1 that lets a
// dedicated system user log in by key only, and a directory with `ssh`/`scp` wrappers that map host
// aliases (bridge1, …) to it, so OpenNebula's stock-style drivers can run `ssh <bridge> bash -s`
// unchanged. Every session is recorded (alias, command, the script of `bash -s`) for assertions.

import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { reapOnExit } from '../../support/reap-on-exit.js';

/** Debian packages this peer needs (`install.sh --dev` installs openssh-server). */
export const BRIDGE_PACKAGES = ['openssh-server', 'openssh-client'] as const;
/** The system user the drivers log in as on the bridge (created by startBridge when missing). */
export const BRIDGE_USER = 'oneswap-bridge';
/** Its home: sshd changes into it at login and says so on stderr when it is missing. */
export const BRIDGE_HOME = '/var/lib/oneswap-bridge';

const SSHD = '/usr/sbin/sshd';
const SSH = '/usr/bin/ssh';
const SCP = '/usr/bin/scp';
const SFTP_SERVER = '/usr/lib/openssh/sftp-server';
// sshd refuses to start without its privilege separation directory (compiled-in path).
const PRIVSEP_DIR = '/run/sshd';

export interface BridgeOptions {
  /** Host aliases that reach this sshd (default ['bridge1']); the first is `hostName`. */
  hosts?: string[];
  /**
   * Aliases mapped to a loopback port nobody listens on: `ssh <alias>` fails at once with
   * "Connection refused", like a bridge host that is down.
   */
  refusedHosts?: string[];
  /**
   * Aliases that reach this sshd with a key it does not accept: `ssh <alias>` fails with
   * "Permission denied (publickey)", like a bridge host oneadmin's key was never copied to.
   */
  deniedHosts?: string[];
  /**
   * Aliases that reach this sshd where sessions find no qemu-nbd or qemu-img on PATH, like a
   * bridge host where `install.sh --bridge` was never run.
   */
  bareHosts?: string[];
  /** Time allowed for sshd to accept a first login (default 15 s). */
  timeoutMs?: number;
}

export interface BridgeSession {
  /** The alias the client used (from the wrapper's SetEnv), '' if unknown. */
  host: string;
  /** SSH_ORIGINAL_COMMAND, e.g. `bash -s` or `dd of=/var/tmp/… bs=64k conv=sparse`. */
  command: string;
  /** What a `bash -s` session read on stdin (the remote script); undefined for other commands. */
  script?: string;
}

export interface Bridge {
  /** The first alias, e.g. 'bridge1': what goes into BRIDGE_LIST. */
  hostName: string;
  hosts: string[];
  refusedHosts: string[];
  address: '127.0.0.1';
  port: number;
  /** The login user on the bridge (BRIDGE_USER) and its ids. */
  user: string;
  uid: number;
  gid: number;
  /** The peer's private directory (removed by stop()). */
  dir: string;
  /** Directory with the `ssh` and `scp` wrappers: put it first in PATH (see env()). */
  pathDir: string;
  /** The generated client configuration the wrappers pass with -F. */
  sshConfig: string;
  /** A directory owned by the bridge user (mode 0700): STAGING_DIR for the drivers. */
  stagingDir: string;
  /** sshd's log file (LogLevel VERBOSE: logins, session starts, disconnects). */
  sshdLog: string;
  /** `base` (default process.env) with pathDir first in PATH. */
  env(base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** Every session so far, oldest first. */
  sessions(): Promise<BridgeSession[]>;
  /**
   * Lets the bridge user reach `path`: every ancestor becomes traversable by others (o+x, no
   * listing), and `path` gets the bridge user's group with r-x ('r') or rwx ('rw'). Undone by stop()
   * where the path still exists.
   */
  grant(path: string, access: 'r' | 'rw'): Promise<void>;
  /** Writes `content` to `<dir>/files/<name>`, owned by the bridge user, mode 0600; returns the path. */
  giveFile(name: string, content: string | Buffer): Promise<string>;
  /** Runs `ssh <host> <command>` through the wrapper (stdin from `input`). */
  ssh(host: string, command: string, input?: string | Buffer): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** SIGTERM sshd (SIGKILL after 5 s), undo grant(), remove dir. */
  stop(): Promise<void>;
}

function missingTools(): string[] {
  const missing = [SSHD, SSH, SCP, '/usr/bin/ssh-keygen'].filter((p) => spawnSync('test', ['-x', p]).status !== 0);
  if (spawnSync('sh', ['-c', 'command -v useradd'], { stdio: 'ignore' }).status !== 0) missing.push('useradd');
  return missing;
}

/**
 * For `describe(name, { skip })`: false when sshd and the OpenSSH client are installed and the
 * tests run as root (sshd must switch to the bridge user); otherwise the reason, printed loudly. In CI
 * (CI=true) or with ONESWAP_REQUIRE_PEERS=1 it throws instead.
 */
export function bridgeSkip(): string | false {
  const missing = missingTools();
  let reason: string | undefined;
  if (missing.length > 0) {
    reason = `the bridge peer needs ${missing.join(', ')} (apt-get install -y --no-install-recommends ${BRIDGE_PACKAGES.join(' ')}, or ./install.sh --dev)`;
  } else if (process.getuid?.() !== 0) {
    reason = 'the bridge peer runs its own sshd, which must run as root to log in as another user';
  }
  if (reason === undefined) return false;
  if (process.env.CI === 'true' || process.env.ONESWAP_REQUIRE_PEERS === '1') throw new Error(`${reason}; CI requires it`);
  process.stderr.write(`\n*** SKIPPED: ${reason} ***\n\n`);
  return reason;
}

function run(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.killed ? 'timed out' : `exit code ${String(err.code)}`}\n${stderr.trim()}`));
      else resolvePromise(stdout);
    });
  });
}

/**
 * Creates the bridge user when missing: a system user with its own group, a home (sshd changes into
 * it), bash as shell (the drivers run `bash -s`), and the password field `*` — no password can ever
 * match it, yet OpenSSH does not treat the account as locked (a `!` would refuse key logins too).
 */
export async function ensureBridgeUser(name = BRIDGE_USER): Promise<{ uid: number; gid: number }> {
  const ids = (): { uid: number; gid: number } | undefined => {
    const u = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
    return u.status === 0 && g.status === 0 ? { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) } : undefined;
  };
  const found = ids();
  if (found) return found;
  await run('useradd', ['--system', '--user-group', '--create-home', '--home-dir', BRIDGE_HOME, '--shell', '/bin/bash', '--comment', 'oneswap test bridge host (test/peers/bridge)', name]);
  await run('usermod', ['-p', '*', name]);
  const made = ids();
  if (!made) throw new Error(`useradd ${name} did not create the user`);
  return made;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolvePromise(port));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolvePromise(true);
    });
    s.once('error', () => resolvePromise(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


const ALIAS = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export async function startBridge(opts: BridgeOptions = {}): Promise<Bridge> {
  const missing = missingTools();
  if (missing.length > 0) throw new Error(`bridge peer: missing ${missing.join(', ')}; install ${BRIDGE_PACKAGES.join(' ')}`);
  const hosts = opts.hosts ?? ['bridge1'];
  const refusedHosts = opts.refusedHosts ?? [];
  const deniedHosts = opts.deniedHosts ?? [];
  const bareHosts = opts.bareHosts ?? [];
  if (hosts.length === 0) throw new Error('bridge peer: at least one host alias');
  for (const h of [...hosts, ...refusedHosts, ...deniedHosts, ...bareHosts]) if (!ALIAS.test(h)) throw new Error(`bridge peer: bad host alias "${h}"`);
  const timeoutMs = opts.timeoutMs ?? 15_000;

  const { uid, gid } = await ensureBridgeUser();
  await mkdir(PRIVSEP_DIR, { recursive: true, mode: 0o755 });

  const dir = await mkdtemp(join(tmpdir(), 'oneswap-bridge-'));
  // sshd reads authorized_keys and runs the session recorder as the bridge user: they must be reachable.
  await chmod(dir, 0o755);
  const binDir = join(dir, 'bin');
  const sessionsDir = join(dir, 'sessions');
  const filesDir = join(dir, 'files');
  const stagingDir = join(dir, 'staging');
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  const clientKey = join(dir, 'client_ed25519_key');
  const deniedKey = join(dir, 'denied_ed25519_key');
  const bareBin = join(dir, 'bare-bin');
  const authorizedKeys = join(dir, 'authorized_keys');
  const sessionCmd = join(dir, 'session');
  const sshdConfig = join(dir, 'sshd_config');
  const sshConfig = join(dir, 'ssh_config');
  const knownHosts = join(dir, 'known_hosts');
  const sshdLog = join(dir, 'sshd.log');
  const pidFile = join(dir, 'sshd.pid');

  let child: ChildProcess | undefined;
  let exited: Promise<void> | undefined;
  const granted: { path: string; mode: number; gid?: number }[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child?.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    // Undo in reverse order, so an ancestor changed twice ends with its first recorded mode.
    for (const g of [...granted].reverse()) {
      try {
        await chmod(g.path, g.mode);
        if (g.gid !== undefined) await chown(g.path, -1, g.gid);
      } catch {
        // the path went away with its owner (e.g. the simulator's data dir): nothing to undo
      }
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await Promise.all([mkdir(binDir), mkdir(sessionsDir), mkdir(filesDir), mkdir(stagingDir)]);
    await chown(sessionsDir, uid, gid);
    await chmod(sessionsDir, 0o700);
    await chown(filesDir, uid, gid);
    await chmod(filesDir, 0o700);
    await chown(stagingDir, uid, gid);
    await chmod(stagingDir, 0o700);

    // Keys are generated straight into files (no secret on a command line); -N '' = no passphrase.
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'oneswap bridge peer host key', '-f', hostKey]);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'oneswap bridge peer client key', '-f', clientKey]);
    if (deniedHosts.length > 0) await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'oneswap bridge peer key nobody accepts', '-f', deniedKey]);
    if (bareHosts.length > 0) {
      // A PATH with every program of /usr/bin and /bin but qemu's.
      await mkdir(bareBin);
      const seen = new Set<string>();
      for (const d of ['/usr/bin', '/bin'])
        for (const f of await readdir(d)) {
          if (seen.has(f) || f.startsWith('qemu-')) continue;
          seen.add(f);
          await symlink(join(d, f), join(bareBin, f));
        }
    }
    await writeFile(authorizedKeys, await readFile(`${clientKey}.pub`, 'utf8'), { mode: 0o644 });

    await writeFile(
      sessionCmd,
      [
        '#!/bin/bash',
        '# ForceCommand of the bridge peer: record the session, then run what the client asked for.',
        `rec="${sessionsDir}/$(date +%s%N).$$"`,
        'printf \'%s\' "${ONESWAP_BRIDGE_HOST:-}" > "$rec.host"',
        'printf \'%s\' "$SSH_ORIGINAL_COMMAND" > "$rec.cmd"',
        ...(bareHosts.length > 0 ? [`case "\${ONESWAP_BRIDGE_HOST:-}" in ${bareHosts.join('|')}) export PATH=${bareBin} ;; esac`] : []),
        'case "$SSH_ORIGINAL_COMMAND" in',
        "'') echo 'bridge peer: no interactive logins' >&2; exit 1 ;;",
        `internal-sftp) exec ${SFTP_SERVER} ;;`,
        // the drivers send their remote script on stdin: keep a copy of it
        "'bash -s') tee \"$rec.stdin\" | /bin/bash -s; exit ${PIPESTATUS[1]} ;;",
        'esac',
        'exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );

    const port = await freePort();
    await writeFile(
      sshdConfig,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `PidFile ${pidFile}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        `AllowUsers ${BRIDGE_USER}`,
        'PermitRootLogin no',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'HostbasedAuthentication no',
        // the keys live in a temp dir owned by root, which StrictModes would reject for another user
        'StrictModes no',
        // PAM would want a full login stack; the account checks that matter are sshd's own
        'UsePAM no',
        'X11Forwarding no',
        // Local forwarding as on a real host (sshd's default allows it): oneswap forwards the bridge's
        // qemu-nbd socket (ssh -L); sshd lets a Unix socket through only when TCP forwarding is on too.
        'AllowTcpForwarding local',
        'AllowAgentForwarding no',
        'AllowStreamLocalForwarding local',
        'PermitTunnel no',
        'PermitUserEnvironment no',
        'PrintMotd no',
        'PrintLastLog no',
        'AcceptEnv ONESWAP_BRIDGE_HOST',
        `ForceCommand ${sessionCmd}`,
        'Subsystem sftp internal-sftp',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    await run(SSHD, ['-t', '-f', sshdConfig]);

    const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub}\n`);

    const refusedPort = refusedHosts.length > 0 ? await freePort() : 0;
    // The key is the host's (ssh takes every IdentityFile of every matching block).
    const block = (alias: string, p: number, key = clientKey): string =>
      [
        `Host ${alias}`,
        '  HostName 127.0.0.1',
        `  Port ${p}`,
        `  SetEnv ONESWAP_BRIDGE_HOST=${alias}`,
        `  IdentityFile ${key}`,
        '',
      ].join('\n');
    await writeFile(
      sshConfig,
      [
        '# Generated by test/peers/bridge: host aliases of the bridge peer.',
        ...hosts.map((h) => block(h, port)),
        ...refusedHosts.map((h) => block(h, refusedPort)),
        ...bareHosts.map((h) => block(h, port)),
        ...deniedHosts.map((h) => block(h, port, deniedKey)),
        'Host *',
        `  User ${BRIDGE_USER}`,
        '  IdentitiesOnly yes',
        `  UserKnownHostsFile ${knownHosts}`,
        '  GlobalKnownHostsFile /dev/null',
        '  StrictHostKeyChecking yes',
        '  BatchMode yes',
        '  ConnectTimeout 10',
        '  ControlMaster no',
        '  ControlPath none',
        // warnings such as "Permanently added" would land in the drivers' stderr, i.e. oned's error texts
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    );
    const wrapper = (real: string): string => `#!/bin/sh\n# bridge peer: the real ${real} with the peer's host aliases, user and key\nexec ${real} -F '${sshConfig}' "$@"\n`;
    await writeFile(join(binDir, 'ssh'), wrapper(SSH), { mode: 0o755 });
    await writeFile(join(binDir, 'scp'), wrapper(SCP), { mode: 0o755 });

    child = spawn(SSHD, ['-D', '-f', sshdConfig, '-E', sshdLog], { stdio: ['ignore', 'ignore', 'pipe'] });
    reapOnExit(child);
    const c = child;
    exited = new Promise<void>((r) => c.once('exit', () => r()));
    let err = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      err = (err + s).slice(-4000);
    });

    const deadline = Date.now() + timeoutMs;
    while (!(await portOpen(port))) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`sshd exited (code ${child.exitCode}): ${err}`);
      if (Date.now() > deadline) throw new Error(`sshd does not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
      await sleep(50);
    }

    const env = (base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv => ({ ...base, PATH: `${binDir}:${base.PATH ?? '/usr/bin:/bin'}` });
    const ssh = (host: string, command: string, input?: string | Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolvePromise) => {
        const p = spawn(join(binDir, 'ssh'), [host, command], { stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
        p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
        p.stdin.on('error', () => undefined);
        p.stdin.end(input ?? '');
        p.on('close', (code) => resolvePromise({ code, stdout, stderr }));
      });

    const first = await ssh(hosts[0] as string, 'id -un');
    if (first.code !== 0 || first.stdout.trim() !== BRIDGE_USER) {
      throw new Error(`ssh ${hosts[0]} as ${BRIDGE_USER} failed (exit ${first.code}): ${first.stderr.trim()}\n${await readFile(sshdLog, 'utf8').catch(() => '')}`);
    }
    // the probe is not a driver's session
    for (const f of await readdir(sessionsDir)) await rm(join(sessionsDir, f), { force: true });

    const sessions = async (): Promise<BridgeSession[]> => {
      const names = (await readdir(sessionsDir)).filter((n) => n.endsWith('.cmd')).sort((a, b) => {
        const ka = a.split('.')[0] ?? '';
        const kb = b.split('.')[0] ?? '';
        return ka.length - kb.length || (ka < kb ? -1 : ka > kb ? 1 : 0);
      });
      const out: BridgeSession[] = [];
      for (const n of names) {
        const base = join(sessionsDir, n.slice(0, -'.cmd'.length));
        const script = await readFile(`${base}.stdin`, 'utf8').catch(() => undefined);
        out.push({
          host: await readFile(`${base}.host`, 'utf8').catch(() => ''),
          command: await readFile(`${base}.cmd`, 'utf8'),
          ...(script !== undefined ? { script } : {}),
        });
      }
      return out;
    };

    const grant = async (target: string, access: 'r' | 'rw'): Promise<void> => {
      const abs = resolve(target);
      for (let d = dirname(abs); d !== dirname(d); d = dirname(d)) {
        const st = await stat(d);
        if ((st.mode & 0o001) === 0) {
          granted.push({ path: d, mode: st.mode & 0o7777 });
          await chmod(d, (st.mode & 0o7777) | 0o001);
        }
      }
      const st = await stat(abs);
      granted.push({ path: abs, mode: st.mode & 0o7777, gid: st.gid });
      await chown(abs, -1, gid);
      const bits = st.isDirectory() ? (access === 'rw' ? 0o070 : 0o050) : access === 'rw' ? 0o060 : 0o040;
      await chmod(abs, (st.mode & 0o7777) | bits);
    };

    const giveFile = async (name: string, content: string | Buffer): Promise<string> => {
      if (!ALIAS.test(name)) throw new Error(`bridge peer: bad file name "${name}"`);
      const p = join(filesDir, name);
      await writeFile(p, content, { mode: 0o600 });
      await chown(p, uid, gid);
      return p;
    };

    return {
      hostName: hosts[0] as string,
      hosts,
      refusedHosts,
      address: '127.0.0.1',
      port,
      user: BRIDGE_USER,
      uid,
      gid,
      dir,
      pathDir: binDir,
      sshConfig,
      stagingDir,
      sshdLog,
      env,
      sessions,
      grant,
      giveFile,
      ssh,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

// Run directly to measure start and stop: `node --import tsx test/peers/bridge/index.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const t0 = Date.now();
  const b = await startBridge({ hosts: ['bridge1', 'bridge2'], refusedHosts: ['bridge-down'] });
  process.stdout.write(`bridge up after ${Date.now() - t0} ms on 127.0.0.1:${b.port} (${b.dir})\n`);
  const r = await b.ssh('bridge2', 'bash -s', 'echo "$(id -un) on $(hostname)"\n');
  process.stdout.write(`bridge2: ${r.stdout.trim()}\n`);
  const down = await b.ssh('bridge-down', 'true');
  process.stdout.write(`bridge-down: exit ${down.code}: ${down.stderr.trim()}\n`);
  process.stdout.write(`${JSON.stringify(await b.sessions())}\n`);
  const t1 = Date.now();
  await b.stop();
  process.stdout.write(`stopped in ${Date.now() - t1} ms\n`);
}
