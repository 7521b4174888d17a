// output: OpenNebula as the target. Checks the image datastore, allocates placeholders and finds
// where their bytes live (sizedImageTarget, also for the image a datastore driver's cp makes; new
// image files named as the stock fs driver names them: datastore-file.ts), maps NICs to networks
// (keeping MACs where OpenNebula allows it), builds the VM template from the neutral VM
// description, and removes what a failed run created (image-removal.ts: each deletion followed
// to its end). A finished migration is recognised from OpenNebula alone (finished-import.ts).
// Or a local directory (directory-target.ts): raw or qcow2 disk files (qcow2 optionally with
// compressed clusters), image and VM templates, a summary.
// Where an image's bytes live (image-target.ts): one ImageTarget per kind of storage, which the
// copy, the warm rounds and the conversion all go through; the raw file's is file-target.ts, a
// qcow2 file's qcow2-target.ts (compressed: through whole-clusters.ts, which hands qemu each
// cluster once and whole) and an RBD image's rbd-target.ts (with rbd-access.ts: how qemu
// reaches it without a credential on any command line; from this host, or from a BRIDGE_LIST host
// that has the datastore's Ceph conf and key: reachCephPool decides), both written through qemu-nbd
// (qemu-nbd.ts, nbd-target.ts).

export {
  checkImageDatastore,
  checkNamesFree,
  namesTaken,
  nameClashes,
  unusableDatastore,
  roomRefusal,
  neededMiB,
  type TakenNames,
  allocatePlaceholder,
  diskSourceAttributes,
  diskImageDescription,
  placeholderTarget,
  sizedImageTarget,
  datastoreName,
  reachableStorage,
  reachCephPool,
  markImage,
  CONVERSION_OUTCOMES,
  type ImageState,
  recordWarmRound,
  warmImagesOf,
  untouchable,
  describePassed,
  type WarmImage,
  type PassedImage,
  recordConversion,
  recordNoOperatingSystem,
  guestAttributes,
  convertedGuestOf,
  importedDiskOf,
  convertibleImage,
  copiedImageAttributes,
  copiedImageTarget,
  type ImportedDisk,
  type StoredImage,
  imageName,
  templateName,
  type ImageDatastore,
  type PlaceholderSpec,
} from './one-target.js';
export { finishedImport, type FinishedImport } from './finished-import.js';
export { mapNics, parseNetworkMap, macInRange, type NicMapping, type NetworkCandidate } from './network-map.js';
export { placeNics, addressesToKeep, keptAddressRange, removeAddressRanges, type AddedAddressRange } from './nic-placement.js';
export { buildVmTemplate, logoFor, macOnKvm, formatGuestNetwork, parseGuestNetwork, type VmTemplateInput, type PlacedDisk, type PlacedNic, type ConvertedGuest, type GuestNicConfig } from './vm-template.js';
export {
  directoryLayout,
  prepareDirectory,
  diskTarget,
  saveState,
  finishDirectory,
  removePartial,
  type DirectoryLayout,
  type DiskFileFormat,
  type DirectoryState,
  type DirectoryResult,
} from './directory-target.js';
export { fileTarget, qcow2Target, compressedQcow2Target, rbdTarget, writingInto, forQemu, type ImageTarget, type QemuAccess } from './image-target.js';
export { imageStorageOf, type ImageStorage, type CephStorage, type CephAccess } from './image-storage.js';
export { createImageFile, type NewImageFile, type ImageFileSpec } from './datastore-file.js';
export { bridgeHostFor } from './bridge-host.js';
export { removeImages } from './image-removal.js';
export { openFileWriter, clearFile } from './file-target.js';
export { openQcow2Writer, openCompressedQcow2Writer, qcow2Allocated, qcow2Image, type Qcow2WriterOptions } from './qcow2-target.js';
export { openRbdWriter, openRbdAccessWriter, type RbdWriterSpec, type RbdWriterOptions } from './rbd-target.js';
export { openRbdAccess, DEFAULT_CEPH_CONF, type RbdAccess, type RbdLocation, type RbdTimeouts } from './rbd-access.js';
