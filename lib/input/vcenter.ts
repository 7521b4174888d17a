// vCenter as a source: resolves a VM to its neutral description, places each disk (datastore and
// its type, for the reader selector), and finds each disk's allocated areas (CBT "*" on a
// short-lived snapshot when change tracking is on; otherwise the whole disk, zeros become holes).

import { isIPv4 } from 'node:net';
import { OneswapError, throwFirst, type Refusal } from '../errors/index.js';
import type { Datacenter, Datastore, VSphereClient, VmSummary, VmDisk, VmNic, Extent, MoRef } from '../vsphere/index.js';
import type { DiskBus, DiskDescription, NicAdapter, NicDescription, VmDescription } from './vm-description.js';

export interface VcenterDisk {
  readonly description: DiskDescription;
  readonly device: VmDisk;
  /** The datastore's type as vCenter reports it ("VMFS", "NFS", "vsan"…). */
  readonly datastoreType: string;
}

/** How the areas to read were found: CBT's allocated map, or the whole disk (zeros skipped on write). */
export type AllocationMethod = 'cbt' | 'full';

export interface AllocationMap {
  readonly method: AllocationMethod;
  /** Per disk device key. */
  readonly extents: ReadonlyMap<number, readonly Extent[]>;
}

// VMware guests boot from SCSI 0:0 in the common layout; IDE comes last because vSphere places
// CD-ROMs and legacy disks there. config.bootOptions.bootOrder is not read yet.
const BUS_ORDER: Record<DiskBus, number> = { scsi: 0, sata: 1, nvme: 2, ide: 3 };

/** Disks in the order the source firmware boots them: by bus kind, then bus number, then unit. */
export function diskBootOrder(disks: readonly VmDisk[]): VmDisk[] {
  return [...disks].sort(
    (a, b) =>
      BUS_ORDER[a.controller.kind] - BUS_ORDER[b.controller.kind] ||
      a.controller.busNumber - b.controller.busNumber ||
      a.unitNumber - b.unitNumber,
  );
}

export function describeVcenterVm(host: string, vm: VmSummary): VmDescription {
  const disks = diskBootOrder(vm.disks).map(
    (d, index): DiskDescription => ({
      index,
      label: d.label,
      capacityBytes: d.capacityBytes,
      bus: d.controller.kind,
      controllerModel: d.controller.model,
      busNumber: d.controller.busNumber,
      unitNumber: d.unitNumber,
      sourceName: d.fileName,
      sourceKey: String(d.key),
    }),
  );
  const nics = vm.nics.map(
    (n: VmNic, index): NicDescription => ({
      index,
      label: n.label,
      mac: n.macAddress.toLowerCase(),
      network: n.network,
      adapter: nicAdapter(n.adapterType),
      ...(n.pciSlot === undefined ? {} : { pciSlot: n.pciSlot }),
    }),
  );
  return {
    name: vm.name,
    source: { kind: 'vcenter', host, moref: vm.ref.value, uuid: vm.uuid, instanceUuid: vm.instanceUuid, path: vm.path },
    cpus: vm.numCPU,
    coresPerSocket: Math.max(1, vm.numCoresPerSocket || 1),
    memoryMiB: vm.memoryMiB,
    firmware: vm.firmware,
    secureBoot: vm.secureBoot,
    guestId: vm.guestId,
    guestFullName: vm.guestFullName,
    annotation: vm.annotation,
    disks,
    nics,
  };
}

/**
 * The IPv4 address VMware Tools reports for each NIC (by description index) while the guest runs:
 * what --keep-ip can keep where the guest's own files do not say (systemd-networkd keeps its DHCP
 * leases under /run, Windows guests are not read). Link-local and loopback addresses are no one's
 * to keep. Empty when the VM is off or Tools do not run.
 */
export function reportedAddresses(vm: VmSummary): Map<number, string> {
  const out = new Map<number, string>();
  vm.nics.forEach((n, index) => {
    const mac = n.macAddress.toLowerCase();
    const ip = vm.guestNet.find((g) => g.mac === mac)?.addresses.find(isKeepableIpv4);
    if (ip !== undefined) out.set(index, ip);
  });
  return out;
}

function isKeepableIpv4(ip: string): boolean {
  return isIPv4(ip) && !ip.startsWith('169.254.') && !ip.startsWith('127.') && ip !== '0.0.0.0';
}

function nicAdapter(type: string): NicAdapter {
  switch (type) {
    case 'VirtualVmxnet3':
    case 'VirtualVmxnet3Vrdma':
      return 'vmxnet3';
    case 'VirtualVmxnet2':
    case 'VirtualVmxnet':
      return 'vmxnet2';
    case 'VirtualE1000':
      return 'e1000';
    case 'VirtualE1000e':
      return 'e1000e';
    case 'VirtualPCNet32':
      return 'pcnet32';
    case 'VirtualSriovEthernetCard':
      return 'sriov';
    default:
      return 'other';
  }
}

/** Refuses disks that cannot be copied as they are, before anything is created anywhere. */
export function checkCopyableDisks(vm: VmSummary): void {
  throwFirst(copyableDiskRefusals(vm));
}

/** Every disk that cannot be copied as it is, in disk order (checkCopyableDisks throws the first). */
export function copyableDiskRefusals(vm: VmSummary): Refusal[] {
  const out: Refusal[] = [];
  for (const d of vm.disks) {
    if (d.backingType.includes('RawDiskMapping'))
      out.push({
        code: 'rdm-disk',
        error: new OneswapError('conflict', `disk "${d.label}" of VM ${vm.name} is a raw device mapping (RDM), which oneswap cannot copy`, {
          hint: 'migrate the LUN separately or convert the RDM to a virtual disk in vCenter',
        }),
      });
    else if (d.sharing && d.sharing !== 'sharingNone')
      out.push({
        code: 'shared-disk',
        error: new OneswapError('conflict', `disk "${d.label}" of VM ${vm.name} is shared between VMs (${d.sharing})`, {
          hint: 'shared multi-writer disks cannot be migrated with one VM',
        }),
      });
    else if (d.capacityBytes <= 0) out.push({ code: 'disk-without-capacity', error: new OneswapError('data', `disk "${d.label}" of VM ${vm.name} reports no capacity`) });
  }
  return out;
}

/**
 * Where each disk lives: its datastore's type decides which readers ESXi allows (reader-select.ts).
 * Nothing is read yet: the reader is opened for the state the copy reads (powered off, or a snapshot).
 */
export async function placeVcenterDisks(client: VSphereClient, vm: VmSummary, description: VmDescription): Promise<PlacedDisks> {
  const [datacenters, datastores] = await Promise.all([client.datacenters(), client.datastores()]);
  return placeDisks(vm, description, datacenters, datastores);
}

/** placeVcenterDisks on an inventory already read (a plan's check reads it once for every VM). */
export function placeDisks(vm: VmSummary, description: VmDescription, datacenters: readonly Datacenter[], datastores: readonly Datastore[]): PlacedDisks {
  const dc = datacenters.find((d) => d.name === vm.datacenter);
  if (!dc) throw new OneswapError('not-found', `datacenter ${vm.datacenter} of VM ${vm.name} not found`);
  const byKey = new Map(vm.disks.map((d) => [String(d.key), d]));
  const disks = description.disks.map((desc): VcenterDisk => {
    const device = byKey.get(desc.sourceKey)!;
    const ds = datastores.find((x) => x.name === device.datastoreName && x.datacenter === vm.datacenter) ?? datastores.find((x) => x.name === device.datastoreName);
    if (!ds) throw new OneswapError('not-found', `datastore ${device.datastoreName} of disk "${device.label}" of VM ${vm.name} not found`);
    return { description: desc, device, datastoreType: ds.type };
  });
  return { dcPath: dc.path, disks };
}

export interface PlacedDisks {
  /** The datacenter's inventory path, for /folder URLs. */
  readonly dcPath: string;
  readonly disks: VcenterDisk[];
}

const SNAPSHOT_NAME_PREFIX = 'oneswap-';

/** Marks snapshots as oneswap's own, by name and description, so nothing else is ever removed. */
export function ownSnapshotSpec(purpose: string): { name: string; description: string } {
  return {
    name: `${SNAPSHOT_NAME_PREFIX}${purpose}-${new Date().toISOString().replace(/[:.]/g, '-')}`,
    description: `Created by oneswap (${purpose}); oneswap removes it when done. Safe to delete if left behind.`,
  };
}

export function isOwnSnapshot(s: { name: string; description: string }): boolean {
  return s.name.startsWith(SNAPSHOT_NAME_PREFIX) && s.description.startsWith('Created by oneswap');
}

/**
 * Finds what to read of each disk. With CBT on, a snapshot gives changeIds and QueryChangedDiskAreas
 * "*" gives the allocated areas; the snapshot is removed again before this returns (the VM is off,
 * so the base disk cannot change afterwards). Without CBT the whole disk is read.
 */
export async function allocatedAreas(
  client: VSphereClient,
  vm: VmSummary,
  disks: readonly VcenterDisk[],
  log: (line: string) => void,
): Promise<AllocationMap> {
  const whole = (): AllocationMap => ({
    method: 'full',
    extents: new Map(disks.map((d) => [d.device.key, [{ start: 0, length: d.device.capacityBytes }]])),
  });
  if (!vm.changeTrackingEnabled) {
    log(`change tracking is off for ${vm.name}: reading whole disks, zero blocks become holes`);
    return whole();
  }
  const spec = ownSnapshotSpec('cbt-map');
  const snapshot = await client.createSnapshot(vm.ref, { ...spec, memory: false, quiesce: false });
  try {
    const frozen = await client.snapshotDisks(snapshot.ref);
    const extents = new Map<number, readonly Extent[]>();
    for (const d of disks) {
      const fd = frozen.find((f) => f.key === d.device.key);
      if (!fd?.changeId) {
        log(`disk ${d.device.label} of ${vm.name} has no changeId: reading whole disks`);
        return whole();
      }
      extents.set(d.device.key, await client.queryChangedDiskAreas(vm.ref, snapshot.ref, d.device.key, '*', d.device.capacityBytes));
    }
    return { method: 'cbt', extents };
  } finally {
    await removeOwnSnapshot(client, snapshot.ref, log);
  }
}

async function removeOwnSnapshot(client: VSphereClient, ref: MoRef, log: (line: string) => void): Promise<void> {
  try {
    await client.removeSnapshot(ref);
  } catch (err) {
    log(`could not remove oneswap's snapshot ${ref.value}: ${(err as Error).message}; remove it in vCenter`);
    throw err;
  }
}
