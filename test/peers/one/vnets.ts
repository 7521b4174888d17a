/**
 * Virtual networks: createNetwork (setup API), one.vn.info (with
 * AR_POOL/AR/LEASES), one.vnpool.info (no lease lists), one.vn.add_ar, and
 * the NIC lease rules of §5.7 / §9.3 used by instantiate.
 */
import { poolXml, vnetXml } from './documents.js';
import { ErrorCode, RequestError, noExists } from './errors.js';
import { parseOrInternal } from './images.js';
import { CallContext, Sim } from './simulator.js';
import { ArRec, VnetRec, ipToNum, macToNum, numToIp, numToMac } from './state.js';
import { Template } from './template-syntax.js';
import { XrValue, int, str } from './wire.js';

export interface ArSpec {
  type: 'ETHER' | 'IP4';
  mac?: string;
  ip?: string;
  size: number;
}

export interface CreateNetworkOptions {
  name: string;
  bridge?: string;
  vnMad?: string;
  template?: Record<string, string>;
  ars?: ArSpec[];
  /** owner; default oneadmin (0) */
  uid?: number;
  gid?: number;
}

let macSeed = 0x0200_0000_0000 + 0x10_0000;

function buildAr(vn: VnetRec, attrs: Map<string, string>): ArRec {
  const type = (attrs.get('TYPE') ?? '').toUpperCase();
  if (type !== 'ETHER' && type !== 'IP4' && type !== 'IP6' && type !== 'IP4_6') {
    throw new RequestError(ErrorCode.INTERNAL, 'Unknown or missing address range TYPE.', vn.id);
  }
  const size = Number(attrs.get('SIZE') ?? '');
  if (!Number.isInteger(size) || size <= 0) throw new RequestError(ErrorCode.INTERNAL, 'Wrong SIZE for address range', vn.id);
  let ip: number | undefined;
  if (type === 'IP4' || type === 'IP4_6') {
    const s = attrs.get('IP');
    ip = s === undefined ? undefined : ipToNum(s);
    if (ip === undefined) throw new RequestError(ErrorCode.INTERNAL, 'Wrong or empty IP attribute', vn.id);
  }
  let mac: number | undefined;
  const macStr = attrs.get('MAC');
  if (macStr !== undefined && macStr !== '') {
    mac = macToNum(macStr);
    if (mac === undefined) throw new RequestError(ErrorCode.INTERNAL, 'Wrong format for MAC attribute', vn.id);
  } else if (ip !== undefined) {
    mac = 0x0200_0000_0000 + ip; // 02:00:<ip bytes>
  } else {
    mac = macSeed;
    macSeed += 0x1_0000;
  }
  const extra = new Map(attrs);
  for (const k of ['TYPE', 'SIZE', 'IP', 'MAC', 'AR_ID']) extra.delete(k);
  return { arId: vn.nextArId++, type: type as ArRec['type'], mac, ip, size, leases: new Map(), extra };
}

export function createNetwork(sim: Sim, o: CreateNetworkOptions): number {
  const err = Sim.nameError(o.name);
  if (err) throw new Error(err);
  const uid = o.uid ?? 0;
  if (Sim.nameTaken(sim.pools.vnets.values(), o.name, uid)) throw new Error(`NAME is already taken by NET`);
  const id = sim.pools.next.vnet++;
  const t = new Template();
  for (const [k, v] of Object.entries(o.template ?? {})) t.add(k.toUpperCase(), v);
  const bridge = o.bridge ?? t.get('BRIDGE') ?? `onebr${id}`;
  const vnMad = o.vnMad ?? t.get('VN_MAD') ?? 'bridge';
  if (!t.has('BRIDGE')) t.add('BRIDGE', bridge);
  if (!t.has('BRIDGE_TYPE')) t.add('BRIDGE_TYPE', 'linux');
  if (!t.has('OUTER_VLAN_ID')) t.add('OUTER_VLAN_ID', '');
  if (!t.has('PHYDEV')) t.add('PHYDEV', '');
  if (!t.has('SECURITY_GROUPS')) t.add('SECURITY_GROUPS', '0');
  if (!t.has('VLAN_ID')) t.add('VLAN_ID', '');
  if (!t.has('VN_MAD')) t.add('VN_MAD', vnMad);
  const vn: VnetRec = {
    id,
    uid,
    gid: o.gid ?? 0,
    name: o.name,
    perms: { ownerU: 1, ownerM: 1, ownerA: 0, groupU: 1, groupM: 0, groupA: 0, otherU: 1, otherM: 0, otherA: 0 },
    bridge,
    bridgeType: 'linux',
    vnMad,
    state: 1, // READY
    template: t,
    ars: [],
    nextArId: 0,
  };
  for (const ar of o.ars ?? []) {
    const m = new Map<string, string>([['TYPE', ar.type], ['SIZE', String(ar.size)]]);
    if (ar.mac) m.set('MAC', ar.mac);
    if (ar.ip) m.set('IP', ar.ip);
    vn.ars.push(buildAr(vn, m));
  }
  sim.pools.vnets.set(id, vn);
  return id;
}

export function getVnet(sim: Sim, id: number): VnetRec {
  const vn = sim.pools.vnets.get(id);
  if (!vn) throw noExists('vnet', id);
  return vn;
}

export function vnInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const vn = getVnet(sim, int(p, 1));
  sim.authorize(call, vn, 'USE', 'vnet');
  return vnetXml(sim.pools, vn, true);
}

export function vnPoolInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const list = sim.filterPool(call, sim.pools.vnets.values(), int(p, 1), int(p, 2), int(p, 3));
  return poolXml('VNET_POOL', list.map((v) => vnetXml(sim.pools, v, false)));
}

export function vnAddAr(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const vn = getVnet(sim, id);
  sim.authorize(call, vn, 'ADMIN', 'vnet');
  const t = parseOrInternal(str(p, 2));
  const ars = t.vectors('AR');
  if (ars.length === 0) throw new RequestError(ErrorCode.INTERNAL, 'Wrong AR definition. AR vector attribute is missing.', id);
  const built = ars.map((a) => buildAr(vn, a));
  for (const ar of built) {
    for (const other of vn.ars) {
      const overlap = ar.mac <= other.mac + other.size - 1 && other.mac <= ar.mac + ar.size - 1;
      if (overlap) {
        vn.nextArId -= built.length;
        throw new RequestError(ErrorCode.ACTION, 'Address Range overlaps with an existing one.', id);
      }
    }
  }
  vn.ars.push(...built);
  return id;
}

/** one.vn.rm_ar(id, ar_id): refused while the range has leases in use (VirtualNetwork::rm_ar). */
export function vnRmAr(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const arId = int(p, 2);
  const vn = getVnet(sim, id);
  sim.authorize(call, vn, 'ADMIN', 'vnet');
  const at = vn.ars.findIndex((a) => a.arId === arId);
  if (at < 0) throw new RequestError(ErrorCode.ACTION, `Address Range ${arId} does not exist.`, id);
  if (vn.ars[at]!.leases.size > 0) throw new RequestError(ErrorCode.ACTION, `Address Range ${arId} has leases in use.`, id);
  vn.ars.splice(at, 1);
  return id;
}

// ---------------------------------------------------------------- leases

export interface NicLease {
  vnet: VnetRec;
  ar: ArRec;
  index: number;
}

/** Gets a lease for a NIC: by MAC, by IP, or the first free one. MAC and IP together fail (§5.7). */
export function acquireLease(vn: VnetRec, nic: Map<string, string>, vmId: number): NicLease {
  const fail = (): never => {
    throw new RequestError(ErrorCode.ALLOCATE, `Cannot get IP/MAC lease from virtual network ${vn.id}.`, -1, 'vm');
  };
  const mac = nic.get('MAC');
  const ip = nic.get('IP');
  const ip6 = nic.get('IP6');
  const asked = [mac, ip, ip6].filter((x) => x !== undefined && x !== '').length;
  if (asked > 1) fail();
  if (ip6) fail();
  const take = (ar: ArRec, index: number): NicLease => {
    ar.leases.set(index, { index, vm: vmId });
    return { vnet: vn, ar, index };
  };
  if (mac) {
    const m = macToNum(mac);
    if (m === undefined) return fail();
    for (const ar of vn.ars) {
      const idx = m - ar.mac;
      if (idx >= 0 && idx < ar.size && !ar.leases.has(idx)) return take(ar, idx);
    }
    return fail();
  }
  if (ip) {
    const n = ipToNum(ip);
    if (n === undefined) return fail();
    for (const ar of vn.ars) {
      if (ar.ip === undefined) continue;
      const idx = n - ar.ip;
      if (idx >= 0 && idx < ar.size && !ar.leases.has(idx)) return take(ar, idx);
    }
    return fail();
  }
  for (const ar of vn.ars) for (let i = 0; i < ar.size; i++) if (!ar.leases.has(i)) return take(ar, i);
  return fail();
}

export function releaseLease(l: NicLease): void {
  l.ar.leases.delete(l.index);
}

export function releaseVmLeases(sim: Sim, vmId: number): void {
  for (const vn of sim.pools.vnets.values()) {
    for (const ar of vn.ars) for (const [i, l] of ar.leases) if (l.vm === vmId) ar.leases.delete(i);
  }
}

export function leaseMac(l: NicLease): string {
  return numToMac(l.ar.mac + l.index);
}

export function leaseIp(l: NicLease): string | undefined {
  return l.ar.ip === undefined ? undefined : numToIp(l.ar.ip + l.index);
}
