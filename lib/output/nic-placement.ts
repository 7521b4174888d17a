// Where each NIC lands in OpenNebula, and with which MAC and IP. OpenNebula hands out a NIC's
// MAC and IP only from an address range of its network; a NIC may ask for a MAC or for an IP,
// not both; only an admin may ask for a given MAC or add a range (reference 1.6, 5.7, 9.3).
//
// - The source MAC is kept when it lies in a free lease of the network, or, for an admin, after
//   adding a one-address ETHER range holding it.
// - With keepIp, the address the guest used on a NIC (addressesToKeep: its static address, or for
//   DHCP the address VMware Tools reported while it ran, else its last lease) is kept: when it
//   lies in a free lease of an existing range, the NIC asks for that IP and gets that range's MAC
//   for it (known now, so the guest is bound to it); otherwise an admin adds a one-address IP4
//   range holding the IP and the source MAC, and the NIC asks for the MAC.
// Ranges added are recorded first, so a rollback removes them. A second call with the same
// inputs (a resumed run, the build after the conversion) places every NIC the same way.

import { Template, type OneClient, type OneAddressRange } from '../one/index.js';
import { macInRange, macToNumber, type NicMapping } from './network-map.js';
import type { GuestNicConfig, PlacedNic } from './vm-template.js';

export interface AddedAddressRange {
  readonly vnetId: number;
  readonly arId: number;
}

export interface PlaceNicsOptions {
  readonly keepMac: boolean;
  readonly keepIp: boolean;
  /** The address the guest used, per NIC index (addressesToKeep). */
  readonly guestAddresses: ReadonlyMap<number, string>;
  /** Where added ranges are recorded before anything else happens (the resume journal). */
  readonly journal: { addressRanges: AddedAddressRange[] };
  readonly log: (message: string, level?: 'warn') => void;
}

/**
 * The address --keep-ip keeps per NIC index, from what the conversion read in the guest's files
 * and what VMware Tools reported while the source ran. A static address is the guest's own
 * decision and wins; for DHCP, the address Tools saw is newer than any lease file; a NIC whose
 * configuration was not read (Windows, no conversion) keeps what Tools saw.
 */
export function addressesToKeep(uses: readonly Pick<GuestNicConfig, 'nic' | 'mode' | 'address'>[], reported: ReadonlyMap<number, string>): Map<number, string> {
  const out = new Map<number, string>();
  for (const u of uses) {
    const ip = u.mode === 'static' && u.address ? u.address : (reported.get(u.nic) ?? u.address);
    if (ip) out.set(u.nic, ip);
  }
  for (const [nic, ip] of reported) if (!uses.some((u) => u.nic === nic)) out.set(nic, ip);
  return out;
}

export async function placeNics(one: OneClient, nics: readonly NicMapping[], opts: PlaceNicsOptions): Promise<PlacedNic[]> {
  if (nics.length === 0) return [];
  if (!opts.keepMac && !opts.keepIp) return nics.map((m) => ({ nic: m.nic, networkId: m.networkId }));
  const me = await one.whoami();
  const out: PlacedNic[] = [];
  for (const m of nics) {
    const ip = opts.keepIp ? opts.guestAddresses.get(m.nic.index) : undefined;
    if (opts.keepIp && ip === undefined) opts.log(`${m.nic.label}: --keep-ip: the guest records no address for it (no static address, no DHCP lease file, none reported by VMware Tools); OpenNebula picks the IP`, 'warn');
    const kept = ip === undefined ? undefined : await keepIp(one, m, ip, me.isAdmin, opts);
    out.push(kept ?? (opts.keepMac ? await keepMac(one, m, me.isAdmin, opts) : { nic: m.nic, networkId: m.networkId }));
  }
  return out;
}

async function keepIp(one: OneClient, m: NicMapping, ip: string, isAdmin: boolean, opts: PlaceNicsOptions): Promise<PlacedNic | undefined> {
  const vnet = await one.vnet(m.networkId);
  const ar = vnet.addressRanges.find((a) => a.ip !== '' && ipInRange(ip, a.ip, a.size));
  if (ar) {
    const lease = ar.leases.find((l) => l.ip === ip);
    if (lease && lease.vm !== undefined) {
      opts.log(`${m.nic.label}: IP ${ip} is already leased to VM ${lease.vm} on network ${vnet.name}; not kept`, 'warn');
      return undefined;
    }
    const mac = macForIp(ar, ip);
    opts.log(`${m.nic.label}: keeps IP ${ip} from address range ${ar.id} of network ${vnet.name}${mac ? ` (with that range's MAC ${mac})` : ''}`);
    return { nic: m.nic, networkId: m.networkId, ip, ...(mac ? { ipMac: mac } : {}) };
  }
  if (!isAdmin) {
    opts.log(`${m.nic.label}: IP ${ip} lies in no address range of network ${vnet.name}, and only OpenNebula administrators may add one; not kept`, 'warn');
    return undefined;
  }
  const mac = m.nic.mac === '' ? undefined : m.nic.mac.toLowerCase();
  const added = await addRange(one, m.networkId, keptAddressRange({ ip, mac }), (a) => a.ip === ip && a.size === 1, opts);
  if (added === undefined) {
    opts.log(`${m.nic.label}: could not find the address range added for IP ${ip} on network ${vnet.name}; not kept`, 'warn');
    return undefined;
  }
  opts.log(`${m.nic.label}: added address range ${added.id} with IP ${ip}${mac ? ` and MAC ${mac}` : ''} to network ${vnet.name} to keep the guest's address`);
  // With the source MAC in it, asking for the MAC gets the IP too; else ask for the IP.
  return mac ? { nic: m.nic, networkId: m.networkId, mac } : { nic: m.nic, networkId: m.networkId, ip, ipMac: added.mac.toLowerCase() };
}

async function keepMac(one: OneClient, m: NicMapping, isAdmin: boolean, opts: PlaceNicsOptions): Promise<PlacedNic> {
  const unplaced = { nic: m.nic, networkId: m.networkId };
  const mac = m.nic.mac.toLowerCase();
  if (mac === '') {
    opts.log(`${m.nic.label}: the source gives no MAC; OpenNebula picks one`, 'warn');
    return unplaced;
  }
  if (!isAdmin) {
    opts.log(`${m.nic.label}: MAC ${mac} not kept: only OpenNebula administrators may choose a NIC's MAC`, 'warn');
    return unplaced;
  }
  const vnet = await one.vnet(m.networkId);
  const ar = vnet.addressRanges.find((a) => a.mac !== '' && macInRange(mac, a.mac, a.size));
  if (ar) {
    const lease = ar.leases.find((l) => l.mac?.toLowerCase() === mac);
    if (lease && lease.vm !== undefined) {
      opts.log(`${m.nic.label}: MAC ${mac} is already leased to VM ${lease.vm} on network ${vnet.name}; OpenNebula will pick another`, 'warn');
      return unplaced;
    }
    return { ...unplaced, mac };
  }
  const added = await addRange(one, m.networkId, keptAddressRange({ mac }), (a) => a.mac?.toLowerCase() === mac && a.size === 1, opts);
  if (added === undefined) {
    opts.log(`${m.nic.label}: could not find the address range added for MAC ${mac} on network ${vnet.name}; OpenNebula will pick a MAC`, 'warn');
    return unplaced;
  }
  opts.log(`${m.nic.label}: added address range ${added.id} with MAC ${mac} to network ${vnet.name} to keep the source MAC`);
  return { ...unplaced, mac };
}

/**
 * The one-address range that lets OpenNebula lease a kept MAC, and with an IP that IP along with
 * it (a NIC asking for the MAC then gets both): what an administrator's import adds, and what a
 * directory import's summary has the administrator add.
 */
export function keptAddressRange(keep: { readonly mac: string; readonly ip?: string } | { readonly mac?: string; readonly ip: string }): Record<string, string | number> {
  if (keep.ip === undefined) return { TYPE: 'ETHER', MAC: keep.mac!, SIZE: 1 };
  return { TYPE: 'IP4', IP: keep.ip, ...(keep.mac ? { MAC: keep.mac } : {}), SIZE: 1 };
}

/** Adds one range and finds it again (one.vn.add_ar answers only the network's id). */
async function addRange(
  one: OneClient,
  vnetId: number,
  ar: Record<string, string | number>,
  isIt: (a: OneAddressRange) => boolean,
  opts: PlaceNicsOptions,
): Promise<OneAddressRange | undefined> {
  await one.vnetAddAr(vnetId, Template.of({ AR: ar }));
  const added = (await one.vnet(vnetId)).addressRanges.find(isIt);
  if (added) opts.journal.addressRanges.push({ vnetId, arId: added.id });
  return added;
}

function ipToNumber(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

function ipInRange(ip: string, start: string, size: number): boolean {
  const i = ipToNumber(ip);
  const s = ipToNumber(start);
  return i !== undefined && s !== undefined && i >= s && i < s + size;
}

/** A range's MAC for one of its IPs: the same offset from its first MAC as the IP from its first IP. */
function macForIp(ar: OneAddressRange, ip: string): string | undefined {
  if (ar.mac === '') return undefined;
  const n = macToNumber(ar.mac) + (ipToNumber(ip)! - ipToNumber(ar.ip)!);
  return n.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

export async function removeAddressRanges(one: OneClient, ranges: readonly AddedAddressRange[], log: (message: string) => void): Promise<void> {
  for (const r of [...ranges].reverse()) {
    try {
      await one.vnetRemoveAr(r.vnetId, r.arId);
      log(`removed address range ${r.arId} of network ${r.vnetId}`);
    } catch (err) {
      log(`could not remove address range ${r.arId} of network ${r.vnetId}: ${(err as Error).message}; remove it with: onevnet rmar ${r.vnetId} ${r.arId}`);
    }
  }
}
