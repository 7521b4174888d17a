// VirtualDevice lists (from a VM's or a snapshot's config.hardware.device) read into disks and NICs.

import type { ControllerKind, GuestNic, VmDisk, VmNic } from './types.js';
import { bool, field, int, list, text, typeName, type VimValue } from './vim-value.js';

const CONTROLLER_KINDS: Record<string, ControllerKind> = {
  ParaVirtualSCSIController: 'scsi',
  VirtualLsiLogicController: 'scsi',
  VirtualLsiLogicSASController: 'scsi',
  VirtualBusLogicController: 'scsi',
  VirtualSCSIController: 'scsi',
  VirtualAHCIController: 'sata',
  VirtualSATAController: 'sata',
  VirtualIDEController: 'ide',
  VirtualNVMEController: 'nvme',
};

const ETHERNET_CARDS = new Set([
  'VirtualE1000', 'VirtualE1000e', 'VirtualPCNet32', 'VirtualVmxnet', 'VirtualVmxnet2', 'VirtualVmxnet3',
  'VirtualVmxnet3Vrdma', 'VirtualSriovEthernetCard', 'VirtualEthernetCard',
]);

interface Controller {
  readonly key: number;
  readonly kind: ControllerKind;
  readonly model: string;
  readonly busNumber: number;
}

/** Resolves a NIC backing to the name of its network; "" when unknown. */
export type NetworkNameResolver = (backing: VimValue | undefined) => string;

function controllerKind(type: string): ControllerKind | undefined {
  const known = CONTROLLER_KINDS[type];
  if (known !== undefined) return known;
  // Newer SCSI models follow the naming pattern; guessing scsi beats dropping the disk.
  if (/SCSIController$|SASController$/.test(type)) return 'scsi';
  return undefined;
}

function controllers(devices: readonly VimValue[]): Map<number, Controller> {
  const out = new Map<number, Controller>();
  for (const d of devices) {
    const model = typeName(d) ?? '';
    const kind = controllerKind(model);
    const key = int(d, 'key');
    if (kind === undefined || key === undefined) continue;
    out.set(key, { key, kind, model, busNumber: int(d, 'busNumber') ?? 0 });
  }
  return out;
}

/** "[LocalDS_0] vm/disk.vmdk" → datastore name and path inside it. */
export function parseDatastorePath(fileName: string): { datastore: string; path: string } {
  const m = /^\[([^\]]*)\]\s*(.*)$/s.exec(fileName);
  return m ? { datastore: m[1] ?? '', path: m[2] ?? '' } : { datastore: '', path: fileName };
}

/** Disk capacity in bytes: capacityInBytes when the server sends it, else capacityInKB × 1024. */
export function diskCapacityBytes(disk: VimValue): number {
  return int(disk, 'capacityInBytes') ?? (int(disk, 'capacityInKB') ?? 0) * 1024;
}

/** Disks ordered by controller kind, bus and unit, the order guests usually enumerate them. */
export function readDisks(devices: readonly VimValue[]): VmDisk[] {
  const ctrls = controllers(devices);
  const disks: VmDisk[] = [];
  for (const d of devices) {
    if (typeName(d) !== 'VirtualDisk') continue;
    const key = int(d, 'key');
    if (key === undefined) continue;
    const controllerKey = int(d, 'controllerKey') ?? -1;
    const ctrl = ctrls.get(controllerKey) ?? { key: controllerKey, kind: 'scsi' as const, model: '', busNumber: 0 };
    const fileName = text(d, 'backing.fileName') ?? '';
    const { datastore, path } = parseDatastorePath(fileName);
    const changeId = text(d, 'backing.changeId');
    const sharing = text(d, 'backing.sharing');
    disks.push({
      key,
      label: text(d, 'deviceInfo.label') ?? `disk-${key}`,
      capacityBytes: diskCapacityBytes(d),
      controller: { key: ctrl.key, kind: ctrl.kind, model: ctrl.model, busNumber: ctrl.busNumber },
      unitNumber: int(d, 'unitNumber') ?? 0,
      fileName,
      datastoreName: datastore,
      datastorePath: path,
      diskMode: text(d, 'backing.diskMode') ?? '',
      thinProvisioned: bool(d, 'backing.thinProvisioned') ?? false,
      ...(changeId !== undefined && changeId !== '' ? { changeId } : {}),
      backingType: typeName(d, 'backing') ?? '',
      ...(sharing !== undefined && sharing !== '' ? { sharing } : {}),
    });
  }
  // In device order as vSphere lists them; boot order is the input stage's decision.
  return disks;
}

export function readNics(devices: readonly VimValue[], networkName: NetworkNameResolver): VmNic[] {
  const nics: VmNic[] = [];
  for (const d of devices) {
    const type = typeName(d) ?? '';
    if (!ETHERNET_CARDS.has(type) && text(d, 'macAddress') === undefined) continue;
    const key = int(d, 'key');
    if (key === undefined) continue;
    nics.push({
      key,
      label: text(d, 'deviceInfo.label') ?? `ethernet-${key}`,
      macAddress: (text(d, 'macAddress') ?? '').toLowerCase(),
      network: networkName(field(d, 'backing')),
      adapterType: type,
      connected: bool(d, 'connectable.connected') ?? false,
      pciSlot: int(d, 'slotInfo.pciSlotNumber'),
    });
  }
  return nics;
}

/**
 * The addresses the guest reports per NIC (GuestNicInfo). Tools fill `ipConfig.ipAddress` and the
 * older flat `ipAddress` list; both are read, in order, without duplicates. Entries without a MAC
 * (the guest's own virtual interfaces) say nothing about a NIC and are left out.
 */
export function readGuestNet(guestNet: VimValue | undefined): GuestNic[] {
  const out: GuestNic[] = [];
  for (const nic of list(guestNet)) {
    const mac = (text(nic, 'macAddress') ?? '').toLowerCase();
    if (mac === '') continue;
    const addresses = new Set<string>();
    for (const a of list(nic, 'ipConfig.ipAddress')) {
      const ip = text(a, 'ipAddress');
      if (ip) addresses.add(ip);
    }
    for (const ip of list(nic, 'ipAddress')) if (typeof ip === 'string' && ip !== '') addresses.add(ip);
    out.push({ mac, addresses: [...addresses] });
  }
  return out;
}
