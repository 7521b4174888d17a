// `cp` of a vcenter:// PATH: the disk streamed straight into a new image of the datastore's kind
// with the cold-import engine (only allocated areas read, zero blocks never written, each byte
// written once), then `SOURCE FORMAT` for oned, as the stock driver of that storage answers:
//
// - files (fs): BASE_PATH/<md5>, raw and sparse, or qcow2 where the stock cp would convert a raw
//   disk to qcow2 (the datastore's DRIVER, which TM_MAD qcow2 sets, unless CONVERT=no); with a
//   BRIDGE_LIST, made and written on the bridge host the stock cp picks (BRIDGE_LIST[id % n],
//   among the hosts that pass the datastore's check), never through a path on this host;
// - Ceph (TM_MAD ceph): the RBD image `<pool>/one-<id>` the stock ceph driver's mkfs makes on a
//   BRIDGE_LIST host (image format, data pool as the datastore says), written through qemu's rbd
//   driver with the datastore's CEPH_USER, CEPH_CONF and CEPH_KEY: from here when CEPH_CONF is
//   here, else from a BRIDGE_LIST host that has them (reachCephPool).
//
// A failure removes the image this cp made (never one it did not make): oned marks the image
// ERROR with our one-line message and nothing half-copied is left looking like a disk.

import { join } from 'node:path';
import { OneswapError } from '../errors/index.js';
import type { VmDescription } from '../input/index.js';
import {
  bridgeHostFor,
  copiedImageAttributes,
  createImageFile,
  diskSourceAttributes,
  reachableStorage,
  sizedImageTarget,
  datastoreName,
  type ImageStorage,
  type StoredImage,
} from '../output/index.js';
import { Template, withImageSource, type DriverActionData, type OneClient, type OneDatastore, type OneImage } from '../one/index.js';
import { PidLock, copyReading, placeOneDisk, planPoweredOffReads, type MigrationEvent } from '../supervisor/index.js';
import type { VmSummary } from '../vsphere/index.js';
import type { DriverCall } from './action-call.js';
import type { DriverConfig } from './config.js';
import { ImageProgress } from './image-progress.js';
import { callStockAction } from './stock-driver.js';
import { connectTo, credentialsFileOf, diskOf, diskRefOf, findVmOf } from './vcenter-source.js';
import { describeRef, type VcenterRef } from './vcenter-url.js';

export interface CopyContext {
  /** The call as oned made it: the stock driver gets it for the actions it does for us. */
  readonly call: DriverCall;
  readonly data: DriverActionData;
  readonly imageId: number;
  readonly config: DriverConfig;
  /** Connected to oned as the driver's user; undefined when that failed (no progress then). */
  readonly one: OneClient | undefined;
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
}

/** What the copy leaves for oned (cp's answer) and for the conversion step of a marketplace import. */
export interface CopiedDisk {
  readonly image: StoredImage;
  readonly vm: VmDescription;
  readonly progress: ImageProgress;
}

/** The image this cp made, and how to take it back. */
interface NewImage {
  readonly image: StoredImage;
  readonly remove: () => Promise<void>;
}

export async function vcenterCopy(ctx: CopyContext): Promise<CopiedDisk> {
  const { data, imageId, config, log } = ctx;
  const ds = data.datastore;
  if (!ds) throw new OneswapError('data', 'the cp message from OpenNebula has no DATASTORE');
  const ref = diskRefOf(data);
  const credentials = credentialsFileOf(data);
  const abort = new AbortController();
  const signal = AbortSignal.any([ctx.signal, abort.signal]);
  const progress = new ImageProgress(ctx.one, imageId, config.progressIntervalMs, (err) => abort.abort(err));

  const client = await connectTo(ref, credentials, log);
  let made: NewImage | undefined;
  try {
    const summary = await findVmOf(client, ref);
    refuseRunning(summary, ref);
    const { vm, disk: placed, dcPath } = await placeOneDisk(client, ref.host, summary, (v) => diskOf(v, ref));
    const disk = placed.description;

    // Refused before anything exists: the pool reached with the datastore's own identity, the
    // files here or on the bridge hosts that answer.
    const storage = await reachableStorage(ds, (line) => log(`WARN: ${line}`), (line) => log(`INFO: ${line}`));
    made = await makeImage(ctx, ds, storage, disk.capacityBytes, signal);
    const target = await sizedImageTarget(storage, made.image, disk.capacityBytes, true, datastoreName(ds), signal);

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
        log(`INFO: copying ${describeRef(ref)} (${planned} of ${disk.capacityBytes} bytes, ${plan!.how}) into ${target.name}`);
        await progress.say('copying 0%', { ONESWAP_STATE: 'COPYING' });
        stats = await copyReading(plan!.reading, target, {
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
    await progress.say(`copied ${Math.round(stats.bytesRead / 1024 / 1024)} MiB in ${secs.toFixed(0)} s`, copiedAttributes(vm, ref.disk, made.image));
    // The image may have been deleted at the very end: then nobody would ever find the copy.
    signal.throwIfAborted();
    return { image: made.image, vm, progress };
  } catch (err) {
    if (made !== undefined)
      await made.remove().catch((e: unknown) => log(`WARN: image ${imageId}: could not remove ${made!.image.source} after the failed copy (${(e as Error).message}); remove it by hand`));
    await ctx.one?.imageUpdate(imageId, Template.of({ ONESWAP_STATE: 'FAILED' }), 'merge').catch(() => undefined);
    throw signal.aborted && signal.reason instanceof OneswapError ? signal.reason : err;
  } finally {
    await client.logout().catch(() => undefined);
  }
}

/** A new, empty image for the disk, made and named as the datastore's stock driver makes its copies. */
async function makeImage(ctx: CopyContext, ds: OneDatastore, storage: ImageStorage, capacity: number, signal: AbortSignal): Promise<NewImage> {
  const { call, imageId, log } = ctx;
  if (storage.kind === 'ceph') {
    // The stock mkfs makes <pool>/one-<id> of the message's SIZE (the disk's MiB, rounded up),
    // which sizedImageTarget cuts to the disk's bytes; it fails on an RBD image of that name
    // that is already there, which is then not ours to remove.
    let answer: string;
    try {
      answer = await callStockAction(call, 'ceph', 'mkfs', call.xml, log);
    } catch (err) {
      throw new OneswapError('remote', `cannot create the RBD image of image ${imageId} in datastore ${ds.id} (${ds.name}): ${(err as Error).message}`, { cause: err });
    }
    const source = answer.trim().split(/\s+/)[0] ?? '';
    if (source === '') throw new OneswapError('remote', `the ceph driver's mkfs for image ${imageId} answered no SOURCE`);
    return {
      image: { id: imageId, source, format: 'raw' },
      remove: async () => void (await callStockAction(call, 'ceph', 'rm', withImageSource(call.xml, source), log)),
    };
  }
  const format = copiedFormatOf(ds, ctx.data.image?.full);
  const host = storage.bridges.length > 0 ? bridgeHostFor(storage.bridges, imageId) : undefined;
  const file = await createImageFile({ basePath: ds.basePath, imageId, capacity, format, host }, signal);
  return { image: { id: imageId, source: file.path, format }, remove: file.remove };
}

/**
 * The format the stock fs cp gives a raw disk copied into this datastore: the datastore's DRIVER
 * (TM_MAD qcow2 puts DRIVER=qcow2 there) unless CONVERT=no; a CDROM is never converted.
 */
function copiedFormatOf(ds: OneDatastore, image: OneImage | undefined): 'raw' | 'qcow2' {
  const t = ds.template;
  const converts = (t.get('CONVERT') ?? '').toLowerCase() !== 'no' && image?.type !== 'CDROM';
  return converts && (t.get('DRIVER') ?? '').toLowerCase() === 'qcow2' ? 'qcow2' : 'raw';
}

function refuseRunning(vm: VmSummary, ref: VcenterRef): void {
  if (vm.powerState !== 'poweredOff')
    throw new OneswapError('conflict', `VM ${vm.name} is ${vm.powerState}: power it off in vCenter before importing its disks (${describeRef(ref)}); for little downtime use oneswap import --warm`);
}

/**
 * What the image records about its disk once copied: what an import's placeholder carries, so
 * `oneswap convert --image` works on it later, plus where the copy is (oned sets SOURCE only when
 * cp returns).
 */
function copiedAttributes(vm: VmDescription, index: number, image: StoredImage): Record<string, string | number> {
  return { ONESWAP_STATE: 'COPIED', ...diskSourceAttributes(vm, vm.disks[index]!), ...copiedImageAttributes(image.source, image.format) };
}
