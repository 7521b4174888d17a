// Keeping the source MACs. OpenNebula hands out a NIC's MAC only from an address range of its
// network, and only an admin may ask for a given MAC (reference 5.7, 9.3). So a MAC is kept when it
// lies in a free lease of the network, or, for an admin, after adding a one-address ETHER range
// holding it (recorded so a rollback removes it). Otherwise OpenNebula picks a MAC and we say so.

import { Template, type OneClient } from '../one/index.js';
import { macInRange, type NicMapping } from './network-map.js';
import type { PlacedNic } from './vm-template.js';

export interface AddedAddressRange {
  readonly vnetId: number;
  readonly arId: number;
}

export interface KeepMacOptions {
  readonly keep: boolean;
  /** Where added ranges are recorded before anything else happens (the resume journal). */
  readonly journal: { addressRanges: AddedAddressRange[] };
  readonly log: (message: string, level?: 'warn') => void;
}

export async function keepMacs(one: OneClient, nics: readonly NicMapping[], opts: KeepMacOptions): Promise<PlacedNic[]> {
  if (!opts.keep || nics.length === 0) return nics.map((m) => ({ nic: m.nic, networkId: m.networkId }));
  const me = await one.whoami();
  const out: PlacedNic[] = [];
  for (const m of nics) {
    const mac = m.nic.mac.toLowerCase();
    if (!me.isAdmin) {
      opts.log(`${m.nic.label}: MAC ${mac} not kept: only OpenNebula administrators may choose a NIC's MAC`, 'warn');
      out.push({ nic: m.nic, networkId: m.networkId });
      continue;
    }
    const vnet = await one.vnet(m.networkId);
    const ar = vnet.addressRanges.find((a) => a.mac !== '' && macInRange(mac, a.mac, a.size));
    if (ar) {
      const lease = ar.leases.find((l) => l.mac?.toLowerCase() === mac);
      if (lease && lease.vm !== undefined) {
        opts.log(`${m.nic.label}: MAC ${mac} is already leased to VM ${lease.vm} on network ${vnet.name}; OpenNebula will pick another`, 'warn');
        out.push({ nic: m.nic, networkId: m.networkId });
      } else {
        out.push({ nic: m.nic, networkId: m.networkId, mac });
      }
      continue;
    }
    await one.vnetAddAr(m.networkId, Template.of({ AR: { TYPE: 'ETHER', MAC: mac, SIZE: 1 } }));
    const after = await one.vnet(m.networkId);
    const added = after.addressRanges.find((a) => a.mac?.toLowerCase() === mac && a.size === 1);
    if (!added) {
      opts.log(`${m.nic.label}: could not find the address range added for MAC ${mac} on network ${vnet.name}; OpenNebula will pick a MAC`, 'warn');
      out.push({ nic: m.nic, networkId: m.networkId });
      continue;
    }
    opts.journal.addressRanges.push({ vnetId: m.networkId, arId: added.id });
    opts.log(`${m.nic.label}: added address range ${added.id} with MAC ${mac} to network ${vnet.name} to keep the source MAC`);
    out.push({ nic: m.nic, networkId: m.networkId, mac });
  }
  return out;
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
