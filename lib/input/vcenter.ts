// vCenter as a source: resolves a VM to its neutral description, gives a raw range reader per disk
// over the datastore's HTTPS /folder service, and finds each disk's allocated areas (CBT "*" on a
// short-lived snapshot when change tracking is on; otherwise the whole disk, zeros become holes).

import { isIPv4 } from 'node:net';
import type { Readable } from 'node:stream';
import { OneswapError } from '../errors/index.js';
import type { RangeSource } from '../copy/index.js';
import type { VSphereClient, VmSummary, VmDisk, VmNic, Extent, MoRef } from '../vsphere/index.js';
import { parseVmdkDescriptor, vmdkKind, type DescriptorExtent } from './vmdk-descriptor.js';
import type { DiskBus, DiskDescription, NicAdapter, NicDescription, VmDescription } from './vm-description.js';

export interface VcenterDisk {
  readonly description: DiskDescription;
  readonly device: VmDisk;
  readonly source: RangeSource;
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
  for (const d of vm.disks) {
    if (d.backingType.includes('RawDiskMapping'))
      throw new OneswapError('conflict', `disk "${d.label}" of VM ${vm.name} is a raw device mapping (RDM), which oneswap cannot copy`, {
        hint: 'migrate the LUN separately or convert the RDM to a virtual disk in vCenter',
      });
    if (d.sharing && d.sharing !== 'sharingNone')
      throw new OneswapError('conflict', `disk "${d.label}" of VM ${vm.name} is shared between VMs (${d.sharing})`, {
        hint: 'shared multi-writer disks cannot be migrated with one VM',
      });
    if (d.capacityBytes <= 0) throw new OneswapError('data', `disk "${d.label}" of VM ${vm.name} reports no capacity`);
  }
}

/** Builds a raw range reader for every disk by reading its VMDK descriptor from the datastore. */
export async function openVcenterDisks(client: VSphereClient, vm: VmSummary, description: VmDescription): Promise<VcenterDisk[]> {
  const datacenters = await client.datacenters();
  const dc = datacenters.find((d) => d.name === vm.datacenter);
  if (!dc) throw new OneswapError('not-found', `datacenter ${vm.datacenter} of VM ${vm.name} not found`);
  const byKey = new Map(vm.disks.map((d) => [String(d.key), d]));
  const out: VcenterDisk[] = [];
  for (const desc of description.disks) {
    const device = byKey.get(desc.sourceKey)!;
    const folder = device.datastorePath.includes('/') ? device.datastorePath.slice(0, device.datastorePath.lastIndexOf('/') + 1) : '';
    const descriptorUrl = client.datastoreUrl(dc.path, device.datastoreName, device.datastorePath);
    const fileName = device.datastorePath.slice(folder.length);
    const layout = await readLayout(client, descriptorUrl, device.fileName, fileName);
    if (layout.capacityBytes < device.capacityBytes)
      throw new OneswapError('data', `${device.fileName} holds ${layout.capacityBytes} bytes but the disk has ${device.capacityBytes}`);
    const segments = layout.extents.map((e) => ({
      ...e,
      url: e.file === undefined ? undefined : client.datastoreUrl(dc.path, device.datastoreName, folder + e.file),
    }));
    out.push({ description: desc, device, source: flatSource(client, device.fileName, segments) });
  }
  return out;
}

interface Layout {
  readonly extents: readonly DescriptorExtent[];
  readonly capacityBytes: number;
}

async function readLayout(client: VSphereClient, url: string, name: string, fileName: string): Promise<Layout> {
  const { size } = await client.head(url);
  const head = await readAll(await client.openRange(url, 0, Math.min(size, 65536)));
  const kind = vmdkKind(head);
  if (kind === 'descriptor') {
    if (size > 65536) throw new OneswapError('data', `${name} looks like a descriptor but is ${size} bytes long`);
    return parseVmdkDescriptor(head.toString('utf8'), name);
  }
  if (kind === 'hosted-sparse' || kind === 'vmfs-sparse')
    throw new OneswapError('data', `${name} is a sparse VMDK (${kind}), which cannot be read as raw ranges over the datastore`, {
      hint: 'consolidate the disk or clone it to a flat disk first',
    });
  // No descriptor: a plain raw file (seen on some NFS datastores and in the simulator).
  return { extents: [{ kind: 'FLAT', size, file: fileName, fileOffset: 0 }], capacityBytes: size };
}

interface Segment extends DescriptorExtent {
  readonly url: string | undefined;
}

/** A RangeSource over the descriptor's extents laid end to end (ZERO extents read as zeros). */
function flatSource(client: VSphereClient, name: string, segments: readonly Segment[]): RangeSource {
  const starts: number[] = [];
  let at = 0;
  for (const s of segments) {
    starts.push(at);
    at += s.size;
  }
  return {
    name,
    async open(start, end, signal) {
      const pieces: Array<() => Promise<AsyncIterable<Uint8Array>>> = [];
      segments.forEach((seg, i) => {
        const segStart = starts[i]!;
        const from = Math.max(start, segStart);
        const to = Math.min(end, segStart + seg.size);
        if (from >= to) return;
        const url = seg.url;
        if (url === undefined) pieces.push(async () => zeros(to - from));
        else pieces.push(async () => (await client.openRange(url, seg.fileOffset + from - segStart, seg.fileOffset + to - segStart, signal)) as AsyncIterable<Uint8Array>);
      });
      if (pieces.length === 1) return pieces[0]!();
      return (async function* () {
        for (const p of pieces) yield* await p();
      })();
    },
  };
}

async function* zeros(n: number): AsyncIterable<Uint8Array> {
  const block = Buffer.alloc(Math.min(n, 1024 * 1024));
  for (let left = n; left > 0; left -= block.length) yield left >= block.length ? block : block.subarray(0, left);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
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
