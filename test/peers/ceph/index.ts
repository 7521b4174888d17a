// Test harness for a one-node Ceph cluster (README.md): one monitor on free loopback ports, one
// OSD on memstore (data in RAM), cephx on, pool `one` (size 1, `rbd pool init`), everything in its
// own temporary directory, the daemons as foreground child processes of the test process.
// Recipe: /work/shared/reference/toolchain.md "A one-node Ceph for tests".

import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { reapOnExit } from '../../support/reap-on-exit.js';

/** Debian packages this peer needs (installed by `install.sh --dev`). */
export const CEPH_PACKAGES = ['ceph-mon', 'ceph-osd', 'ceph-common'] as const;
const CEPH_TOOLS = ['ceph-mon', 'ceph-osd', 'ceph', 'rbd', 'monmaptool', 'ceph-authtool'] as const;

export interface CephOptions {
  /** memstore's capacity in bytes (RAM, used as written; default 1 GiB). */
  memstoreBytes?: number;
  /** Time allowed to reach HEALTH_OK with a usable pool (default 90 s). */
  timeoutMs?: number;
  /** Pool name (default 'one', OpenNebula's default POOL_NAME). */
  pool?: string;
  /**
   * Also run a manager (`ceph-mgr`, package ceph-mgr): needed for `ceph df`/`rados df` statistics
   * (OpenNebula's datastore monitor), not for rbd or qemu. Adds a few seconds and ~300 MB RSS.
   */
  mgr?: boolean;
}

export interface Ceph {
  /** Path of the cluster's ceph.conf (`--conf`, `CEPH_CONF`, qemu's `conf=`). */
  conf: string;
  /** client.admin keyring path (mode 0600); ceph.conf's [client] section names it too. */
  keyring: string;
  /** The cephx user without `client.` (`--id`, qemu's `id=`, OpenNebula's CEPH_USER). */
  user: 'admin';
  /** The monitor's v1 address, `127.0.0.1:PORT` (e.g. libguestfs `rbd://admin@HOST:PORT/…`). */
  monHost: string;
  /** The monitor's msgr2 address, `127.0.0.1:PORT`. */
  monHostV2: string;
  fsid: string;
  pool: string;
  /** The cluster's private directory (removed by stop()). */
  dir: string;
  /** Milliseconds from startCeph() to HEALTH_OK with the pool initialised. */
  startMs: number;
  /** pids of the daemons (mgr only with `mgr: true`). */
  pids: { mon: number; osd: number; mgr?: number };
  /** `base` plus CEPH_CONF and CEPH_ARGS (`--id admin --keyring …`) for child processes. */
  env(base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** Runs `rbd --conf … --id admin <args>`; resolves with stdout, rejects with stderr in the message. */
  rbd(args: readonly string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** Runs `ceph --conf … --id admin <args>` the same way. */
  ceph(args: readonly string[], opts?: { timeoutMs?: number }): Promise<string>;
  /** client.admin's bare key (base64), as a CEPH_KEY file holds it. */
  adminKey(): Promise<string>;
  /**
   * A client's ceph.conf: the cluster (fsid, monitors) and no paths, for a host or user that
   * keeps its key elsewhere (CEPH_KEY). `monHost` replaces the monitors (e.g. one nobody answers on).
   */
  clientConf(o?: { monHost?: string; extra?: readonly string[] }): string;
  /** Size and sha256 of an RBD image's bytes (`rbd export … -`, streamed). */
  imageSha(spec: string): Promise<{ size: number; sha256: string }>;
  /** The last lines of each daemon's log file, for error messages. */
  logTail(lines?: number): Promise<string>;
  /** SIGTERM the daemons (SIGKILL after 10 s), wait for them to exit, remove dir. */
  stop(): Promise<void>;
}

/** The Ceph tools this peer runs that are not in PATH (empty when all are). */
export function cephMissingTools(opts: { mgr?: boolean } = {}): string[] {
  return [...CEPH_TOOLS, ...(opts.mgr ? ['ceph-mgr'] : [])].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' }).status !== 0);
}

/**
 * For `describe(name, { skip })`: false when the Ceph packages are installed; otherwise the reason,
 * printed loudly so a green run without them is never mistaken for a full run. In CI (CI=true) or
 * with ONESWAP_REQUIRE_PEERS=1 missing packages are an error instead.
 */
export function cephSkip(opts: { mgr?: boolean } = {}): string | false {
  const missing = cephMissingTools(opts);
  if (missing.length === 0) return false;
  const pkgs = [...CEPH_PACKAGES, ...(opts.mgr ? ['ceph-mgr'] : [])].join(' ');
  const reason = `a one-node Ceph needs ${missing.join(', ')} (apt-get install -y --no-install-recommends ${pkgs}, or ./install.sh --dev)`;
  if (process.env.CI === 'true' || process.env.ONESWAP_REQUIRE_PEERS === '1') throw new Error(`${reason}; CI requires it`);
  process.stderr.write(`\n*** SKIPPED: ${reason} ***\n\n`);
  return reason;
}


async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: readonly string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20, killSignal: 'SIGKILL', ...(env ? { env } : {}) }, (err, stdout, stderr) => {
      if (err) {
        const why = err.killed ? `timed out after ${timeoutMs} ms` : `exit code ${String(err.code)}`;
        reject(new Error(`${cmd} ${args.join(' ')}: ${why}\n${stderr.trim()}`));
      } else resolve(stdout);
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `rbd <args>` that write an image to stdout; its size and sha256. */
function exportSha(args: readonly string[]): Promise<{ size: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('rbd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let size = 0;
    let err = '';
    child.stdout.on('data', (b: Buffer) => {
      size += b.length;
      hash.update(b);
    });
    child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve({ size, sha256: hash.digest('hex') }) : reject(new Error(`rbd ${args.join(' ')}: exit code ${code}\n${err.trim()}`))));
  });
}

export async function startCeph(opts: CephOptions = {}): Promise<Ceph> {
  const missing = cephMissingTools(opts);
  if (missing.length > 0) throw new Error(`Ceph tools missing: ${missing.join(', ')}; install ${CEPH_PACKAGES.join(' ')}${opts.mgr ? ' ceph-mgr' : ''}`);
  const t0 = Date.now();
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const deadline = t0 + timeoutMs;
  const pool = opts.pool ?? 'one';
  const memstoreBytes = opts.memstoreBytes ?? 1 << 30;

  const dir = await mkdtemp(join(tmpdir(), 'oneswap-ceph-'));
  const conf = join(dir, 'ceph.conf');
  const keyring = join(dir, 'ceph.client.admin.keyring');
  const monKeyring = join(dir, 'mon.keyring');
  const monmap = join(dir, 'monmap');
  const monData = join(dir, 'mon', 'ceph-a');
  const osdData = join(dir, 'osd', 'ceph-0');
  const mgrData = join(dir, 'mgr', 'ceph-x');
  const runDir = join(dir, 'run');
  const logDir = join(dir, 'log');
  const fsid = randomUUID();
  const osdUuid = randomUUID();
  const [v2, v1] = [await freePort(), await freePort()];
  const monAddrs = `[v2:127.0.0.1:${v2},v1:127.0.0.1:${v1}]`;

  const children: ChildProcess[] = [];
  const exits = new Map<ChildProcess, Promise<void>>();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // OSD first (it reports to the monitor on the way down), then the monitor.
    for (const child of [...children].reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exits.get(child);
        clearTimeout(timer);
      }
    }
    await rm(dir, { recursive: true, force: true });
  };

  const logTail = async (lines = 20): Promise<string> => {
    const parts: string[] = [];
    for (const name of ['ceph-mon.a', 'ceph-osd.0', ...(opts.mgr ? ['ceph-mgr.x'] : [])]) {
      const text = await readFile(join(logDir, `${name}.log`), 'utf8').catch(() => '');
      parts.push(`--- ${name}.log (last ${lines} lines) ---\n${text.trimEnd().split('\n').slice(-lines).join('\n')}`);
    }
    return parts.join('\n');
  };

  const cephArgs = ['--conf', conf, '--id', 'admin'];
  const left = (cap: number): number => Math.max(1_000, Math.min(cap, deadline - Date.now()));
  const cephCmd = (args: readonly string[], o?: { timeoutMs?: number }): Promise<string> =>
    run('ceph', [...cephArgs, '--connect-timeout', '30', ...args], o?.timeoutMs ?? 60_000);
  const rbd = (args: readonly string[], o?: { timeoutMs?: number }): Promise<string> =>
    run('rbd', [...cephArgs, ...args], o?.timeoutMs ?? 120_000);

  const daemon = (cmd: string, args: readonly string[], name: string): ChildProcess => {
    const child = spawn(cmd, ['--conf', conf, '-f', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    reapOnExit(child);
    children.push(child);
    exits.set(child, new Promise<void>((resolve) => child.once('exit', () => resolve())));
    let err = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      err = (err + s).slice(-4000);
    });
    child.once('exit', (code, signal) => {
      if (!stopped) process.stderr.write(`ceph peer: ${name} exited early (code ${code}, signal ${signal})\n${err}`);
    });
    return child;
  };

  try {
    await Promise.all([mkdir(monData, { recursive: true }), mkdir(osdData, { recursive: true }), mkdir(mgrData, { recursive: true }), mkdir(runDir), mkdir(logDir)]);
    await writeFile(
      conf,
      [
        '[global]',
        `fsid = ${fsid}`,
        'mon initial members = a',
        `mon host = ${monAddrs}`,
        'public network = 127.0.0.1/32',
        'auth cluster required = cephx',
        'auth service required = cephx',
        'auth client required = cephx',
        // HEALTH_OK: no AUTH_INSECURE_GLOBAL_ID_RECLAIM_ALLOWED warning.
        'auth allow insecure global id reclaim = false',
        // One OSD: pools of size 1, allowed, not warned about, placed across OSDs not hosts.
        'osd pool default size = 1',
        'osd pool default min size = 1',
        'mon allow pool size one = true',
        'mon warn on pool no redundancy = false',
        'osd crush chooseleaf type = 0',
        // A well-used test disk must not raise MON_DISK_LOW (warn) or stop the monitor (crit).
        'mon data avail warn = 2',
        'mon data avail crit = 1',
        // No manager runs (rbd and qemu do not need one): no MGR_DOWN warning for a day.
        'mon mgr mkfs grace = 86400',
        `run dir = ${runDir}`,
        `admin socket = ${runDir}/$cluster-$name.asok`,
        `pid file = ${runDir}/$cluster-$name.pid`,
        `log file = ${logDir}/$cluster-$name.log`,
        `mon cluster log file = ${logDir}/$cluster.log`,
        `mon data = ${join(dir, 'mon')}/$cluster-$id`,
        `osd data = ${join(dir, 'osd')}/$cluster-$id`,
        `mgr data = ${join(dir, 'mgr')}/$cluster-$id`,
        // The manager's optional modules: none (restful wants a certificate, nfs a cluster).
        'mgr initial modules = iostat',
        // With a manager the autoscaler would resize pool `one` (and warn on the way).
        'osd pool default pg autoscale mode = off',
        'osd objectstore = memstore',
        `memstore device bytes = ${memstoreBytes}`,
        // No journald/syslog; the log files above are enough.
        'log to stderr = false',
        'err to stderr = true',
        '',
        '[client]',
        `keyring = ${keyring}`,
        '',
      ].join('\n'),
    );

    await run('ceph-authtool', ['--create-keyring', monKeyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], 10_000);
    await run(
      'ceph-authtool',
      ['--create-keyring', keyring, '--gen-key', '-n', 'client.admin', '--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow *', '--cap', 'mds', 'allow *'],
      10_000,
    );
    await chmod(keyring, 0o600);
    await run('ceph-authtool', [monKeyring, '--import-keyring', keyring], 10_000);
    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', monAddrs, monmap], 10_000);
    await run('ceph-mon', ['--conf', conf, '--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', monKeyring], 30_000);
    const mon = daemon('ceph-mon', ['-i', 'a'], 'ceph-mon.a');

    // The OSD's key is made here and registered with `osd new` (which gives it the osd profile
    // caps), so `ceph-osd --mkfs` can already authenticate to fetch the monitor's config.
    const osdSecret = (await run('ceph-authtool', ['--gen-print-key'], 10_000)).trim();
    await writeFile(join(osdData, 'keyring'), `[osd.0]\n\tkey = ${osdSecret}\n`, { mode: 0o600 });
    const osdJson = join(dir, 'osd-new.json');
    await writeFile(osdJson, JSON.stringify({ cephx_secret: osdSecret }), { mode: 0o600 });
    const osdId = (await cephCmd(['osd', 'new', osdUuid, '-i', osdJson], { timeoutMs: left(60_000) })).trim();
    await rm(osdJson);
    if (osdId !== '0') throw new Error(`ceph osd new gave id ${osdId}, expected 0`);
    await run('ceph-osd', ['--conf', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid], 60_000);
    const osd = daemon('ceph-osd', ['-i', '0'], 'ceph-osd.0');

    let mgr: ChildProcess | undefined;
    if (opts.mgr) {
      await cephCmd(['auth', 'get-or-create', 'mgr.x', 'mon', 'allow profile mgr', 'osd', 'allow *', 'mds', 'allow *', '-o', join(mgrData, 'keyring')], {
        timeoutMs: left(30_000),
      });
      mgr = daemon('ceph-mgr', ['-i', 'x'], 'ceph-mgr.x');
    }

    await cephCmd(['osd', 'pool', 'create', pool, '8', '8'], { timeoutMs: left(60_000) });
    // rbd pool init writes to the pool: it returns once the OSD is up and the PGs are active.
    await run('rbd', [...cephArgs, 'pool', 'init', pool], left(120_000));

    let health = '';
    for (;;) {
      health = (await cephCmd(['health'], { timeoutMs: left(30_000) }).catch((e: Error) => e.message)).trim();
      if (health.startsWith('HEALTH_OK')) break;
      if (Date.now() > deadline) throw new Error(`ceph health is not HEALTH_OK within ${timeoutMs} ms: ${health}`);
      if (children.some((c) => c.exitCode !== null || c.signalCode !== null)) throw new Error(`a Ceph daemon exited; ceph health: ${health}`);
      await sleep(250);
    }
    // With a manager: until `ceph df` knows the pool's capacity (what a datastore monitor reads).
    while (opts.mgr) {
      const df = JSON.parse(await cephCmd(['df', '--format', 'json'], { timeoutMs: left(30_000) })) as { pools?: { name: string; stats: { max_avail: number } }[] };
      if ((df.pools ?? []).some((p) => p.name === pool && p.stats.max_avail > 0)) break;
      if (Date.now() > deadline) throw new Error(`ceph df shows no capacity for pool ${pool} within ${timeoutMs} ms: ${JSON.stringify(df)}`);
      await sleep(250);
    }

    const startMs = Date.now() - t0;
    return {
      conf,
      keyring,
      user: 'admin',
      monHost: `127.0.0.1:${v1}`,
      monHostV2: `127.0.0.1:${v2}`,
      fsid,
      pool,
      dir,
      startMs,
      pids: { mon: mon.pid ?? 0, osd: osd.pid ?? 0, ...(mgr ? { mgr: mgr.pid ?? 0 } : {}) },
      env: (base = process.env) => ({ ...base, CEPH_CONF: conf, CEPH_ARGS: `--id admin --keyring ${keyring}` }),
      rbd,
      ceph: cephCmd,
      adminKey: async () => {
        const key = /key\s*=\s*(\S+)/.exec(await readFile(keyring, 'utf8'))?.[1];
        if (!key) throw new Error(`no key in ${keyring}`);
        return key;
      },
      clientConf: (o = {}) => ['[global]', `fsid = ${fsid}`, `mon host = ${o.monHost ?? monAddrs}`, ...(o.extra ?? []), ''].join('\n'),
      imageSha: (spec) => exportSha([...cephArgs, 'export', spec, '-']),
      logTail,
      stop,
    };
  } catch (err) {
    const tail = await logTail();
    await stop();
    throw new Error(`one-node Ceph did not start: ${(err as Error).message}\n${tail}`);
  }
}

/** True while a process with this pid exists. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Run directly to measure start and stop: `node --import tsx test/peers/ceph/index.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const c = await startCeph({ mgr: process.argv.includes('--mgr') });
  process.stdout.write(`HEALTH_OK after ${c.startMs} ms; conf ${c.conf}; mon ${c.monHost}\n`);
  const t = Date.now();
  await c.stop();
  process.stdout.write(`stopped in ${Date.now() - t} ms\n`);
}
