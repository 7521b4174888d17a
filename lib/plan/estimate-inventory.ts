// What `plan estimate` reads from vCenter, all of it read-only: the VMs in one batch (listVms),
// the datastores' types and the datacenters' paths, and per disk the bytes a run would move.
// The plan's VMs are found as `plan check` finds them (findVms).

import { OneswapError } from '../errors/index.js';
import { totalLength } from '../extents/index.js';
import { isFault, type VSphereClient, type VmDisk, type VmSummary } from '../vsphere/index.js';
import type { PlannedVm } from './planned-vm.js';

export interface EstimateInventory {
  /** The plan's VMs by plan key. */
  readonly planned: ReadonlyMap<string, VmSummary>;
  /** Every VM vCenter knows: powered-off ones may lend a disk to the rate probe. */
  readonly all: readonly VmSummary[];
  /** Datastore type ("VMFS", "NFS", "vsan"…) by datacenter and name. */
  datastoreType(datacenter: string, name: string): string | undefined;
  /** A datacenter's inventory path, for /folder URLs. */
  dcPath(datacenter: string): string | undefined;
}

export async function readEstimateInventory(vsphere: VSphereClient, vms: readonly PlannedVm[]): Promise<EstimateInventory> {
  // The plan's VMs as `plan check` finds them; every VM besides, for the probe's candidates.
  const [{ found, datastores, datacenters }, all] = await Promise.all([vsphere.findVms(vms.map((p) => p.query)), vsphere.vms()]);
  const planned = new Map(
    vms.map((p, i) => {
      const f = found[i]!;
      if (!f.ok) throw new OneswapError(f.error.kind, `plan line ${p.line}: ${f.error.message}`, { hint: 'run oneswap plan check for every problem of the plan' });
      return [p.key, f.vm] as const;
    }),
  );
  return {
    planned,
    all,
    datastoreType: (dc, name) => (datastores.find((d) => d.name === name && d.datacenter === dc) ?? datastores.find((d) => d.name === name))?.type,
    dcPath: (dc) => datacenters.find((d) => d.name === dc)?.path,
  };
}

/** The bytes a run will read of one disk, and how that is known. */
export type DiskBytes =
  | { readonly bytes: number; readonly basis: 'measured'; readonly how: 'CBT allocated areas' }
  | { readonly bytes: number; readonly basis: 'assumed'; readonly how: string };

/**
 * Per disk key: the CBT allocated areas where vSphere answers without a snapshot (a powered-off
 * VM with change tracking on: QueryChangedDiskAreas on the VM itself), else the provisioned size,
 * which is what a copy without CBT reads through /folder or a lease (zeros included). A dry run
 * takes no snapshot, so a running VM is estimated at its provisioned size.
 */
export async function bytesToMove(vsphere: VSphereClient, vm: VmSummary, signal: AbortSignal): Promise<Map<number, DiskBytes>> {
  const out = new Map<number, DiskBytes>();
  for (const d of vm.disks) {
    signal.throwIfAborted();
    out.set(d.key, await diskBytes(vsphere, vm, d));
  }
  return out;
}

async function diskBytes(vsphere: VSphereClient, vm: VmSummary, d: VmDisk): Promise<DiskBytes> {
  const provisioned = (why: string): DiskBytes => ({ bytes: d.capacityBytes, basis: 'assumed', how: `provisioned size (${why})` });
  if (!vm.changeTrackingEnabled) return provisioned('change tracking off');
  if (vm.powerState !== 'poweredOff') return provisioned(`the VM is ${vm.powerState}: its CBT map needs a snapshot, which a dry run does not take`);
  try {
    return { bytes: totalLength(await vsphere.queryChangedDiskAreas(vm.ref, undefined, d.key, '*', d.capacityBytes)), basis: 'measured', how: 'CBT allocated areas' };
  } catch (err) {
    // FileFault: vSphere keeps no tracking data for the disk (e.g. CBT turned on and never since
    // powered on); the run then reads it whole too.
    if (!isFault(err, 'FileFault')) throw err;
    return provisioned(`CBT has no data for it: ${err.faultMessage || 'FileFault'}`);
  }
}
