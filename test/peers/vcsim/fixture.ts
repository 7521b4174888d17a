// Test fixtures on the vCenter simulator: build VMs with chosen hardware and
// real disk contents, through a tiny hand-written SOAP client of the tests'
// own (deliberately independent of the product's client in lib/vsphere, so a
// bug there cannot hide in the fixture).

import { execFile } from 'node:child_process';
import { createCipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { XMLParser } from 'fast-xml-parser';
import type { Vcsim } from './index.js';

const execFileP = promisify(execFile);

// ---------------------------------------------------------------------------
// Minimal SOAP client

export interface MoRef {
  type: string;
  value: string;
}

/** Parsed XML: elements are objects (or arrays when repeated), attributes '@_x', text '#text'. */
export type Xml = unknown;

/** A SOAP fault; `faultType` is the detail type, e.g. 'FileFault'. */
export class VimFault extends Error {
  constructor(
    readonly method: string,
    readonly status: number,
    readonly faultType: string,
    readonly detail: Xml,
    message: string,
  ) {
    super(`${method}: ${faultType}: ${message}`);
  }
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Test code only: prefixes are dropped, so xsi:type (which vcsim writes as
  // XMLSchema-instance:type) becomes '@_type' like a moref's type attribute.
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
});

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export const ref = (m: MoRef, tag = '_this'): string => `<${tag} type="${m.type}">${xmlEscape(m.value)}</${tag}>`;

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Child element (first, if repeated). */
export function child(x: Xml, name: string): Xml {
  const v = isObj(x) ? x[name] : undefined;
  return Array.isArray(v) ? v[0] : v;
}

/** Repeated child elements as an array. */
export function children(x: Xml, name: string): Xml[] {
  const v = isObj(x) ? x[name] : undefined;
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

export function text(x: Xml): string {
  if (typeof x === 'string') return x;
  if (isObj(x) && typeof x['#text'] === 'string') return x['#text'];
  return '';
}

export function num(x: Xml): number {
  return Number(text(x));
}

/** The xsi:type (or moref type) attribute. */
export function xsiType(x: Xml): string {
  return isObj(x) && typeof x['@_type'] === 'string' ? x['@_type'] : '';
}

export function moref(x: Xml): MoRef {
  return { type: xsiType(x), value: text(x) };
}

export class VimClient {
  cookie = '';

  private constructor(readonly sim: Vcsim) {}

  static async login(sim: Vcsim, username = sim.username, password = sim.password): Promise<VimClient> {
    const c = new VimClient(sim);
    await c.login(username, password);
    return c;
  }

  async login(username = this.sim.username, password = this.sim.password): Promise<void> {
    this.cookie = '';
    const res = await this.raw(
      'Login',
      `${ref({ type: 'SessionManager', value: 'SessionManager' })}<userName>${xmlEscape(username)}</userName><password>${xmlEscape(password)}</password>`,
    );
    const set = res.headers['set-cookie'];
    const m = /vmware_soap_session=("?[^;"]*"?)/.exec(Array.isArray(set) ? set.join(';') : (set ?? ''));
    if (res.status !== 200 || !m) throw this.fault('Login', res);
    this.cookie = `vmware_soap_session=${m[1] ?? ''}`;
  }

  async logout(): Promise<void> {
    await this.call('Logout', ref({ type: 'SessionManager', value: 'SessionManager' }));
    this.cookie = '';
  }

  /** POST one SOAP call; no fault handling. */
  raw(method: string, inner: string, cookie = this.cookie): Promise<HttpResult> {
    const envelope =
      '<?xml version="1.0" encoding="UTF-8"?>' +
      '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ' +
      'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">' +
      `<soapenv:Body><${method} xmlns="urn:vim25">${inner}</${method}></soapenv:Body></soapenv:Envelope>`;
    return this.http('POST', '/sdk', {
      body: Buffer.from(envelope),
      headers: { 'content-type': 'text/xml; charset=utf-8', soapaction: 'urn:vim25/6.5' },
      cookie,
    });
  }

  /**
   * Calls a method and returns its parsed <returnval> (undefined when void); throws VimFault.
   * An expired session (NotAuthenticated) is renewed once, so fixtures survive idle timeouts.
   */
  async call(method: string, inner: string): Promise<Xml> {
    let res = await this.raw(method, inner);
    if (res.status !== 200 && this.cookie && method !== 'Logout' && this.fault(method, res).faultType === 'NotAuthenticated') {
      await this.login();
      res = await this.raw(method, inner);
    }
    if (res.status !== 200) throw this.fault(method, res);
    const body = child(child(parser.parse(res.body.toString('utf8')), 'Envelope'), 'Body');
    return child(child(body, `${method}Response`), 'returnval');
  }

  private fault(method: string, res: HttpResult): VimFault {
    const fault = child(child(child(parser.parse(res.body.toString('utf8')), 'Envelope'), 'Body'), 'Fault');
    const detail = child(fault, 'detail');
    const first = isObj(detail) ? Object.keys(detail).find((k) => !k.startsWith('@_')) : undefined;
    const d = first === undefined ? undefined : child(detail, first);
    const type = xsiType(d) || (first ?? 'HTTP' + res.status).replace(/Fault$/, '');
    return new VimFault(method, res.status, type, d, text(child(fault, 'faultstring')) || res.body.toString('utf8').slice(0, 200));
  }

  /** An HTTPS request to the simulator, verified against its certificate, with the session cookie. */
  http(
    method: string,
    path: string,
    opts: { body?: Buffer; headers?: Record<string, string>; cookie?: string } = {},
  ): Promise<HttpResult> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    const cookie = opts.cookie ?? this.cookie;
    if (cookie) headers.cookie = cookie;
    if (opts.body) headers['content-length'] = String(opts.body.length);
    return new Promise((resolve, reject) => {
      const req = request(
        { host: this.sim.host, port: this.sim.port, path, method, headers, ca: this.sim.certPem, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(opts.body);
    });
  }

  /** Waits for a task and returns its info.result. */
  async waitTask(task: MoRef): Promise<Xml> {
    for (let i = 0; i < 600; i++) {
      const info = (await this.props(task, ['info']))['info'];
      const state = text(child(info, 'state'));
      if (state === 'success') return child(info, 'result');
      if (state === 'error') {
        const err = child(child(info, 'error'), 'fault');
        throw new VimFault(text(child(info, 'name')), 200, xsiType(err), err, text(child(child(info, 'error'), 'localizedMessage')));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`task ${task.value} did not finish`);
  }

  /** Calls a *_Task method and waits for it. */
  async task(method: string, inner: string): Promise<Xml> {
    return this.waitTask(moref(await this.call(method, inner)));
  }

  /** RetrieveProperties of one object: path -> parsed <val>. */
  async props(obj: MoRef, paths: string[]): Promise<Record<string, Xml>> {
    const spec =
      `<specSet><propSet><type>${obj.type}</type>${paths.map((p) => `<pathSet>${p}</pathSet>`).join('')}</propSet>` +
      `<objectSet>${ref(obj, 'obj')}</objectSet></specSet>`;
    const ret = await this.call('RetrieveProperties', ref({ type: 'PropertyCollector', value: 'propertyCollector' }) + spec);
    const out: Record<string, Xml> = {};
    for (const p of children(ret, 'propSet')) out[text(child(p, 'name'))] = child(p, 'val');
    const missing = child(ret, 'missingSet');
    if (missing !== undefined) {
      const f = child(child(missing, 'fault'), 'fault');
      throw new VimFault('RetrieveProperties', 200, xsiType(f), f, `missingSet ${text(child(missing, 'path'))}`);
    }
    return out;
  }

  async findByInventoryPath(path: string): Promise<MoRef | undefined> {
    const r = await this.call(
      'FindByInventoryPath',
      `${ref({ type: 'SearchIndex', value: 'SearchIndex' })}<inventoryPath>${xmlEscape(path)}</inventoryPath>`,
    );
    return r === undefined ? undefined : moref(r);
  }
}

// One logged-in client per simulator for the helpers below.
const clients = new WeakMap<Vcsim, Promise<VimClient>>();
export function client(sim: Vcsim): Promise<VimClient> {
  let c = clients.get(sim);
  if (!c) {
    c = VimClient.login(sim);
    clients.set(sim, c);
  }
  return c;
}

// ---------------------------------------------------------------------------
// Deterministic data

/**
 * `length` pseudo-random bytes determined by `seed` alone (AES-128-CTR of
 * zeros, key derived from the seed): fast for hundreds of MiB, and a test can
 * recompute what a fixture wrote.
 */
export function pseudoRandom(seed: number, length: number): Buffer {
  const key = createHash('sha256').update(`oneswap-vcsim-fixture:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(length));
}

/** Writes pseudoRandom(seed, length) at offset into a file (not truncating it). */
export async function writeDiskData(flatPath: string, offset: number, length: number, seed: number): Promise<void> {
  const key = createHash('sha256').update(`oneswap-vcsim-fixture:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const fh = await open(flatPath, 'r+');
  try {
    const chunk = 4 << 20; // same stream as pseudoRandom, generated in pieces
    for (let done = 0; done < length; done += chunk) {
      const n = Math.min(chunk, length - done);
      await fh.write(cipher.update(Buffer.alloc(n)), 0, n, offset + done);
    }
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------
// Simulator stats (GET /sim/stats)

export interface SimLeaseStats {
  /** Lease moref value. */
  id: string;
  vm: string;
  /** Snapshot moref value; '' for ExportVm. */
  snapshot: string;
  state: 'initializing' | 'ready' | 'done' | 'error';
  /** How it ended; '' while live (or when its export failed). */
  end: 'complete' | 'abort' | 'expired' | '';
  /** Body bytes served from its URLs. */
  bytes: number;
}

/** One ESXi host's disk reads (reads.go in vcsim-cbt; README "Disk reads per host"). */
export interface SimHostReads {
  /** The host's name, e.g. 'DC0_H1'. */
  name: string;
  /** Disks being read now. */
  current: number;
  /** The most disks read at once since start or the last reset. */
  max: number;
  /** Disk reads started since start or the last reset. */
  total: number;
}

/** One disk read: from its first reader opening to its last closing. */
export interface SimReadInterval {
  /** Host moref value (the VM's runtime.host when the read started). */
  host: string;
  /** VM moref value. */
  vm: string;
  /** The disk's backing fileName, e.g. '[LocalDS_0] fleet-01/fleet-01.vmdk'. */
  disk: string;
  /** The reader that opened it. */
  via: 'folder' | 'nfc' | 'nfc-disk';
  /** Milliseconds since the Unix epoch (microsecond precision). */
  start: number;
  /** null while the read goes on. */
  end: number | null;
}

export interface SimDiskReads {
  /** By host moref value; hosts without reads since start or reset are absent. */
  hosts: Record<string, SimHostReads>;
  /** Ended reads, in the order they ended (the last 10000). */
  intervals: SimReadInterval[];
  /** Reads going on, in the order they started. */
  open: SimReadInterval[];
  /** Ended reads dropped from `intervals` to bound it. */
  dropped: number;
  /** Each disk's byte ranges asked for since start or the last reset (ranges.go), by VM and disk. */
  ranges: SimDiskRanges[];
  /** Ranges not kept, to bound the record. */
  rangesDropped: number;
}

/** One disk's reads as byte ranges of the disk (ranges.go in vcsim-cbt). */
export interface SimDiskRanges {
  /** VM moref value. */
  vm: string;
  /** The disk's backing fileName. */
  disk: string;
  /** [start, end) in the disk's offsets, in the order asked for; an export lease download is the whole disk. */
  ranges: Array<{ start: number; end: number; via: 'folder' | 'nfc' | 'nfc-disk' }>;
}

export interface SimStats {
  /** /folder GET/HEADs refused because a running VM locks the file. */
  folderRefusals: number;
  /** Body bytes served by /folder. */
  folderBytes: number;
  /** Body bytes of /nfc export lease downloads. */
  nfcBytes: number;
  /** Body bytes of /nfc-disk/read. */
  nfcDiskBytes: number;
  /** Every export lease, in creation order. */
  leases: SimLeaseStats[];
  /** Disk reads in progress per ESXi host, for budget checks. */
  diskReads: SimDiskReads;
  /** Disk bytes served per ESXi host (moref value) since start, every reader alike; paced by -host-rate. */
  hostBytes: Record<string, number>;
}

/** What the simulator counted so far (no session needed). */
export async function simStats(sim: Vcsim): Promise<SimStats> {
  const r = await (await client(sim)).http('GET', '/sim/stats', { cookie: '' });
  if (r.status !== 200) throw new Error(`GET /sim/stats: HTTP ${r.status}`);
  return JSON.parse(r.body.toString('utf8')) as SimStats;
}

/** Starts the disk-read record anew (POST /sim/disk-reads/reset): reads going on stay. */
export async function resetDiskReads(sim: Vcsim): Promise<void> {
  const r = await (await client(sim)).http('POST', '/sim/disk-reads/reset', { cookie: '' });
  if (r.status !== 204) throw new Error(`POST /sim/disk-reads/reset: HTTP ${r.status}`);
}

/**
 * The most disks read at once per host (by host moref), from the recorded reads, each disk's
 * reads less than `gapMs` apart joined into one. The simulator's own `max` counts a /folder disk
 * only while a request of it is in flight, so a client's pauses between the requests of one disk
 * (on loopback often longer than the requests) hide overlaps; joining them shows what the client's
 * scheduler let run at once. Only the same disk is joined: a disk read again within `gapMs` of
 * its previous read counts as read in between (choose gapMs below the client's own pauses between
 * two reads of one disk, e.g. a warm round's snapshot calls). Open reads count as going on.
 * Throws when reads were dropped from the record.
 */
export function readPeaks(reads: Pick<SimDiskReads, 'hosts' | 'intervals' | 'open' | 'dropped'>, gapMs: number): Record<string, number> {
  if (reads.dropped > 0) throw new Error(`${reads.dropped} disk reads were dropped from the record; reset it more often`);
  const spans = new Map<string, Array<{ start: number; end: number }>>();
  for (const r of [...reads.intervals, ...reads.open]) {
    const key = JSON.stringify([r.host, r.vm, r.disk]);
    spans.set(key, [...(spans.get(key) ?? []), { start: r.start, end: r.end ?? Infinity }]);
  }
  // Per host: +1 where a joined read starts, -1 where it ends; an end sorts before a start at the same time.
  const events = new Map<string, Array<[number, number]>>();
  for (const [key, list] of spans) {
    const host = (JSON.parse(key) as string[])[0]!;
    const joined: Array<{ start: number; end: number }> = [];
    for (const s of list.sort((a, b) => a.start - b.start)) {
      const last = joined[joined.length - 1];
      if (last && s.start - last.end < gapMs) last.end = Math.max(last.end, s.end);
      else joined.push({ ...s });
    }
    const ev = events.get(host) ?? [];
    for (const j of joined) ev.push([j.start, 1], [j.end, -1]);
    events.set(host, ev);
  }
  const peaks: Record<string, number> = {};
  for (const [host, ev] of events) {
    let now = 0;
    let peak = 0;
    for (const [, d] of ev.sort((a, b) => a[0] - b[0] || a[1] - b[1])) peak = Math.max(peak, (now += d));
    peaks[host] = peak;
  }
  return peaks;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  // Large reads: fleets hash hundreds of MiB, mostly holes, and 64 KiB reads cost more than the hashing.
  for await (const c of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(c as Buffer);
  return h.digest('hex');
}

// ---------------------------------------------------------------------------
// Test VMs

export interface DiskSpec {
  /** Multiple of 1024. */
  sizeBytes: number;
  /** Regions of pseudo-random data; seed defaults to a value derived from disk and region index. */
  data?: Array<{ offset: number; length: number; seed?: number }>;
  /** A raw disk image whose bytes (holes kept) become the disk's content, e.g. a built guest. */
  fromRaw?: string;
  controller?: 'pvscsi' | 'lsilogic' | 'sata';
  /** vSphere disk mode, default 'persistent'. */
  mode?: 'persistent' | 'independent_persistent' | 'independent_nonpersistent';
  /**
   * A raw device mapping of a LUN (naa.<lun>) in this compatibility mode instead of a virtual
   * disk: the backing is VirtualDiskRawDiskMappingVer1BackingInfo (vcsim-cbt's POST /sim/rdm),
   * the descriptor a VMFS mapping file. No data or fromRaw: the bytes are the LUN's. The VM then
   * refuses ReconfigVM_Task, Destroy_Task and the like (README "Raw device mappings").
   */
  rdm?: 'physical' | 'virtual';
  /** The LUN's NAA id, 32 hex digits; default derived from VM name and disk index. */
  lun?: string;
}

export interface NicSpec {
  /** Default 'VM Network'. */
  network?: string;
  /** Default: a random address in VMware's manual range 00:50:56:00-3f. */
  mac?: string;
  adapter?: 'vmxnet3' | 'e1000' | 'e1000e';
}

export interface TestVmSpec {
  name: string;
  datacenter?: string;
  /** Standalone host or cluster whose root resource pool receives the VM (default 'DC0_H0'). */
  host?: string;
  /**
   * The ESXi host (name) the VM is registered on (runtime.host), e.g. 'DC0_C0_H1' in cluster
   * 'DC0_C0'. Default: a standalone host's own; in a cluster vcsim picks one at random.
   */
  esxHost?: string;
  datastore?: string;
  firmware?: 'bios' | 'efi';
  guestId?: string;
  numCPUs?: number;
  coresPerSocket?: number;
  memoryMB?: number;
  disks: DiskSpec[];
  nics?: NicSpec[];
  cbt?: boolean;
  powerOn?: boolean;
  /** Virtual hardware version, e.g. 'vmx-04' (default: the simulator's). */
  hardwareVersion?: string;
  annotation?: string;
}

export interface TestDisk {
  key: number;
  /** Datastore path of the descriptor, e.g. '[LocalDS_0] vm/vm.vmdk'. */
  fileName: string;
  /**
   * Local path of the file holding the guest bytes: the -flat extent, or on the vSAN datastore
   * the object file (<datastore>/.vsan-objects/<uuid>, not reachable through /folder).
   */
  flatPath: string;
  /** The vSAN object UUID when the disk is on the vSAN datastore. */
  vsanObject?: string;
  sizeBytes: number;
  /** sha256 (hex) of the whole raw disk content. */
  sha256: string;
  /** Bytes of pseudo-random data written. */
  dataBytes: number;
}

export interface TestVm {
  name: string;
  moref: MoRef;
  nics: Array<{ mac: string }>;
  disks: TestDisk[];
}

const controllerTypes = { pvscsi: 'ParaVirtualSCSIController', lsilogic: 'VirtualLsiLogicController', sata: 'VirtualAHCIController' };
const nicTypes = { vmxnet3: 'VirtualVmxnet3', e1000: 'VirtualE1000', e1000e: 'VirtualE1000e' };

function randomMac(): string {
  const b = randomBytes(3);
  b[0] = (b[0] ?? 0) & 0x3f;
  return `00:50:56:${[...b].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
}

/** Local path of a datastore path '[ds] dir/file'. */
export function localPath(sim: Vcsim, dsPath: string): string {
  const m = /^\[([^\]]+)\] ?(.*)$/.exec(dsPath);
  const dir = m ? sim.datastores[m[1] ?? ''] : undefined;
  if (!m || dir === undefined) throw new Error(`unknown datastore path ${dsPath}`);
  return join(dir, m[2] ?? '');
}

export function flatPathOf(descriptorPath: string): string {
  return descriptorPath.replace(/\.vmdk$/, '-flat.vmdk');
}

/** config.hardware.device of a VM (or snapshot), parsed. */
export async function devices(sim: Vcsim, obj: MoRef): Promise<Xml[]> {
  const c = await client(sim);
  const props = await c.props(obj, ['config.hardware.device']);
  return children(props['config.hardware.device'], 'VirtualDevice');
}

export async function createTestVm(sim: Vcsim, spec: TestVmSpec): Promise<TestVm> {
  const c = await client(sim);
  const dc = spec.datacenter ?? 'DC0';
  const ds = spec.datastore ?? 'LocalDS_0';
  const folder = await c.findByInventoryPath(`${dc}/vm`);
  const pool = await c.findByInventoryPath(`${dc}/host/${spec.host ?? 'DC0_H0'}/Resources`);
  if (!folder || !pool) throw new Error(`datacenter ${dc} or host ${spec.host ?? 'DC0_H0'} not found`);
  const esxHost = spec.esxHost === undefined ? undefined : await c.findByInventoryPath(`${dc}/host/${spec.host ?? 'DC0_H0'}/${spec.esxHost}`);
  if (spec.esxHost !== undefined && !esxHost) throw new Error(`ESXi host ${spec.esxHost} not found in ${spec.host ?? 'DC0_H0'}`);
  for (const d of spec.disks) if (d.sizeBytes % 1024 !== 0) throw new Error('disk sizeBytes must be a multiple of 1024');
  for (const d of spec.disks)
    if (d.rdm !== undefined && (d.data !== undefined || d.fromRaw !== undefined || ds === sim.vsanDatastore))
      throw new Error('an RDM disk has no data or fromRaw, and is not on vSAN');

  // Controllers: one per kind used, keys -100, -101, ...; SCSI units skip 7.
  const changes: string[] = [];
  const ctrlKey = new Map<string, number>();
  const nextUnit = new Map<string, number>();
  spec.disks.forEach((d, i) => {
    const kind = d.controller ?? 'pvscsi';
    if (!ctrlKey.has(kind)) {
      const key = -100 - ctrlKey.size;
      ctrlKey.set(kind, key);
      const bus = [...ctrlKey.keys()].filter((k) => (k === 'sata') === (kind === 'sata')).length - 1;
      const extra = kind === 'sata' ? '' : '<sharedBus>noSharing</sharedBus>';
      changes.push(
        `<deviceChange><operation>add</operation><device xsi:type="${controllerTypes[kind]}"><key>${key}</key><busNumber>${bus}</busNumber>${extra}</device></deviceChange>`,
      );
    }
    let unit = nextUnit.get(kind) ?? 0;
    if (kind !== 'sata' && unit === 7) unit++;
    nextUnit.set(kind, unit + 1);
    changes.push(
      '<deviceChange><operation>add</operation><fileOperation>create</fileOperation>' +
        `<device xsi:type="VirtualDisk"><key>${-200 - i}</key>` +
        `<backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>[${ds}]</fileName><diskMode>${d.mode ?? 'persistent'}</diskMode><thinProvisioned>false</thinProvisioned></backing>` +
        `<controllerKey>${ctrlKey.get(kind)}</controllerKey><unitNumber>${unit}</unitNumber><capacityInKB>${d.sizeBytes / 1024}</capacityInKB></device></deviceChange>`,
    );
  });
  const nics = (spec.nics ?? []).map((n) => ({ ...n, mac: n.mac ?? randomMac() }));
  nics.forEach((n, i) => {
    changes.push(
      `<deviceChange><operation>add</operation><device xsi:type="${nicTypes[n.adapter ?? 'vmxnet3']}"><key>${-300 - i}</key>` +
        `<backing xsi:type="VirtualEthernetCardNetworkBackingInfo"><deviceName>${xmlEscape(n.network ?? 'VM Network')}</deviceName></backing>` +
        `<addressType>manual</addressType><macAddress>${n.mac}</macAddress></device></deviceChange>`,
    );
  });
  const config =
    `<config><name>${xmlEscape(spec.name)}</name>${spec.hardwareVersion ? `<version>${spec.hardwareVersion}</version>` : ''}<guestId>${spec.guestId ?? 'otherGuest'}</guestId>` +
    (spec.annotation !== undefined ? `<annotation>${xmlEscape(spec.annotation)}</annotation>` : '') +
    `<files><vmPathName>[${ds}]</vmPathName></files>` +
    `<numCPUs>${spec.numCPUs ?? 1}</numCPUs><numCoresPerSocket>${spec.coresPerSocket ?? 1}</numCoresPerSocket>` +
    `<memoryMB>${spec.memoryMB ?? 512}</memoryMB>${changes.join('')}` +
    `<firmware>${spec.firmware ?? 'bios'}</firmware></config>`;
  const vm = moref(await c.task('CreateVM_Task', ref(folder) + config + ref(pool, 'pool') + (esxHost ? ref(esxHost, 'host') : '')));

  // Match the created disks to the spec: files are named <vm>.vmdk, <vm>_1.vmdk, ... in spec order.
  const created = (await devices(sim, vm)).filter((d) => xsiType(d) === 'VirtualDisk');
  const disks: TestDisk[] = [];
  const edits: string[] = [];
  const matched: Array<{ fileName: string; key: number }> = [];
  for (const [i, d] of spec.disks.entries()) {
    const file = `${spec.name}/${spec.name}${i === 0 ? '' : `_${i}`}.vmdk`;
    const dev = created.find((x) => text(child(child(x, 'backing'), 'fileName')).endsWith(`] ${file}`));
    if (!dev) throw new Error(`disk ${file} not found on ${spec.name}`);
    const fileName = text(child(child(dev, 'backing'), 'fileName'));
    const key = num(child(dev, 'key'));
    matched.push({ fileName, key });
    edits.push(
      `<deviceChange><operation>edit</operation><device xsi:type="VirtualDisk"><key>${key}</key>` +
        `<deviceInfo><label>${xmlEscape(text(child(child(dev, 'deviceInfo'), 'label')) || `Hard disk ${i + 1}`)}</label><summary></summary></deviceInfo>` +
        `<backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>${xmlEscape(fileName)}</fileName><diskMode>${d.mode ?? 'persistent'}</diskMode><thinProvisioned>false</thinProvisioned></backing>` +
        `<controllerKey>${text(child(dev, 'controllerKey'))}</controllerKey><unitNumber>${text(child(dev, 'unitNumber'))}</unitNumber>` +
        `<capacityInKB>${d.sizeBytes / 1024}</capacityInKB><capacityInBytes>${d.sizeBytes}</capacityInBytes></device></deviceChange>`,
    );
  }
  const cbt = spec.cbt ? '<changeTrackingEnabled>true</changeTrackingEnabled>' : '';
  // Reconfigure first: stock vcsim wants the <disk>-flat.vmdk placeholder present when a disk is
  // edited, and a vSAN disk has none once laid out.
  await c.task('ReconfigVM_Task', ref(vm) + `<spec>${edits.join('')}${cbt}</spec>`);

  for (const [i, d] of spec.disks.entries()) {
    const { fileName, key } = matched[i] ?? { fileName: '', key: 0 };
    const descriptor = localPath(sim, fileName);
    let flatPath = flatPathOf(descriptor);
    let vsanObject: string | undefined;
    // Replace the simulator's 0-byte placeholders by a real monolithicFlat VMDK, or on vSAN by
    // a descriptor naming an object.
    await rm(descriptor, { force: true });
    await rm(flatPath, { force: true });
    if (d.rdm !== undefined) {
      flatPath = await writeRdmMapping(descriptor, d.rdm, d.sizeBytes);
      // NAA type 6 (registered extended), as SAN arrays name their LUNs.
      await makeRdm(sim, vm, key, d.rdm, d.lun ?? '6' + createHash('sha256').update(`${spec.name}:${i}`).digest('hex').slice(0, 31));
    } else if (ds === sim.vsanDatastore) {
      vsanObject = randomUUID();
      flatPath = await writeVsanDisk(sim, ds, descriptor, vsanObject, d.sizeBytes);
    } else {
      await execFileP('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', descriptor, String(d.sizeBytes)]);
    }
    let dataBytes = 0;
    if (d.fromRaw !== undefined) {
      if ((await stat(d.fromRaw)).size > d.sizeBytes) throw new Error(`${d.fromRaw} is larger than the disk (${d.sizeBytes} bytes)`);
      await execFileP('cp', ['--sparse=always', d.fromRaw, flatPath]);
      await truncate(flatPath, d.sizeBytes);
      dataBytes = (await stat(flatPath)).blocks * 512;
    }
    for (const [j, r] of (d.data ?? []).entries()) {
      await writeDiskData(flatPath, r.offset, r.length, r.seed ?? 1000 * (i + 1) + j);
      dataBytes += r.length;
    }
    disks.push({ key, fileName, flatPath, sizeBytes: d.sizeBytes, sha256: await sha256File(flatPath), dataBytes, ...(vsanObject ? { vsanObject } : {}) });
  }
  if (spec.powerOn) await powerOn(sim, vm);
  return { name: spec.name, moref: vm, nics: nics.map((n) => ({ mac: n.mac })), disks };
}

/**
 * Lays an RDM out as VMFS does: the descriptor (the disk's fileName) names a mapping file
 * <disk>-rdmp.vmdk (physical) or <disk>-rdm.vmdk (virtual) that stands for the LUN; here a sparse
 * file of the LUN's size. Returns the mapping file's local path.
 */
async function writeRdmMapping(descriptor: string, mode: 'physical' | 'virtual', sizeBytes: number): Promise<string> {
  const mapping = descriptor.replace(/\.vmdk$/, mode === 'physical' ? '-rdmp.vmdk' : '-rdm.vmdk');
  await writeFile(mapping, '');
  await truncate(mapping, sizeBytes);
  const text =
    '# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\n' +
    `CID=${randomBytes(4).toString('hex')}\nparentCID=ffffffff\ncreateType="${mode === 'physical' ? 'vmfsPassthroughRawDeviceMap' : 'vmfsRawDeviceMap'}"\n\n` +
    `# Extent description\nRW ${Math.ceil(sizeBytes / 512)} VMFSRDM "${mapping.slice(mapping.lastIndexOf('/') + 1)}"\n\n` +
    '# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\nddb.virtualHWVersion = "13"\n';
  await writeFile(descriptor, text);
  return mapping;
}

/** Turns a flat disk of a VM into an RDM of LUN naa.<lun> (vcsim-cbt's POST /sim/rdm). */
async function makeRdm(sim: Vcsim, vm: MoRef, key: number, mode: 'physical' | 'virtual', lun: string): Promise<void> {
  const q = new URLSearchParams({ vm: vm.value, disk: String(key), mode: `${mode}Mode`, naa: lun });
  const r = await (await client(sim)).http('POST', `/sim/rdm?${q}`, { cookie: '' });
  if (r.status !== 204) throw new Error(`POST /sim/rdm: HTTP ${r.status}: ${r.body.toString('utf8').trim()}`);
}

/**
 * Lays a disk out as vSAN does: the descriptor in the VM folder names the object
 * (`RW <sectors> VSANSPARSE "vsan://<uuid>"`), whose bytes the simulator keeps as a sparse raw
 * file <datastore dir>/.vsan-objects/<uuid>. Returns the object's local path.
 */
export async function writeVsanDisk(sim: Vcsim, ds: string, descriptor: string, uuid: string, sizeBytes: number): Promise<string> {
  const dir = sim.datastores[ds];
  if (dir === undefined) throw new Error(`unknown datastore ${ds}`);
  const object = join(dir, '.vsan-objects', uuid);
  await mkdir(dirname(object), { recursive: true });
  await writeFile(object, '');
  await truncate(object, sizeBytes);
  const sectors = Math.ceil(sizeBytes / 512);
  const text =
    '# Disk DescriptorFile\nversion=4\nencoding="UTF-8"\n' +
    `CID=${randomBytes(4).toString('hex')}\nparentCID=ffffffff\ncreateType="vsanSparse"\n\n` +
    `# Extent description\nRW ${sectors} VSANSPARSE "vsan://${uuid}"\n\n` +
    '# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\nddb.virtualHWVersion = "13"\n' +
    `ddb.uuid = "${randomBytes(16).toString('hex').replace(/(..)(?!$)/g, '$1 ')}"\n`;
  await writeFile(descriptor, text);
  return object;
}

export async function powerOn(sim: Vcsim, vm: MoRef): Promise<void> {
  await (await client(sim)).task('PowerOnVM_Task', ref(vm));
}

export async function powerOff(sim: Vcsim, vm: MoRef): Promise<void> {
  await (await client(sim)).task('PowerOffVM_Task', ref(vm));
}

/**
 * Makes the VM report `ip` on its first NIC as VMware Tools would (guest.net): vcsim takes
 * `SET.guest.ipAddress` in extraConfig for that.
 */
export async function setReportedAddress(sim: Vcsim, vm: MoRef, ip: string): Promise<void> {
  const option = `<extraConfig><key>SET.guest.ipAddress</key><value xsi:type="xsd:string">${xmlEscape(ip)}</value></extraConfig>`;
  await (await client(sim)).task('ReconfigVM_Task', ref(vm) + `<spec>${option}</spec>`);
}

export async function setCbt(sim: Vcsim, vm: MoRef, on: boolean): Promise<void> {
  await (await client(sim)).task('ReconfigVM_Task', ref(vm) + `<spec><changeTrackingEnabled>${on}</changeTrackingEnabled></spec>`);
}

export interface SnapshotEntry {
  name: string;
  description: string;
  snapshot: MoRef;
}

/** Every snapshot of a VM (the whole tree, flattened). */
export async function listSnapshots(sim: Vcsim, vm: MoRef): Promise<SnapshotEntry[]> {
  const props = await (await client(sim)).props(vm, ['snapshot']);
  const out: SnapshotEntry[] = [];
  const walk = (nodes: Xml[]): void => {
    for (const n of nodes) {
      out.push({ name: text(child(n, 'name')), description: text(child(n, 'description')), snapshot: moref(child(n, 'snapshot')) });
      walk(children(n, 'childSnapshotList'));
    }
  };
  walk(children(props['snapshot'], 'rootSnapshotList'));
  return out;
}
