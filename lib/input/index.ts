// input: knows a source. Gives the neutral VM description (vm-description.ts) and, per disk, a
// RangeSource for the copy engine plus the areas worth reading.
//
// Sources today: vCenter/ESXi over the API and the datastore's HTTPS /folder service (flat VMDKs
// of powered-off VMs). OVA/OVF/VMDK files come with a later issue.

export type { VmDescription, DiskDescription, NicDescription, DiskBus, NicAdapter, Firmware, SourceIdentity } from './vm-description.js';
export { vmIdentity } from './vm-description.js';
export {
  describeVcenterVm,
  checkCopyableDisks,
  openVcenterDisks,
  allocatedAreas,
  ownSnapshotSpec,
  isOwnSnapshot,
  type VcenterDisk,
  type AllocationMap,
  type AllocationMethod,
} from './vcenter.js';
export { parseVmdkDescriptor, vmdkKind, type VmdkDescriptor } from './vmdk-descriptor.js';
