// VMs as VmSummary, in two batched reads: the inventory index (names, parents, UUIDs, power state
// of every VM) to filter or find, then the full hardware of the selected VMs in one request.
// findVms finds many VMs in the same round trips, so that a plan's VMs are all checked in one pass.

import { OneswapError } from '../errors/index.js';
import { listDatacenters, listDatastores, readInventory, type Entity, type InventoryIndex } from './inventory.js';
import type { PropertyCollector } from './property-collector.js';
import { flattenSnapshotTree } from './snapshots.js';
import type { Datacenter, Datastore, MoRef, PowerState, VmFilter, VmQuery, VmSummary } from './types.js';
import { isFault } from './vim-fault.js';
import { bool, int, list, moRef, text, type VimValue } from './vim-value.js';
import { readDisks, readGuestNet, readNics } from './vm-hardware.js';

export const VM_DETAIL_PATHS = [
  'name', 'parent', 'parentVApp',
  'config.uuid', 'config.instanceUuid', 'config.guestId', 'config.guestFullName', 'config.firmware',
  'config.bootOptions.efiSecureBootEnabled', 'config.annotation', 'config.changeTrackingEnabled', 'config.version',
  'config.hardware.numCPU', 'config.hardware.numCoresPerSocket', 'config.hardware.memoryMB', 'config.hardware.device',
  'runtime.powerState', 'runtime.host',
  'guest.toolsRunningStatus', 'guest.guestId', 'guest.net',
  'snapshot.rootSnapshotList',
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function listVms(pc: PropertyCollector, filter: VmFilter = {}): Promise<VmSummary[]> {
  for (let attempt = 0; ; attempt++) {
    const index = await readInventory(pc, true);
    const selected = index.ofType('VirtualMachine').filter((e) => matchesFilter(e, index, filter));
    try {
      return await readVmDetails(pc, index, selected.map((e) => e.ref));
    } catch (err) {
      // A VM deleted between the two reads: read the inventory again rather than fail the listing.
      if (attempt === 0 && isFault(err, 'ManagedObjectNotFound')) continue;
      throw err;
    }
  }
}

export interface FindVmOptions {
  /** Restrict the search to this datacenter (name or inventory path). */
  readonly datacenter?: string;
}

/** Finds one VM by inventory path ("/DC0/vm/web01"), instance or BIOS UUID, or name. */
export async function findVm(pc: PropertyCollector, query: string, options: FindVmOptions, host: string): Promise<VmSummary> {
  const index = await readInventory(pc, true);
  const vms = index
    .ofType('VirtualMachine')
    .filter((e) => options.datacenter === undefined || inDatacenter(e, index, options.datacenter))
    .map((e) => ({ entity: e, name: e.name, path: index.path(e.ref), uuid: text(e.props.get('config.uuid')) ?? '', instanceUuid: text(e.props.get('config.instanceUuid')) ?? '' }));
  const where = `vCenter ${host}${options.datacenter === undefined ? '' : ` (datacenter ${options.datacenter})`}`;
  const only = matchVm(queryOf(query), vms, where);
  const [vm] = await readVmDetails(pc, index, [only.entity.ref]);
  if (vm === undefined) throw new OneswapError('not-found', `VM "${query}" disappeared from ${where} while it was being read; list the VMs again`);
  return vm;
}

/** What `findVm` takes a query string for: a path when it starts with '/', a UUID when it looks like one (else a name). */
function queryOf(query: string): VmQuery {
  if (query.startsWith('/')) return { by: 'path', value: query };
  return UUID.test(query) ? { by: 'uuid', value: query } : { by: 'name', value: query };
}

/** What a VM is found by. */
export interface VmKeys {
  readonly name: string;
  readonly path: string;
  readonly uuid: string;
  readonly instanceUuid: string;
}

/**
 * The one VM of `vms` the query names: by inventory path, by BIOS or instance UUID (a UUID that
 * matches none is tried as a name), or by exact name. None: 'not-found'; several: 'conflict'
 * naming their paths. `where` names the inventory searched, e.g. "vCenter vc1".
 */
export function matchVm<T extends VmKeys>(query: VmQuery, vms: readonly T[], where: string): T {
  let matches: T[];
  if (query.by === 'path') {
    const wanted = query.value.replace(/\/+$/, '');
    matches = vms.filter((v) => v.path === wanted);
  } else {
    const wanted = query.value.toLowerCase();
    matches = query.by === 'uuid' ? vms.filter((v) => v.uuid.toLowerCase() === wanted || v.instanceUuid.toLowerCase() === wanted) : [];
    if (matches.length === 0) matches = vms.filter((v) => v.name === query.value);
  }
  const [only, ...others] = matches;
  if (only === undefined) {
    throw new OneswapError('not-found', `${where} has no VM "${query.value}"; list the VMs with \`oneswap list\` and pass a VM name, inventory path or UUID`);
  }
  if (others.length > 0) {
    const paths = matches.map((v) => v.path).sort();
    throw new OneswapError('conflict', `"${query.value}" matches ${matches.length} VMs in ${where}: ${paths.join(', ')}; pass the inventory path or the UUID instead`);
  }
  return only;
}

/** What `findVms` found for each query, in query order: the VM, or why none (not found, ambiguous). */
export type FoundVm = { readonly ok: true; readonly vm: VmSummary } | { readonly ok: false; readonly error: OneswapError };

/** Many VMs found at once, with the datacenters and datastores their disks are placed in. */
export interface FoundVms {
  readonly found: readonly FoundVm[];
  readonly datacenters: readonly Datacenter[];
  readonly datastores: readonly Datastore[];
}

/**
 * findVm for many queries in the round trips of one: the inventory index, each query matched in
 * memory, then the hardware and snapshots of the VMs found in one request.
 */
export async function findVms(pc: PropertyCollector, queries: readonly VmQuery[], host: string): Promise<FoundVms> {
  const where = `vCenter ${host}`;
  for (let attempt = 0; ; attempt++) {
    const index = await readInventory(pc, true);
    const candidates = index.ofType('VirtualMachine').map((e) => ({ ref: e.ref, name: e.name, path: index.path(e.ref), uuid: text(e.props.get('config.uuid')) ?? '', instanceUuid: text(e.props.get('config.instanceUuid')) ?? '' }));
    const matched = queries.map((q) => {
      try {
        return matchVm(q, candidates, where);
      } catch (err) {
        if (err instanceof OneswapError) return err;
        throw err;
      }
    });
    const refs = [...new Map(matched.flatMap((m) => (m instanceof OneswapError ? [] : [[m.ref.value, m.ref] as const]))).values()];
    let details: VmSummary[];
    try {
      details = await readVmDetails(pc, index, refs);
    } catch (err) {
      // As listVms: a VM deleted between the two reads, read the inventory again.
      if (attempt === 0 && isFault(err, 'ManagedObjectNotFound')) continue;
      throw err;
    }
    const found = matched.map((m, i): FoundVm => {
      if (m instanceof OneswapError) return { ok: false, error: m };
      const vm = details.find((d) => d.ref.value === m.ref.value);
      return vm !== undefined ? { ok: true, vm } : { ok: false, error: new OneswapError('not-found', `VM "${queries[i]!.value}" disappeared from ${where} while it was being read; list the VMs again`) };
    });
    return { found, datacenters: listDatacenters(index), datastores: listDatastores(index) };
  }
}

/** One VM by reference. */
export async function readVm(pc: PropertyCollector, ref: MoRef, host: string): Promise<VmSummary> {
  const index = await readInventory(pc, false);
  try {
    const [vm] = await readVmDetails(pc, index, [ref]);
    if (vm !== undefined) return vm;
  } catch (err) {
    if (!isFault(err, 'ManagedObjectNotFound')) throw err;
  }
  throw new OneswapError('not-found', `vCenter ${host} has no VM ${ref.value}; it was removed: list the VMs again`);
}

async function readVmDetails(pc: PropertyCollector, index: InventoryIndex, refs: readonly MoRef[]): Promise<VmSummary[]> {
  if (refs.length === 0) return [];
  const contents = await pc.retrieve([
    { propSet: [{ type: 'VirtualMachine', pathSet: VM_DETAIL_PATHS }], objectSet: refs.map((obj) => ({ obj })) },
  ]);
  return contents.map((c) => readVmSummary(c.obj, c.props, index)).sort((a, b) => a.path.localeCompare(b.path));
}

export function readVmSummary(ref: MoRef, props: ReadonlyMap<string, VimValue>, index: InventoryIndex): VmSummary {
  const s = (path: string): string => text(props.get(path)) ?? '';
  const name = s('name') || ref.value;
  const parent = moRef(props.get('parent')) ?? moRef(props.get('parentVApp'));
  const hostRef = moRef(props.get('runtime.host'));
  const host = index.get(hostRef);
  const cluster = index.clusterOfHost(hostRef);
  const datacenter = (parent && index.datacenterOf(parent)) ?? (hostRef && index.datacenterOf(hostRef));
  const devices = list(props.get('config.hardware.device'));
  const numCPU = int(props.get('config.hardware.numCPU')) ?? 0;
  return {
    ref,
    name,
    uuid: s('config.uuid'),
    instanceUuid: s('config.instanceUuid'),
    datacenter: datacenter?.name ?? '',
    ...(cluster === undefined ? {} : { cluster: cluster.name }),
    ...(host === undefined ? {} : { host: host.name }),
    path: parent === undefined ? `/${name}` : `${index.path(parent)}/${name}`,
    powerState: readPowerState(s('runtime.powerState')),
    numCPU,
    numCoresPerSocket: int(props.get('config.hardware.numCoresPerSocket')) ?? (numCPU > 0 ? 1 : 0),
    memoryMiB: int(props.get('config.hardware.memoryMB')) ?? 0,
    firmware: s('config.firmware') === 'efi' ? 'efi' : 'bios',
    secureBoot: bool(props.get('config.bootOptions.efiSecureBootEnabled')) ?? false,
    guestId: s('config.guestId'),
    guestFullName: s('config.guestFullName'),
    annotation: s('config.annotation'),
    changeTrackingEnabled: bool(props.get('config.changeTrackingEnabled')) ?? false,
    toolsRunning: s('guest.toolsRunningStatus') === 'guestToolsRunning',
    toolsGuestId: s('guest.guestId'),
    hardwareVersion: s('config.version'),
    disks: readDisks(devices),
    nics: readNics(devices, (backing) => index.networkName(backing)),
    hasSnapshots: list(props.get('snapshot.rootSnapshotList')).length > 0,
    snapshots: flattenSnapshotTree(props.get('snapshot.rootSnapshotList')),
    guestNet: readGuestNet(props.get('guest.net')),
  };
}

export function readPowerState(value: string | undefined): PowerState {
  return value === 'poweredOn' || value === 'suspended' ? value : 'poweredOff';
}

function matchesFilter(e: Entity, index: InventoryIndex, filter: VmFilter): boolean {
  if (filter.name !== undefined && !nameMatches(e.name, filter.name)) return false;
  if (filter.datacenter !== undefined && !inDatacenter(e, index, filter.datacenter)) return false;
  if (filter.cluster !== undefined && index.clusterOfHost(moRef(e.props.get('runtime.host')))?.name !== filter.cluster) return false;
  if (filter.powerState !== undefined && readPowerState(text(e.props.get('runtime.powerState'))) !== filter.powerState) return false;
  return true;
}

function inDatacenter(e: Entity, index: InventoryIndex, datacenter: string): boolean {
  const dc = index.datacenterOf(e.ref);
  return dc !== undefined && (dc.name === datacenter || index.path(dc.ref) === datacenter);
}

/** Exact match, or a glob when the pattern holds `*`. */
export function nameMatches(name: string, pattern: string): boolean {
  if (!pattern.includes('*')) return name === pattern;
  const source = pattern.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${source}$`, 's').test(name);
}
