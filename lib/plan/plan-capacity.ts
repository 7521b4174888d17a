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

/** One line per datastore, in the order of `rooms`; `demands` in run order. */
export function planRoom(demands: readonly CapacityDemand[], rooms: readonly DatastoreRoom[]): RoomLine[] {
  return rooms.map((room) => ({ datastoreId: room.datastoreId, ...fill(demands.filter((d) => d.datastoreId === room.datastoreId), room.freeMb) }));
}

/**
 * Datastores whose images go into one Ceph pool (the same pool of the same cluster): each
 * reports the pool's free space, so together they must fit it too.
 */
export interface SharedPool {
  readonly pool: string;
  readonly datastoreIds: readonly number[];
  /** The least any of them reports. */
  readonly freeMb: number;
}

export interface PoolLine extends Omit<RoomLine, 'datastoreId'> {
  readonly pool: string;
  readonly datastoreIds: readonly number[];
}

/** The room of a shared pool for the demands that fit their own datastore (in run order). */
export function poolRoom(demands: readonly CapacityDemand[], pool: SharedPool): PoolLine {
  return { pool: pool.pool, datastoreIds: pool.datastoreIds, ...fill(demands.filter((d) => pool.datastoreIds.includes(d.datastoreId)), pool.freeMb) };
}

function fill(demands: readonly CapacityDemand[], freeMb: number): Omit<RoomLine, 'datastoreId'> {
  let taken = 0;
  const overflow: Overflow[] = [];
  for (const d of demands) {
    // The import's own rule (roomRefusal): whole MiB of what is still to be written.
    if (neededMiB(taken + d.bytes) <= freeMb) taken += d.bytes;
    else overflow.push({ key: d.key, bytes: d.bytes, before: taken });
  }
  const neededBytes = demands.reduce((s, d) => s + d.bytes, 0);
  return { freeBytes: freeMb * MiB, neededBytes, vms: demands.map((d) => d.key), overflow, enough: overflow.length === 0 };
}
