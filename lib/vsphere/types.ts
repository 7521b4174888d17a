// Data shapes the vSphere client hands to the rest of oneswap. Morefs, device keys and changeIds
// are opaque: never parse them (the simulator's morefs contain paths and '@').

/** A managed object reference, e.g. { type: "VirtualMachine", value: "vm-42" }. */
export interface MoRef {
  readonly type: string;
  readonly value: string;
}

export type PowerState = 'poweredOn' | 'poweredOff' | 'suspended';
export type Firmware = 'bios' | 'efi';

export interface Datacenter {
  readonly ref: MoRef;
  readonly name: string;
  /** Inventory path, e.g. "/DC0" or "/Folder/DC1"; used as dcPath for /folder URLs. */
  readonly path: string;
}

export interface Cluster {
  readonly ref: MoRef;
  readonly name: string;
  readonly datacenter: string;
  readonly hosts: number;
}

export interface Host {
  readonly ref: MoRef;
  readonly name: string;
  readonly datacenter: string;
  /** Cluster name, absent for a standalone host. */
  readonly cluster?: string;
  readonly connectionState: string;
  readonly powerState: string;
}

export interface Datastore {
  readonly ref: MoRef;
  readonly name: string;
  readonly datacenter: string;
  readonly type: string;
  readonly capacityBytes: number;
  readonly freeBytes: number;
  readonly url: string;
}

export interface Network {
  readonly ref: MoRef;
  readonly name: string;
  readonly datacenter: string;
  /** "Network", "DistributedVirtualPortgroup", "OpaqueNetwork". */
  readonly kind: string;
}

export type ControllerKind = 'scsi' | 'sata' | 'ide' | 'nvme';

export interface VmDisk {
  /** Device key: opaque integer, stable within the VM. */
  readonly key: number;
  readonly label: string;
  readonly capacityBytes: number;
  readonly controller: {
    readonly key: number;
    readonly kind: ControllerKind;
    /** e.g. "ParaVirtualSCSIController", "VirtualLsiLogicController", "VirtualAHCIController". */
    readonly model: string;
    readonly busNumber: number;
  };
  readonly unitNumber: number;
  /** Backing file in datastore notation: "[LocalDS_0] vm1/vm1.vmdk". */
  readonly fileName: string;
  /** Datastore name parsed from fileName's bracket part, and its path inside the datastore. */
  readonly datastoreName: string;
  readonly datastorePath: string;
  readonly diskMode: string;
  readonly thinProvisioned: boolean;
  /** CBT changeId of the backing when present (only meaningful read from a snapshot's config). */
  readonly changeId?: string;
  /** Backing kind, e.g. "VirtualDiskFlatVer2BackingInfo", "VirtualDiskRawDiskMappingVer1BackingInfo". */
  readonly backingType: string;
  readonly sharing?: string;
}

export interface VmNic {
  readonly key: number;
  readonly label: string;
  readonly macAddress: string;
  /** Network (portgroup) name the NIC is attached to; "" when unknown. */
  readonly network: string;
  /** vSphere adapter type: "VirtualVmxnet3", "VirtualE1000", "VirtualE1000e", "VirtualPCNet32", "VirtualSriovEthernetCard", ... */
  readonly adapterType: string;
  readonly connected: boolean;
  /** slotInfo.pciSlotNumber: Linux guests name the NIC ens<slot>. */
  readonly pciSlot?: number | undefined;
}

export interface VmSummary {
  readonly ref: MoRef;
  readonly name: string;
  readonly uuid: string;
  readonly instanceUuid: string;
  readonly datacenter: string;
  readonly cluster?: string;
  readonly host?: string;
  /** Inventory path: "/DC0/vm/Folder/name". */
  readonly path: string;
  readonly powerState: PowerState;
  readonly numCPU: number;
  readonly numCoresPerSocket: number;
  readonly memoryMiB: number;
  readonly firmware: Firmware;
  readonly secureBoot: boolean;
  readonly guestId: string;
  readonly guestFullName: string;
  readonly annotation: string;
  readonly changeTrackingEnabled: boolean;
  readonly toolsRunning: boolean;
  /** The guest OS id VMware Tools reports from inside the guest; '' when Tools never reported one. */
  readonly toolsGuestId: string;
  readonly hardwareVersion: string;
  readonly disks: readonly VmDisk[];
  readonly nics: readonly VmNic[];
  readonly hasSnapshots: boolean;
  /** The snapshot tree flattened depth-first (parents first), without disks; empty without snapshots. */
  readonly snapshots: readonly Snapshot[];
  /** What VMware Tools reports per NIC while the guest runs; empty when it is off or Tools do not run. */
  readonly guestNet: readonly GuestNic[];
}

export interface GuestNic {
  /** Lower case, as the VM's NICs carry it. */
  readonly mac: string;
  /** IPv4 and IPv6 addresses, as the guest reports them. */
  readonly addresses: readonly string[];
}

export interface Snapshot {
  readonly ref: MoRef;
  readonly name: string;
  readonly description: string;
  readonly createTime: string;
  /** Disks as frozen in the snapshot's own config (changeIds come from here). */
  readonly disks?: readonly VmDisk[];
}

/** One area of a disk, in bytes. */
export type { Extent } from '../extents/index.js';

/** How a client trusts the server certificate. Verified by default. */
export type TlsPolicy =
  | { readonly kind: 'verify'; readonly ca?: string }
  | { readonly kind: 'thumbprint'; readonly thumbprint: string }
  | { readonly kind: 'insecure' };

export interface Credentials {
  readonly user: string;
  readonly password: string;
}

/** How a VM is found, as `oneswap import` and a plan name it: by name, inventory path or UUID. */
export type VmQuery =
  | { readonly by: 'name'; readonly value: string }
  | { readonly by: 'path'; readonly value: string }
  | { readonly by: 'uuid'; readonly value: string };

/** Which VMs `vms()` returns; every given criterion must match. */
export interface VmFilter {
  /** Exact name, or a glob where `*` matches any run of characters. */
  readonly name?: string;
  /** Datacenter name or inventory path. */
  readonly datacenter?: string;
  readonly cluster?: string;
  readonly powerState?: PowerState;
}
