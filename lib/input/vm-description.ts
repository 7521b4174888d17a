// The source-neutral description of a VM that every input gives and every output consumes.
// vCenter, OVF and bare VMDKs all map to this, so the output never needs to know the source.

export type DiskBus = 'scsi' | 'sata' | 'ide' | 'nvme';
export type Firmware = 'bios' | 'efi';

export interface DiskDescription {
  /** Position in boot/bus order: 0 is the boot disk. */
  readonly index: number;
  readonly label: string;
  readonly capacityBytes: number;
  readonly bus: DiskBus;
  /** Controller model as the source names it, e.g. "ParaVirtualSCSIController". */
  readonly controllerModel: string;
  readonly busNumber: number;
  readonly unitNumber: number;
  /** Where the disk lives at the source, for logs and image descriptions. */
  readonly sourceName: string;
  /** Source-specific disk identity (vSphere device key), stable for resume. */
  readonly sourceKey: string;
}

export type NicAdapter = 'vmxnet3' | 'vmxnet2' | 'e1000' | 'e1000e' | 'pcnet32' | 'sriov' | 'other';

export interface NicDescription {
  readonly index: number;
  readonly label: string;
  readonly mac: string;
  /** Source network (portgroup) name; "" when the NIC is not attached. */
  readonly network: string;
  readonly adapter: NicAdapter;
  /** vSphere's PCI slot number of the NIC, when the source says: the guest named it ens<slot>. */
  readonly pciSlot?: number | undefined;
}

export type SourceIdentity =
  | {
      readonly kind: 'vcenter';
      readonly host: string;
      readonly moref: string;
      readonly uuid: string;
      readonly instanceUuid: string;
      readonly path: string;
    }
  | { readonly kind: 'file'; readonly path: string };

export interface VmDescription {
  readonly name: string;
  readonly source: SourceIdentity;
  readonly cpus: number;
  readonly coresPerSocket: number;
  readonly memoryMiB: number;
  readonly firmware: Firmware;
  readonly secureBoot: boolean;
  /** Source OS identifier (vSphere guestId such as "debian12_64Guest") and its display name. */
  readonly guestId: string;
  readonly guestFullName: string;
  readonly annotation: string;
  /** In boot/bus order. */
  readonly disks: readonly DiskDescription[];
  readonly nics: readonly NicDescription[];
}

/** A MAC as oneswap writes it: lower case, colon-separated; "" when `text` is not a MAC ("00-50-56-…" and "005056…" are). */
export function normalizeMac(text: string): string {
  const hex = text.trim().replace(/[:-]/g, '').toLowerCase();
  if (!/^[0-9a-f]{12}$/.test(hex)) return '';
  return hex.match(/../g)!.join(':');
}

/** A stable, unique label for a VM in logs, journals and image attributes. */
export function vmIdentity(vm: VmDescription): string {
  return vm.source.kind === 'vcenter' ? `${vm.source.host}/${vm.source.instanceUuid || vm.source.uuid}` : vm.source.path;
}
