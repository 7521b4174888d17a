/**
 * vSphere client: talks SOAP (vim25, hand-written envelopes) and datastore HTTP to a vCenter or
 * ESXi host.
 *
 * - `VSphereClient.connect(options)` logs in under a TLS policy (verify with optional CA, pinned
 *   thumbprint, or explicitly insecure) and keeps the session alive and re-logged-in.
 * - Inventory: datacenters, clusters, hosts, datastores, networks, VMs (`VmSummary`, with disks
 *   and NICs), `findVm` by path, UUID or name (`matchVm`, the same rule on VMs already read),
 *   `findVms` for many queries at once — each a fixed number of round trips.
 * - Snapshots (create/list/remove, disks with changeIds from the snapshot's own config), CBT
 *   (`queryChangedDiskAreas` paged to the disk capacity, enable/disable), power operations.
 * - Datastore files over `/folder`: URL builder, HEAD, small text GET, and exact single-range
 *   streams for the copy engine.
 * - Export leases (`exportVm`, `exportSnapshot`): waited for until ready; device URLs downloaded
 *   whole (no Range) from the host the client connected to, TLS pinned to the lease's thumbprint;
 *   keep-alive (`progress`), `complete`, `abort` with our message.
 *
 * Every failure is a `OneswapError` (kind + one-line message naming the object, the call and
 * what to do). Morefs, device keys and changeIds are opaque strings/integers.
 */

export { VSphereClient } from './client.js';
export type { ExportLease, ExportLeaseInfo, LeaseDevice, LeaseDownload, LeaseState, LeaseWaitOptions } from './export-lease.js';
export type { ConnectOptions, LoginFacts } from './client.js';
export type { VSphereLogger } from './logger.js';
export type { CreateSnapshotOptions, RemoveSnapshotOptions } from './snapshots.js';
export type { FindVmOptions, FoundVm, FoundVms, VmKeys } from './vm-inventory.js';
export { matchVm } from './vm-inventory.js';
export { isFault } from './vim-fault.js';
export { parseEndpoint, type Endpoint } from './endpoint.js';
export type * from './types.js';
