// One VM of a plan as the scheduler and the checks see it: the plan file's defaults and the VM's
// own overrides already merged, every value validated. The plan file (plan-file.ts) produces
// these; `plan check`, `plan estimate` and `plan run` read only these.

import type { TransportChoice } from '../input/index.js';

/** How a VM is found in vCenter: as `oneswap import` finds it, by name, inventory path or UUID. */
export type { VmQuery } from '../vsphere/index.js';
import type { VmQuery } from '../vsphere/index.js';

/** When a warm VM cuts over: a moment, or a named window of the plan (its start). */
export interface CutoverWindow {
  readonly name?: string;
  readonly start: Date;
  /** A cutover not started by `end` waits for the next run instead of overrunning the window. */
  readonly end?: Date;
}

export type PlannedMode =
  | { readonly kind: 'cold'; readonly shutdown: boolean }
  | { readonly kind: 'warm'; readonly enableCbt: boolean; readonly cutover?: CutoverWindow };

export interface PlannedVm {
  /** The key of this VM in the plan, its status and its report: the name given in the plan. */
  readonly key: string;
  readonly query: VmQuery;
  /** Where it stands in the plan file (1-based), for messages. */
  readonly line: number;
  readonly wave: string;
  /** Higher first within a wave; ties keep the plan's order. */
  readonly priority: number;
  readonly mode: PlannedMode;
  readonly datastoreId: number;
  /** vCenter network name → OpenNebula network id or name. */
  readonly networkMap: ReadonlyMap<string, string>;
  readonly convert: boolean;
  /** What the migration leaves: a VM template, or the template and a VM created from it. */
  readonly output: 'template' | 'vm';
  readonly transport: TransportChoice;
  readonly namePrefix: string;
  readonly keepMac: boolean;
  readonly keepIp: boolean;
}

/** The limits `plan run` keeps, whatever the waves ask. */
export interface PlanBudgets {
  /** Disks read at once from one ESXi host. */
  readonly readsPerHost: number;
  /** VMs whose guest converts at once (CPU and memory heavy on this host). */
  readonly converting: number;
  /** VMs between their first step and their last, in all. */
  readonly inFlight: number;
  /** Bytes per second read from one vSphere datastore (by name), when limited. */
  readonly datastoreBytesPerSec: ReadonlyMap<string, number>;
}
