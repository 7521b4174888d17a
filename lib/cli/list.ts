// `oneswap list vms|datacenters|clusters|hosts|datastores|networks`: a readable table or --json.

import { OneswapError } from '../errors/index.js';
import type { PowerState, VSphereClient, VmSummary } from '../vsphere/index.js';
import { formatBytes } from '../progress/index.js';
import { renderTable } from '../progress/index.js';

export type ListKind = 'vms' | 'datacenters' | 'clusters' | 'hosts' | 'datastores' | 'networks';
export const LIST_KINDS: readonly ListKind[] = ['vms', 'datacenters', 'clusters', 'hosts', 'datastores', 'networks'];

export interface ListFilters {
  name?: string;
  datacenter?: string;
  cluster?: string;
  power?: string;
  json?: boolean;
}

const POWER: Record<string, PowerState> = { on: 'poweredOn', off: 'poweredOff', suspended: 'suspended', poweredon: 'poweredOn', poweredoff: 'poweredOff' };

export function nameMatcher(pattern: string | undefined): (name: string) => boolean {
  if (!pattern) return () => true;
  if (!pattern.includes('*') && !pattern.includes('?')) return (n) => n === pattern;
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return (n) => re.test(n);
}

export type VmSelection = Pick<ListFilters, 'name' | 'datacenter' | 'cluster' | 'power'>;

/** The VMs `--name`, `--datacenter`, `--cluster` and `--power` select, in one batched read (`list vms`, `plan new`). */
export async function selectVms(client: VSphereClient, f: VmSelection): Promise<VmSummary[]> {
  let power: PowerState | undefined;
  if (f.power) {
    power = POWER[f.power.toLowerCase()];
    if (!power) throw new OneswapError('usage', `--power "${f.power}" is not one of on, off, suspended`);
  }
  const match = nameMatcher(f.name);
  return (await client.vms({ datacenter: f.datacenter, cluster: f.cluster, powerState: power })).filter((v) => match(v.name));
}

export async function list(client: VSphereClient, kind: string, f: ListFilters): Promise<string> {
  if (!LIST_KINDS.includes(kind as ListKind)) throw new OneswapError('usage', `cannot list "${kind}"`, { hint: `choose one of: ${LIST_KINDS.join(', ')}` });
  const match = nameMatcher(f.name);
  const inDc = (dc: string): boolean => !f.datacenter || dc === f.datacenter;
  switch (kind as ListKind) {
    case 'vms': {
      const vms = await selectVms(client, f);
      if (f.json) return json(vms);
      return renderTable(
        ['NAME', 'POWER', 'CPU', 'MEMORY', 'DISKS', 'FIRMWARE', 'CBT', 'GUEST', 'DATACENTER', 'CLUSTER/HOST'],
        vms.map((v) => [v.name, powerLabel(v), String(v.numCPU), `${v.memoryMiB} MiB`, diskSummary(v), v.firmware, v.changeTrackingEnabled ? 'on' : 'off', v.guestId, v.datacenter, v.cluster ?? v.host ?? '']),
      );
    }
    case 'datacenters': {
      const dcs = (await client.datacenters()).filter((d) => match(d.name));
      return f.json ? json(dcs) : renderTable(['NAME', 'PATH'], dcs.map((d) => [d.name, d.path]));
    }
    case 'clusters': {
      const cs = (await client.clusters()).filter((c) => match(c.name) && inDc(c.datacenter));
      return f.json ? json(cs) : renderTable(['NAME', 'DATACENTER', 'HOSTS'], cs.map((c) => [c.name, c.datacenter, String(c.hosts)]));
    }
    case 'hosts': {
      const hs = (await client.hosts()).filter((h) => match(h.name) && inDc(h.datacenter) && (!f.cluster || h.cluster === f.cluster));
      return f.json ? json(hs) : renderTable(['NAME', 'DATACENTER', 'CLUSTER', 'STATE', 'POWER'], hs.map((h) => [h.name, h.datacenter, h.cluster ?? '-', h.connectionState, h.powerState]));
    }
    case 'datastores': {
      const ds = (await client.datastores()).filter((d) => match(d.name) && inDc(d.datacenter));
      return f.json
        ? json(ds)
        : renderTable(['NAME', 'DATACENTER', 'TYPE', 'CAPACITY', 'FREE'], ds.map((d) => [d.name, d.datacenter, d.type, formatBytes(d.capacityBytes), formatBytes(d.freeBytes)]));
    }
    case 'networks': {
      const ns = (await client.networks()).filter((n) => match(n.name) && inDc(n.datacenter));
      return f.json ? json(ns) : renderTable(['NAME', 'DATACENTER', 'KIND'], ns.map((n) => [n.name, n.datacenter, n.kind]));
    }
  }
}

function powerLabel(v: VmSummary): string {
  return v.powerState === 'poweredOn' ? 'on' : v.powerState === 'poweredOff' ? 'off' : v.powerState;
}

function diskSummary(v: VmSummary): string {
  return v.disks.map((d) => formatBytes(d.capacityBytes).replace(' ', '')).join('+') || '-';
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
