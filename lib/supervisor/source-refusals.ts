// What refuses a vCenter VM as it is, from its properties alone, before anything is changed: disks
// that cannot be copied, its power state against the way it is migrated, what a warm migration
// needs (hardware version, dependent disks, change tracking), snapshots of others. The import's
// precheck throws the first; `plan check` reports them all for every VM of a plan.

import { OneswapError, type Refusal } from '../errors/index.js';
import { copyableDiskRefusals, isOwnSnapshot } from '../input/index.js';
import type { VmSummary } from '../vsphere/index.js';

/** How the VM is to be migrated, as far as its state matters. */
export type SourceMode =
  | { readonly kind: 'cold'; readonly shutdown: boolean }
  | { readonly kind: 'warm'; readonly enableCbt: boolean };

/** In the order a single import meets them. CBT off with enableCbt is no refusal: the import turns it on. */
export function sourceRefusals(vm: VmSummary, mode: SourceMode): Refusal[] {
  const out = copyableDiskRefusals(vm);
  if (vm.disks.length === 0) out.push({ code: 'no-disks', error: new OneswapError('usage', `VM ${vm.name} has no disks to migrate`) });
  if (vm.powerState === 'suspended')
    out.push({
      code: 'suspended',
      error: new OneswapError('conflict', `VM ${vm.name} is suspended`, { hint: 'power it on and shut it down from the guest, or power it off, then run again' }),
    });
  if (mode.kind === 'warm') out.push(...warmRefusals(vm, mode.enableCbt));
  else if (vm.powerState === 'poweredOn' && !mode.shutdown)
    out.push({
      code: 'powered-on-cold',
      error: new OneswapError('conflict', `VM ${vm.name} is powered on; a cold import needs it off`, {
        hint: {
          cli: 'shut it down first, or pass --shutdown to have oneswap ask the guest to shut down',
          plan: 'shut it down first, or set shutdown: true for this VM (or in defaults) to have oneswap ask the guest to shut down',
        },
      }),
    });
  return out;
}

/**
 * Snapshots and CBT must work on every disk: virtual hardware 7 or later, no independent disks
 * (a snapshot skips them), change tracking on (or turned on by the import: enableCbt).
 */
function warmRefusals(vm: VmSummary, enableCbt: boolean): Refusal[] {
  const out: Refusal[] = [];
  const hw = Number.parseInt(vm.hardwareVersion.replace(/^vmx-/, ''), 10);
  if (Number.isFinite(hw) && hw < 7)
    out.push({
      code: 'hardware-version',
      error: new OneswapError('conflict', `VM ${vm.name} has virtual hardware ${vm.hardwareVersion}; changed block tracking needs vmx-07 or later`, {
        hint: { cli: 'upgrade the VM compatibility in vCenter, or import it cold (without --warm)', plan: 'upgrade the VM compatibility in vCenter, or set mode: cold for this VM' },
      }),
    });
  const independent = vm.disks.filter((d) => d.diskMode.startsWith('independent'));
  if (independent.length > 0)
    out.push({
      code: 'independent-disk',
      error: new OneswapError('conflict', `disk ${independent.map((d) => `"${d.label}"`).join(', ')} of VM ${vm.name} is independent (${independent[0]!.diskMode}); snapshots skip such disks, so they cannot be copied while the VM runs`, {
        hint: { cli: 'switch the disk to dependent mode in vCenter, or import the VM cold (without --warm)', plan: 'switch the disk to dependent mode in vCenter, or set mode: cold for this VM' },
      }),
    });
  if (!vm.changeTrackingEnabled && !enableCbt)
    out.push({
      code: 'cbt-off',
      error: new OneswapError('conflict', `changed block tracking is off for VM ${vm.name}; a warm migration needs it`, {
        hint: {
          cli: 'pass --enable-cbt to turn it on (takes effect at the first migration snapshot), or import the VM cold',
          plan: 'set enableCbt: true for this VM (or in defaults) to have the migration turn it on (takes effect at its first snapshot), or set mode: cold',
        },
      }),
    });
  return out;
}

/** Snapshots oneswap did not make: their disks are deltas, and oneswap never touches them. */
export function foreignSnapshotRefusal(vm: VmSummary, snapshots: ReadonlyArray<{ readonly name: string; readonly description: string }>): Refusal | undefined {
  const foreign = snapshots.filter((s) => !isOwnSnapshot(s));
  if (foreign.length === 0) return undefined;
  return {
    code: 'foreign-snapshots',
    error: new OneswapError('conflict', `VM ${vm.name} has snapshots (${foreign.map((s) => `"${s.name}"`).join(', ')}); its disks are snapshot deltas`, {
      hint: 'delete or consolidate the snapshots in vCenter first (oneswap never touches snapshots it did not create)',
    }),
  };
}
