/**
 * The simulator core: configuration, pools, authentication, authorization,
 * pool filters and the DS driver payloads. Method handlers live in the
 * per-object modules (images.ts, datastores.ts, ...).
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { DriverRunner } from './driver-runner.js';
import { ErrorCode, OBJECT_TYPE_STR, ObjectKind, RequestError } from './errors.js';
import { Owned, Pools, UserRec } from './state.js';
import { Template } from './template-syntax.js';

export interface SimConfig {
  version: string;
  /** DATASTORE_LOCATION, emitted as written (real oned: `/var/lib/one//datastores` style) */
  datastoreLocation: string;
  dataDir: string;
  varDir: string;
  /** the simulator's own remotes tree (`<varDir>/remotes`, see remotes-tree.ts) */
  remotesDir: string;
  /** delay before asynchronous driver actions (cp, mkfs, rm); oned 7.4 ≈ 1 s */
  asyncDelayMs: number;
  statTimeoutMs: number;
  apiListOrder: 'ASC' | 'DESC';
  defaultImagePersistentNew: boolean;
  /** DS_MAD_CONF entries by driver name (oned.conf) */
  dsMadConf: Record<string, Record<string, string>>;
  /** MARKET_MAD_CONF entries by driver name (oned.conf); their names form the MAD's `-m` list */
  marketMadConf: Record<string, Record<string, string>>;
  /**
   * MarketPlaceManager's timer: the first cycle this long after start (oned: the first MANAGER_TIMER
   * tick, 15 s), then one every `marketMonitorIntervalMs` (MONITORING_INTERVAL_MARKET, 600 s)
   */
  marketMonitorFirstCycleMs: number;
  marketMonitorIntervalMs: number;
  /** MONITORING_INTERVAL_DATASTORE: every datastore monitored this often (oned 300 s) */
  datastoreMonitorIntervalMs: number;
  /**
   * Variables added to the drivers' plain environment (a PATH here replaces the inherited one);
   * e.g. the bridge peer's PATH so that `ssh <bridge>` reaches it.
   */
  driverEnv: Record<string, string>;
  /** Directories put before PATH for the drivers: the simulator's own CLI stand-ins (`onehost`). */
  driverPathDirs: string[];
}

export interface CallContext {
  method: string;
  uid: number;
  gid: number;
  groups: number[];
  uname: string;
  gname: string;
  isAdmin: boolean;
}

export type AuthOp = 'USE' | 'MANAGE' | 'ADMIN';

/** oned.conf TM_MAD_CONF (7.x defaults for the drivers the simulator knows). */
export const TM_MAD_CONF: Record<string, Record<string, string>> = {
  local: { LN_TARGET: 'SYSTEM', CLONE_TARGET: 'SYSTEM', SHARED: 'NO', DS_MIGRATE: 'YES', ALLOW_ORPHANS: 'YES' },
  ssh: { LN_TARGET: 'SYSTEM', CLONE_TARGET: 'SYSTEM', SHARED: 'NO', DS_MIGRATE: 'YES', ALLOW_ORPHANS: 'YES' },
  shared: { LN_TARGET: 'NONE', CLONE_TARGET: 'SYSTEM', SHARED: 'YES', DS_MIGRATE: 'YES', ALLOW_ORPHANS: 'MIXED' },
  qcow2: { LN_TARGET: 'NONE', CLONE_TARGET: 'SYSTEM', SHARED: 'YES', DS_MIGRATE: 'YES', DRIVER: 'qcow2', ALLOW_ORPHANS: 'YES' },
  // What a real 7.4.0 put into a new Ceph datastore (reference §5.8): TM_MAD_SYSTEM only "ssh" and
  // PERSISTENT_SNAPSHOTS, unlike the 6.x entry ("ssh,shared" and the *_SHARED targets).
  ceph: {
    LN_TARGET: 'NONE', CLONE_TARGET: 'SELF', SHARED: 'YES', DS_MIGRATE: 'NO', DRIVER: 'raw', ALLOW_ORPHANS: 'mixed',
    TM_MAD_SYSTEM: 'ssh', LN_TARGET_SSH: 'SYSTEM', CLONE_TARGET_SSH: 'SYSTEM', DISK_TYPE_SSH: 'FILE', PERSISTENT_SNAPSHOTS: 'YES',
  },
};

/**
 * oned.conf MARKET_MAD_CONF defaults of a 7.x install (best recollection of share/etc/oned.conf;
 * each simulator gets its own copy in config.marketMadConf).
 */
export const MARKET_MAD_CONF: Record<string, Record<string, string>> = {
  one: { SUNSTONE_NAME: 'OpenNebula.org Marketplace', REQUIRED_ATTRS: '', APP_ACTIONS: 'monitor', PUBLIC: 'yes' },
  http: { SUNSTONE_NAME: 'OpenNebula HTTP server', REQUIRED_ATTRS: 'BASE_URL,PUBLIC_DIR', APP_ACTIONS: 'create, delete, monitor' },
  s3: { SUNSTONE_NAME: 'Amazon S3', REQUIRED_ATTRS: 'ACCESS_KEY_ID,SECRET_ACCESS_KEY,REGION,BUCKET', APP_ACTIONS: 'create, delete, monitor' },
  linuxcontainers: { SUNSTONE_NAME: 'LinuxContainers.org community', REQUIRED_ATTRS: '', APP_ACTIONS: 'monitor', PUBLIC: 'yes' },
};

/** oned.conf DS_MAD_CONF defaults (each simulator gets its own copy in config.dsMadConf) */
export const DS_MAD_CONF: Record<string, Record<string, string>> = {
  dummy: { REQUIRED_ATTRS: '', PERSISTENT_ONLY: 'NO' },
  fs: { REQUIRED_ATTRS: '', PERSISTENT_ONLY: 'NO', MARKETPLACE_ACTIONS: 'export' },
  ceph: { REQUIRED_ATTRS: 'DISK_TYPE,BRIDGE_LIST', PERSISTENT_ONLY: 'NO', MARKETPLACE_ACTIONS: 'export' },
};

/** `onehost list` STAT values of the states the stock drivers drop from BRIDGE_LIST. */
export type HostStat = 'on' | 'off' | 'err' | 'dsbl' | 'init' | 'update' | 'retry';

export const IMAGE_RESTRICTED_ATTR = ['SOURCE'];
export const VM_RESTRICTED_ATTR = [
  'CONTEXT/FILES', 'NIC/MAC', 'NIC/VLAN_ID', 'NIC/BRIDGE', 'NIC/FILTER', 'NIC/FILTER_IP_SPOOFING', 'NIC/FILTER_MAC_SPOOFING',
  'NIC/INBOUND_AVG_BW', 'NIC/INBOUND_PEAK_BW', 'NIC/INBOUND_PEAK_KB', 'NIC/OUTBOUND_AVG_BW', 'NIC/OUTBOUND_PEAK_BW', 'NIC/OUTBOUND_PEAK_KB',
  'NIC_ALIAS/MAC', 'NIC_ALIAS/VLAN_ID', 'NIC_ALIAS/BRIDGE', 'NIC_DEFAULT/MAC', 'NIC_DEFAULT/VLAN_ID', 'NIC_DEFAULT/BRIDGE', 'NIC_DEFAULT/FILTER',
  'DISK/TOTAL_BYTES_SEC', 'DISK/READ_BYTES_SEC', 'DISK/WRITE_BYTES_SEC', 'DISK/TOTAL_IOPS_SEC', 'DISK/READ_IOPS_SEC', 'DISK/WRITE_IOPS_SEC',
  'DISK/ORIGINAL_SIZE', 'DISK/SIZE_PREV', 'CPU_COST', 'MEMORY_COST', 'DISK_COST', 'PCI', 'EMULATOR', 'RAW/DATA', 'USER_PRIORITY',
  'DEPLOY_ID', 'DEPLOY_FOLDER',
];

/** Template::check_restricted: the first restricted attribute present, e.g. `NIC/MAC`. */
export function findRestricted(t: Template, list: string[]): string | undefined {
  for (const r of list) {
    const [a, b] = r.split('/') as [string, string | undefined];
    if (b === undefined) {
      if (t.has(a)) return r;
    } else if (t.vectors(a).some((v) => v.has(b))) return r;
  }
  return undefined;
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export class Sim {
  readonly pools = new Pools();
  readonly runner: DriverRunner;
  statCounter = 0;
  private timers = new Set<NodeJS.Timeout>();
  private pending = new Set<Promise<unknown>>();
  private intervals = new Set<NodeJS.Timeout>();
  /** per-market chain so monitor cycles of one market never overlap */
  readonly marketChains = new Map<number, Promise<unknown>>();
  /** HOST pool stand-in: name → STAT as `onehost list` shows it (what the BRIDGE_LIST filter reads) */
  readonly hosts = new Map<string, HostStat>();
  stopped = false;

  constructor(readonly config: SimConfig) {
    this.runner = new DriverRunner({
      remotesDir: config.remotesDir,
      varDir: config.varDir,
      env: config.driverEnv,
      pathDirs: config.driverPathDirs,
    });
  }

  // ------------------------------------------------------------ async work

  /** Runs `fn` after the configured driver delay; tracked so stop()/idle() can wait. */
  later(fn: () => Promise<void>, delayMs = this.config.asyncDelayMs): void {
    if (this.stopped) return;
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    this.pending.add(done);
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn()
        .catch((e: unknown) => this.runner.onedLog.push(`[SIM] async error: ${String(e)}`))
        .finally(() => {
          this.pending.delete(done);
          resolveDone();
        });
    }, delayMs);
    this.timers.add(t);
  }

  /** Runs `fn` every `periodMs` (unref'd: does not keep the process alive); each run is tracked like later(). */
  every(periodMs: number, fn: () => Promise<void>): void {
    const t = setInterval(() => this.later(fn, 0), periodMs);
    t.unref();
    this.intervals.add(t);
  }

  /**
   * Runs `fn` after `firstMs`, then every `periodMs`. Unlike later(), idle() does not wait for a
   * run that has not started: a cycle minutes away is not pending work.
   */
  cycle(firstMs: number, periodMs: number, fn: () => Promise<void>): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.intervals.delete(t);
      if (this.stopped) return;
      this.later(fn, 0);
      this.every(periodMs, fn);
    }, firstMs);
    t.unref();
    this.intervals.add(t);
  }

  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    await this.runner.idle();
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    for (const t of this.intervals) clearInterval(t);
    this.intervals.clear();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.pending.clear();
    await this.runner.idle();
  }

  // ------------------------------------------------------------ hosts

  /** Where the `onehost` stand-in (see hostCliScript) reads the pool from. */
  get hostsFile(): string {
    return path.join(this.config.varDir, 'hosts.csv');
  }

  /** Sets (or, with null, removes) a host as `onehost list` would show its STAT. */
  setHostState(name: string, stat: HostStat | null): void {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new Error(`bad host name "${name}"`);
    if (stat === null) this.hosts.delete(name);
    else this.hosts.set(name, stat);
    writeFileSync(this.hostsFile, [...this.hosts].map(([n, st]) => `${n},${st}\n`).join(''));
  }

  // ------------------------------------------------------------ users

  isAdminUser(u: UserRec): boolean {
    return u.id === 0 || u.groups.includes(0);
  }

  /** Session string `user:password` or `user:token`, split at the first ':'. */
  authenticate(method: string, session: string): CallContext {
    const idx = session.indexOf(':');
    const fail = (): never => {
      throw new RequestError(ErrorCode.AUTHENTICATION);
    };
    if (idx < 0) fail();
    const name = session.slice(0, idx);
    const secret = session.slice(idx + 1);
    const user = [...this.pools.users.values()].find((u) => u.name === name);
    if (!user || !user.enabled) return fail();
    const now = Math.floor(Date.now() / 1000);
    const token = user.tokens.get(secret);
    let egid = user.gid;
    if (token && (token.expires === -1 || token.expires > now)) {
      if (token.egid !== -1) egid = token.egid;
    } else if (user.password !== sha256(secret)) fail();
    return {
      method,
      uid: user.id,
      gid: egid,
      groups: egid !== user.gid ? [egid] : [...user.groups],
      uname: user.name,
      gname: this.pools.groupName(egid),
      isAdmin: this.isAdminUser(user),
    };
  }

  newToken(): string {
    return randomBytes(20).toString('hex');
  }

  // ------------------------------------------------------------ authorization

  canDo(call: CallContext, obj: Owned, op: AuthOp): boolean {
    if (call.isAdmin) return true;
    const p = obj.perms;
    const bit = (u: number, m: number, a: number): boolean => (op === 'USE' ? u === 1 || m === 1 || a === 1 : op === 'MANAGE' ? m === 1 || a === 1 : a === 1);
    if (obj.uid === call.uid && bit(p.ownerU, p.ownerM, p.ownerA)) return true;
    if (call.groups.includes(obj.gid) && bit(p.groupU, p.groupM, p.groupA)) return true;
    return bit(p.otherU, p.otherM, p.otherA);
  }

  authorize(call: CallContext, obj: Owned, op: AuthOp, kind: ObjectKind): void {
    if (!this.canDo(call, obj, op)) {
      throw new RequestError(ErrorCode.AUTHORIZATION, `Not authorized to perform ${op} ${OBJECT_TYPE_STR[kind]} [${obj.id}]`, obj.id, kind);
    }
  }

  /** RequestManagerPoolInfoFilter: filter flag, start/end (range or paging), API_LIST_ORDER. */
  filterPool<T extends Owned>(call: CallContext, items: Iterable<T>, filter: number, start: number, end: number): T[] {
    if (filter < -4) throw new RequestError(ErrorCode.XML_RPC_API, 'Incorrect filter_flag');
    let list = [...items].filter((o) => {
      switch (filter) {
        case -3:
          return o.uid === call.uid;
        case -4:
          return o.gid === call.gid;
        case -1:
          return call.isAdmin || o.uid === call.uid || (call.groups.includes(o.gid) && o.perms.groupU === 1);
        case -2:
          return this.canDo(call, o, 'USE');
        default:
          return o.uid === filter && this.canDo(call, o, 'USE');
      }
    });
    list.sort((a, b) => a.id - b.id);
    if (end >= -1 && start !== -1) list = list.filter((o) => o.id >= start && (end === -1 || o.id <= end));
    if (this.config.apiListOrder === 'DESC') list.reverse();
    if (end < -1) list = list.slice(Math.max(start, 0), Math.max(start, 0) - end);
    return list;
  }

  // ------------------------------------------------------------ names

  /** PoolObjectSQL::name_is_valid */
  static nameError(name: string): string | undefined {
    if (name === '') return 'Invalid NAME, it cannot be empty';
    const m = /[&|:\\";/'#{}$<>\t\n\v\f\r]/.exec(name);
    if (m) return `Invalid NAME, char '${m[0]}' is not allowed`;
    if (name.length > 128) return 'Invalid NAME, max length is 128 chars';
    return undefined;
  }

  /** PoolSQL::exist(name, uid) */
  static nameTaken<T extends Owned>(items: Iterable<T>, name: string, uid: number, exceptId = -1): T | undefined {
    for (const o of items) if (o.name === name && o.uid === uid && o.id !== exceptId) return o;
    return undefined;
  }

  // ------------------------------------------------------------ time

  static now(): number {
    return Math.floor(Date.now() / 1000);
  }

  /** one_util::log_time(), e.g. `Mon Nov 24 10:15:02 2025` */
  static logTime(d = new Date()): string {
    const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
    const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
    const p = (n: number): string => String(n).padStart(2, '0');
    return `${days[d.getDay()]} ${months[d.getMonth()]} ${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${d.getFullYear()}`;
  }
}

/**
 * The simulator's `onehost`: answers the one call the stock drivers make,
 * `onehost list --operator OR --no-pager --csv --filter="STAT=off,STAT=err,STAT=dsbl" --list=NAME,STAT`
 * (libfs.sh remove_off_hosts), from the hosts set with Sim.setHostState.
 */
export function hostCliScript(hostsFile: string): string {
  return [
    '#!/bin/bash',
    '# oned simulator stand-in for `onehost list --csv --filter=STAT=…,STAT=… --list=NAME,STAT`',
    '[ "$1" = list ] || { echo "onehost: only \'list\' is simulated" >&2; exit 1; }',
    'want=""',
    'while [ $# -gt 0 ]; do',
    '  case "$1" in',
    '  --filter=*) want=${1#--filter=} ;;',
    '  --filter) want=$2; shift ;;',
    '  esac',
    '  shift',
    'done',
    'echo "NAME,STAT"',
    `[ -f '${hostsFile}' ] || exit 0`,
    'while IFS=, read -r name stat; do',
    '  [ -n "$name" ] || continue',
    '  if [ -z "$want" ] || [[ ",$want," == *",STAT=$stat,"* ]]; then echo "$name,$stat"; fi',
    `done < '${hostsFile}'`,
    '',
  ].join('\n');
}

/** format_message: the DS_DRIVER_ACTION_DATA document. */
export function driverActionData(...parts: string[]): string {
  return `<DS_DRIVER_ACTION_DATA>${parts.join('')}</DS_DRIVER_ACTION_DATA>`;
}
