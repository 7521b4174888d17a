// drivers: what OpenNebula executes. `runDriver(script, args)` is one driver action, called by the
// shims in driver/ (datastore/oneswap/*, market/oneswap/*):
//
// - datastore `stat` / `cp` of a `vcenter://HOST/DATACENTER/VM-PATH?disk=N` PATH (vcenter-url.ts):
//   the disk's size in MiB; the disk streamed with the copy engine into a new image of the
//   datastore's kind (a raw or qcow2 file under BASE_PATH, an RBD image pool/one-<id>), answered
//   as `SOURCE FORMAT`. Progress goes to the image's ONESWAP_PROGRESS attribute. A cp of an image
//   that came from a marketplace app converts the whole VM once all its disks are copied
//   (vm-conversion.ts).
// - every other datastore action, and plain paths or http(s) URLs: the stock driver of the
//   datastore's storage, `ceph` (TM_MAD ceph) or `fs`, unchanged (stock-driver.ts).
// - market `monitor`: the vCenter's VMs as apps (market-monitor.ts); `import` is refused (the
//   catalog is read-only), `delete` succeeds (the next monitor lists the VM again if it exists).
//
// Credentials: a YAML file named by the ONESWAP_CREDENTIALS attribute (credentials.ts). Settings:
// oneswap.yaml (config.ts).

export { runDriver } from './run.js';
export { parseVcenterUrl, formatVcenterUrl, isVcenterUrl, type VcenterRef } from './vcenter-url.js';
export { readCredentials, CREDENTIALS_ATTRIBUTE, type VcenterCredentials } from './credentials.js';
export { readDriverConfig, type DriverConfig } from './config.js';
