// The inventory tree in one read: every folder, datacenter, compute resource, host, datastore,
// network (and optionally VM) with its name and parent, fetched through one ContainerView and one
// paged RetrievePropertiesEx. Paths, datacenters and clusters are derived locally from the
// parent links, so listing costs the same few round trips whatever the inventory size.

import type { ObjectContent, PropertyCollector, PropertySpec } from './property-collector.js';
import type { Cluster, Datacenter, Datastore, Host, MoRef, Network } from './types.js';
import { bool, int, list, moRef, refKey, text, type VimValue } from './vim-value.js';

export interface Entity {
  readonly ref: MoRef;
  readonly name: string;
  readonly parent: MoRef | undefined;
  readonly props: ReadonlyMap<string, VimValue>;
}

const VIEW_TYPES = ['Folder', 'Datacenter', 'ComputeResource', 'HostSystem', 'Datastore', 'Network', 'VirtualApp'];

const ENTITY_SPECS: readonly PropertySpec[] = [
  { type: 'Folder', pathSet: ['name', 'parent'] },
  { type: 'Datacenter', pathSet: ['name', 'parent'] },
  { type: 'ComputeResource', pathSet: ['name', 'parent'] },
  { type: 'ClusterComputeResource', pathSet: ['name', 'parent', 'host'] },
  { type: 'HostSystem', pathSet: ['name', 'parent', 'runtime.connectionState', 'runtime.powerState'] },
  { type: 'Datastore', pathSet: ['name', 'parent', 'summary.type', 'summary.capacity', 'summary.freeSpace', 'summary.url'] },
  { type: 'Network', pathSet: ['name', 'parent'] },
  { type: 'DistributedVirtualPortgroup', pathSet: ['name', 'parent', 'key', 'config.uplink', 'tag'] },
  { type: 'OpaqueNetwork', pathSet: ['name', 'parent', 'summary.opaqueNetworkId'] },
  { type: 'VirtualApp', pathSet: ['name', 'parent', 'parentFolder', 'parentVApp'] },
];

/** VM properties cheap enough to read for every VM: enough to filter and to find by path/UUID. */
export const VM_INDEX_PATHS = ['name', 'parent', 'parentVApp', 'config.uuid', 'config.instanceUuid', 'runtime.powerState', 'runtime.host'];

export class InventoryIndex {
  private readonly byKey = new Map<string, Entity>();
  private readonly portgroupByKey = new Map<string, Entity>();
  private readonly opaqueById = new Map<string, Entity>();

  constructor(contents: readonly ObjectContent[]) {
    for (const { obj, props } of contents) {
      // A VM or vApp hangs off its vApp, and a vApp off its folder, not off `parent`.
      const parent = moRef(props.get('parentFolder')) ?? moRef(props.get('parent')) ?? moRef(props.get('parentVApp'));
      const entity: Entity = { ref: obj, name: text(props.get('name')) ?? obj.value, parent, props };
      this.byKey.set(refKey(obj), entity);
      if (obj.type === 'DistributedVirtualPortgroup') this.portgroupByKey.set(text(props.get('key')) ?? obj.value, entity);
      const opaqueId = text(props.get('summary.opaqueNetworkId'));
      if (opaqueId !== undefined) this.opaqueById.set(opaqueId, entity);
    }
  }

  get(ref: MoRef | undefined): Entity | undefined {
    return ref === undefined ? undefined : this.byKey.get(refKey(ref));
  }

  ofType(...types: string[]): Entity[] {
    return [...this.byKey.values()].filter((e) => types.includes(e.ref.type));
  }

  /** Inventory path ("/DC0/vm/Folder/name"); the root folder is implicit. */
  path(ref: MoRef): string {
    const names: string[] = [];
    const seen = new Set<string>();
    for (let e = this.get(ref); e !== undefined && !seen.has(refKey(e.ref)); e = this.get(e.parent)) {
      seen.add(refKey(e.ref));
      names.push(e.name);
    }
    return '/' + names.reverse().join('/');
  }

  datacenterOf(ref: MoRef): Entity | undefined {
    const seen = new Set<string>();
    for (let e = this.get(ref); e !== undefined && !seen.has(refKey(e.ref)); e = this.get(e.parent)) {
      if (e.ref.type === 'Datacenter') return e;
      seen.add(refKey(e.ref));
    }
    return undefined;
  }

  /** The cluster a host belongs to, undefined for a standalone host. */
  clusterOfHost(host: MoRef | undefined): Entity | undefined {
    const parent = this.get(this.get(host)?.parent);
    return parent?.ref.type === 'ClusterComputeResource' ? parent : undefined;
  }

  /** Name of the network a NIC backing points at, by network moref, portgroup key or opaque id. */
  networkName(backing: VimValue | undefined): string {
    const network = this.get(moRef(backing, 'network'));
    if (network !== undefined) return network.name;
    const portgroupKey = text(backing, 'port.portgroupKey');
    if (portgroupKey !== undefined) return this.portgroupByKey.get(portgroupKey)?.name ?? '';
    const opaqueId = text(backing, 'opaqueNetworkId');
    if (opaqueId !== undefined) return this.opaqueById.get(opaqueId)?.name ?? '';
    return text(backing, 'deviceName') ?? '';
  }
}

/** Reads the whole entity tree, plus each VM's index properties when `withVms` is set. */
export async function readInventory(pc: PropertyCollector, withVms: boolean): Promise<InventoryIndex> {
  const types = withVms ? [...VIEW_TYPES, 'VirtualMachine'] : VIEW_TYPES;
  const propSet = withVms ? [...ENTITY_SPECS, { type: 'VirtualMachine', pathSet: VM_INDEX_PATHS }] : ENTITY_SPECS;
  const contents = await pc.withContainerView(types, (view) => pc.retrieve([{ propSet, objectSet: [view] }]));
  return new InventoryIndex(contents);
}

const byName = <T extends { readonly name: string }>(a: T, b: T): number => a.name.localeCompare(b.name);

export function listDatacenters(index: InventoryIndex): Datacenter[] {
  return index.ofType('Datacenter').map((e) => ({ ref: e.ref, name: e.name, path: index.path(e.ref) })).sort(byName);
}

export function listClusters(index: InventoryIndex): Cluster[] {
  return index
    .ofType('ClusterComputeResource')
    .map((e) => ({ ref: e.ref, name: e.name, datacenter: index.datacenterOf(e.ref)?.name ?? '', hosts: list(e.props.get('host')).length }))
    .sort(byName);
}

export function listHosts(index: InventoryIndex): Host[] {
  return index
    .ofType('HostSystem')
    .map((e): Host => {
      const cluster = index.clusterOfHost(e.ref);
      return {
        ref: e.ref,
        name: e.name,
        datacenter: index.datacenterOf(e.ref)?.name ?? '',
        ...(cluster === undefined ? {} : { cluster: cluster.name }),
        connectionState: text(e.props.get('runtime.connectionState')) ?? '',
        powerState: text(e.props.get('runtime.powerState')) ?? '',
      };
    })
    .sort(byName);
}

export function listDatastores(index: InventoryIndex): Datastore[] {
  return index
    .ofType('Datastore')
    .map((e) => ({
      ref: e.ref,
      name: e.name,
      datacenter: index.datacenterOf(e.ref)?.name ?? '',
      type: text(e.props.get('summary.type')) ?? '',
      capacityBytes: int(e.props.get('summary.capacity')) ?? 0,
      freeBytes: int(e.props.get('summary.freeSpace')) ?? 0,
      url: text(e.props.get('summary.url')) ?? '',
    }))
    .sort(byName);
}

/** VM networks; the uplink portgroups of distributed switches carry no VM traffic and are left out. */
export function listNetworks(index: InventoryIndex): Network[] {
  return index
    .ofType('Network', 'DistributedVirtualPortgroup', 'OpaqueNetwork')
    .filter((e) => !isUplinkPortgroup(e))
    .map((e) => ({ ref: e.ref, name: e.name, datacenter: index.datacenterOf(e.ref)?.name ?? '', kind: e.ref.type }))
    .sort(byName);
}

function isUplinkPortgroup(e: Entity): boolean {
  if (e.ref.type !== 'DistributedVirtualPortgroup') return false;
  if (bool(e.props.get('config.uplink')) === true) return true;
  return list(e.props.get('tag')).some((t) => text(t, 'key') === 'SYSTEM/DVS.UPLINKPG');
}
