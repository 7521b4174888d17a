// The plan file (YAML, version 1; docs/PLANS.md): the vCenter, the defaults, the budgets, the
// cutover windows, the waves and the VMs, read into PlannedVm values with the defaults merged.
// Every mistake is reported with its line and column, all of them in one PlanFileError.

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isMap, isScalar, type Node } from 'yaml';
import { OneswapError } from '../errors/index.js';
import { parseEndpoint } from '../vsphere/index.js';
import { parseCutoverAt, parseSize } from '../progress/index.js';
import type { TransportChoice } from '../input/index.js';
import type { CutoverWindow, PlanBudgets, PlannedVm, VmQuery } from './planned-vm.js';
import { PlanFileError, YamlReader, type Field } from './plan-yaml.js';

export type PlanTls =
  | { readonly kind: 'verify' }
  | { readonly kind: 'thumbprint'; readonly thumbprint: string }
  /** The CA file, resolved against the plan's folder. */
  | { readonly kind: 'ca'; readonly file: string }
  | { readonly kind: 'insecure' };

export interface PlanVcenter {
  /** host[:port] as written (what --vcenter takes). */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** Resolved against the plan's folder; absent: ONESWAP_VCENTER_PASSWORD(_FILE) or a prompt. */
  readonly passwordFile?: string;
  readonly tls: PlanTls;
  readonly datacenter?: string;
}

export interface Plan {
  /** The plan file as given. */
  readonly source: string;
  readonly vcenter: PlanVcenter;
  /** OpenNebula's XML-RPC endpoint; absent: ONE_XMLRPC or ~/.one/one_endpoint. */
  readonly endpoint?: string;
  /** In the order they run; `default` alone when the plan declares none. */
  readonly waves: readonly string[];
  readonly windows: ReadonlyMap<string, CutoverWindow>;
  readonly vms: readonly PlannedVm[];
  readonly budgets: PlanBudgets;
}

export const PLAN_VERSION = 1;
export const DEFAULT_WAVE = 'default';
export const DEFAULT_BUDGETS: Readonly<Pick<PlanBudgets, 'readsPerHost' | 'converting' | 'inFlight'>> = { readsPerHost: 2, converting: 1, inFlight: 4 };
export const TRANSPORTS: readonly TransportChoice[] = ['auto', 'folder', 'lease', 'vddk', 'nfc'];

const TOP_KEYS = ['version', 'vcenter', 'one', 'defaults', 'budgets', 'windows', 'waves', 'vms'];
const VCENTER_KEYS = ['host', 'user', 'passwordFile', 'thumbprint', 'ca', 'insecure', 'datacenter'];
const SETTING_KEYS = ['datastore', 'mode', 'shutdown', 'enableCbt', 'convert', 'output', 'transport', 'networkMap', 'namePrefix', 'keepMac', 'keepIp'] as const;
const IDENTITY_KEYS = ['name', 'path', 'uuid'] as const;
const VM_KEYS = [...IDENTITY_KEYS, ...SETTING_KEYS, 'wave', 'priority', 'cutover'];
const BUDGET_KEYS = ['readsPerHost', 'converting', 'inFlight', 'datastoreRate'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A date and a local time: a date alone would be midnight UTC in JavaScript, not the local night.
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:\d{2})?$/;

/** What the defaults and a VM may set; each VM's own values over the defaults over the built-in ones. */
interface Settings {
  datastore?: number;
  mode?: 'cold' | 'warm';
  shutdown?: boolean;
  enableCbt?: boolean;
  convert?: boolean;
  output?: 'template' | 'vm';
  transport?: TransportChoice;
  networkMap?: Map<string, string>;
  namePrefix?: string;
  keepMac?: boolean;
  keepIp?: boolean;
}

const BUILT_IN = { mode: 'cold', shutdown: false, enableCbt: false, convert: true, output: 'template', transport: 'auto', namePrefix: '', keepMac: true, keepIp: false } as const;

export async function loadPlan(path: string): Promise<Plan> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new OneswapError('usage', `cannot read the plan ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parsePlan(text, path);
}

/** The plan in `text`; `source` names it in messages and is where relative file names start from. */
export function parsePlan(text: string, source: string): Plan {
  const r = new YamlReader(text);
  // A document that is not valid YAML has no reliable structure: its syntax errors alone help.
  if (r.problems.length > 0) throw new PlanFileError(source, r.problems);
  // `x-` keys hold what anchors share (`x-common: &common …`, then `<<: *common`), as in Compose files.
  const top = new Map((r.fields(r.doc.contents as Node | null, '', TOP_KEYS, {}, (k) => k.startsWith('x-')) ?? []).map((f) => [f.name, f]));
  const base = dirname(resolve(source));

  const version = top.get('version');
  if (version === undefined) r.report(r.doc.contents as Node | null, 'version', `missing; start the plan with "version: ${PLAN_VERSION}"`);
  else {
    const v = r.int(version, 1);
    if (v !== undefined && v !== PLAN_VERSION) r.report(version.value, 'version', `this oneswap reads plan version ${PLAN_VERSION}, not ${v}`);
  }

  const vcenter = readVcenter(r, top.get('vcenter'), base);
  let endpoint: string | undefined;
  const one = top.get('one');
  if (one !== undefined) {
    const f = r.fields(one.value, 'one', ['endpoint'])?.find((x) => x.name === 'endpoint');
    if (f !== undefined) endpoint = r.string(f);
  }
  const defaults = top.has('defaults') ? readSettings(r, r.fields(top.get('defaults')!.value, 'defaults', SETTING_KEYS) ?? []) : { values: {}, fields: new Map<string, Field>() };
  const budgets = readBudgets(r, top.get('budgets'));
  const windows = readWindows(r, top.get('windows'));
  const waves = readWaves(r, top.get('waves'));
  const vms = readVms(r, top.get('vms'), defaults, windows, waves);

  if (r.problems.length > 0 || vcenter === undefined) {
    const problems = [...r.problems].sort((a, b) => a.line - b.line || a.col - b.col);
    throw new PlanFileError(source, problems);
  }
  return {
    source,
    vcenter,
    ...(endpoint === undefined ? {} : { endpoint }),
    waves: waves.names,
    windows,
    vms,
    budgets,
  };
}

function readVcenter(r: YamlReader, field: Field | undefined, base: string): PlanVcenter | undefined {
  if (field === undefined) {
    r.report(r.doc.contents as Node | null, 'vcenter', 'missing; add a vcenter: mapping with host and user');
    return undefined;
  }
  const refused = {
    password: 'a password does not belong in a plan; name a file only you can read (mode 0600) with passwordFile, or set ONESWAP_VCENTER_PASSWORD',
  };
  const fields = r.fields(field.value, 'vcenter', VCENTER_KEYS, refused);
  if (fields === undefined) return undefined;
  const get = (name: string): Field | undefined => fields.find((f) => f.name === name);
  let address: string | undefined;
  let endpoint: { host: string; port: number } | undefined;
  const hostField = get('host');
  if (hostField === undefined) r.report(field.key, 'vcenter.host', 'missing; the vCenter or ESXi host, host or host:port');
  else {
    address = r.string(hostField);
    if (address !== undefined) {
      try {
        endpoint = parseEndpoint(address, 'the host');
      } catch (err) {
        r.report(hostField.value, hostField.where, (err as Error).message);
      }
    }
  }
  const userField = get('user');
  if (userField === undefined) r.report(field.key, 'vcenter.user', 'missing; the vCenter user, e.g. administrator@vsphere.local');
  const user = userField === undefined ? undefined : r.string(userField);
  const pw = get('passwordFile');
  const passwordFile = pw === undefined ? undefined : r.string(pw);
  const tlsFields = ['thumbprint', 'ca', 'insecure'].map(get).filter((f): f is Field => f !== undefined);
  if (tlsFields.length > 1) r.report(tlsFields[1]!.key, tlsFields[1]!.where, 'choose one of thumbprint, ca and insecure');
  let tls: PlanTls | undefined = { kind: 'verify' };
  const t = tlsFields[0];
  if (t?.name === 'thumbprint') {
    const thumbprint = r.string(t);
    tls = thumbprint === undefined ? undefined : { kind: 'thumbprint', thumbprint };
  } else if (t?.name === 'ca') {
    const file = r.string(t);
    tls = file === undefined ? undefined : { kind: 'ca', file: resolve(base, file) };
  } else if (t?.name === 'insecure') {
    const insecure = r.bool(t);
    tls = insecure === undefined ? undefined : insecure ? { kind: 'insecure' } : { kind: 'verify' };
  }
  const dc = get('datacenter');
  const datacenter = dc === undefined ? undefined : r.string(dc);
  if (address === undefined || endpoint === undefined || user === undefined || tls === undefined) return undefined;
  return {
    address,
    host: endpoint.host,
    port: endpoint.port,
    user,
    ...(passwordFile === undefined ? {} : { passwordFile: resolve(base, passwordFile) }),
    tls,
    ...(datacenter === undefined ? {} : { datacenter }),
  };
}

function readSettings(r: YamlReader, fields: readonly Field[]): { values: Settings; fields: Map<string, Field> } {
  const values: Settings = {};
  const byName = new Map<string, Field>();
  for (const f of fields) {
    if (!(SETTING_KEYS as readonly string[]).includes(f.name)) continue;
    byName.set(f.name, f);
    switch (f.name as (typeof SETTING_KEYS)[number]) {
      case 'datastore':
        values.datastore = r.int(f, 0);
        break;
      case 'mode':
        values.mode = r.oneOf(f, ['cold', 'warm']);
        break;
      case 'output':
        values.output = r.oneOf(f, ['template', 'vm']);
        break;
      case 'transport':
        values.transport = r.oneOf(f, TRANSPORTS);
        break;
      case 'namePrefix':
        values.namePrefix = r.text(f);
        break;
      case 'networkMap':
        values.networkMap = readNetworkMap(r, f);
        break;
      case 'shutdown':
      case 'enableCbt':
      case 'convert':
      case 'keepMac':
      case 'keepIp':
        values[f.name as 'shutdown'] = r.bool(f);
        break;
    }
  }
  for (const k of Object.keys(values) as Array<keyof Settings>) if (values[k] === undefined) delete values[k];
  return { values, fields: byName };
}

function readNetworkMap(r: YamlReader, f: Field): Map<string, string> {
  const map = new Map<string, string>();
  for (const e of r.entries(f.value, f.where, 'vCenter network names') ?? []) {
    const v = r.scalar(e);
    if (v === undefined) continue;
    if (typeof v.value === 'number' && Number.isInteger(v.value) && v.value >= 0) map.set(e.name, String(v.value));
    else if (typeof v.value === 'string' && v.value !== '') map.set(e.name, v.value);
    else r.report(v, e.where, 'must be an OpenNebula network id or name');
  }
  return map;
}

function readBudgets(r: YamlReader, field: Field | undefined): PlanBudgets {
  const budgets: { -readonly [K in keyof PlanBudgets]: PlanBudgets[K] } & { datastoreBytesPerSec: Map<string, number> } = { ...DEFAULT_BUDGETS, datastoreBytesPerSec: new Map<string, number>() };
  if (field === undefined) return budgets;
  for (const f of r.fields(field.value, 'budgets', BUDGET_KEYS) ?? []) {
    if (f.name === 'datastoreRate') {
      for (const e of r.entries(f.value, f.where, 'vSphere datastore names') ?? []) {
        const v = r.scalar(e);
        if (v === undefined) continue;
        const rate = typeof v.value === 'number' ? v.value : typeof v.value === 'string' ? sizePerSecond(v.value) : undefined;
        if (rate === undefined || !Number.isInteger(rate) || rate <= 0) r.report(v, e.where, `${typeof v.value === 'string' ? `"${v.value}"` : String(v.value)} is not a rate; give bytes per second like 200M or 1G`);
        else budgets.datastoreBytesPerSec.set(e.name, rate);
      }
      continue;
    }
    const n = r.int(f, 1);
    if (n !== undefined) budgets[f.name as 'readsPerHost' | 'converting' | 'inFlight'] = n;
  }
  return budgets;
}

function sizePerSecond(value: string): number | undefined {
  try {
    return parseSize(value.replace(/\/s$/, ''), 'the rate');
  } catch {
    return undefined;
  }
}

function readWindows(r: YamlReader, field: Field | undefined): Map<string, CutoverWindow> {
  const windows = new Map<string, CutoverWindow>();
  if (field === undefined) return windows;
  for (const e of r.entries(field.value, 'windows', 'window names') ?? []) {
    const fields = r.fields(e.value, e.where, ['start', 'end']);
    if (fields === undefined) continue;
    const startField = fields.find((f) => f.name === 'start');
    const endField = fields.find((f) => f.name === 'end');
    if (startField === undefined) {
      r.report(e.key, e.where, 'has no start; give start: 2027-01-12T22:00 (local time)');
      continue;
    }
    const start = readTime(r, startField);
    const end = endField === undefined ? undefined : readTime(r, endField);
    if (start === undefined || (endField !== undefined && end === undefined)) continue;
    if (end !== undefined && end.getTime() <= start.getTime()) {
      r.report(endField!.value, endField!.where, 'is not after start');
      continue;
    }
    windows.set(e.name, { name: e.name, start, ...(end === undefined ? {} : { end }) });
  }
  return windows;
}

/** An ISO date-time, local unless it ends in Z or an offset; a date that does not exist is refused. */
function readTime(r: YamlReader, f: Field): Date | undefined {
  const v = r.scalar(f);
  if (v === undefined) return undefined;
  const text = typeof v.value === 'string' ? v.value : String(v.source ?? v.value);
  const m = DATE_TIME.exec(text);
  if (m === null) {
    r.report(v, f.where, `"${text}" is not a date and time; write it as 2027-01-12T22:00 (local time)`);
    return undefined;
  }
  // Date.parse rolls 2027-02-30 over into March; a plan's date must exist as written.
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map((x) => Number(x ?? 0)) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || new Date(Date.UTC(y, mo - 1, d)).getUTCDate() !== d || h > 23 || mi > 59 || sec > 59) {
    r.report(v, f.where, `"${text}" is not a date and time that exists`);
    return undefined;
  }
  return parseCutoverAt(text);
}

function readWaves(r: YamlReader, field: Field | undefined): { names: string[]; declared: boolean } {
  if (field === undefined) return { names: [DEFAULT_WAVE], declared: false };
  const names: string[] = [];
  const items = r.items(field.value, 'waves', 'wave names');
  if (items === undefined) return { names: [DEFAULT_WAVE], declared: false };
  for (const item of items) {
    const f: Field = { name: 'waves', key: item, value: item, where: 'waves' };
    const name = r.string(f);
    if (name === undefined) continue;
    if (names.includes(name)) r.report(item, 'waves', `"${name}" is listed twice`);
    else names.push(name);
  }
  if (names.length === 0) {
    r.report(field.key, 'waves', `lists no wave; name them in order, or remove waves: to run every VM in one wave`);
    return { names: [DEFAULT_WAVE], declared: false };
  }
  return { names, declared: true };
}

function readVms(
  r: YamlReader,
  field: Field | undefined,
  defaults: { values: Settings; fields: ReadonlyMap<string, Field> },
  windows: ReadonlyMap<string, CutoverWindow>,
  waves: { names: string[]; declared: boolean },
): PlannedVm[] {
  if (field === undefined) {
    r.report(r.doc.contents as Node | null, 'vms', 'missing; list the VMs to migrate under vms: (each "- name: VM")');
    return [];
  }
  const items = r.items(field.value, 'vms', 'VMs');
  if (items === undefined) return [];
  if (items.length === 0) r.report(field.key, 'vms', 'lists no VM; add one "- name: VM" per VM');
  const out: PlannedVm[] = [];
  const seen = new Map<string, number>();
  items.forEach((item, index) => {
    const label = `vms[${identityOf(item) ?? `#${index + 1}`}]`;
    const fields = r.fields(item, label, VM_KEYS);
    if (fields === undefined) return;
    const ids = fields.filter((f) => (IDENTITY_KEYS as readonly string[]).includes(f.name));
    if (ids.length === 0) {
      r.report(item, label, 'names no VM; give one of name:, path: or uuid:');
      return;
    }
    if (ids.length > 1) r.report(ids[1]!.key, label, `give only one of name, path and uuid, not ${ids.map((f) => f.name).join(' and ')}`);
    const id = ids[0]!;
    const value = r.string(id);
    if (value === undefined) return;
    const where = `vms[${value}]`;
    const query = readQuery(r, id, value, where);
    if (query === undefined) return;
    const line = r.line(item);
    const earlier = seen.get(value);
    if (earlier !== undefined) {
      r.report(id.value, `${where}.${id.name}`, `is already planned on line ${earlier}; list each VM once`);
      return;
    }
    seen.set(value, line);
    const at = (f: Field): Field => ({ ...f, where: `${where}.${f.name}` });
    const own = readSettings(r, fields.map(at));
    const s = { ...BUILT_IN, ...defaults.values, ...own.values, networkMap: new Map([...(defaults.values.networkMap ?? []), ...(own.values.networkMap ?? [])]) };
    const get = (name: string): Field | undefined => {
      const f = fields.find((x) => x.name === name);
      return f === undefined ? undefined : at(f);
    };

    if (!own.fields.has('datastore') && !defaults.fields.has('datastore'))
      r.report(item, where, 'has no datastore; set defaults.datastore or datastore: on this VM (an OpenNebula image datastore id)');
    let wave = waves.names[0]!;
    const waveField = get('wave');
    if (waveField !== undefined) {
      const w = r.string(waveField);
      if (w !== undefined && waves.declared && waves.names.includes(w)) wave = w;
      else if (w !== undefined)
        r.report(waveField.value, waveField.where, waves.declared ? `unknown wave "${w}" (waves: ${waves.names.join(', ')})` : `unknown wave "${w}"; declare the waves in order under waves:`);
    }
    const priorityField = get('priority');
    const priority = priorityField === undefined ? 0 : (r.int(priorityField, Number.MIN_SAFE_INTEGER) ?? 0);

    const cutoverField = get('cutover');
    let cutover: CutoverWindow | undefined;
    if (cutoverField !== undefined) {
      if (s.mode !== 'warm') r.report(cutoverField.key, cutoverField.where, 'a cutover time is only for warm VMs; set mode: warm on this VM or remove cutover');
      else cutover = readCutover(r, cutoverField, windows);
    }
    const shutdownField = own.fields.get('shutdown');
    if (shutdownField !== undefined && s.mode === 'warm')
      r.report(shutdownField.key, shutdownField.where, 'is for cold VMs (a warm cutover always shuts the guest down); remove it or set mode: cold');
    const cbtField = own.fields.get('enableCbt');
    if (cbtField !== undefined && s.mode === 'cold') r.report(cbtField.key, cbtField.where, 'is for warm VMs; remove it or set mode: warm');
    if (s.datastore === undefined) return;
    out.push({
      key: value,
      query,
      line,
      wave,
      priority,
      mode: s.mode === 'warm' ? { kind: 'warm', enableCbt: s.enableCbt, ...(cutover === undefined ? {} : { cutover }) } : { kind: 'cold', shutdown: s.shutdown },
      datastoreId: s.datastore,
      networkMap: s.networkMap,
      convert: s.convert,
      output: s.output,
      transport: s.transport,
      namePrefix: s.namePrefix,
      keepMac: s.keepMac,
      keepIp: s.keepIp,
    });
  });
  return out;
}

/** The VM an entry names, to name the entry in messages about its other keys. */
function identityOf(item: Node): string | undefined {
  if (!isMap(item)) return undefined;
  for (const pair of item.items) {
    if (isScalar(pair.key) && (IDENTITY_KEYS as readonly unknown[]).includes(pair.key.value) && isScalar(pair.value) && typeof pair.value.value === 'string') return pair.value.value;
  }
  return undefined;
}

function readQuery(r: YamlReader, id: Field, value: string, where: string): VmQuery | undefined {
  if (id.name === 'path' && !value.startsWith('/')) {
    r.report(id.value, `${where}.path`, 'an inventory path starts with "/", e.g. /DC0/vm/web01');
    return undefined;
  }
  if (id.name === 'uuid' && !UUID.test(value)) {
    r.report(id.value, `${where}.uuid`, 'is not a UUID (8-4-4-4-12 hexadecimal digits)');
    return undefined;
  }
  return { by: id.name as VmQuery['by'], value };
}

function readCutover(r: YamlReader, f: Field, windows: ReadonlyMap<string, CutoverWindow>): CutoverWindow | undefined {
  const v = r.scalar(f);
  if (v === undefined) return undefined;
  const text = typeof v.value === 'string' ? v.value : String(v.source ?? v.value);
  const window = windows.get(text);
  if (window !== undefined) return window;
  if (/^\d{4}-/.test(text)) {
    const start = readTime(r, f);
    return start === undefined ? undefined : { start };
  }
  const known = [...windows.keys()];
  r.report(v, f.where, `unknown window "${text}"${known.length > 0 ? ` (windows: ${known.join(', ')})` : ''}; name a window of windows: or give a date and time like 2027-01-12T22:00`);
  return undefined;
}
