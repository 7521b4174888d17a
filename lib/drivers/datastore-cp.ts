// `cp` of a vcenter:// PATH: the disk streamed straight into the image's file under BASE_PATH
// with the cold-import engine (only allocated areas read, zero blocks left as holes, each byte
// written once), then `SOURCE raw` for oned. A failure removes the partial file: oned marks the
// image ERROR with our one-line message and nothing half-copied is left looking like a disk.

import { createHash } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OneswapError } from '../errors/index.js';
import type { VmDescription } from '../input/index.js';
import { diskSourceAttributes, fileTarget } from '../output/index.js';
import { Template, type DriverActionData, type OneClient } from '../one/index.js';
import { PidLock, copyReading, placeOneDisk, planPoweredOffReads, type MigrationEvent } from '../supervisor/index.js';
import type { VmSummary } from '../vsphere/index.js';
import type { DriverConfig } from './config.js';
import { ImageProgress } from './image-progress.js';
import { connectTo, credentialsFileOf, diskOf, diskRefOf, findVmOf } from './vcenter-source.js';
import { describeRef, type VcenterRef } from './vcenter-url.js';

export interface CopyContext {
  readonly data: DriverActionData;
  readonly imageId: number;
  readonly config: DriverConfig;
  /** Connected to oned as the driver's user; undefined when that failed (no progress then). */
  readonly one: OneClient | undefined;
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
}

/** What the copy leaves for the conversion step of a marketplace import. */
export interface CopiedDisk {
  readonly file: string;
  readonly vm: VmDescription;
  readonly progress: ImageProgress;
}

export async function vcenterCopy(ctx: CopyContext): Promise<CopiedDisk> {
  const { data, imageId, config, log } = ctx;
  const ds = data.datastore;
  if (!ds) throw new OneswapError('data', 'the cp message from OpenNebula has no DATASTORE');
  if (ds.template.get('BRIDGE_LIST')) throw new OneswapError('usage', `datastore ${ds.id} has a BRIDGE_LIST: oneswap writes vCenter disks only into datastores mounted on the frontend`);
  const ref = diskRefOf(data);
  const credentials = credentialsFileOf(data);
  const abort = new AbortController();
  const signal = AbortSignal.any([ctx.signal, abort.signal]);
  const progress = new ImageProgress(ctx.one, imageId, config.progressIntervalMs, (err) => abort.abort(err));

  const client = await connectTo(ref, credentials, log);
  let file: string | undefined;
  try {
    const summary = await findVmOf(client, ref);
    refuseRunning(summary, ref);
    const { vm, disk: placed, dcPath } = await placeOneDisk(client, ref.host, summary, (v) => diskOf(v, ref));
    const disk = placed.description;

    const base = ds.basePath.replace(/\/+$/, '');
    await mkdir(base, { recursive: true });
    // Like the stock fs driver: BASE_PATH/<md5 of "epoch:id">, directly under BASE_PATH (its rm
    // removes nothing else). Kept as text: BASE_PATH carries oned's "//".
    file = `${base}/${createHash('md5').update(`${Math.floor(Date.now() / 1000)}:${imageId}`).digest('hex')}`;
    const fh = await open(file, 'wx', 0o644);
    try {
      await fh.truncate(disk.capacityBytes);
    } finally {
      await fh.close();
    }

    const settings = { transport: config.transport, vddkLibdir: config.vddkLibdir };
    const say = (e: MigrationEvent): void => {
      if (e.type === 'reader') log(`INFO: ${e.reader} reader: ${e.why}`);
    };
    const steps = { vsphere: client, signal, emit: say };
    // A CBT map takes a snapshot, and an export lease holds the VM: the disks of one VM copy in
    // parallel (one cp each), and vCenter runs one such task per VM at a time.
    const lock = new PidLock(join(config.stateDir, 'locks', `vm-${summary.instanceUuid || summary.uuid}.lock`));
    await lock.acquire(signal);
    let stats;
    try {
      const { plans: [plan], readings, choices } = await planPoweredOffReads(steps, summary, dcPath, [placed], settings, (m) => log(`INFO: ${m}`));
      if (choices.get(placed.device.key)!.reader !== 'lease') await lock.release();
      try {
        const startedAt = Date.now();
        const planned = plan!.areas.reduce((n, e) => n + e.length, 0);
        log(`INFO: copying ${describeRef(ref)} (${planned} of ${disk.capacityBytes} bytes, ${plan!.how}) into ${file}`);
        await progress.say('copying 0%', { ONESWAP_STATE: 'COPYING' });
        stats = await copyReading(plan!.reading, fileTarget(file, disk.capacityBytes), {
          capacity: disk.capacityBytes,
          areas: plan!.areas,
          targetIsZero: true,
          streams: config.streams,
          signal,
          onProgress: (p) => progress.copying(p.bytesDone, p.bytesPlanned, startedAt),
        });
        await readings.finish(true);
      } catch (err) {
        await readings.finish(false, (err as Error).message);
        throw err;
      }
    } finally {
      await lock.release();
    }
    const startedAt = Date.now() - stats.durationMs;
    signal.throwIfAborted();
    const secs = Math.max(0.001, (Date.now() - startedAt) / 1000);
    log(`INFO: copied ${stats.bytesRead} bytes, wrote ${stats.bytesWritten} in ${secs.toFixed(1)} s`);
    await progress.say(`copied ${Math.round(stats.bytesRead / 1024 / 1024)} MiB in ${secs.toFixed(0)} s`, copiedAttributes(vm, ref.disk, file));
    return { file, vm, progress };
  } catch (err) {
    if (file !== undefined) await rm(file, { force: true });
    await ctx.one?.imageUpdate(imageId, Template.of({ ONESWAP_STATE: 'FAILED' }), 'merge').catch(() => undefined);
    throw signal.aborted && signal.reason instanceof OneswapError ? signal.reason : err;
  } finally {
    await client.logout().catch(() => undefined);
  }
}

function refuseRunning(vm: VmSummary, ref: VcenterRef): void {
  if (vm.powerState !== 'poweredOff')
    throw new OneswapError('conflict', `VM ${vm.name} is ${vm.powerState}: power it off in vCenter before importing its disks (${describeRef(ref)}); for little downtime use oneswap import --warm`);
}

/**
 * What the image records about its disk once copied: what an import's placeholder carries, so
 * `oneswap convert --image` works on it later, plus where the file is (oned sets SOURCE only when
 * cp returns).
 */
function copiedAttributes(vm: VmDescription, index: number, file: string): Record<string, string | number> {
  return { ONESWAP_STATE: 'COPIED', ...diskSourceAttributes(vm, vm.disks[index]!), ONESWAP_FILE: file };
}
