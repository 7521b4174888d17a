// input: knows a source. Gives the neutral VM description (vm-description.ts) and, per disk, a
// reader (random access for the copy engine, or one ordered pass) plus the areas worth reading.
//
// Sources: vCenter/ESXi over the API, each disk read the way ESXi serves it: one interface
// (disk-reader.ts), one selector (reader-select.ts), one module per reader: reader-folder.ts (the
// datastore's /folder for a powered-off VM's flat files), reader-lease.ts (an NFC export lease:
// ExportVm/ExportSnapshot, each disk one streamOptimized stream decoded on the fly into the planned
// areas), reader-nbdkit.ts (VDDK or nbdkit's nfc plugin over NBD, nbdkit.ts and lib/nbd);
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
  copyableDiskRefusals,
  placeDisks,
  placeVcenterDisks,
  allocatedAreas,
  ownSnapshotSpec,
  isOwnSnapshot,
  type VcenterDisk,
  type PlacedDisks,
  type AllocationMap,
  type AllocationMethod,
} from './vcenter.js';
export type { DiskReading, RangeReading, StreamReading, StreamCopyOptions, ReaderKind, ReaderChoice, TransportChoice } from './disk-reader.js';
export { chooseReader, hasFlatFiles, openReadings, availablePlugins, type ReaderSettings, type ReadState, type DiskPlace, type Plugins, type Readings } from './reader-select.js';
export { parseVmdkDescriptor, vmdkKind, type VmdkDescriptor } from './vmdk-descriptor.js';
export { openOva, openVmdks, type FileVm, type FileDisk, type BareVmHardware } from './file-vm.js';
export { openVmdk, type VmdkImage } from './vmdk-image.js';
export type { SourceFile, FileDigest } from './source-file.js';
// Where a VMDK's bytes lie, for the decoder that moves them (vmdk-decode.ts).
export { vmdkLayout, grainCheck, type FileLayout, type FlatSegment, type SparseGrains, type StreamExtent } from './vmdk-image.js';
export { decodeVmdk, decodeVmdkStream, type DecodeOptions, type DecodeStats, type StreamDecodeOptions, type StreamDecodeStats } from './vmdk-decode.js';
// The readers, for tests and benchmarks (the supervisor goes through reader-select.ts); the
// folder reader also for `plan estimate`'s rate probe, which reads a powered-off disk.
export { openFolderReading } from './reader-folder.js';
export { openLease, type LeaseSession, type LeaseSource, type OpenLeaseOptions } from './reader-lease.js';
export { openNbdkitDisk, type NbdkitReading, type NbdkitReaderOptions } from './reader-nbdkit.js';
export { nbdkitPluginMissing, type NbdkitDisk, type NbdkitPlugin } from './nbdkit.js';
