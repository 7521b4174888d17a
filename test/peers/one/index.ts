/**
 * OpenNebula oned 7.4 simulator for tests: `startOned()` serves the XML-RPC
 * API on 127.0.0.1 (path /RPC2) and runs real datastore and marketplace driver
 * scripts as child processes from its own remotes tree. `exportMarketApp()` is the
 * client-side stock export (`onemarketapp export`, Sunstone's "Import").
 * See README.md for what is simulated.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateDatastoreOptions, createDatastore, monitorAllDatastores, monitorDatastore } from './datastores.js';
import { DriverAction, DriverHook, DriverLogEntry, MarketAction } from './driver-runner.js';
import { allocateMarket, createDefaultMarkets, monitorAllMarkets, monitorMarket } from './markets.js';
import { buildRemotesTree } from './remotes-tree.js';
import { CallRecord, startServer } from './server.js';
import { CallContext, DS_MAD_CONF, HostStat, MARKET_MAD_CONF, Sim, hostCliScript } from './simulator.js';
import { DatastoreRec, IMAGE_STATE, ImageRec, MarketAppRec, MarketRec, UserRec, VmRec, VmTemplateRec, VnetRec } from './state.js';
import { Template } from './template-syntax.js';
import { CreateUserOptions, createUser } from './users.js';
import { CreateNetworkOptions, createNetwork } from './vnets.js';
import { setVmState } from './vms.js';

export { IMAGE_STATE, VM_STATE, MARKET_STATE, MARKETAPP_STATE, MARKETAPP_TYPE } from './state.js';
export { exportMarketApp, OcaError } from './market-export.js';
export type { ExportMarketAppOptions, ExportMarketAppResult } from './market-export.js';
export type { DriverAction, DriverHook, DriverLogEntry, MarketAction, DriverKind } from './driver-runner.js';
export type { MarketRec, MarketAppRec } from './state.js';
export type { CreateDatastoreOptions } from './datastores.js';
export type { CreateNetworkOptions } from './vnets.js';
export type { CreateUserOptions } from './users.js';
export type { CallRecord } from './server.js';
export type { HostStat } from './simulator.js';

export const DEFAULT_REMOTES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'remotes');

export interface StartOnedOptions {
  adminPassword?: string;
  /** reported by one.system.version; default '7.4.0' */
  version?: string;
  /**
   * stock drivers: every entry of its `datastore/`, `market/` and `tm/` is linked into the
   * simulator's own remotes tree; default: `remotes/` here (datastore/fs, libfs.sh, xpath.mjs)
   */
  remotesDir?: string;
  /** working directory (datastores, var dir); default: a new temp dir, removed by stop() */
  dataDir?: string;
  /** delay before asynchronous driver actions (cp, mkfs, rm); default 1000 ms like oned 7.4 */
  asyncDelayMs?: number;
  /** synchronous stat limit; default 90 000 ms */
  statTimeoutMs?: number;
  /** API_LIST_ORDER; default DESC (oned.conf default) */
  apiListOrder?: 'ASC' | 'DESC';
  /**
   * Extra datastore drivers: DS_MAD name → directory with its action scripts (cp, stat, …),
   * linked as `<remotes>/datastore/<name>` (a directory symlink) and run through that path.
   * Each is registered in DS_MAD_CONF (oned.conf) with `conf` (default REQUIRED_ATTRS="", PERSISTENT_ONLY=NO).
   */
  drivers?: Record<string, { dir: string; conf?: Record<string, string> }>;
  /**
   * Marketplace drivers: MARKET_MAD name → directory with monitor/delete/import, linked as
   * `<remotes>/market/<name>`, added to MARKET_MAD `-m` and MARKET_MAD_CONF with `conf`
   * (default SUNSTONE_NAME=<name>, REQUIRED_ATTRS="", APP_ACTIONS="monitor", PUBLIC="yes").
   */
  marketDrivers?: Record<string, { dir: string; conf?: Record<string, string> }>;
  /**
   * MarketPlaceManager's timer, the only thing that monitors a market oned was not told to enable:
   * the first cycle this long after start; default 15 000 ms (oned's first MANAGER_TIMER tick).
   * A test that stands for an oned running since long sets when its next cycle comes.
   */
  marketMonitorFirstCycleMs?: number;
  /** then a cycle every this many ms; default 600 000 (MONITORING_INTERVAL_MARKET, as one.system.config reports it) */
  marketMonitorIntervalMs?: number;
  /** every datastore is monitored this often; default 300 000 (MONITORING_INTERVAL_DATASTORE) */
  datastoreMonitorIntervalMs?: number;
  /**
   * Added to the drivers' plain environment; a PATH here replaces the inherited one. A test with a
   * bridge host passes `{ PATH: bridge.env().PATH }` so that `ssh <bridge>` runs the peer's wrapper.
   */
  driverEnv?: Record<string, string>;
  /**
   * The HOST pool as the stock drivers see it through `onehost list` (they drop BRIDGE_LIST hosts
   * whose STAT is off, err or dsbl): name → STAT. Change it later with `setHostState`.
   */
  hosts?: Record<string, HostStat>;
}

export interface CreateMarketOptions {
  name: string;
  marketMad: string;
  /** extra template attributes (upper-cased names), e.g. STATE: 'DISABLED' */
  template?: Record<string, string>;
}

export interface Oned {
  endpoint: string;
  /** `oneadmin:<password>` */
  adminSession: string;
  dataDir: string;
  /** DATASTORE_LOCATION, e.g. `<dataDir>//datastores` (note the `//` like real oned) */
  datastoreLocation: string;
  /** the scripts' working directory (oned's var dir) */
  varDir: string;
  /** the simulator's remotes tree, `<varDir>/remotes` (datastore/fs, datastore/<extra>, market/<extra>) */
  remotesDir: string;
  stop(): Promise<void>;

  createUser(name: string, password: string, opts?: CreateUserOptions): number;
  createDatastore(opts: CreateDatastoreOptions): Promise<number>;
  createNetwork(opts: CreateNetworkOptions): number;
  monitorDatastore(id: number): Promise<void>;
  /** like one.market.allocate as oneadmin (errors thrown as RequestError): no monitor runs */
  createMarket(opts: CreateMarketOptions): Promise<number>;
  /**
   * Runs one monitor of a marketplace now (the driver, then oned's processing), as a cycle of
   * the timer would, and resolves with the driver's log entry; undefined when oned would not run
   * it (DISABLED, `monitor` not in APP_ACTIONS). Throws for an unknown id.
   */
  monitorMarket(id: number): Promise<DriverLogEntry | undefined>;
  /** The timer's cycle now: every marketplace monitored, as oned does every MONITORING_INTERVAL_MARKET. */
  marketCycle(): Promise<void>;

  image(id: number): ImageRec | undefined;
  vm(id: number): VmRec | undefined;
  template(id: number): VmTemplateRec | undefined;
  datastore(id: number): DatastoreRec | undefined;
  network(id: number): VnetRec | undefined;
  user(id: number): UserRec | undefined;
  market(id: number): MarketRec | undefined;
  marketApp(id: number): MarketAppRec | undefined;

  /** Replace a driver action by a hook (return undefined from the hook to run the script anyway); null removes it. */
  setDriverAction(action: DriverAction, hook: DriverHook | null): void;
  /** The same for marketplace driver actions (monitor, delete, import). */
  setMarketAction(action: MarketAction, hook: DriverHook | null): void;
  /** every driver invocation: action, argv, stdin, decoded payload, stdout, stderr, exit code */
  readonly log: DriverLogEntry[];
  /** stderr lines `ERROR:|INFO:|WARN:|DEBUG:` of driver runs, and oned's own MKP lines (`[Z0][MKP][E]: …`) */
  readonly onedLog: string[];
  /** every XML-RPC call received, with the reply kind and code */
  readonly calls: CallRecord[];
  /** resolves when no asynchronous driver work (cp/mkfs/rm/monitor, market monitor/delete) is pending */
  idle(): Promise<void>;
  /** polls the image until its STATE is one of `states` (default READY or ERROR) */
  waitImage(id: number, states?: number[], timeoutMs?: number): Promise<ImageRec>;
  /** moves a VM to a STATE (and LCM_STATE) as the scheduler/hypervisor would; DONE frees its images */
  setVmState(id: number, state: number, lcmState?: number): void;
  /** a host's STAT in `onehost list` (null: the host is gone), read by the drivers' BRIDGE_LIST filter */
  setHostState(name: string, stat: HostStat | null): void;
  /** Runs every driver action from now on without these directories (DriverRunner.hidden). */
  hideFromDrivers(dirs: readonly string[]): void;
  /** the simulator core, for tests that need more */
  readonly sim: Sim;
}

export async function startOned(opts: StartOnedOptions = {}): Promise<Oned> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'one-sim-'));
  const varDir = path.join(dataDir, 'var');
  mkdirSync(varDir, { recursive: true });
  // oned: var_location ("/var/lib/one/") + "/datastores" → "/var/lib/one//datastores"
  const datastoreLocation = `${dataDir}/` + '/datastores';
  mkdirSync(path.join(dataDir, 'datastores'), { recursive: true });
  const remotesDir = buildRemotesTree(varDir, opts.remotesDir ?? DEFAULT_REMOTES_DIR, opts.drivers, opts.marketDrivers);
  // the OpenNebula CLI the stock drivers call (`onehost`), answered from the simulator's state
  const cliDir = path.join(varDir, 'bin');
  mkdirSync(cliDir, { recursive: true });
  writeFileSync(path.join(cliDir, 'onehost'), hostCliScript(path.join(varDir, 'hosts.csv')), { mode: 0o755 });
  const adminPassword = opts.adminPassword ?? randomBytes(12).toString('hex');

  const sim = new Sim({
    version: opts.version ?? '7.4.0',
    datastoreLocation,
    dataDir,
    varDir,
    remotesDir,
    asyncDelayMs: opts.asyncDelayMs ?? 1000,
    statTimeoutMs: opts.statTimeoutMs ?? 90_000,
    apiListOrder: opts.apiListOrder ?? 'DESC',
    defaultImagePersistentNew: false,
    dsMadConf: {
      ...Object.fromEntries(Object.entries(DS_MAD_CONF).map(([k, v]) => [k, { ...v }])),
      ...Object.fromEntries(Object.entries(opts.drivers ?? {}).map(([k, d]) => [k, { REQUIRED_ATTRS: '', PERSISTENT_ONLY: 'NO', ...d.conf }])),
    },
    marketMadConf: {
      ...Object.fromEntries(Object.entries(MARKET_MAD_CONF).map(([k, v]) => [k, { ...v }])),
      ...Object.fromEntries(
        Object.entries(opts.marketDrivers ?? {}).map(([k, d]) => [
          k,
          { SUNSTONE_NAME: k, REQUIRED_ATTRS: '', APP_ACTIONS: 'monitor', PUBLIC: 'yes', ...d.conf },
        ]),
      ),
    },
    marketMonitorFirstCycleMs: opts.marketMonitorFirstCycleMs ?? 15_000,
    marketMonitorIntervalMs: opts.marketMonitorIntervalMs ?? 600_000,
    datastoreMonitorIntervalMs: opts.datastoreMonitorIntervalMs ?? 300_000,
    driverEnv: { ...opts.driverEnv },
    driverPathDirs: [cliDir],
  });
  for (const [name, stat] of Object.entries(opts.hosts ?? {})) sim.setHostState(name, stat);
  if (!(sim.config.marketMonitorIntervalMs > 0)) throw new Error('marketMonitorIntervalMs must be > 0: oned always has a market monitor cycle');

  // ---------------- a fresh 7.4 install
  sim.pools.groups.set(0, { id: 0, name: 'oneadmin', users: [], template: new Template() });
  sim.pools.groups.set(1, { id: 1, name: 'users', users: [], template: new Template() });
  createUser(sim, 'oneadmin', adminPassword, { admin: true });
  const sa = createUser(sim, 'serveradmin', randomBytes(12).toString('hex'), { admin: true });
  const saRec = sim.pools.users.get(sa);
  if (saRec) saRec.authDriver = 'server_cipher';
  await createDatastore(sim, { id: 0, name: 'system', type: 'SYSTEM_DS', tmMad: 'local' });
  await createDatastore(sim, { id: 1, name: 'default', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'local' });
  await createDatastore(sim, { id: 2, name: 'files', type: 'FILE_DS', dsMad: 'fs', tmMad: 'local' });
  const admin: CallContext = { method: '', uid: 0, gid: 0, groups: [0], uname: 'oneadmin', gname: 'oneadmin', isAdmin: true };
  createDefaultMarkets(sim, admin);
  sim.cycle(sim.config.marketMonitorFirstCycleMs, sim.config.marketMonitorIntervalMs, () => monitorAllMarkets(sim));
  if (!(sim.config.datastoreMonitorIntervalMs > 0)) throw new Error('datastoreMonitorIntervalMs must be > 0');
  sim.cycle(sim.config.datastoreMonitorIntervalMs, sim.config.datastoreMonitorIntervalMs, () => monitorAllDatastores(sim));

  const calls: CallRecord[] = [];
  const server = await startServer(sim, calls);

  const oned: Oned = {
    endpoint: server.endpoint,
    adminSession: `oneadmin:${adminPassword}`,
    dataDir,
    datastoreLocation,
    varDir,
    remotesDir,
    async stop() {
      await server.close();
      await sim.shutdown();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
    createUser: (name, password, o) => createUser(sim, name, password, o),
    createDatastore: (o) => createDatastore(sim, o),
    createNetwork: (o) => createNetwork(sim, o),
    monitorDatastore: (id) => monitorDatastore(sim, id),
    async createMarket(o) {
      const t = new Template();
      t.add('NAME', o.name);
      t.add('MARKET_MAD', o.marketMad);
      for (const [k, v] of Object.entries(o.template ?? {})) t.add(k.toUpperCase(), v);
      return allocateMarket(sim, admin, t);
    },
    monitorMarket(id) {
      if (!sim.pools.markets.has(id)) return Promise.reject(new Error(`marketplace ${id} does not exist`));
      return monitorMarket(sim, id);
    },
    marketCycle: () => monitorAllMarkets(sim),
    image: (id) => sim.pools.images.get(id),
    vm: (id) => sim.pools.vms.get(id),
    template: (id) => sim.pools.templates.get(id),
    datastore: (id) => sim.pools.datastores.get(id),
    network: (id) => sim.pools.vnets.get(id),
    user: (id) => sim.pools.users.get(id),
    market: (id) => sim.pools.markets.get(id),
    marketApp: (id) => sim.pools.marketApps.get(id),
    setDriverAction: (action, hook) => sim.runner.setHook(action, hook),
    setMarketAction: (action, hook) => sim.runner.setMarketHook(action, hook),
    log: sim.runner.log,
    onedLog: sim.runner.onedLog,
    calls,
    idle: () => sim.idle(),
    async waitImage(id, states = [IMAGE_STATE.READY, IMAGE_STATE.ERROR], timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const img = sim.pools.images.get(id);
        if (!img) throw new Error(`image ${id} does not exist`);
        if (states.includes(img.state)) return img;
        if (Date.now() > end) throw new Error(`image ${id} still in state ${img.state}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    setVmState: (id, state, lcm) => setVmState(sim, id, state, lcm),
    setHostState: (name, stat) => sim.setHostState(name, stat),
    hideFromDrivers: (dirs) => void (sim.runner.hidden = [...dirs]),
    sim,
  };
  return oned;
}
