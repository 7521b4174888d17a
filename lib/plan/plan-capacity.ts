// Room for a whole plan: each VM's images alone may fit a datastore while the plan's do not. The
// VMs are taken in the order a run starts them (waves in plan order, higher priority first, ties
// in plan order); one that would overfill the datastore after those before it is refused, as its
// import's precheck would refuse it then, and the run goes on with the next.

import { neededMiB } from '../output/index.js';
import type { PlannedVm } from './planned-vm.js';

const MiB = 1024 * 1024;

/** What one VM asks of its target datastore. */
export interface CapacityDemand {
  readonly key: string;
  readonly datastoreId: number;
  /** As the import's checkImageDatastore counts them: the provisioned size of every disk. */
  readonly bytes: number;
}

/** The room a target datastore has as OpenNebula reports it. */
export interface DatastoreRoom {
  readonly datastoreId: number;
  readonly freeMb: number;
}

export interface RoomLine {
  readonly datastoreId: number;
  readonly freeBytes: number;
  /** All the plan's VMs on it together. */
  readonly neededBytes: number;
  /** Their keys, in run order. */
  readonly vms: readonly string[];
  /** The VMs that do not fit after those before them, in run order. */
  readonly overflow: readonly Overflow[];
  readonly enough: boolean;
}

export interface Overflow {
  readonly key: string;
  readonly bytes: number;
  /** Bytes of the VMs before it that fit. */
  readonly before: number;
}

/** The order `plan run` starts VMs in: waves as the plan first names them, higher priority first, then plan order. */
export function runOrder<T extends Pick<PlannedVm, 'wave' | 'priority'>>(vms: readonly T[]): T[] {
  const waveRank = new Map<string, number>();
  for (const v of vms) if (!waveRank.has(v.wave)) waveRank.set(v.wave, waveRank.size);
  return vms
    .map((v, i) => ({ v, i }))
    .sort((a, b) => waveRank.get(a.v.wave)! - waveRank.get(b.v.wave)! || b.v.priority - a.v.priority || a.i - b.i)
    .map((x) => x.v);
}

/** One line per datastore, in the order the demands first name them; `demands` in run order. */
export function planRoom(demands: readonly CapacityDemand[], rooms: readonly DatastoreRoom[]): RoomLine[] {
  const out: RoomLine[] = [];
  for (const room of rooms) {
    const mine = demands.filter((d) => d.datastoreId === room.datastoreId);
    let taken = 0;
    const overflow: Overflow[] = [];
    for (const d of mine) {
      // The import's own rule (roomRefusal): whole MiB of what is still to be written.
      if (neededMiB(taken + d.bytes) <= room.freeMb) taken += d.bytes;
      else overflow.push({ key: d.key, bytes: d.bytes, before: taken });
    }
    const neededBytes = mine.reduce((s, d) => s + d.bytes, 0);
    out.push({ datastoreId: room.datastoreId, freeBytes: room.freeMb * MiB, neededBytes, vms: mine.map((d) => d.key), overflow, enough: overflow.length === 0 });
  }
  return out;
}
