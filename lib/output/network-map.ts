// Which OpenNebula network each source NIC lands on, decided before anything is created:
// 1. --network-map "source=target" (target: a network id or name);
// 2. a network whose VCENTER_NETWORK_MATCH attribute equals the source network name;
// 3. a network whose name equals the source network name;
// else an error that names every unmapped network and how to map it.

import { OneswapError } from '../errors/index.js';
import type { NicDescription } from '../input/index.js';

export interface NetworkCandidate {
  readonly id: number;
  readonly name: string;
  readonly vcenterMatch?: string;
}

export interface NicMapping {
  readonly nic: NicDescription;
  readonly networkId: number;
  readonly networkName: string;
  readonly rule: 'map' | 'match' | 'name';
}

/** Parses repeated `--network-map "VM Network=3"` options; the last "=" splits, so vCenter names may contain "=". */
export function parseNetworkMap(specs: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const spec of specs) {
    const at = spec.lastIndexOf('=');
    if (at <= 0 || at === spec.length - 1)
      throw new OneswapError('usage', `--network-map "${spec}" is not of the form "vCenter network=OpenNebula network id or name"`);
    map.set(spec.slice(0, at), spec.slice(at + 1));
  }
  return map;
}

export function mapNics(vmName: string, nics: readonly NicDescription[], networks: readonly NetworkCandidate[], explicit: ReadonlyMap<string, string>): NicMapping[] {
  const out: NicMapping[] = [];
  const unmapped: string[] = [];
  for (const nic of nics) {
    const target = explicit.get(nic.network);
    if (target !== undefined) {
      const found = /^\d+$/.test(target) ? networks.find((n) => n.id === Number(target)) : networks.filter((n) => n.name === target);
      const net = Array.isArray(found) ? found : found ? [found] : [];
      if (net.length === 0)
        throw new OneswapError('not-found', `--network-map "${nic.network}=${target}": OpenNebula has no network ${/^\d+$/.test(target) ? `with id ${target}` : `named "${target}"`}`, {
          hint: 'list them with: onevnet list',
        });
      if (net.length > 1) throw new OneswapError('conflict', `--network-map "${nic.network}=${target}": several OpenNebula networks are named "${target}"; use the id`);
      out.push({ nic, networkId: net[0]!.id, networkName: net[0]!.name, rule: 'map' });
      continue;
    }
    const match = networks.filter((n) => n.vcenterMatch === nic.network && nic.network !== '');
    const byName = networks.filter((n) => n.name === nic.network && nic.network !== '');
    const pick = match.length > 0 ? { list: match, rule: 'match' as const } : { list: byName, rule: 'name' as const };
    if (pick.list.length === 1) {
      out.push({ nic, networkId: pick.list[0]!.id, networkName: pick.list[0]!.name, rule: pick.rule });
    } else if (pick.list.length > 1) {
      throw new OneswapError('conflict', `vCenter network "${nic.network}" of VM ${vmName} matches several OpenNebula networks (${pick.list.map((n) => n.id).join(', ')})`, {
        hint: { cli: `choose one with --network-map "${nic.network}=<id>"`, plan: `choose one in networkMap for this VM (or in defaults): "${nic.network}: <id>"` },
      });
    } else {
      unmapped.push(nic.network === '' ? `${nic.label} (not attached)` : `"${nic.network}"`);
    }
  }
  if (unmapped.length > 0)
    throw new OneswapError('not-found', `VM ${vmName}: no OpenNebula network for vCenter network ${[...new Set(unmapped)].join(', ')}`, {
      hint: {
        cli: 'add --network-map "<vCenter network>=<OpenNebula network id>", or set VCENTER_NETWORK_MATCH="<vCenter network>" on a virtual network',
        plan: 'map it in networkMap for this VM (or in defaults): "<vCenter network>: <OpenNebula network name or id>", or set VCENTER_NETWORK_MATCH="<vCenter network>" on a virtual network',
      },
    });
  return out;
}

/** MAC addresses as 48-bit integers, for address-range arithmetic. */
export function macToNumber(mac: string): number {
  const hex = mac.replace(/[:-]/g, '');
  if (!/^[0-9a-fA-F]{12}$/.test(hex)) throw new OneswapError('data', `"${mac}" is not a MAC address`);
  return Number.parseInt(hex, 16);
}

/** True when `mac` lies in the range [start, start+size) of an address range. */
export function macInRange(mac: string, start: string, size: number): boolean {
  const m = macToNumber(mac);
  const s = macToNumber(start);
  return m >= s && m < s + size;
}
