/**
 * Datastores: creation (test setup API, like `onedatastore create`), the
 * `monitor` driver action (§5.3: USED_MB/TOTAL_MB/FREE_MB lines), and the
 * one.datastore.info / one.datastorepool.info methods.
 */
import { existsSync, mkdirSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { datastoreXml, poolXml } from './documents.js';
import { ErrorCode, RequestError, noExists } from './errors.js';
import { CallContext, Sim, TM_MAD_CONF, driverActionData } from './simulator.js';
import { DS_TYPES, DatastoreRec, DsTypeName } from './state.js';
import { Template } from './template-syntax.js';
import { XrValue, int } from './wire.js';
import { escapeXml } from './xml.js';

export interface CreateDatastoreOptions {
  name: string;
  type: DsTypeName;
  dsMad?: string;
  tmMad?: string;
  template?: Record<string, string>;
  /** pins the capacity: monitor still runs, but these values stay */
  totalMb?: number;
  freeMb?: number;
  usedMb?: number;
  /** force the id (defaults use 0, 1, 2; new ones start at 100) */
  id?: number;
  /** skip the initial monitor run */
  noMonitor?: boolean;
}

export function basePathFor(sim: Sim, id: number): string {
  const loc = sim.config.datastoreLocation;
  // real oned: DATASTORE_LOCATION + "/" + id, hence `//` when the location ends with '/'
  return `${loc}/${id}`;
}

export async function createDatastore(sim: Sim, o: CreateDatastoreOptions): Promise<number> {
  const err = Sim.nameError(o.name);
  if (err) throw new Error(err);
  const taken = [...sim.pools.datastores.values()].find((d) => d.name === o.name);
  if (taken) throw new Error(`NAME is already taken by DATASTORE ${taken.id}.`);
  const type = DS_TYPES[o.type];
  const mad = o.dsMad ?? 'fs';
  if (type !== DS_TYPES.SYSTEM_DS && !(mad in sim.config.dsMadConf)) {
    // a driver directory under remotesDir counts as registered (as if added to oned.conf)
    if (existsSync(path.dirname(sim.runner.scriptPath(mad, 'cp')))) {
      sim.config.dsMadConf[mad] = { REQUIRED_ATTRS: '', PERSISTENT_ONLY: 'NO' };
    } else {
      throw new Error(`DS_MAD named "${mad}" is not defined in oned.conf`);
    }
  }
  const id = o.id ?? sim.pools.next.datastore++;
  const tmMad = o.tmMad ?? (o.type === 'FILE_DS' ? 'local' : 'local');
  const dsMad = type === DS_TYPES.SYSTEM_DS ? '-' : (o.dsMad ?? 'fs');
  const tmConf = TM_MAD_CONF[tmMad] ?? {};
  const t = new Template();
  const user = o.template ?? {};
  const put = (k: string, v: string | undefined): void => {
    if (v !== undefined && !(k in user)) t.add(k, v);
  };
  put('ALLOW_ORPHANS', tmConf.ALLOW_ORPHANS ?? 'NO');
  put('CLONE_TARGET', tmConf.CLONE_TARGET);
  put('DISK_TYPE', 'FILE');
  if (type !== DS_TYPES.SYSTEM_DS) put('DS_MAD', dsMad);
  put('LN_TARGET', tmConf.LN_TARGET);
  if (type !== DS_TYPES.SYSTEM_DS) {
    put('RESTRICTED_DIRS', '/');
    put('SAFE_DIRS', '/var/tmp');
  }
  put('SHARED', tmConf.SHARED);
  put('TM_MAD', tmMad);
  put('TYPE', o.type);
  for (const [k, v] of Object.entries(user)) t.add(k.toUpperCase(), v);
  const ds: DatastoreRec = {
    id,
    uid: 0,
    gid: 0,
    name: o.name,
    perms: { ownerU: 1, ownerM: 1, ownerA: 0, groupU: 1, groupM: 0, groupA: 0, otherU: 1, otherM: 0, otherA: 0 },
    dsMad,
    tmMad,
    basePath: basePathFor(sim, id),
    type,
    diskType: 0,
    state: 0,
    clusters: [0],
    totalMb: o.totalMb ?? 0,
    freeMb: o.freeMb ?? 0,
    usedMb: o.usedMb ?? (o.totalMb !== undefined && o.freeMb !== undefined ? o.totalMb - o.freeMb : 0),
    pinnedCapacity: o.totalMb !== undefined || o.freeMb !== undefined,
    images: [],
    template: t,
  };
  if (ds.pinnedCapacity && o.totalMb === undefined) ds.totalMb = ds.freeMb + ds.usedMb;
  mkdirSync(ds.basePath, { recursive: true });
  sim.pools.datastores.set(id, ds);
  if (!o.noMonitor) await monitorDatastore(sim, id);
  return id;
}

/** DS_MAD_CONF / template DATASTORE_CAPACITY_CHECK, and FREE_MB (LIMIT_MB caps it). */
export function availableMb(sim: Sim, ds: DatastoreRec): { check: boolean; avail: number } {
  const conf = sim.config.dsMadConf[ds.dsMad] ?? {};
  const flag = (ds.template.get('DATASTORE_CAPACITY_CHECK') ?? conf.DATASTORE_CAPACITY_CHECK ?? 'YES').toUpperCase();
  let avail = ds.freeMb;
  const limit = Number(ds.template.get('LIMIT_MB'));
  if (Number.isFinite(limit) && ds.template.get('LIMIT_MB') !== undefined) avail = Math.min(avail, limit - ds.usedMb);
  return { check: flag === 'YES', avail };
}

export function isPersistentOnly(sim: Sim, ds: DatastoreRec): boolean {
  const v = ds.template.get('PERSISTENT_ONLY') ?? sim.config.dsMadConf[ds.dsMad]?.PERSISTENT_ONLY ?? 'NO';
  return v.toUpperCase() === 'YES';
}

/** DatastorePool::get_ds_driver: TM_MAD_CONF DRIVER, else the datastore template DRIVER. */
export function dsDriver(ds: DatastoreRec): string {
  return (TM_MAD_CONF[ds.tmMad]?.DRIVER ?? ds.template.get('DRIVER') ?? '').toLowerCase();
}

/** Runs the monitor action and updates TOTAL_MB/FREE_MB/USED_MB (unless pinned). */
export async function monitorDatastore(sim: Sim, id: number): Promise<void> {
  const ds = sim.pools.datastores.get(id);
  if (!ds) return;
  let out: string | undefined;
  if (ds.type === DS_TYPES.SYSTEM_DS) {
    if (sim.runner.hasScript(ds.tmMad, 'monitor', 'tm')) {
      const payload = driverActionData(
        datastoreXml(sim.pools, ds),
        `<DATASTORE_LOCATION>${escapeXml(sim.config.datastoreLocation)}</DATASTORE_LOCATION><MONITOR_VM_DISKS>0</MONITOR_VM_DISKS>`,
      );
      const r = await sim.runner.run('monitor', ds.tmMad, String(id), payload, undefined, 'tm');
      if (r.ok) out = r.stdout;
    } else {
      try {
        const st = statfsSync(ds.basePath);
        const mb = (n: number): number => Math.floor((n * st.bsize) / 1048576);
        out = `USED_MB=${mb(st.blocks - st.bfree)}\nTOTAL_MB=${mb(st.blocks)}\nFREE_MB=${mb(st.bavail)}\n`;
      } catch {
        out = undefined;
      }
    }
  } else {
    const r = await sim.runner.run('monitor', ds.dsMad, String(id), driverActionData(datastoreXml(sim.pools, ds)));
    if (r.ok) out = r.stdout;
  }
  const cur = sim.pools.datastores.get(id);
  if (!cur || out === undefined || cur.pinnedCapacity) return;
  for (const line of out.split('\n')) {
    const m = /^\s*(USED_MB|TOTAL_MB|FREE_MB)\s*=\s*"?(\d+)"?\s*$/.exec(line);
    if (!m || !m[1] || !m[2]) continue;
    const v = Number(m[2]);
    if (m[1] === 'USED_MB') cur.usedMb = v;
    else if (m[1] === 'TOTAL_MB') cur.totalMb = v;
    else cur.freeMb = v;
  }
}

export function getDatastore(sim: Sim, id: number): DatastoreRec {
  const ds = sim.pools.datastores.get(id);
  if (!ds) throw noExists('datastore', id);
  return ds;
}

export function datastoreInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const ds = getDatastore(sim, int(p, 1));
  sim.authorize(call, ds, 'USE', 'datastore');
  return datastoreXml(sim.pools, ds);
}

export function datastorePoolInfo(sim: Sim, call: CallContext): string {
  const list = sim.filterPool(call, sim.pools.datastores.values(), -2, -1, -1);
  return poolXml('DATASTORE_POOL', list.map((d) => datastoreXml(sim.pools, d)));
}

export { ErrorCode, RequestError };
