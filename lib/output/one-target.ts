// OpenNebula as the target: checks the image datastore, allocates raw placeholders (the mkfs route,
// so any user can do it and the datastore driver creates the file), finds their files on this host,
// creates the VM template and the VM, and takes it all back on failure.

import { access, stat, truncate, constants } from 'node:fs/promises';
import { dirname } from 'node:path';
import { OneswapError, throwFirst, type Refusal } from '../errors/index.js';
import { Template, oneLine, sanitizeName, type OneClient, type OneDatastore, type OneImage } from '../one/index.js';
import { vmIdentity, type DiskBus, type DiskDescription, type Firmware, type VmDescription } from '../input/index.js';
import { formatGuestNetwork, parseGuestNetwork, type ConvertedGuest } from './vm-template.js';
import { bridgeFileTarget, fileTarget, qcow2Target, rbdTarget, type ImageTarget } from './image-target.js';
import { bridgeHostFor, lastLine, onBridge, shellQuote } from './bridge-host.js';
import { imageStorageOf, type CephAccess, type CephStorage, type ImageStorage } from './image-storage.js';
import { imageFileName, qcow2Allocated, setQcow2Size } from './qcow2-target.js';
import { DEFAULT_CEPH_CONF, openRbdAccess, type RbdLocation } from './rbd-access.js';
import { openRbdAccessWriter, probeRbdPool } from './rbd-target.js';
import { qemuImg } from './qemu-img.js';

const MiB = 1024 * 1024;

export interface ImageDatastore {
  readonly id: number;
  readonly name: string;
  readonly basePath: string;
  readonly freeMb: number;
  readonly storage: ImageStorage;
}

/**
 * Refuses a datastore oneswap cannot fill from this host, before anything is created: files
 * (raw or qcow2) must be reachable here or on its BRIDGE_LIST hosts; a Ceph pool must be reachable
 * with the datastore's own CEPH_CONF and CEPH_KEY, here or from its BRIDGE_LIST hosts (reachCephPool).
 */
export async function checkImageDatastore(
  one: OneClient,
  id: number,
  neededBytes: number,
  warn: (line: string) => void = () => undefined,
  info: (line: string) => void = () => undefined,
): Promise<ImageDatastore> {
  const ds: OneDatastore = await one.datastore(id);
  throwFirst([unusableDatastore(ds), roomRefusal(ds, neededBytes)].filter((r) => r !== undefined));
  const storage = await reachableStorage(ds, warn, info);
  return { id, name: ds.name, basePath: ds.basePath, freeMb: ds.freeMb, storage };
}

/** Why oneswap cannot put images into the datastore at all: not an image datastore, or disabled. */
export function unusableDatastore(ds: OneDatastore): Refusal | undefined {
  const what = datastoreName(ds);
  if (ds.type !== 'IMAGE_DS')
    return { code: 'not-image-datastore', error: new OneswapError('usage', `${what} is a ${ds.type}, not an image datastore`, { hint: { cli: 'pick one from: onedatastore list', plan: 'set datastore for this VM (or in defaults) to one from: onedatastore list' } }) };
  if (ds.state !== 'READY') return { code: 'datastore-disabled', error: new OneswapError('conflict', `${what} is disabled`) };
  return undefined;
}

/** MiB the datastore must have free for images of `bytes` (their provisioned size): oned counts whole MiB. */
export function neededMiB(bytes: number): number {
  return Math.ceil(bytes / MiB);
}

/** The datastore has too little room for images of `neededBytes` in all. */
export function roomRefusal(ds: OneDatastore, neededBytes: number): Refusal | undefined {
  const neededMb = neededMiB(neededBytes);
  if (ds.freeMb >= neededMb) return undefined;
  return {
    code: 'capacity',
    error: new OneswapError('capacity', `${datastoreName(ds)} has ${ds.freeMb} MiB free, the disks need ${neededMb} MiB`, {
      hint: 'free space or pick a larger datastore',
    }),
  };
}

/**
 * The datastore's storage as this run reaches it, refused before anything is created when it
 * cannot: a Ceph pool with the datastore's own conf and key, from here or from its BRIDGE_LIST
 * hosts (reachCephPool; `info` says which); files here (BASE_PATH, or its parent before the first
 * image); or files on the BRIDGE_LIST hosts that pass checkBridges. Hosts left out: `warn`.
 */
export async function reachableStorage(
  ds: OneDatastore,
  warn: (line: string) => void = () => undefined,
  info: (line: string) => void = () => undefined,
): Promise<ImageStorage> {
  const what = datastoreName(ds);
  const storage = imageStorageOf(ds);
  if (storage.kind === 'ceph') {
    return reachCephPool(storage, what, warn, info);
  }
  if (storage.bridges.length > 0) return { ...storage, bridges: await checkBridges(storage.bridges, ds.basePath, what, warn) };
  // The driver creates BASE_PATH with the first image, so a new datastore may not have it yet:
  // then its parent (DATASTORE_LOCATION) must be here. Each image file is checked again later.
  const basePath = ds.basePath.replace(/\/+$/, '');
  await checkReachable((await exists(basePath)) ? basePath : dirname(basePath), what);
  return storage;
}

/**
 * The BRIDGE_LIST hosts that can work on the datastore's files: reached over ssh, with qemu-nbd
 * and qemu-img, BASE_PATH (or, before the first image, its parent) writable. Hosts that cannot are
 * left out, as the stock drivers leave out hosts that are off; none left is an error.
 */
async function checkBridges(bridges: readonly string[], basePath: string, what: string, warn: (line: string) => void): Promise<string[]> {
  const base = basePath.replace(/\/+$/, '');
  const script = [
    TOOLS_CHECK,
    `b=${shellQuote(base)}`,
    '[ -d "$b" ] || b=$(dirname "$b")',
    '[ -d "$b" ] || { echo "$b" >&2; exit 4; }',
    '[ -w "$b" ] || { echo "$b" >&2; exit 5; }',
  ].join('\n');
  return usableBridges(
    bridges,
    async (host) => {
      const r = await onBridge(host, script, { timeoutMs: 60_000 }).catch(namingDatastore(what));
      const detail = lastLine(r.stderr);
      if (r.code === 3) throw toolMissing(what, detail, host);
      if (r.code === 4) throw new OneswapError('usage', `${what}: ${detail} does not exist on the bridge host ${host}`, { hint: `mount the datastore's storage at ${base} on ${host}, as OpenNebula's drivers expect` });
      if (r.code === 5) throw new OneswapError('usage', `${what}: ${detail} is not writable by this user on the bridge host ${host}`, { hint: 'reach the bridge hosts as the OpenNebula user (oneadmin), as its drivers do' });
      if (r.code !== 0) throw new OneswapError('remote', `${what}: checking the bridge host ${host} failed: ${detail || `exit ${r.code}`}`);
    },
    warn,
  );
}

/** On a bridge host: qemu-nbd and qemu-img are there (else exit 3, the missing one on stderr). */
const TOOLS_CHECK = 'for p in qemu-nbd qemu-img; do command -v $p >/dev/null 2>&1 || { echo "$p" >&2; exit 3; }; done';

function toolMissing(what: string, tool: string, host: string): OneswapError {
  return new OneswapError('usage', `${what}: ${tool} is not installed on the bridge host ${host}`, { hint: `install it there: ./install.sh --bridge on ${host} (Debian packages qemu-utils, qemu-block-extra)` });
}

/** The datastore (`what`) first in an error from a bridge host's check. */
function namingDatastore(what: string): (err: unknown) => never {
  return (err) => {
    throw err instanceof OneswapError && !err.message.startsWith(`${what}: `) ? new OneswapError(err.kind, `${what}: ${err.message}`, { hint: err.hint, cause: err }) : err;
  };
}

/**
 * The hosts `check` accepts, in BRIDGE_LIST order. Hosts that fail are left out with a warning, as
 * the stock drivers leave out hosts that are off; none left: the first host's error.
 */
async function usableBridges(bridges: readonly string[], check: (host: string) => Promise<void>, warn: (line: string) => void): Promise<string[]> {
  const checked = await Promise.allSettled(bridges.map(async (host) => (await check(host), host)));
  const usable = checked.flatMap((c) => (c.status === 'fulfilled' ? [c.value] : []));
  const failures = checked.flatMap((c) => (c.status === 'rejected' ? [c.reason as Error] : []));
  if (usable.length === 0) throw failures[0]!;
  for (const f of failures) warn(`${f.message}; the other BRIDGE_LIST hosts do the work`);
  return usable;
}

/**
 * Where oneswap reaches the datastore's Ceph pool from, checked before anything is created. From
 * this host when the datastore's CEPH_CONF is readable here (no ssh hop: the faster way, and the
 * only one without a BRIDGE_LIST); otherwise from the BRIDGE_LIST hosts, as the stock Ceph driver
 * runs its rbd commands there: each must be reached over ssh, have qemu-nbd and qemu-img, read
 * CEPH_CONF and CEPH_KEY, and with them reach the pool (checkCephBridge). The storage returned
 * says which (cephHosts); sizedImageTarget and the conversion's targets follow it.
 */
export async function reachCephPool(storage: CephStorage, what: string, warn: (line: string) => void = () => undefined, info: (line: string) => void = () => undefined): Promise<CephStorage> {
  const conf = storage.ceph.conf ?? DEFAULT_CEPH_CONF;
  if (storage.bridges.length === 0 || (await exists(conf, constants.R_OK))) {
    await checkCephAccess(storage.ceph, what);
    info(`${what}: writing the Ceph pool ${storage.ceph.pool} from this host (its CEPH_CONF ${conf} is readable here)`);
    return { ...storage, cephHosts: [] };
  }
  const hosts = await usableBridges(storage.bridges, (host) => checkCephBridge(storage.ceph, host, what), warn);
  info(`${what}: CEPH_CONF ${conf} is not readable here: writing the Ceph pool ${storage.ceph.pool} from the BRIDGE_LIST host${hosts.length === 1 ? '' : 's'} ${hosts.join(', ')}`);
  return { ...storage, cephHosts: hosts };
}

/** A BRIDGE_LIST host that works on the pool for oneswap: its tools, the datastore's conf and key there, the pool reached from it. */
async function checkCephBridge(ceph: CephAccess, host: string, what: string): Promise<void> {
  const conf = ceph.conf ?? DEFAULT_CEPH_CONF;
  const script = [
    TOOLS_CHECK,
    `for f in ${[conf, ...(ceph.key === undefined ? [] : [ceph.key])].map(shellQuote).join(' ')}; do [ -r "$f" ] || { echo "$f" >&2; exit 4; }; done`,
  ].join('\n');
  const r = await onBridge(host, script, { timeoutMs: 60_000 }).catch(namingDatastore(what));
  const detail = lastLine(r.stderr);
  if (r.code === 3) throw toolMissing(what, detail, host);
  if (r.code === 4)
    throw new OneswapError('usage', `${what}: ${detail === conf ? 'CEPH_CONF' : 'CEPH_KEY'} ${detail} is not readable on the bridge host ${host}`, {
      hint: `the datastore's CEPH_CONF and CEPH_KEY must be readable on its BRIDGE_LIST hosts by the user oneswap reaches them as (oneadmin), or on this host`,
    });
  if (r.code !== 0) throw new OneswapError('remote', `${what}: checking the bridge host ${host} failed: ${detail || `exit ${r.code}`}`);
  await probeRbdPool({ ...cephLocation(ceph, what), host }).catch(namingDatastore(what));
}

/**
 * The datastore's Ceph configuration and key must be readable here (qemu reads them to reach the
 * pool), and with them the pool reachable, the key accepted, the pool there and not full: checked
 * before any placeholder exists, as the datastore's driver would otherwise hang or fail on it.
 * The way from this host only: reachCephPool decides between it and the BRIDGE_LIST hosts.
 */
async function checkCephAccess(ceph: CephAccess, what: string): Promise<void> {
  for (const [attr, path] of [['CEPH_CONF', ceph.conf ?? DEFAULT_CEPH_CONF], ['CEPH_KEY', ceph.key]] as const) {
    if (path === undefined) continue;
    try {
      await access(path, constants.R_OK);
    } catch (err) {
      throw new OneswapError('usage', `${what}: ${attr} ${path} is not readable on this host (${(err as NodeJS.ErrnoException).code})`, {
        hint: `oneswap writes into the Ceph pool ${ceph.pool} from this host with the datastore's CEPH_CONF and CEPH_KEY: copy them here (as on the BRIDGE_LIST hosts), readable by this user; without a CEPH_CONF here, a datastore with a BRIDGE_LIST is written from those hosts`,
      });
    }
  }
  await probeRbdPool(cephLocation(ceph, what));
}

/** How the datastore reaches its pool (from `host`, a BRIDGE_LIST host, or here), its errors naming it as `what`. */
function cephLocation(ceph: CephAccess, what: string, host?: string): Omit<RbdLocation, 'image'> {
  return { pool: ceph.pool, user: ceph.user, conf: ceph.conf, keyfile: ceph.key, datastore: what, ...(host === undefined ? {} : { host }) };
}

/** A datastore as errors name it first. */
export function datastoreName(ds: { readonly id: number; readonly name: string }): string {
  return `datastore ${ds.id} (${ds.name})`;
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

async function checkReachable(path: string, what: string, mode = constants.W_OK): Promise<void> {
  try {
    await access(path, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new OneswapError(
      'usage',
      code === 'ENOENT'
        ? `the files of ${what} (${path}) are not reachable from this host`
        : `the files of ${what} (${path}) are not writable by this user (${code})`,
      { hint: 'run oneswap on the OpenNebula frontend, or on a host that mounts the datastore at the same path, as oneadmin or root' },
    );
  }
}

export function imageName(vm: VmDescription, disk: DiskDescription, prefix = ''): string {
  return sanitizeName(`${prefix}${vm.name}-disk${disk.index}`);
}

export function templateName(vm: VmDescription, prefix = ''): string {
  return sanitizeName(`${prefix}${vm.name}`);
}

/** Names already in use, so a clash is reported before any placeholder exists. */
export async function checkNamesFree(one: OneClient, images: readonly string[], template: string, ownImageIds: ReadonlySet<number>, ownTemplateId?: number): Promise<void> {
  const taken = await namesTaken(one);
  throwFirst(nameClashes(images, template, {
    images: taken.images.filter((i) => !ownImageIds.has(i.id)),
    templates: taken.templates.filter((t) => t.id !== ownTemplateId),
  }));
}

/** The images and VM templates whose names an import by this user would clash with: the user's own. */
export interface TakenNames {
  readonly images: ReadonlyArray<{ readonly id: number; readonly name: string }>;
  readonly templates: ReadonlyArray<{ readonly id: number; readonly name: string }>;
}

export async function namesTaken(one: OneClient): Promise<TakenNames> {
  const user = await one.whoami();
  const [images, templates] = [await one.images(-3), await one.templates(-3)];
  return { images: images.filter((i) => i.uid === user.id), templates: templates.filter((t) => t.uid === user.id) };
}

/** Every image name and the template name already taken, images first (checkNamesFree throws the first). */
export function nameClashes(images: readonly string[], template: string, taken: TakenNames): Refusal[] {
  const out: Refusal[] = [];
  for (const name of images) {
    const image = taken.images.find((i) => i.name === name);
    if (image)
      out.push({
        code: 'name-clash',
        error: new OneswapError('conflict', `image name "${name}" is already taken by image ${image.id}`, {
          hint: { cli: 'remove that image, or pass --name-prefix to import under other names', plan: 'remove that image, or set namePrefix for this VM (or in defaults) to import under other names' },
        }),
      });
  }
  const tpl = taken.templates.find((t) => t.name === template);
  if (tpl)
    out.push({
      code: 'name-clash',
      error: new OneswapError('conflict', `template name "${template}" is already taken by template ${tpl.id}`, {
        hint: { cli: 'remove that template, or pass --name-prefix', plan: 'remove that template, or set namePrefix for this VM (or in defaults)' },
      }),
    });
  return out;
}

export interface PlaceholderSpec {
  readonly name: string;
  readonly disk: DiskDescription;
  readonly vm: VmDescription;
  readonly boot: boolean;
  readonly devPrefix: 'vd' | 'sd';
}

export function diskImageDescription(vm: VmDescription, disk: DiskDescription): string {
  return `Disk ${disk.index} (${disk.label}, ${disk.sourceName}) of ${vm.name}, migrated by oneswap`;
}

/**
 * What an image records about the disk it holds (import placeholders, datastore-driver copies,
 * marketplace disk apps): which VM it came from, so a warm migration resumes from the images
 * alone, and what `oneswap convert --image` needs to convert them again without the source.
 */
export function diskSourceAttributes(vm: VmDescription, disk: DiskDescription): Record<string, string | number> {
  return {
    ONESWAP_SOURCE_DISK: disk.sourceName,
    ONESWAP_SOURCE_VM: vmIdentity(vm),
    ONESWAP_VM_NAME: vm.name,
    ONESWAP_DISK_INDEX: disk.index,
    ONESWAP_DISK_BUS: disk.bus,
    ONESWAP_FIRMWARE: vm.firmware,
  };
}

/** Allocates one empty raw image; returns its id at once (the datastore's mkfs runs asynchronously). */
export async function allocatePlaceholder(one: OneClient, ds: ImageDatastore, spec: PlaceholderSpec): Promise<number> {
  const t = Template.of({
    NAME: spec.name,
    TYPE: spec.boot ? 'OS' : 'DATABLOCK',
    SIZE: Math.ceil(spec.disk.capacityBytes / MiB),
    FORMAT: 'raw',
    // Persistent: the VM uses the image in place, so OpenNebula copies nothing at deploy.
    PERSISTENT: 'YES',
    DEV_PREFIX: spec.devPrefix,
    DESCRIPTION: diskImageDescription(spec.vm, spec.disk),
    ONESWAP_STATE: 'COPYING',
    ...diskSourceAttributes(spec.vm, spec.disk),
  });
  return one.imageAllocate(t, ds.id, false);
}

/** An image as its datastore made it: where its bytes are (SOURCE) and in which format. */
export interface StoredImage {
  readonly id: number;
  /** The image's name, for messages; unknown for an image a driver is still making. */
  readonly name?: string;
  readonly source: string;
  readonly format: string;
}

/**
 * Waits until the placeholder is READY and returns where its bytes live, checked and cut to the
 * disk's exact capacity (sizedImageTarget). `fresh`: no run wrote into it yet, so it must be empty.
 */
export async function placeholderTarget(one: OneClient, ds: ImageDatastore, id: number, capacityBytes: number, fresh: boolean, signal: AbortSignal): Promise<ImageTarget> {
  const what = datastoreName(ds);
  const image = await readyPlaceholder(one, ds, id, signal);
  if (!image.source) throw new OneswapError('remote', `${what}: image ${id} is READY but has no SOURCE`);
  return sizedImageTarget(ds.storage, image, capacityBytes, fresh, what, signal);
}

/**
 * The target of an image a datastore driver just made for a disk (an import's placeholder, the
 * image the datastore driver's `cp` creates), checked and cut to the disk's exact capacity: mkfs
 * makes SIZE MiB, rounded up, and a guest must see the size its disk had (a GPT's backup header
 * sits in the last sectors). oned's own `cp` leaves the same: SIZE rounded up, the file or RBD
 * image exact. `fresh`: nothing wrote into it yet, so a qcow2 image must hold no data. `what`:
 * the datastore, as errors name it.
 */
export async function sizedImageTarget(storage: ImageStorage, image: StoredImage, capacityBytes: number, fresh: boolean, what: string, signal: AbortSignal): Promise<ImageTarget> {
  if (storage.kind === 'ceph') return rbdPlaceholder(storage.ceph, image, capacityBytes, what, signal, cephHostFor(storage, image.id));
  if (image.format !== 'raw' && image.format !== 'qcow2')
    throw new OneswapError('usage', `image ${image.id} was created as ${image.format || 'unknown format'}; oneswap fills raw and qcow2 images`, {
      hint: 'the datastore forces another format (TM_MAD_CONF DRIVER or its DRIVER); use one that keeps raw or qcow2 images',
    });
  if (storage.bridges.length > 0) return bridgePlaceholder(bridgeHostFor(storage.bridges, image.id), image, capacityBytes, fresh, what, signal);
  if (image.format === 'qcow2') return qcow2Placeholder(image, capacityBytes, fresh, what, signal);
  const size = await localImageSize(image, what);
  if (size < capacityBytes)
    throw new OneswapError('remote', `${what}: the file of image ${image.id} (${image.source}) has ${size} bytes, the disk needs ${capacityBytes}`);
  await checkReachable(image.source, `image ${image.id}`);
  if (size > capacityBytes) await truncate(image.source, capacityBytes);
  return fileTarget(image.source, capacityBytes);
}

/**
 * The placeholder once READY; when the datastore's driver could not make it, why, in the
 * datastore's terms. The stock Ceph driver's `rbd create` refuses a name the pool already has
 * (reference: opennebula.md §5.8), so an RBD image oneswap did not create is never written to.
 */
async function readyPlaceholder(one: OneClient, ds: ImageDatastore, id: number, signal: AbortSignal): Promise<OneImage> {
  try {
    if (ds.storage.kind !== 'ceph') return await one.waitForImage(id, { timeoutMs: 10 * 60_000, signal });
    return await watchingPool(ds.storage, datastoreName(ds), id, signal, (s) => one.waitForImage(id, { timeoutMs: 10 * 60_000, signal: s }));
  } catch (err) {
    const image = err instanceof OneswapError && err.kind === 'remote' ? await one.image(id, signal).catch(() => undefined) : undefined;
    if (image?.stateName !== 'ERROR') throw err;
    const why = oneLine(image.template.get('ERROR') ?? '');
    const what = datastoreName(ds);
    if (ds.storage.kind === 'ceph' && /File exists|already exists/.test(why)) {
      const rbd = `${ds.storage.ceph.pool}/one-${id}`;
      throw new OneswapError('conflict', `${what}: the RBD image ${rbd} that the datastore makes for image ${id} already exists, so it made none (oneswap wrote nothing into ${rbd})`, {
        hint: `no image of this OpenNebula owns it (a leftover of an image deleted by force, or another cloud's): see what it is (rbd info ${rbd}) and remove it if stale; running the same command again makes placeholders under other ids`,
        cause: err,
      });
    }
    throw new OneswapError('remote', `${what}: its driver could not make image ${id}: ${why || 'no ERROR message'}`, {
      hint: "fix what the driver says (oned.log on the frontend has more), then run the same command again",
      cause: err,
    });
  }
}

/**
 * How often a Ceph placeholder that is still being made looks at its pool. The stock mkfs's `rbd
 * create` sets no timeout: it waits as long as the pool is full or the monitors are gone (300 s
 * for the monitors, for ever for a full pool), so the pool is asked again, as the precheck asked
 * it, and what keeps it from answering is told instead of a wait that ends only after minutes.
 */
const MKFS_WATCH_MS = 15_000;

async function watchingPool(storage: CephStorage, what: string, id: number, signal: AbortSignal, wait: (signal: AbortSignal) => Promise<OneImage>): Promise<OneImage> {
  const done = new AbortController();
  const both = AbortSignal.any([signal, done.signal]);
  const watch = async (): Promise<never> => {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, MKFS_WATCH_MS).unref());
      if (both.aborted) return new Promise<never>(() => undefined);
      await probeRbdPool(cephLocation(storage.ceph, what, cephHostFor(storage, id)), { signal: both });
    }
  };
  try {
    return await Promise.race([wait(both), watch()]);
  } finally {
    done.abort();
  }
}

async function localImageSize(image: StoredImage, what: string): Promise<number> {
  try {
    return (await stat(image.source)).size;
  } catch {
    throw new OneswapError('usage', `${what}: the file of image ${image.id} (${image.source}) is not reachable from this host`, {
      hint: 'run oneswap on the OpenNebula frontend, or on a host that mounts the datastore at the same path',
    });
  }
}

/** A qcow2 placeholder of datastore `what`, here or on a bridge host: empty when fresh, its virtual size cut from whole MiB to the disk's. */
async function qcow2Placeholder(image: StoredImage, capacityBytes: number, fresh: boolean, what: string, signal: AbortSignal, host?: string): Promise<ImageTarget> {
  const name = imageFileName(image.source, host);
  const on = host ? { host } : {};
  if (host === undefined) await checkReachable(image.source, `image ${image.id}`);
  if (fresh) {
    const allocated = await qcow2Allocated(image.source, signal, host);
    if (allocated > 0)
      throw new OneswapError('conflict', `${what}: the new image ${image.id} (${name}) already holds ${allocated} bytes of data, not an empty placeholder; oneswap writes only into empty ones`, {
        hint: "the datastore's mkfs must create an empty qcow2 file (qemu-img create -f qcow2), as the stock fs driver does: check its driver (DS_MAD) and oned.log, then run the same command again",
      });
  }
  const info = JSON.parse(await qemuImg(['info', '--output=json', '-f', 'qcow2', image.source], { signal, ...on, explain: (r) => new OneswapError('data', `${what}: image ${image.id} (${name}) is not a readable qcow2 image: ${r}`) })) as { 'virtual-size': number };
  if (info['virtual-size'] < capacityBytes)
    throw new OneswapError('remote', `${what}: image ${image.id} (${name}) has a virtual size of ${info['virtual-size']} bytes, the disk needs ${capacityBytes}`);
  if (info['virtual-size'] > capacityBytes)
    await setQcow2Size(image.source, capacityBytes, (r) => new OneswapError('internal', `${what}: cannot set the virtual size of image ${image.id} (${name}) to ${capacityBytes} bytes: ${r}`), signal, host);
  return host === undefined ? qcow2Target(image.source, capacityBytes) : bridgeFileTarget(host, image.source, 'qcow2', capacityBytes);
}

/**
 * A placeholder whose file lives on a bridge host: checked, and a raw one cut to the disk's size,
 * there (the qcow2 checks are qcow2Placeholder's, run there).
 */
async function bridgePlaceholder(host: string, image: StoredImage, capacityBytes: number, fresh: boolean, what: string, signal: AbortSignal): Promise<ImageTarget> {
  if (image.format === 'qcow2') return qcow2Placeholder(image, capacityBytes, fresh, what, signal, host);
  const name = imageFileName(image.source, host);
  const script = [
    `f=${shellQuote(image.source)}`,
    '[ -f "$f" ] || exit 4',
    '[ -w "$f" ] || exit 5',
    'size=$(stat -c %s "$f") || exit 6',
    `[ "$size" -lt ${capacityBytes} ] && { echo "$size"; exit 7; }`,
    `[ "$size" -gt ${capacityBytes} ] && { truncate -s ${capacityBytes} "$f" || exit 6; }`,
    'exit 0',
  ].join('\n');
  const r = await onBridge(host, script, { signal });
  if (r.code === 4) throw new OneswapError('remote', `${what}: the file of image ${image.id} (${name}) does not exist on the bridge host`, { hint: "the datastore's mkfs made no file there: check its driver and oned.log, then run the same command again" });
  if (r.code === 5) throw new OneswapError('usage', `${what}: the file of image ${image.id} (${name}) is not writable by this user on the bridge host`, { hint: 'reach the bridge hosts as the OpenNebula user (oneadmin), as its drivers do' });
  if (r.code === 7) throw new OneswapError('remote', `${what}: the file of image ${image.id} (${name}) has ${r.stdout.trim()} bytes, the disk needs ${capacityBytes}`);
  if (r.code !== 0) throw new OneswapError('remote', `${what}: cannot prepare the file of image ${image.id} (${name}): ${lastLine(r.stderr) || `exit ${r.code}`}`);
  return bridgeFileTarget(host, image.source, 'raw', capacityBytes);
}

/** The bridge host that works on RBD image `imageId` of the storage (as the stock driver picks it), or undefined: this host. */
function cephHostFor(storage: CephStorage, imageId: number): string | undefined {
  return storage.cephHosts?.length ? bridgeHostFor(storage.cephHosts, imageId) : undefined;
}

/** An RBD placeholder (SOURCE pool/one-<id>): cut from whole MiB to the disk's size once, where the pool is reached from. */
async function rbdPlaceholder(ceph: CephAccess, image: StoredImage, capacityBytes: number, what: string, signal: AbortSignal, host: string | undefined): Promise<ImageTarget> {
  const location = rbdLocationOf(ceph, image, what, host);
  const access = await openRbdAccess(location);
  try {
    await (await openRbdAccessWriter(access, capacityBytes, { connections: 1, signal })).close();
  } finally {
    await access.dispose();
  }
  return rbdTarget(location, capacityBytes);
}

/** The RBD image an image of a Ceph datastore (`what`) names (SOURCE pool/one-<id>), reached as the datastore says. */
function rbdLocationOf(ceph: CephAccess, image: Pick<StoredImage, 'id' | 'source' | 'name'>, what: string, host?: string): RbdLocation {
  const slash = image.source.indexOf('/');
  if (slash <= 0 || slash === image.source.length - 1)
    throw new OneswapError('remote', `${what}: image ${image.id}${image.name ? ` (${image.name})` : ''} has SOURCE "${image.source}", not the pool/image of an RBD image`, {
      hint: `images of a Ceph datastore are RBD images named POOL/IMAGE (the datastore's driver makes ${ceph.pool}/one-${image.id}); register the image again with such a SOURCE`,
    });
  return { ...cephLocation(ceph, what, host), pool: image.source.slice(0, slash), image: image.source.slice(slash + 1) };
}

/**
 * SYNCING: a warm migration's image, equal to the source disk as of its last CBT round.
 * NOT_CONVERTED: a conversion ran and found no operating system on the VM's disks (a data-only
 * VM); the image holds the copied bytes, and that is final, as CONVERTED is.
 */
export type ImageState = 'COPYING' | 'SYNCING' | 'COPIED' | 'CONVERTED' | 'NOT_CONVERTED' | 'DONE' | 'FAILED';

/** How a conversion ends: what the `cp`s of a marketplace import wait for. */
export const CONVERSION_OUTCOMES: readonly ImageState[] = ['CONVERTED', 'NOT_CONVERTED'];

export async function markImage(one: OneClient, id: number, state: ImageState): Promise<void> {
  await one.imageUpdate(id, Template.of({ ONESWAP_STATE: state }), 'merge');
}

/**
 * Records a finished warm round on the image: the changeId of the snapshot the image now equals,
 * which is where the next round (on this machine or another) starts its delta.
 */
export async function recordWarmRound(one: OneClient, id: number, changeId: string, round: number): Promise<void> {
  await one.imageUpdate(id, Template.of({ ONESWAP_STATE: 'SYNCING', ONESWAP_CHANGE_ID: changeId, ONESWAP_WARM_ROUND: round }), 'merge');
}

/** A warm migration's image as recorded on it, found without any local state. */
export interface WarmImage {
  readonly imageId: number;
  readonly diskIndex: number;
  readonly changeId: string;
  readonly round: number;
}

/** States of an image whose migration is still copying: the only ones a run without local state takes over. */
const UNFINISHED: ReadonlySet<string | undefined> = new Set<ImageState>(['COPYING', 'SYNCING', 'FAILED']);

/**
 * Why no run may write into or remove `image` for a migration of the VM `identity`, or undefined
 * when it may: it holds a disk of that VM, is not a finished migration's (DONE), and no VM but
 * `ownVm` (the one this migration created) uses it. A VM may be running on a finished image.
 */
export function untouchable(image: OneImage, identity: string, ownVm?: number): string | undefined {
  if (image.template.get('ONESWAP_SOURCE_VM') !== identity) return 'it holds no disk of this VM';
  if (image.template.get('ONESWAP_STATE') === 'DONE') return 'it is a finished migration (ONESWAP_STATE=DONE)';
  const users = image.vms.filter((v) => v !== ownVm);
  if (users.length > 0) return `it is in use by VM ${users.join(', ')}`;
  return undefined;
}

/** Images of `vm` in a datastore that a migration without local state found and did not take, and why. */
export interface PassedImage {
  readonly imageId: number;
  readonly why: string;
}

/**
 * The images of an unfinished warm migration of `vm` into `datastoreId` under this migration's
 * image names (`namePrefix`): each finished a round, is still copying (COPYING, SYNCING or FAILED)
 * and in use by no VM; at most one per disk. The VM's other images there (a finished migration,
 * one under other names, one in use) are listed in `passed`: never written to or removed.
 */
export async function warmImagesOf(one: OneClient, vm: VmDescription, datastoreId: number, namePrefix: string): Promise<{ resumable: WarmImage[]; passed: PassedImage[] }> {
  const identity = vmIdentity(vm);
  const resumable: WarmImage[] = [];
  const passed: PassedImage[] = [];
  // Oldest first (oned lists newest first): the first image of a disk is the one resumed.
  for (const i of (await one.images()).sort((a, b) => a.id - b.id)) {
    if (i.datastoreId !== datastoreId || i.template.get('ONESWAP_SOURCE_VM') !== identity) continue;
    const diskIndex = Number(i.template.get('ONESWAP_DISK_INDEX') ?? -1);
    const changeId = i.template.get('ONESWAP_CHANGE_ID');
    const whyNot = (): string | undefined => {
      const state = i.template.get('ONESWAP_STATE');
      const disk = vm.disks[diskIndex];
      const name = disk && imageName(vm, disk, namePrefix);
      const twin = resumable.find((r) => r.diskIndex === diskIndex);
      return (
        untouchable(i, identity) ??
        (UNFINISHED.has(state) ? undefined : `its migration is past copying (ONESWAP_STATE=${state ?? 'none'})`) ??
        (name === undefined ? `the VM has no disk ${diskIndex}` : i.name !== name ? `it is named ${i.name}, not ${name}` : undefined) ??
        (changeId === undefined ? 'it finished no warm round' : undefined) ??
        (twin ? `image ${twin.imageId} holds the same disk` : undefined)
      );
    };
    const why = whyNot();
    if (why !== undefined) passed.push({ imageId: i.id, why });
    else resumable.push({ imageId: i.id, diskIndex, changeId: changeId!, round: Number(i.template.get('ONESWAP_WARM_ROUND') ?? 0) });
  }
  return { resumable, passed };
}

/** One line on images a migration left alone. */
export function describePassed(vm: VmDescription, passed: readonly PassedImage[]): string {
  return `not touching image${passed.length === 1 ? '' : 's'} of ${vm.name} that belong to no unfinished migration under these names: ${passed.map((p) => `${p.imageId} (${p.why})`).join(', ')}`;
}

/** Marks converted images and records the guest facts on each (so a later run builds the same template). */
export async function recordConversion(one: OneClient, ids: readonly number[], guest: ConvertedGuest): Promise<void> {
  for (const id of ids) {
    await one.imageUpdate(id, Template.of({ ONESWAP_STATE: 'CONVERTED', ...guestAttributes(guest), DEV_PREFIX: guest.virtioBlock ? 'vd' : 'sd' }), 'merge');
  }
}

/** Marks images whose conversion found no operating system to convert. */
export async function recordNoOperatingSystem(one: OneClient, ids: readonly number[]): Promise<void> {
  for (const id of ids) await markImage(one, id, 'NOT_CONVERTED');
}

/** The guest facts as image attributes (read back by convertedGuestOf). */
export function guestAttributes(guest: ConvertedGuest): Record<string, string> {
  return {
    ONESWAP_GUEST_OS: guest.productName,
    ONESWAP_GUEST_DISTRO: guest.distro,
    ONESWAP_GUEST_OSINFO: guest.osinfo,
    ONESWAP_GUEST_ARCH: guest.arch,
    ONESWAP_GUEST_VIRTIO_BLK: guest.virtioBlock ? 'YES' : 'NO',
    ONESWAP_GUEST_VIRTIO_NET: guest.virtioNet ? 'YES' : 'NO',
    ONESWAP_GUEST_FIRMWARE: guest.firmware,
    ...(guest.network === undefined ? {} : { ONESWAP_GUEST_NETWORK: formatGuestNetwork(guest.network) }),
  };
}

/** What an import recorded on an image about the disk it holds (placeholder attributes above). */
export interface ImportedDisk {
  readonly vmName: string | undefined;
  /** Boot/bus order; images without the attribute sort first. */
  readonly index: number;
  readonly bus: DiskBus;
  readonly firmware: Firmware;
}

const BUSES: readonly DiskBus[] = ['scsi', 'sata', 'ide', 'nvme'];

export function importedDiskOf(image: OneImage): ImportedDisk {
  const t = image.template;
  const bus = t.get('ONESWAP_DISK_BUS') as DiskBus | undefined;
  return {
    vmName: t.get('ONESWAP_VM_NAME'),
    index: Number(t.get('ONESWAP_DISK_INDEX') ?? 0),
    bus: bus !== undefined && BUSES.includes(bus) ? bus : 'scsi',
    firmware: t.get('ONESWAP_FIRMWARE') === 'efi' ? 'efi' : 'bios',
  };
}

/**
 * How qemu opens an image whose guest is converted from here; refuses one that cannot be: not
 * raw or qcow2, in use, or its file out of reach.
 */
export async function convertibleImage(one: OneClient, img: OneImage, warn: (line: string) => void = () => undefined): Promise<ImageTarget> {
  if (img.format !== 'raw' && img.format !== 'qcow2')
    throw new OneswapError('usage', `image ${img.id} (${img.name}) is ${img.format || 'of unknown format'}; oneswap converts raw and qcow2 images`);
  if (img.stateName === 'USED' || img.stateName === 'USED_PERS' || img.runningVms > 0)
    throw new OneswapError('conflict', `image ${img.id} (${img.name}) is in use by VM ${img.vms.join(', ')}`, {
      hint: 'a guest must not run while it is converted: terminate the VM (persistent images keep their data), then convert',
    });
  if (img.stateName !== 'READY') throw new OneswapError('conflict', `image ${img.id} (${img.name}) is ${img.stateName}, not READY`);
  if (!img.source) throw new OneswapError('remote', `image ${img.id} (${img.name}) has no SOURCE`);
  return reachableTarget(one, img, img, warn);
}

/** Where a datastore driver's `cp` put the disk, until oned learns it from cp's answer (SOURCE FORMAT). */
const COPIED_SOURCE = 'ONESWAP_COPIED_SOURCE';
const COPIED_FORMAT = 'ONESWAP_COPIED_FORMAT';

/** What a datastore driver's `cp` records on its image once the disk is copied: what it will answer oned. */
export function copiedImageAttributes(source: string, format: string): Record<string, string> {
  return { [COPIED_SOURCE]: source, [COPIED_FORMAT]: format };
}

/**
 * How qemu opens an image a datastore driver's `cp` filled, while oned still holds it LOCKED with
 * no SOURCE (the conversion after a marketplace import runs before the `cp`s answer).
 */
export async function copiedImageTarget(one: OneClient, img: OneImage, warn: (line: string) => void = () => undefined): Promise<ImageTarget> {
  if (img.source) return reachableTarget(one, img, img, warn);
  // Both from the cp: before its answer, FORMAT may still be what the marketplace app said.
  const source = img.template.get(COPIED_SOURCE);
  if (!source) throw new OneswapError('remote', `image ${img.id} has neither SOURCE nor ${COPIED_SOURCE}: its copy did not finish`);
  return reachableTarget(one, img, { id: img.id, name: img.name, source, format: img.template.get(COPIED_FORMAT) ?? 'raw' }, warn);
}

/** The image's target for a conversion, its storage checked to be reachable from here. */
async function reachableTarget(one: OneClient, img: OneImage, stored: StoredImage, warn: (line: string) => void): Promise<ImageTarget> {
  const ds = await one.datastore(img.datastoreId);
  const what = datastoreName(ds);
  const storage = imageStorageOf(ds);
  // The size matters only to writers; a conversion opens the image as it is.
  const size = img.sizeMb * MiB;
  const format = stored.format === 'qcow2' ? 'qcow2' : 'raw';
  // The SOURCE first: it is wrong whether or not the pool can be reached.
  if (storage.kind === 'ceph') rbdLocationOf(storage.ceph, stored, what);
  if (storage.kind === 'files' && storage.bridges.length === 0) {
    await checkReachable(stored.source, `image ${img.id}`, constants.R_OK | constants.W_OK);
    return format === 'qcow2' ? qcow2Target(stored.source, size) : fileTarget(stored.source, size);
  }
  // Checked as an import checks them: the host that made the image may be down now, and another
  // that passes the check reaches the same pool or files.
  const reached = await reachableStorage(ds, warn);
  if (reached.kind === 'ceph') return rbdTarget(rbdLocationOf(reached.ceph, stored, what, cephHostFor(reached, img.id)), size);
  return bridgeFileTarget(bridgeHostFor(reached.bridges, img.id), stored.source, format, size);
}

/** The guest facts an earlier conversion recorded on an image, or undefined when it was not converted. */
export function convertedGuestOf(image: OneImage): ConvertedGuest | undefined {
  const t = image.template;
  if (t.get('ONESWAP_GUEST_VIRTIO_BLK') === undefined) return undefined;
  return {
    productName: t.get('ONESWAP_GUEST_OS') ?? '',
    distro: t.get('ONESWAP_GUEST_DISTRO') ?? '',
    osinfo: t.get('ONESWAP_GUEST_OSINFO') ?? '',
    arch: t.get('ONESWAP_GUEST_ARCH') ?? '',
    virtioBlock: t.get('ONESWAP_GUEST_VIRTIO_BLK') === 'YES',
    virtioNet: t.get('ONESWAP_GUEST_VIRTIO_NET') === 'YES',
    firmware: t.get('ONESWAP_GUEST_FIRMWARE') === 'efi' ? 'efi' : 'bios',
    ...(t.get('ONESWAP_GUEST_NETWORK') === undefined ? {} : { network: parseGuestNetwork(t.get('ONESWAP_GUEST_NETWORK')!) }),
  };
}

