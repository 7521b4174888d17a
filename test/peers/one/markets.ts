/**
 * Marketplaces and marketplace apps (reference §7; oned 7.x `src/market/*`,
 * `src/rm/api/MarketPlace*API.cc`, `src/market_mad/one_market.rb`):
 *
 * - one.market.allocate / info / update / delete / enable, one.marketpool.info;
 * - one.marketapp.info / update / delete / enable, one.marketapppool.info;
 * - the monitor: `<remotes>/market/<MARKET_MAD>/monitor <base64> <market id>`, then
 *   MarketPlaceManager::_monitor — capacity, MarketPlaceAppPool::import of every `APP="<base64>"`
 *   (matched by NAME among the apps of oneadmin, i.e. across all marketplaces), and removal of
 *   apps of this market that stayed missing (map_check, MAX_MISSING_MONITORS = 3).
 */
import { marketAppXml, marketXml, poolXml } from './documents.js';
import { ErrorCode, OBJECT_TYPE_STR, RequestError, noExists } from './errors.js';
import { parseOrInternal } from './images.js';
import { CallContext, Sim } from './simulator.js';
import { DriverLogEntry, DriverResult, MarketAction } from './driver-runner.js';
import { MARKETAPP_STATE, MARKETAPP_TYPE, MARKET_STATE, MarketAppRec, MarketRec, Perms } from './state.js';
import { Template, TemplateParseError, parseTextTemplate } from './template-syntax.js';
import { XrValue, bool, int, str } from './wire.js';

const ZONE_ID = 0;
/** MarketPlaceAppPool::MAX_MISSING_MONITORS */
const MAX_MISSING_MONITORS = 3;

/** umask 0133 of the apps MarketPlaceAppPool::import creates (owner oneadmin:oneadmin): UM- U-- U-- */
const IMPORTED_APP_PERMS = (): Perms => ({ ownerU: 1, ownerM: 1, ownerA: 0, groupU: 1, groupM: 0, groupA: 0, otherU: 1, otherM: 0, otherA: 0 });

// ------------------------------------------------------------------ helpers

/** Template::get(name, int&) of 7.x: the whole value must be an integer, else 0 / false. */
export function templateInt(v: string | undefined): number | undefined {
  if (v === undefined || !/^\s*[-+]?\d+$/.test(v)) return undefined;
  return Number(v.trim());
}

/** MKP lines of oned.log, e.g. `[Z0][MKP][E]: Error monitoring marketplace 100: boom` */
function mkpLog(sim: Sim, level: 'E' | 'W' | 'I' | 'D', msg: string): void {
  sim.runner.onedLog.push(`[Z0][MKP][${level}]: ${msg}`);
}

export function getMarket(sim: Sim, id: number): MarketRec {
  const m = sim.pools.markets.get(id);
  if (!m) throw noExists('market', id);
  return m;
}

export function getMarketApp(sim: Sim, id: number): MarketAppRec {
  const a = sim.pools.marketApps.get(id);
  if (!a) throw noExists('marketapp', id);
  return a;
}

/** MarketPlace::from_xml: supported app actions from MARKET_MAD_CONF APP_ACTIONS (http/s3/one defaults). */
export function marketActions(sim: Sim, m: MarketRec): Set<string> {
  let actions = sim.config.marketMadConf[m.marketMad]?.APP_ACTIONS ?? '';
  if (actions === '') {
    if (m.marketMad === 'http' || m.marketMad === 's3') actions = 'create, monitor, delete';
    else if (m.marketMad === 'one') actions = 'create, monitor';
  }
  const set = new Set<string>();
  for (const a of actions.split(',')) {
    const t = a.trim();
    if (t === 'create' || t === 'delete' || t === 'monitor') set.add(t);
  }
  return set;
}

/** MarketPlace::is_public: MARKET_MAD_CONF PUBLIC */
export function isPublicMarket(sim: Sim, m: MarketRec): boolean {
  const v = (sim.config.marketMadConf[m.marketMad]?.PUBLIC ?? '').trim().toUpperCase();
  return v === 'YES' || v === 'TRUE';
}

/** MarketPlace::set_market_mad: the driver must be in MARKET_MAD_CONF, REQUIRED_ATTRS present. */
function checkMarketMad(sim: Sim, mad: string, t: Template): string | undefined {
  const conf = sim.config.marketMadConf[mad];
  if (!conf) return `MARKET_MAD_CONF named "${mad}" is not defined in oned.conf`;
  const req = conf.REQUIRED_ATTRS;
  if (req === undefined) return undefined;
  for (const raw of req.split(',')) {
    const a = raw.trim().toUpperCase();
    if (a === '') continue;
    if ((t.get(a) ?? '') === '') return `MarketPlace template is missing the "${a}" attribute or it's empty.`;
  }
  return undefined;
}

/**
 * "* MARKETPLACE+MARKETPLACEAPP * USE" — ACL rule 2 of a fresh install: everybody may
 * USE (see, export) every marketplace and app. MANAGE/ADMIN follow the permissions.
 */
function aclUse(call: CallContext): CallContext {
  return { ...call, isAdmin: true };
}

// ------------------------------------------------------------------ marketplaces

/** MarketPlacePool::allocate + MarketPlace::parse_template; returns the new id. */
export function allocateMarket(sim: Sim, call: CallContext, t: Template, forceId?: number, perms?: Perms): number {
  const name = t.get('NAME') ?? '';
  const nameErr = Sim.nameError(name);
  if (nameErr) throw new RequestError(ErrorCode.ALLOCATE, nameErr);
  const taken = [...sim.pools.markets.values()].find((m) => m.name === name);
  if (taken) throw new RequestError(ErrorCode.ALLOCATE, `NAME is already taken by ${OBJECT_TYPE_STR.market} ${taken.id}`);
  t.erase('NAME');
  t.erase('ZONE_ID');
  const mad = t.get('MARKET_MAD') ?? '';
  if (mad === '') throw new RequestError(ErrorCode.ALLOCATE, 'No marketplace driver (MARKET_MAD) in template.');
  const madErr = checkMarketMad(sim, mad, t);
  if (madErr) throw new RequestError(ErrorCode.ALLOCATE, madErr);
  let state: number = MARKET_STATE.ENABLED;
  const st = t.get('STATE');
  if (st === 'ENABLED' || st === 'DISABLED') {
    state = MARKET_STATE[st];
    t.erase('STATE');
  }
  const id = forceId ?? sim.pools.next.market++;
  sim.pools.markets.set(id, {
    id,
    uid: call.uid,
    gid: call.gid,
    name,
    perms: perms ?? { ownerU: 1, ownerM: 1, ownerA: 0, groupU: 0, groupM: 0, groupA: 0, otherU: 0, otherM: 0, otherA: 0 },
    state,
    marketMad: mad,
    zoneId: ZONE_ID,
    totalMb: 0,
    freeMb: 0,
    usedMb: 0,
    apps: new Set(),
    template: t,
  });
  return id;
}

/** The two marketplaces MarketPlacePool creates on a fresh install (ids 0 and 1; new ones start at 100). */
export function createDefaultMarkets(sim: Sim, admin: CallContext): void {
  const perms: Perms = { ownerU: 1, ownerM: 1, ownerA: 1, groupU: 1, groupM: 0, groupA: 0, otherU: 1, otherM: 0, otherA: 0 };
  const pub = new Template();
  pub.add('NAME', 'OpenNebula Public');
  pub.add('MARKET_MAD', 'one');
  pub.add('DESCRIPTION', 'OpenNebula Systems MarketPlace');
  allocateMarket(sim, admin, pub, 0, { ...perms });
  const lxc = new Template();
  lxc.add('NAME', 'Linux Containers');
  lxc.add('STATE', 'DISABLED');
  lxc.add('MARKET_MAD', 'linuxcontainers');
  lxc.add('DESCRIPTION', 'MarketPlace for the public image server fo LXC & LXD hosted at linuxcontainers.org');
  allocateMarket(sim, admin, lxc, 1, { ...perms });
}

/**
 * MarketPlaceAllocateAPI: the market is stored and nothing else happens — oned monitors it at the
 * next cycle of MarketPlaceManager's timer (or when one.market.enable turns it on).
 */
export function marketAllocate(sim: Sim, call: CallContext, p: XrValue[]): number {
  const t = parseOrInternal(str(p, 1));
  if (!call.isAdmin) throw new RequestError(ErrorCode.AUTHORIZATION, 'Not authorized to perform CREATE MARKETPLACE');
  return allocateMarket(sim, call, t);
}

export function marketInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  void call;
  return marketXml(sim.pools, getMarket(sim, int(p, 1)));
}

export function marketPoolInfo(sim: Sim, call: CallContext): string {
  const list = sim.filterPool(aclUse(call), sim.pools.markets.values(), -2, -1, -1);
  return poolXml('MARKETPLACE_POOL', list.map((m) => marketXml(sim.pools, m)));
}

/** SharedAPI::update + MarketPlace::post_update_template (MARKET_MAD may change, checked again). */
export function marketUpdate(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const m = getMarket(sim, id);
  sim.authorize(call, m, 'MANAGE', 'market');
  const type = int(p, 3);
  if (type < 0 || type > 1) throw new RequestError(ErrorCode.XML_RPC_API, 'Wrong update type', id);
  const nt = parseOrInternal(str(p, 2));
  const old = m.template;
  const next = type === 1 ? (() => { const c = old.clone(); c.merge(nt); return c; })() : nt;
  const newMad = next.erase('MARKET_MAD') ?? '';
  let mad = m.marketMad;
  if (newMad !== '') {
    const err = checkMarketMad(sim, newMad, next);
    if (err) throw new RequestError(ErrorCode.INTERNAL, `Cannot update template. ${err}`, id);
    mad = newMad;
  }
  next.add('MARKET_MAD', mad);
  m.template = next;
  m.marketMad = mad;
  return id;
}

/** MarketPlaceAPI::drop: refused with apps unless the driver is PUBLIC (then its apps go too). */
export function marketDelete(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const m = getMarket(sim, id);
  sim.authorize(call, m, 'MANAGE', 'market');
  if (!isPublicMarket(sim, m) && m.apps.size > 0) {
    throw new RequestError(ErrorCode.ACTION, `Cannot delete marketplace. marketplace  ${id} is not empty.`, id);
  }
  for (const a of m.apps) dropApp(sim, a);
  sim.pools.markets.delete(id);
  return id;
}

/**
 * MarketPlaceAPI::enable: a change of state only (enabling an enabled market does nothing).
 * Disabling drops every app of the market; enabling hands a monitor to the MAD at once and
 * replies without waiting for it.
 */
export function marketEnable(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const enable = bool(p, 2);
  const m = getMarket(sim, id);
  sim.authorize(call, m, 'MANAGE', 'market');
  if ((enable && m.state === MARKET_STATE.ENABLED) || (!enable && m.state === MARKET_STATE.DISABLED)) return id;
  m.state = enable ? MARKET_STATE.ENABLED : MARKET_STATE.DISABLED;
  if (enable) sim.later(async () => void (await monitorMarket(sim, id)), 0);
  else {
    const apps = [...m.apps];
    m.apps.clear();
    for (const a of apps) dropApp(sim, a);
  }
  return id;
}

// ------------------------------------------------------------------ apps

function dropApp(sim: Sim, id: number): void {
  sim.pools.marketApps.delete(id);
  sim.pools.marketAppMissing.delete(id);
}

export function marketAppInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  void call;
  return marketAppXml(sim.pools, getMarketApp(sim, int(p, 1)));
}

export function marketAppPoolInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const filter = int(p, 1);
  const ctx = filter === -2 || filter >= 0 ? aclUse(call) : call;
  const list = sim.filterPool(ctx, sim.pools.marketApps.values(), filter, int(p, 2), int(p, 3));
  return poolXml('MARKETPLACEAPP_POOL', list.map((a) => marketAppXml(sim.pools, a)));
}

/** SharedAPI::update + MarketPlaceApp::post_update_template */
export function marketAppUpdate(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const a = getMarketApp(sim, id);
  sim.authorize(call, a, 'MANAGE', 'marketapp');
  const type = int(p, 3);
  if (type < 0 || type > 1) throw new RequestError(ErrorCode.XML_RPC_API, 'Wrong update type', id);
  const nt = parseOrInternal(str(p, 2));
  if (type === 1) a.template.merge(nt);
  else a.template = nt;
  a.description = a.template.get('DESCRIPTION') ?? '';
  a.apptemplate64 = a.template.get('APPTEMPLATE64') ?? '';
  a.version = a.template.get('VERSION') ?? '';
  for (const x of ['SOURCE', 'SIZE', 'MD5', 'FORMAT', 'REGTIME', 'ORIGIN_ID']) a.template.erase(x);
  return id;
}

/** MarketPlaceApp::enable: only READY <-> DISABLED move. */
export function marketAppEnable(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const a = getMarketApp(sim, id);
  sim.authorize(call, a, 'MANAGE', 'marketapp');
  if (a.state === MARKETAPP_STATE.READY || a.state === MARKETAPP_STATE.DISABLED) {
    a.state = bool(p, 2) ? MARKETAPP_STATE.READY : MARKETAPP_STATE.DISABLED;
  }
  return id;
}

/**
 * MarketPlaceAppAPI::drop + MarketPlaceManager::delete_app + one_market.rb delete: refused
 * unless APP_ACTIONS has `delete`; else the app leaves the market's collection at once, the
 * reply is the id, and the record goes when the driver answers (success or failure alike).
 * VMTEMPLATE/SERVICE_TEMPLATE apps never reach the driver script.
 */
export function marketAppDelete(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const a = getMarketApp(sim, id);
  sim.authorize(call, a, 'MANAGE', 'marketapp');
  const cannot = (msg: string): never => {
    throw new RequestError(ErrorCode.ACTION, `Cannot delete marketplaceapp. ${msg}`, id);
  };
  if (a.zoneId !== ZONE_ID) cannot(`Marketapp can only be deleted from zone ${a.zoneId}`);
  const m = sim.pools.markets.get(a.marketId);
  if (!m) return cannot(`Cannot find associated  ID = ${a.marketId}`);
  if (!marketActions(sim, m).has('delete')) cannot(`Delete disabled for market: ${m.name}`);
  if (a.type === MARKETAPP_TYPE.UNKNOWN) cannot('');
  const payload = `<MARKET_DRIVER_ACTION_DATA>${marketAppXml(sim.pools, a)}${marketXml(sim.pools, m)}</MARKET_DRIVER_ACTION_DATA>`;
  m.apps.delete(id);
  const mad = m.marketMad;
  const viaScript = a.type !== MARKETAPP_TYPE.VMTEMPLATE && a.type !== MARKETAPP_TYPE.SERVICE_TEMPLATE;
  sim.later(async () => {
    let r: DriverResult | undefined;
    if (viaScript) r = await sim.runner.runMarket('delete', mad, String(id), payload, mad in sim.config.marketMadConf);
    const cur = sim.pools.marketApps.get(id);
    if (!cur) return;
    dropApp(sim, id);
    if (r && !r.ok) {
      const info = r.errorText !== '' && !r.errorText.startsWith('-') ? `: ${r.errorText}` : '';
      mkpLog(sim, 'E', `Error removing app from marketplace${info}.`);
    } else mkpLog(sim, 'I', 'Marketplace app successfully removed.');
  }, 0);
  return id;
}

// ------------------------------------------------------------------ monitor

interface ParsedApp {
  name: string;
  source: string;
  size: number;
  md5: string;
  format: string;
  regtime: number;
  description: string;
  version: string;
  apptemplate64: string;
  type: number;
  template: Template;
}

/** MarketPlaceApp::from_template64 */
function appFromTemplate64(t64: string): ParsedApp | { error: string } {
  const text = Buffer.from(t64, 'base64').toString('utf8');
  let t: Template;
  try {
    t = parseTextTemplate(text);
  } catch (e) {
    return { error: e instanceof TemplateParseError ? e.message : String(e) };
  }
  const typeStr = (t.get('TYPE') ?? '').toUpperCase();
  const type =
    typeStr === ''
      ? MARKETAPP_TYPE.IMAGE
      : typeStr === 'IMAGE' || typeStr === 'VMTEMPLATE' || typeStr === 'SERVICE_TEMPLATE'
        ? MARKETAPP_TYPE[typeStr]
        : MARKETAPP_TYPE.UNKNOWN;
  t.erase('TYPE');
  t.erase('ORIGIN_ID');
  const name = t.erase('NAME') ?? '';
  const source = t.erase('SOURCE') ?? '';
  const size = templateInt(t.erase('SIZE')) ?? 0;
  const md5 = t.erase('MD5') ?? '';
  const format = t.erase('FORMAT') ?? '';
  const regtime = templateInt(t.erase('REGTIME')) ?? 0;
  return {
    name,
    source,
    size,
    md5,
    format,
    regtime,
    description: t.get('DESCRIPTION') ?? '',
    version: t.get('VERSION') ?? '',
    apptemplate64: t.get('APPTEMPLATE64') ?? '',
    type,
    template: t,
  };
}

function applyParsed(a: MarketAppRec, x: ParsedApp): void {
  a.template = x.template;
  a.state = MARKETAPP_STATE.READY;
  a.type = x.type;
  a.originId = -1;
  a.name = x.name;
  a.source = x.source;
  a.size = x.size;
  a.md5 = x.md5;
  a.format = x.format;
  a.regtime = x.regtime;
  a.description = x.description;
  a.version = x.version;
  a.apptemplate64 = x.apptemplate64;
}

/**
 * MarketPlaceAppPool::import. Returns the new app id (>= 0), -2 when an app with that NAME
 * (owned by oneadmin, in any marketplace) exists — it is refreshed when VERSION, MD5 or SOURCE
 * changed — or -1 on error; `appId` is the id matched or created.
 */
function importApp(sim: Sim, t64: string, m: MarketRec): { rc: number; appId?: number; error?: string } {
  const x = appFromTemplate64(t64);
  if ('error' in x) return { rc: -1, error: x.error };
  if (Sim.nameError(x.name)) {
    x.name = 'imported--1'; // "imported-" << origin_id, and origin_id is always -1 here
    if (Sim.nameError(x.name)) return { rc: -1, error: 'Cannot generate a valid name for app' };
  }
  const existing = [...sim.pools.marketApps.values()].find((a) => a.name === x.name && a.uid === 0);
  if (existing) {
    if (existing.version !== x.version || existing.md5 !== x.md5 || existing.source !== x.source) applyParsed(existing, x);
    return { rc: -2, appId: existing.id };
  }
  const id = sim.pools.next.marketApp++;
  const rec: MarketAppRec = {
    id,
    uid: 0,
    gid: 0,
    name: x.name,
    perms: IMPORTED_APP_PERMS(),
    regtime: 0,
    zoneId: ZONE_ID,
    originId: -1,
    source: '',
    md5: '',
    size: 0,
    description: '',
    version: '',
    format: '',
    apptemplate64: '',
    marketId: m.id,
    marketName: m.name,
    state: MARKETAPP_STATE.READY,
    type: MARKETAPP_TYPE.IMAGE,
    template: new Template(),
  };
  applyParsed(rec, x);
  sim.pools.marketApps.set(id, rec);
  return { rc: id, appId: id };
}

/** MarketPlaceAppPool::test_map_check: true when the app has been missing long enough. */
function testMapCheck(sim: Sim, appId: number): boolean {
  const miss = sim.pools.marketAppMissing;
  const cur = miss.get(appId);
  if (cur === undefined) {
    miss.set(appId, 1);
    return false;
  }
  const n = cur + 1;
  if (n >= MAX_MISSING_MONITORS) {
    miss.delete(appId);
    return true;
  }
  miss.set(appId, n);
  return false;
}

/** MarketPlaceManager::_monitor with the driver's answer. */
function processMonitor(sim: Sim, id: number, r: DriverResult): void {
  if (!r.ok) {
    mkpLog(sim, 'E', `Error monitoring marketplace ${id}: ${r.errorText === '' ? '-' : r.errorText}`);
    return;
  }
  let data: Template;
  try {
    data = parseTextTemplate(r.stdout);
  } catch (e) {
    mkpLog(sim, 'E', `Error parsing marketplace information: ${e instanceof Error ? e.message : String(e)}. Monitoring information: \n${r.stdout}`);
    return;
  }
  const m = sim.pools.markets.get(id);
  if (!m || m.state === MARKET_STATE.DISABLED) return;
  const missing = new Set(m.apps);
  for (const k of ['TOTAL_MB', 'FREE_MB', 'USED_MB'] as const) {
    const v = templateInt(data.get(k));
    if (v === undefined) continue;
    if (k === 'TOTAL_MB') m.totalMb = v;
    else if (k === 'FREE_MB') m.freeMb = v;
    else m.usedMb = v;
  }
  const apps = data.attrs.filter((a) => a.name === 'APP' && a.vector === undefined).map((a) => a.value ?? '');
  for (const t64 of apps) {
    const res = importApp(sim, t64, m);
    if (res.rc === -1) mkpLog(sim, 'E', `Error importing app: ${res.error ?? ''}`);
    else if (res.rc >= 0) m.apps.add(res.rc);
    if (res.appId !== undefined) {
      sim.pools.marketAppMissing.set(res.appId, -1); // reset_map_check
      missing.delete(res.appId);
    }
  }
  if (apps.length > 0) {
    for (const appId of missing) {
      if (!testMapCheck(sim, appId)) continue;
      if (!sim.pools.marketApps.has(appId)) continue;
      dropApp(sim, appId);
      m.apps.delete(appId);
    }
  }
  mkpLog(sim, 'D', `Marketplace ${m.name} (${id}) successfully monitored.`);
}

/**
 * One monitor cycle (MarketPlaceManager::monitor_market + the MAD + _monitor), serialized
 * per market. Resolves with the driver log entry, or undefined when oned would not run the
 * driver (market gone or DISABLED, `monitor` not in APP_ACTIONS).
 */
export function monitorMarket(sim: Sim, id: number): Promise<DriverLogEntry | undefined> {
  const prev = sim.marketChains.get(id) ?? Promise.resolve();
  const run = prev.catch(() => undefined).then(() => monitorOnce(sim, id));
  sim.marketChains.set(id, run);
  void run.finally(() => {
    if (sim.marketChains.get(id) === run) sim.marketChains.delete(id);
  });
  return run;
}

async function monitorOnce(sim: Sim, id: number): Promise<DriverLogEntry | undefined> {
  const m = sim.pools.markets.get(id);
  if (!m || sim.stopped) return undefined;
  if (!marketActions(sim, m).has('monitor')) {
    mkpLog(sim, 'D', `Monitoring disabled for market: ${m.name}`);
    return undefined;
  }
  if (m.zoneId !== ZONE_ID || m.state === MARKET_STATE.DISABLED) return undefined;
  const payload = `<MARKET_DRIVER_ACTION_DATA>${marketXml(sim.pools, m)}</MARKET_DRIVER_ACTION_DATA>`;
  mkpLog(sim, 'D', `Monitoring marketplace ${m.name} (${id})`);
  const action: MarketAction = 'monitor';
  const r = await sim.runner.runMarket(action, m.marketMad, String(id), payload, m.marketMad in sim.config.marketMadConf);
  processMonitor(sim, id, r);
  return r.entry;
}

/**
 * One cycle of MarketPlaceManager::timer_action: a monitor of every market handed to the MAD,
 * whose threads run them side by side (monitorOnce skips DISABLED ones).
 */
export async function monitorAllMarkets(sim: Sim): Promise<void> {
  await Promise.all([...sim.pools.markets.keys()].map((id) => monitorMarket(sim, id)));
}
