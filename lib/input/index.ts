// input: knows a source. Gives the neutral VM description (vm-description.ts) and, per disk, a
// RangeSource for the copy engine plus the areas worth reading.
//
// Sources: vCenter/ESXi over the API, each disk read the way ESXi serves it (disk-reader.ts: the
// datastore's /folder for a powered-off VM's flat files, an NFC export lease, or VDDK/nfc through
// nbdkit; reader-select.ts picks per disk); and files (file-vm.ts): an OVA read in place (tar-index.ts, never unpacked),
// an OVF folder, or bare VMDKs, whose layout vmdk-image.ts reads from their metadata (the bytes
// are moved by lib/copy's decoder, which checks the manifest's digests in the same pass).

export type { VmDescription, DiskDescription, NicDescription, DiskBus, NicAdapter, Firmware, SourceIdentity } from './vm-description.js';
export { vmIdentity, normalizeMac } from './vm-description.js';
export {
  describeVcenterVm,
  reportedAddresses,
  checkCopyableDisks,
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
export { chooseReader, openReadings, availablePlugins, type ReaderSettings, type ReadState, type DiskPlace, type Plugins, type Readings } from './reader-select.js';
export { parseVmdkDescriptor, vmdkKind, type VmdkDescriptor } from './vmdk-descriptor.js';
export { openOva, openVmdks, type FileVm, type FileDisk, type BareVmHardware } from './file-vm.js';
export { openVmdk, type VmdkImage } from './vmdk-image.js';
export type { SourceFile, FileDigest } from './source-file.js';
// Where a VMDK's bytes lie, for the decoder that moves them (lib/copy/vmdk-decode.ts).
export { vmdkLayout, grainCheck, type FileLayout, type FlatSegment, type SparseGrains, type StreamExtent } from './vmdk-image.js';
// The vddk and nfc readers: nbdkit serving a VMware disk, read over NBD.
export { openNbdkitDisk, type NbdkitReading, type NbdkitReaderOptions } from './reader-nbdkit.js';
export { nbdkitPluginMissing, type NbdkitDisk, type NbdkitPlugin } from './nbdkit.js';
