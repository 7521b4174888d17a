// input: knows a source. Gives the neutral VM description (vm-description.ts) and, per disk, a
// RangeSource for the copy engine plus the areas worth reading.
//
// Sources: vCenter/ESXi over the API and the datastore's HTTPS /folder service (flat VMDKs of
// powered-off VMs), or an export lease (reader-lease.ts: ExportVm/ExportSnapshot, each disk one
// streamOptimized stream decoded on the fly into the planned areas, disk-reader.ts's interface);
// and files (file-vm.ts): an OVA read in place (tar-index.ts, never unpacked), an OVF folder, or
// bare VMDKs, whose layout vmdk-image.ts reads from their metadata and whose
// bytes vmdk-decode.ts moves into the raw target (one sequential pass, grains inflated by worker
// threads, zeros left as holes, the manifest's digests checked in the same pass).

export type { VmDescription, DiskDescription, NicDescription, DiskBus, NicAdapter, Firmware, SourceIdentity } from './vm-description.js';
export { vmIdentity, normalizeMac } from './vm-description.js';
export {
  describeVcenterVm,
  reportedAddresses,
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
export { openOva, openVmdks, type FileVm, type FileDisk, type BareVmHardware } from './file-vm.js';
export { openVmdk, type VmdkImage } from './vmdk-image.js';
export type { SourceFile, FileDigest } from './source-file.js';
export { openLease, type LeaseSession, type LeaseSource, type OpenLeaseOptions } from './reader-lease.js';
export type { DiskReading, RangeReading, StreamReading, StreamCopyOptions, ReaderKind, ReaderChoice, TransportChoice } from './disk-reader.js';
export { decodeVmdk, decodeVmdkStream, type DecodeOptions, type DecodeStats, type StreamDecodeOptions, type StreamDecodeStats } from './vmdk-decode.js';
