// convert: makes a copied VMware guest boot on KVM, in place on the image files and overlay-safe.
// virt-v2v-in-place (Debian's 2.2) runs over a qcow2 overlay per disk, reading the libvirt XML
// built here; the caller commits the overlays into the images only after success, so a failed
// conversion leaves every image byte-identical to the copy. Inspection of the result gives the
// guest facts (OS, virtio drivers) that decide the VM template's device models; in the same
// appliance the guest's network configuration is bound to its NICs' MACs on KVM, and the boot files
// are read to say what each of virt-v2v's warnings means for this guest.

export { convertGuest, commitConversion, discardConversion, type ConversionRequest, type ConversionResult } from './convert.js';
export { type GuestFacts } from './inspect.js';
export { type Overlay, type OverlayUsage, type QemuImage } from './overlay.js';
export { domainXml, type DomainSpec, type DomainDisk, type DomainNic } from './domain-xml.js';
export { checkAdditions, type GuestAdditions } from './additions.js';
export { guestSupport, type GuestSupport } from './guest-support.js';
export { type NetworkRequest, type NicUse, type GuestNetwork } from './network-step.js';
export { RULES_FILE, type GuestNic, type NetMode } from './guest-network.js';
export { type ExplainedWarning } from './v2v-warnings.js';
