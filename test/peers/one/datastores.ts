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
import { XrValue, int, str } from './wire.js';
import { parseOrInternal } from './images.js';
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

/** Image::DiskType numbers by the names `disk_type_to_str` gives (NONE = 255). */
const DISK_TYPES: Record<string, number> = {
  FILE: 0, CDROM: 1, BLOCK: 2, RBD: 3, RBD_CDROM: 4, GLUSTER: 5, GLUSTER_CDROM: 6, SHEEPDOG: 7, SHEEPDOG_CDROM: 8, ISCSI: 9,
};

/** Datastore::str_to_type: unknown or empty → IMAGE_DS. */
function dsTypeFromString(s: string | undefined): number {
  const t = (s ?? '').trim().toUpperCase();
  return t in DS_TYPES ? DS_TYPES[t as DsTypeName] : DS_TYPES.IMAGE_DS;
}

const internal = (msg: string): RequestError => new RequestError(ErrorCode.INTERNAL, msg);

/** Datastore::set_ds_mad: DS_MAD_CONF entry and its REQUIRED_ATTRS, in their order. */
function checkDsMad(sim: Sim, mad: string, t: Template): void {
  const conf = sim.config.dsMadConf[mad];
  if (!conf) throw internal(`DS_MAD named "${mad}" is not defined in oned.conf`);
  for (const raw of (conf.REQUIRED_ATTRS ?? '').split(',')) {
    const attr = raw.trim().toUpperCase();
    if (attr === '') continue;
    if ((t.get(attr) ?? '') === '') throw internal(`Datastore template is missing the "${attr}" attribute or it's empty.`);
  }
}

/** Datastore::set_tm_mad: copies TM_MAD_CONF's targets, DRIVER, per-mode targets and ALLOW_ORPHANS. */
function applyTmMad(tmMad: string, type: number, t: Template): void {
  if (tmMad === '') throw internal('No TM_MAD in template.');
  const conf = TM_MAD_CONF[tmMad];
  if (!conf) throw internal(`TM_MAD named "${tmMad}" is not defined in oned.conf`);
  const bad = (): RequestError => internal(`Attribute shared, ln_target or clone_target in TM_MAD_CONF for ${tmMad} is missing or has wrong value in oned.conf`);
  const target = (v: string | undefined): string => {
    const u = (v ?? '').toUpperCase();
    if (u !== 'NONE' && u !== 'SELF' && u !== 'SYSTEM') throw bad();
    return u;
  };
  if (type === DS_TYPES.SYSTEM_DS) {
    if (conf.SHARED === undefined) throw bad();
    t.set('SHARED', conf.SHARED.toUpperCase() === 'YES' ? 'YES' : 'NO');
    t.set('DS_MIGRATE', (conf.DS_MIGRATE ?? 'YES').toUpperCase() === 'NO' ? 'NO' : 'YES');
    t.erase('LN_TARGET');
    t.erase('CLONE_TARGET');
  } else if (type !== DS_TYPES.BACKUP_DS) {
    if (conf.TM_MAD_SYSTEM) {
      t.set('TM_MAD_SYSTEM', conf.TM_MAD_SYSTEM);
      for (const m of conf.TM_MAD_SYSTEM.split(',').map((x) => x.trim().toUpperCase()).filter((x) => x !== '')) {
        t.set(`LN_TARGET_${m}`, target(conf[`LN_TARGET_${m}`]));
        t.set(`CLONE_TARGET_${m}`, target(conf[`CLONE_TARGET_${m}`]));
        const dt = conf[`DISK_TYPE_${m}`];
        if (!dt) throw bad();
        t.set(`DISK_TYPE_${m}`, dt);
      }
    }
    t.set('LN_TARGET', target(conf.LN_TARGET));
    t.set('CLONE_TARGET', target(conf.CLONE_TARGET));
    if (conf.DRIVER) t.set('DRIVER', conf.DRIVER);
    if (conf.DISK_TYPE) t.set('DISK_TYPE', conf.DISK_TYPE);
    // 7.4 shows PERSISTENT_SNAPSHOTS on a Ceph datastore (§5.8): taken to come from TM_MAD_CONF like the rest
    if (conf.PERSISTENT_SNAPSHOTS) t.set('PERSISTENT_SNAPSHOTS', conf.PERSISTENT_SNAPSHOTS);
    t.erase('SHARED');
  }
  if (type !== DS_TYPES.BACKUP_DS) t.set('ALLOW_ORPHANS', conf.ALLOW_ORPHANS ?? 'NO');
}

/** Datastore::set_ds_disk_type: the DISK_TYPE number, and its name back into the template. */
function applyDiskType(type: number, given: string, t: Template): number {
  const name = given.trim().toUpperCase();
  const dt = name === '' ? DISK_TYPES.FILE : DISK_TYPES[name];
  if (type === DS_TYPES.IMAGE_DS) {
    if (dt === undefined) throw internal('Unknown DISK_TYPE in template.');
    if (![0, 2, 3, 5, 7, 9].includes(dt)) throw internal('Invalid DISK_TYPE for an Image Datastore.');
  } else if (type === DS_TYPES.SYSTEM_DS) {
    if (dt === undefined) throw internal('Unknown DISK_TYPE in template.');
    if (![0, 2, 3].includes(dt)) throw internal('Invalid DISK_TYPE for a System Datastore.');
  } else {
    return DISK_TYPES.FILE as number;
  }
  const str = Object.entries(DISK_TYPES).find(([, v]) => v === dt)?.[0] ?? 'FILE';
  t.add('DISK_TYPE', str);
  return dt as number;
}

export interface DatastoreExtras {
  uid?: number;
  gid?: number;
  id?: number;
  totalMb?: number;
  freeMb?: number;
  usedMb?: number;
  /** the first monitor: 'sync' (test setup), 'async' (oned: right after the reply) or 'none' */
  monitor?: 'sync' | 'async' | 'none';
}

/**
 * DatastorePool::allocate + Datastore::insert (7.x order): NAME, TYPE, DS_MAD and its REQUIRED_ATTRS,
 * TM_MAD and what TM_MAD_CONF adds, BASE_PATH, DISK_TYPE, SAFE_DIRS/RESTRICTED_DIRS. Failures are
 * RequestErrors with oned's text (code INTERNAL, as 7.4 answers a missing REQUIRED_ATTR).
 */
export async function allocateDatastore(sim: Sim, tmpl: Template, x: DatastoreExtras = {}): Promise<number> {
  const t = tmpl.clone();
  const name = t.erase('NAME') ?? '';
  const nameErr = Sim.nameError(name);
  if (nameErr) throw internal(nameErr);
  const taken = [...sim.pools.datastores.values()].find((d) => d.name === name);
  if (taken) throw internal(`NAME is already taken by DATASTORE ${taken.id}.`);

  const type = dsTypeFromString(t.get('TYPE'));
  let dsMad = t.get('DS_MAD') ?? '';
  if (type === DS_TYPES.SYSTEM_DS) {
    if (dsMad !== '') throw internal('SYSTEM datastores cannot have DS_MAD defined.');
    dsMad = '-';
  } else {
    if (dsMad === '') throw internal('No DS_MAD in template.');
    checkDsMad(sim, dsMad, t);
  }
  let tmMad = t.get('TM_MAD') ?? '';
  if (type !== DS_TYPES.BACKUP_DS) applyTmMad(tmMad, type, t);
  else tmMad = '-';
  t.erase('BASE_PATH');
  const diskType = applyDiskType(type, t.erase('DISK_TYPE') ?? '', t);
  if ((t.get('SAFE_DIRS') ?? '') === '' && (t.get('RESTRICTED_DIRS') ?? '') === '') {
    t.set('SAFE_DIRS', '/var/tmp');
    t.set('RESTRICTED_DIRS', '/');
  }

  const id = x.id ?? sim.pools.next.datastore++;
  const pinned = x.totalMb !== undefined || x.freeMb !== undefined;
  const ds: DatastoreRec = {
    id,
    uid: x.uid ?? 0,
    gid: x.gid ?? 0,
    name,
    perms: { ownerU: 1, ownerM: 1, ownerA: 0, groupU: 1, groupM: 0, groupA: 0, otherU: 1, otherM: 0, otherA: 0 },
    dsMad,
    tmMad,
    basePath: basePathFor(sim, id),
    type,
    diskType,
    state: 0,
    clusters: [0],
    totalMb: x.totalMb ?? 0,
    freeMb: x.freeMb ?? 0,
    usedMb: x.usedMb ?? (x.totalMb !== undefined && x.freeMb !== undefined ? x.totalMb - x.freeMb : 0),
    pinnedCapacity: pinned,
    images: [],
    template: t,
  };
  if (pinned && x.totalMb === undefined) ds.totalMb = ds.freeMb + ds.usedMb;
  // the frontend's view of BASE_PATH (drivers on a bridge host make their own)
  mkdirSync(ds.basePath, { recursive: true });
  sim.pools.datastores.set(id, ds);
  const monitor = x.monitor ?? 'async';
  if (monitor === 'sync') await monitorDatastore(sim, id);
  else if (monitor === 'async') sim.later(() => monitorDatastore(sim, id), 0);
  return id;
}

/** The test setup API (like `onedatastore create` as oneadmin), the first monitor done on return. */
export async function createDatastore(sim: Sim, o: CreateDatastoreOptions): Promise<number> {
  const type = DS_TYPES[o.type];
  const mad = o.dsMad ?? 'fs';
  if (type !== DS_TYPES.SYSTEM_DS && !(mad in sim.config.dsMadConf)) {
    // a driver directory under remotesDir counts as registered (as if added to oned.conf)
    if (existsSync(path.dirname(sim.runner.scriptPath(mad, 'cp')))) {
      sim.config.dsMadConf[mad] = { REQUIRED_ATTRS: '', PERSISTENT_ONLY: 'NO' };
    }
  }
  const t = new Template();
  t.add('NAME', o.name);
  t.add('TYPE', o.type);
  if (type !== DS_TYPES.SYSTEM_DS) t.add('DS_MAD', mad);
  t.add('TM_MAD', o.tmMad ?? 'local');
  for (const [k, v] of Object.entries(o.template ?? {})) t.set(k.toUpperCase(), v);
  return allocateDatastore(sim, t, {
    id: o.id,
    totalMb: o.totalMb,
    freeMb: o.freeMb,
    usedMb: o.usedMb,
    monitor: o.noMonitor ? 'none' : 'sync',
  });
}

/** one.datastore.allocate(template, cluster_id): admins only; the first monitor runs after the reply. */
export async function datastoreAllocate(sim: Sim, call: CallContext, p: XrValue[]): Promise<number> {
  const tmpl = parseOrInternal(str(p, 1));
  const clusterId = int(p, 2);
  if (!call.isAdmin) throw new RequestError(ErrorCode.AUTHORIZATION, 'Not authorized to perform CREATE DATASTORE');
  if (clusterId !== -1 && clusterId !== 0) throw noExists('cluster', clusterId);
  return allocateDatastore(sim, tmpl, { uid: call.uid, gid: call.gid, monitor: 'async' });
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

/** Every datastore, as oned's MONITORING_INTERVAL_DATASTORE timer does. */
export async function monitorAllDatastores(sim: Sim): Promise<void> {
  await Promise.all([...sim.pools.datastores.keys()].map((id) => monitorDatastore(sim, id)));
}

export { ErrorCode, RequestError };
