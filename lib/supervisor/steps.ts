// The steps an import of one vCenter VM is made of, shared by the cold import and the warm
// migration: prechecks, placeholders, copying areas into the images with progress and journal,
// conversion, the VM template (and VM), and the rollback of whatever the journal says exists.

import { OneswapError, describeError, throwFirst } from '../errors/index.js';
import type { VSphereClient, VmSummary } from '../vsphere/index.js';
import type { OneClient, OneImage } from '../one/index.js';
import {
  describeVcenterVm,
  reportedAddresses,
  checkCopyableDisks,
  placeVcenterDisks,
  chooseReader,
  openReadings,
  availablePlugins,
  allocatedAreas,
  vmIdentity,
  type DiskDescription,
  type VcenterDisk,
  type VmDescription,
  type DiskReading,
  type ReaderChoice,
  type ReaderSettings,
  type ReadState,
  type Readings,
  type StreamCopyOptions,
  type AllocationMap,
} from '../input/index.js';
import { copyExtents, together, type CopyStats, type RangeSource, type TargetWriter } from '../copy/index.js';
import { checkAdditions, type GuestAdditions, type NicUse } from '../convert/index.js';
import { subtractExtents, normalizeExtents, totalLength, type Extent } from '../extents/index.js';
import {
  allocatePlaceholder,
  checkImageDatastore,
  checkNamesFree,
  warmImagesOf,
  untouchable,
  describePassed,
  imageName,
  markImage,
  convertedGuestOf,
  placeholderTarget,
  writingInto,
  forQemu,
  removeImages,
  templateName,
  mapNics,
  placeNics,
  addressesToKeep,
  macOnKvm,
  removeAddressRanges,
  buildVmTemplate,
  type ImageDatastore,
  type ImageTarget,
  type NicMapping,
  type PlacedNic,
  type ConvertedGuest,
  type GuestNicConfig,
  type WarmImage,
} from '../output/index.js';
import { Journal } from './journal.js';
import { hostKey, type Idle, type RunBudgets } from './budgets.js';
import { foreignSnapshotRefusal, sourceRefusals } from './source-refusals.js';
import { recordCopySample } from './copy-rates.js';
import { diskReads } from './read-meter.js';
import { convertImages, describeConversion, vmConversionRequest, type ConversionRun } from './conversion.js';
import type { EventSink, Phase } from './events.js';

/** How any import runs, whatever its source (vCenter or files) and target. */
export interface MigrationOptions {
  readonly convert: boolean;
  readonly networkMap: ReadonlyMap<string, string>;
  readonly keepMac: boolean;
  /** Keep the address the guest used on each NIC (static, or its last DHCP lease). */
  readonly keepIp: boolean;
  /** CONTEXT NETWORK=YES or not; undefined: the rule of lib/output/vm-template.ts contextNetwork(). */
  readonly contextNetwork?: boolean | undefined;
  readonly instantiate: boolean;
  readonly keepOnFailure: boolean;
  readonly namePrefix: string;
  readonly streams: number;
  readonly stateDir: string;
  /** Where the run log lives; conversion logs go next to it, one per VM. */
  readonly logDir: string;
  readonly runId: string;
  /** Opt-in: context package and qemu-guest-agent, installed at the guest's first boot. */
  readonly additions: GuestAdditions;
}

/** An import from vCenter into an OpenNebula datastore. */
export interface ImportOptions extends MigrationOptions {
  readonly datacenter?: string;
  readonly datastoreId: number;
  /** Ask the guest to shut down when the VM runs, and wait for it. */
  readonly shutdown: boolean;
  readonly shutdownTimeoutMs: number;
  /** How disks are read: --transport and --vddk-libdir. */
  readonly readers: ReaderSettings;
}

/** What the OpenNebula side of an import needs, whatever the source. */
export interface OneContext {
  readonly one: OneClient;
  readonly emit: EventSink;
  readonly signal: AbortSignal;
}

/** What reading a vCenter VM's disks needs: the datastore driver's `cp` has no more. */
export interface VcenterContext {
  readonly vsphere: VSphereClient;
  readonly emit: EventSink;
  readonly signal: AbortSignal;
}

export interface ImportContext extends OneContext, VcenterContext {
  readonly vcenterHost: string;
  /** A plan run's limits across its VMs; a single import has none but the conversion queue's. */
  readonly budgets?: RunBudgets;
  /** A plan run's VM: gives its in-flight slot back while it only waits (budgets.ts). */
  readonly idle?: Idle;
}

/** A source disk of any input: what the OpenNebula steps need to know of it. */
export interface SourcedDisk {
  readonly description: DiskDescription;
}

export interface VmResult {
  readonly vm: string;
  readonly ok: boolean;
  readonly imageIds: number[];
  readonly templateId?: number;
  readonly vmId?: number;
  /** A directory target: the VM template file written. */
  readonly templateFile?: string;
  readonly error?: unknown;
}

export type StepLog = (message: string, level?: 'info' | 'warn' | 'error') => void;

/** Runs named phases of one VM with start/done/failed events; remembers the phase that failed. */
export class Phases {
  failedIn: Phase | undefined;
  /** How long each phase that ended well took (ms). */
  readonly took = new Map<Phase, number>();

  constructor(
    private readonly ctx: { readonly emit: EventSink; readonly signal: AbortSignal },
    private readonly vm: string,
  ) {}

  readonly log: StepLog = (message, level = 'info') => this.ctx.emit({ type: 'log', level, vm: this.vm, message });

  async run<T>(name: Phase, fn: () => Promise<T>, detail?: (r: T) => string | undefined): Promise<T> {
    this.ctx.signal.throwIfAborted();
    const t0 = Date.now();
    this.ctx.emit({ type: 'phase', vm: this.vm, phase: name, state: 'start' });
    try {
      const r = await fn();
      const durationMs = Date.now() - t0;
      this.took.set(name, durationMs);
      this.ctx.emit({ type: 'phase', vm: this.vm, phase: name, state: 'done', durationMs, detail: detail?.(r) });
      return r;
    } catch (err) {
      this.failedIn = name;
      this.ctx.emit({ type: 'phase', vm: this.vm, phase: name, state: 'failed', durationMs: Date.now() - t0, detail: describeError(err) });
      throw err;
    }
  }
}

export interface Prechecked {
  readonly summary: VmSummary;
  readonly description: VmDescription;
  readonly disks: VcenterDisk[];
  /** The VM's datacenter path (for datastore URLs). */
  readonly dcPath: string;
  readonly ds: ImageDatastore;
  readonly nics: NicMapping[];
  readonly journal: Journal;
}

/** What a warm migration needs on top of a cold import's checks. */
export interface WarmPrecheck {
  /** Turn change tracking on when it is off, instead of refusing. */
  readonly enableCbt: boolean;
}

export async function precheck(ctx: ImportContext, vmName: string, opts: ImportOptions, log: (m: string, l?: 'warn') => void, warm?: WarmPrecheck): Promise<Prechecked> {
  if (opts.convert) await checkAdditions(opts.additions);
  let summary = await ctx.vsphere.findVm(vmName, { datacenter: opts.datacenter });
  throwFirst(sourceRefusals(summary, warm ? { kind: 'warm', enableCbt: warm.enableCbt } : { kind: 'cold', shutdown: opts.shutdown }));
  if (warm && !summary.changeTrackingEnabled) summary = await enableCbt(ctx, summary, log);
  if (summary.hasSnapshots) {
    const snaps = await ctx.vsphere.snapshots(summary.ref);
    const foreign = foreignSnapshotRefusal(summary, snaps);
    if (foreign) throw foreign.error;
    for (const s of snaps) {
      log(`removing oneswap's leftover snapshot "${s.name}"`, 'warn');
      await ctx.vsphere.removeSnapshot(s.ref);
    }
  }

  const description = describeVcenterVm(ctx.vcenterHost, summary);
  const nics = mapNics(summary.name, description.nics, await networkCandidates(ctx.one), opts.networkMap);
  const { disks, dcPath } = await placeVcenterDisks(ctx.vsphere, summary, description);
  // An explicit --transport that cannot read these disks fails here, before anything is created.
  const plugins = await availablePlugins(opts.readers);
  for (const d of disks) chooseReader(opts.readers, plugins, d, warm !== undefined && summary.powerState === 'poweredOn');

  const { journal, ds } = await openTarget(ctx, description, opts, log, summary.name, warm && ((j) => adoptWarmImages(ctx.one, j, description, opts, log)));
  const reported = reportedAddresses(summary);
  if (reported.size > 0) {
    journal.data.reportedAddresses = Object.fromEntries(reported);
    await journal.flush();
  }
  return { summary, description, disks, dcPath, ds, nics, journal };
}

/**
 * The OpenNebula side of a precheck, whatever the source: the VM's journal (locked; an earlier
 * run's images still there are resumed, `adopt` may find some without local state), then room in
 * the datastore and free names for what is still to be created.
 */
export async function openTarget(
  ctx: OneContext,
  description: VmDescription,
  opts: Pick<ImportOptions, 'stateDir' | 'datastoreId' | 'namePrefix'>,
  log: (m: string, l?: 'warn') => void,
  lockLabel: string,
  adopt?: (journal: Journal) => Promise<WarmImage[]>,
): Promise<{ journal: Journal; ds: ImageDatastore }> {
  const opened = await Journal.open(opts.stateDir, vmIdentity(description), opts.datastoreId);
  const journal = opened.journal;
  await journal.lock(lockLabel);
  try {
    let resumed = opened.resumed;
    if (!resumed && adopt !== undefined) {
      const adopted = await adopt(journal);
      resumed = adopted.length > 0;
      if (resumed)
        log(`no local state for ${description.name}: resuming the warm migration from images ${adopted.map((f) => f.imageId).join(', ')} (their changeIds after round ${journal.data.warm!.baseRound! - 1})`, 'warn');
    }
    const ownIds = new Set<number>();
    if (resumed) {
      for (const d of [...journal.data.disks]) {
        // Only an image this VM's unfinished migration made is written to or removed again; a
        // finished one, or one a VM uses, stays as it is whatever the journal says.
        const why = await notResumable(ctx.one, d.imageId, vmIdentity(description), journal.data.vmId);
        if (why === undefined) ownIds.add(d.imageId);
        else {
          log(`image ${d.imageId} of an earlier run is not taken over (${why}); its disk goes into a new image`, 'warn');
          journal.data.disks = journal.data.disks.filter((x) => x !== d);
        }
      }
      if (journal.data.disks.length > 0) log(`resuming an earlier run: images ${[...ownIds].join(', ')}`);
    }
    const pending = description.disks.filter((d) => !journal.disk(d.sourceKey));
    const ds = await checkImageDatastore(ctx.one, opts.datastoreId, pending.reduce((s, d) => s + d.capacityBytes, 0), (line) => log(line, 'warn'), (line) => log(line));
    await checkNamesFree(
      ctx.one,
      pending.map((d) => imageName(description, d, opts.namePrefix)),
      templateName(description, opts.namePrefix),
      ownIds,
      journal.data.templateId,
    );
    return { journal, ds };
  } catch (err) {
    await journal.unlock();
    throw err;
  }
}

/**
 * A warm migration with --enable-cbt (sourceRefusals let it through): turning CBT on takes effect
 * at the next stun, which the first migration snapshot provides; vSphere then reports each disk's
 * changeId there.
 */
async function enableCbt(ctx: ImportContext, vm: VmSummary, log: (m: string, l?: 'warn') => void): Promise<VmSummary> {
  log(`turning changed block tracking on for ${vm.name} (--enable-cbt)`, 'warn');
  await ctx.vsphere.setChangeTracking(vm.ref, true);
  return ctx.vsphere.vm(vm.ref);
}

/** Why the journal's image `id` must not be resumed into, or undefined. */
async function notResumable(one: OneClient, id: number, identity: string, ownVm: number | undefined): Promise<string | undefined> {
  let img: OneImage;
  try {
    img = await one.image(id);
  } catch (err) {
    if (err instanceof OneswapError && err.kind === 'not-found') return 'it is gone';
    throw err;
  }
  if (img.template.get('ONESWAP_SOURCE_DISK') === undefined) return 'oneswap did not make it';
  return untouchable(img, identity, ownVm);
}

/**
 * A warm migration started on another machine (or whose local state was lost): its images carry
 * the changeIds. Adds those of an unfinished migration under this run's image names to the
 * journal and returns them (none: nothing to adopt); says which images of the VM it left alone.
 */
export async function adoptWarmImages(one: OneClient, journal: Journal, vm: VmDescription, opts: Pick<ImportOptions, 'datastoreId' | 'namePrefix'>, log: (m: string, l?: 'warn') => void): Promise<WarmImage[]> {
  const { resumable, passed } = await warmImagesOf(one, vm, opts.datastoreId, opts.namePrefix);
  if (passed.length > 0) log(describePassed(vm, passed), 'warn');
  if (resumable.length === 0) return resumable;
  for (const f of resumable) {
    const d = vm.disks[f.diskIndex]!;
    journal.data.disks.push({ sourceKey: d.sourceKey, imageId: f.imageId, imagePath: '', capacityBytes: d.capacityBytes, done: [], complete: false, changeId: f.changeId, pending: [] });
  }
  journal.data.warm = { rounds: [], baseRound: Math.max(...resumable.map((f) => f.round)) + 1 };
  await journal.flush();
  return resumable;
}

/** The networks a source NIC can be mapped to (mapNics), with their VCENTER_NETWORK_MATCH. */
export async function networkCandidates(one: OneClient) {
  return (await one.vnets()).map((n) => ({ id: n.id, name: n.name, vcenterMatch: n.template.get('VCENTER_NETWORK_MATCH') }));
}

export interface DiskTarget<D extends SourcedDisk = VcenterDisk> {
  readonly disk: D;
  readonly imageId: number;
  readonly target: ImageTarget;
}

export async function placeholders<D extends SourcedDisk>(
  ctx: OneContext,
  journal: Journal,
  vm: VmDescription,
  disks: readonly D[],
  ds: ImageDatastore,
  opts: Pick<ImportOptions, 'namePrefix'>,
): Promise<DiskTarget<D>[]> {
  // Allocate all first (the driver creates the files in parallel), then wait for each.
  const allocated = new Set<string>();
  for (const d of disks) {
    if (journal.disk(d.description.sourceKey)) continue;
    allocated.add(d.description.sourceKey);
    const id = await allocatePlaceholder(ctx.one, ds, {
      name: imageName(vm, d.description, opts.namePrefix),
      disk: d.description,
      vm,
      boot: d.description.index === 0,
      devPrefix: 'sd',
    });
    journal.data.disks.push({ sourceKey: d.description.sourceKey, imageId: id, imagePath: '', capacityBytes: d.description.capacityBytes, done: [], complete: false });
    await journal.flush();
  }
  const out: DiskTarget<D>[] = [];
  for (const d of disks) {
    const j = journal.disk(d.description.sourceKey)!;
    // Fresh: made by this run, so it must be empty. One an earlier run made may hold what its
    // copy or warm round wrote, also before the journal recorded any of it.
    const target = await placeholderTarget(ctx.one, ds, j.imageId, d.description.capacityBytes, allocated.has(d.description.sourceKey), ctx.signal);
    if (j.imagePath !== target.name) {
      Object.assign(j, { imagePath: target.name });
      await journal.flush();
    }
    out.push({ disk: d, imageId: j.imageId, target });
  }
  return out;
}

/** One disk's share of a copy: which areas of which source go into which image. */
export interface DiskCopy {
  readonly target: DiskTarget;
  readonly reading: DiskReading;
  /** Every area this copy stands for; those the journal lists as done are skipped. */
  readonly planned: readonly Extent[];
  /** The image holds only zeros where nothing is planned, so zero blocks need no hole punched. */
  readonly targetIsZero: boolean;
}

/**
 * Copies the disks in parallel with progress events and the journal's done ranges kept current.
 * A disk that fails stops the others, and the failure is reported once all of them have
 * stopped: a rollback then removes placeholders nothing writes to any more.
 */
export async function copyIntoImages(
  ctx: ImportContext,
  journal: Journal,
  source: { readonly name: string; readonly host?: string | undefined },
  copies: readonly DiskCopy[],
  streams: number,
  onDiskDone: (copy: DiskCopy, stats: CopyStats) => Promise<void>,
): Promise<CopyStats[]> {
  return together(
    copies.map((c) => async (signal: AbortSignal) => {
      // A plan run reads at most so many disks at once from one ESXi host; the others wait here.
      const release = await ctx.budgets?.readsPerHost.of(hostKey(source.host)).take(signal);
      try {
        return await copyDisk(c, signal);
      } finally {
        release?.();
      }
    }),
    ctx.signal,
  );

  async function copyDisk(c: DiskCopy, signal: AbortSignal): Promise<CopyStats> {
    const vm = source.name;
    const d = c.target.disk.description;
    const rate = ctx.budgets?.datastoreRates.get(c.target.disk.device.datastoreName);
    const jd = journal.disk(d.sourceKey)!;
    const cap = d.capacityBytes;
    const planned = normalizeExtents(c.planned, cap);
    const todo = subtractExtents(planned, jd.done);
    const name = `disk${d.index}`;
    const base = totalLength(planned) - totalLength(todo);
    const emit = (bytesDone: number, bytesWritten: number, state: 'copying' | 'done' | 'failed'): void =>
      ctx.emit({ type: 'disk', vm, disk: d.index, name, bytesDone: base + bytesDone, bytesPlanned: totalLength(planned), bytesWritten, capacityBytes: cap, state });
    emit(0, 0, 'copying');
    const t0 = Date.now();
    const metered = diskReads.begin(hostKey(source.host));
    try {
      const s = await copyReading(c.reading, c.target.target, {
        capacity: cap,
        areas: todo,
        targetIsZero: c.targetIsZero,
        streams,
        signal,
        onProgress: (p) => emit(p.bytesDone, p.bytesWritten, 'copying'),
        onWritten: (x) => journal.rangeDone(d.sourceKey, x),
        ...(rate ? { pace: (n: number) => rate.take(n, signal) } : {}),
      });
      await onDiskDone(c, s);
      // Every finished disk refines the rates `plan estimate` expects from this host and datastore,
      // with the reads that shared them meanwhile; a copy paced by the plan's datastore budget
      // measured the budget, not the datastore.
      const place = { host: hostKey(source.host), datastore: c.target.disk.device.datastoreName, reader: c.reading.reader };
      const levels = metered.end();
      if (!rate) await recordCopySample(journal.stateDir, { ...place, ...levels, bytes: s.bytesRead, ms: Date.now() - t0, how: 'run', at: new Date().toISOString() }).catch(() => undefined);
      emit(s.bytesPlanned, s.bytesWritten, 'done');
      return s;
    } catch (err) {
      emit(0, 0, 'failed');
      await journal.flush();
      throw err;
    } finally {
      metered.end();
    }
  }
}

export interface ReadingCopy extends Omit<StreamCopyOptions, 'target'> {
  /** Range streams at most (a reader may allow fewer). */
  readonly streams: number;
  /** Each span written, for a resume journal; a stream reports nothing until it ends. */
  readonly onWritten?: (span: Extent) => void;
  /**
   * Waits until the budget lets bytes go (a plan's bytes per second per datastore): a range
   * reader's request before it is sent, the data written of a stream (whose body is compressed, so
   * its data is what the datastore gave).
   */
  readonly pace?: (bytes: number) => Promise<void>;
}

/**
 * Moves the areas of one disk from its reader into an image: random-access readers through the
 * copy engine, a stream (an export lease) in its one ordered pass.
 */
export function copyReading(reading: DiskReading, target: ImageTarget, o: ReadingCopy): Promise<CopyStats> {
  return writingInto(target, (writer) => copyInto(reading, writer, o));
}

function copyInto(reading: DiskReading, target: TargetWriter, o: ReadingCopy): Promise<CopyStats> {
  if (reading.access === 'stream') return reading.copyInto({ ...o, target: o.pace ? pacedWriter(target, o.pace) : target });
  return copyExtents({
    source: o.pace ? pacedSource(reading.source, o.pace) : reading.source,
    ...(o.pace ? { requestSize: PACED_REQUEST_BYTES } : {}),
    target,
    capacity: o.capacity,
    extents: o.areas,
    targetIsZero: o.targetIsZero,
    streams: Math.min(o.streams, reading.maxStreams),
    signal: o.signal,
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    ...(o.onWritten ? { onWritten: o.onWritten } : {}),
  });
}

/**
 * A paced range reader asks for this much at most, and only once the budget has let those bytes
 * go, so what the datastore serves runs ahead of its rate by one request at most. Pacing the chunks
 * as they arrived held back only the copy: the socket buffers in between (tens of MiB on a Linux
 * loopback) let the datastore serve a whole request of the engine's default 64 MiB at once.
 */
const PACED_REQUEST_BYTES = 1024 * 1024;

function pacedSource(source: RangeSource, pace: (bytes: number) => Promise<void>): RangeSource {
  return {
    name: source.name,
    async open(start, end, signal) {
      await pace(end - start);
      return source.open(start, end, signal);
    },
  };
}

function pacedWriter(target: TargetWriter, pace: (bytes: number) => Promise<void>): TargetWriter {
  return {
    name: target.name,
    size: target.size,
    ...(target.blockSize === undefined ? {} : { blockSize: target.blockSize }),
    write: async (data, position) => {
      await pace(data.length);
      return target.write(data, position);
    },
    zero: (areas) => target.zero(areas),
    flush: () => target.flush(),
    close: () => target.close(),
  };
}

/**
 * The areas worth reading of one disk: what CBT answered; without CBT what the reader knows is
 * allocated (NBD block status); else the whole disk, whose zero blocks the copy leaves as holes.
 */
export async function areasToRead(map: AllocationMap, key: number, reading: DiskReading, signal: AbortSignal): Promise<{ areas: Extent[]; how: string }> {
  if (map.method === 'full' && reading.access === 'ranges' && reading.allocated) return { areas: await reading.allocated(signal), how: 'allocated areas (NBD block status)' };
  return { areas: [...(map.extents.get(key) ?? [])], how: map.method === 'cbt' ? 'CBT allocated areas' : 'whole disk, zeros become holes' };
}

/**
 * Chooses a reader for each disk in one state of the VM, says which and why (a `reader` event
 * per disk, a line in the log), and opens them. The caller must `finish` the result: an export lease
 * is completed on success and aborted on failure, nbdkit processes stop either way.
 */
export async function openDiskReaders(
  ctx: VcenterContext,
  vm: VmSummary,
  dcPath: string,
  disks: readonly VcenterDisk[],
  state: ReadState,
  settings: ReaderSettings,
): Promise<{ readings: Readings; choices: Map<number, ReaderChoice> }> {
  const plugins = await availablePlugins(settings);
  const choices = new Map(disks.map((d) => [d.device.key, chooseReader(settings, plugins, d, state.kind === 'snapshot' && state.vmRunning)] as const));
  for (const d of disks) {
    const c = choices.get(d.device.key)!;
    ctx.emit({ type: 'reader', vm: vm.name, disk: d.description.index, name: d.device.fileName, reader: c.reader, why: c.why });
  }
  const readings = await openReadings({ client: ctx.vsphere, vm, dcPath, disks, state, choices, settings, signal: ctx.signal });
  return { readings, choices };
}

/**
 * One disk of a VM as the datastore driver's `cp` copies it: the VM described, the disk checked
 * (a format oneswap reads) and placed on its vCenter datastore.
 */
export async function placeOneDisk(
  vsphere: VSphereClient,
  vcenterHost: string,
  summary: VmSummary,
  pick: (vm: VmDescription) => DiskDescription,
): Promise<{ vm: VmDescription; disk: VcenterDisk; dcPath: string }> {
  const vm = describeVcenterVm(vcenterHost, summary);
  const description = pick(vm);
  checkCopyableDisks({ ...summary, disks: summary.disks.filter((d) => String(d.key) === description.sourceKey) });
  const { dcPath, disks } = await placeVcenterDisks(vsphere, summary, { ...vm, disks: [description] });
  return { vm, disk: disks[0]!, dcPath };
}

/** One disk of a powered-off VM, ready to copy: its reader and the areas worth reading through it. */
export interface PlannedRead {
  readonly disk: VcenterDisk;
  readonly reading: DiskReading;
  readonly areas: Extent[];
  /** How the areas were found, for the log. */
  readonly how: string;
}

/**
 * What a copy of a powered-off VM's disks reads, for the cold import and the datastore driver's
 * `cp` alike: the allocated areas (CBT "*" when tracking is on; a snapshot is taken and removed
 * for it), a reader per disk (one `reader` event each), and the areas worth reading through it.
 * The caller finishes the readings (an export lease is completed or aborted).
 */
export async function planPoweredOffReads(
  ctx: VcenterContext,
  summary: VmSummary,
  dcPath: string,
  disks: readonly VcenterDisk[],
  settings: ReaderSettings,
  log: StepLog,
): Promise<{ plans: PlannedRead[]; readings: Readings; choices: Map<number, ReaderChoice> }> {
  const map = await allocatedAreas(ctx.vsphere, summary, disks, log);
  const { readings, choices } = await openDiskReaders(ctx, summary, dcPath, disks, { kind: 'powered-off' }, settings);
  try {
    const plans: PlannedRead[] = [];
    for (const disk of disks) {
      const reading = readings.get(disk.device.key);
      const { areas, how } = await areasToRead(map, disk.device.key, reading, ctx.signal);
      plans.push({ disk, reading, areas, how });
    }
    return { plans, readings, choices };
  } catch (err) {
    await readings.finish(false, describeError(err));
    throw err;
  }
}

/**
 * The convert phase: skipped for images an earlier run (or `oneswap convert`) already converted.
 * The guest's network configuration is bound to the MACs its NICs get in OpenNebula, which are
 * decided here, while the conversion knows what the guest uses (placeNics; build places them
 * again, the same way).
 */
export async function convert(
  ctx: OneContext,
  journal: Journal,
  vm: VmDescription,
  targets: readonly DiskTarget<SourcedDisk>[],
  nics: readonly NicMapping[],
  opts: ConversionRun & Pick<MigrationOptions, 'keepMac' | 'keepIp'>,
  log: (m: string, l?: 'warn') => void,
): Promise<{ guest: ConvertedGuest | undefined; detail: string }> {
  const recorded = convertedGuestOf(await ctx.one.image(targets[0]!.imageId));
  if (recorded) {
    log(`images ${targets.map((t) => t.imageId).join(', ')} were converted by an earlier run; not converting again`);
    return { guest: recorded, detail: `already converted: ${recorded.productName}` };
  }
  const assign = async (uses: readonly NicUse[]): Promise<Map<number, string | undefined>> => {
    const placed = await placeNicsOf(ctx, journal, nics, uses, opts, log);
    return new Map(placed.map((p) => [p.nic.index, macOnKvm(p)]));
  };
  const rehearsal = journal.data.warm?.rehearsal;
  const rehearsed = rehearsal?.ok ? { rehearsed: { ms: rehearsal.durationMs, at: rehearsal.at } } : {};
  const r = await forQemu(targets.map((t) => t.target), (qemu) => {
    const request = vmConversionRequest(vm, targets.map((t, k) => ({ id: t.imageId, image: qemu[k]!, bus: t.disk.description.bus })), opts);
    return convertImages(ctx, { ...request, ...rehearsed, network: { ...request.network, assign } });
  });
  if (r.kind === 'no-os') log(`no operating system found on the disks of ${vm.name}: a data-only VM, not converted (${r.reason})`, 'warn');
  return { guest: r.kind === 'converted' ? r.guest : undefined, detail: describeConversion(r) };
}

export async function build(
  ctx: OneContext,
  journal: Journal,
  vm: VmDescription,
  targets: readonly DiskTarget<SourcedDisk>[],
  nics: readonly NicMapping[],
  guest: ConvertedGuest | undefined,
  opts: Pick<MigrationOptions, 'keepMac' | 'keepIp' | 'contextNetwork' | 'namePrefix' | 'convert' | 'additions' | 'instantiate'>,
  log: (m: string, l?: 'warn') => void,
): Promise<{ templateId: number; vmId?: number }> {
  if (opts.keepIp && guest?.network === undefined && Object.keys(journal.data.reportedAddresses ?? {}).length === 0)
    log('--keep-ip: the guest\'s addresses are read during the conversion, this VM was not converted (or is not Linux), and VMware Tools reported none while it ran: OpenNebula picks the IPs', 'warn');
  const placedNics = await placeNicsOf(ctx, journal, nics, guest?.network ?? [], opts, log);
  const version = await ctx.one.version();
  const template = buildVmTemplate({
    name: templateName(vm, opts.namePrefix),
    vm,
    disks: targets.map((t) => ({ disk: t.disk.description, imageId: t.imageId })),
    nics: placedNics,
    guest,
    guestAgent: opts.convert && opts.additions.guestAgent === true,
    contextNetwork: opts.contextNetwork,
    oneMajorVersion: Number.parseInt(version, 10) || 7,
    importedAt: new Date(),
  });
  if (journal.data.templateId === undefined) {
    journal.data.templateId = await ctx.one.templateAllocate(template);
    await journal.flush();
  }
  if (!opts.instantiate) return { templateId: journal.data.templateId };
  if (journal.data.vmId === undefined) {
    journal.data.vmId = await ctx.one.templateInstantiate(journal.data.templateId, { name: templateName(vm, opts.namePrefix), hold: false, persistent: false });
    await journal.flush();
  }
  return { templateId: journal.data.templateId, vmId: journal.data.vmId };
}

/** The NICs placed in OpenNebula (MACs, IPs, added address ranges recorded in the journal). */
async function placeNicsOf(
  ctx: OneContext,
  journal: Journal,
  nics: readonly NicMapping[],
  uses: readonly Pick<GuestNicConfig, 'nic' | 'mode' | 'address'>[],
  opts: Pick<MigrationOptions, 'keepMac' | 'keepIp'>,
  log: (m: string, l?: 'warn') => void,
): Promise<PlacedNic[]> {
  const reported = new Map(Object.entries(journal.data.reportedAddresses ?? {}).map(([nic, ip]) => [Number(nic), ip] as const));
  const guestAddresses = addressesToKeep(uses, reported);
  // A kept address that is not the one in the guest's files can only be what Tools reported.
  if (opts.keepIp)
    for (const m of nics) {
      const ip = guestAddresses.get(m.nic.index);
      if (ip !== undefined && ip !== uses.find((u) => u.nic === m.nic.index)?.address) log(`${m.nic.label}: --keep-ip: ${ip} is the address VMware Tools reported while the VM ran`);
    }
  const placed = await placeNics(ctx.one, nics, { keepMac: opts.keepMac, keepIp: opts.keepIp, guestAddresses, journal: journal.data, log });
  await journal.flush();
  return placed;
}

/**
 * Why a failed import keeps its images rather than removing them, or undefined when it removes
 * them: the conversion failed (they hold the copied disks), --keep-on-failure, or the copy ran out
 * of room. The last keeps what was copied for the run that resumes once there is room, and a Ceph
 * pool at its quota cannot even remove an image (rbd rm moves it to the trash, a write it refuses).
 */
export type KeptImages = 'converted' | 'asked' | 'no-room' | undefined;

export function keptImages(failedIn: Phase | undefined, error: unknown, keepOnFailure: boolean): KeptImages {
  if (failedIn === 'convert') return 'converted';
  if (keepOnFailure) return 'asked';
  if (failedIn === 'copy' && error instanceof OneswapError && error.kind === 'capacity') return 'no-room';
  return undefined;
}

export async function rollback(
  ctx: OneContext & { readonly vsphere?: VSphereClient },
  journal: Journal,
  summary: VmSummary | undefined,
  kept: KeptImages,
  log: (m: string, l?: 'warn' | 'error') => void,
  label = summary?.name ?? '?',
): Promise<void> {
  const t0 = Date.now();
  ctx.emit({ type: 'phase', vm: label, phase: 'rollback', state: 'start' });
  // Source first: the VM must run again whatever happens on the OpenNebula side.
  if (journal.data.shutDownByUs && summary && ctx.vsphere && journal.data.vmId === undefined) {
    try {
      await ctx.vsphere.powerOn(summary.ref);
      journal.data.shutDownByUs = false;
      log(`powered ${summary.name} on again in vCenter`);
    } catch (err) {
      log(`could not power ${summary.name} on again: ${describeError(err)}; power it on in vCenter`, 'error');
    }
  }
  const ids = journal.data.disks.map((d) => d.imageId).join(',');
  if (kept === 'converted') {
    // The images are marked COPIED already and hold the copy byte for byte.
    await journal.flush().catch(() => undefined);
    log(`kept images ${ids} with the copied disks (ONESWAP_STATE=COPIED); after fixing the cause, run the same import again (it resumes at the conversion) or: oneswap convert --image ${ids}`, 'warn');
  } else if (kept) {
    for (const d of journal.data.disks) await markImage(ctx.one, d.imageId, 'FAILED').catch(() => undefined);
    await journal.flush().catch(() => undefined);
    if (kept === 'asked') log(`kept images ${ids || '(none)'} (--keep-on-failure): they are marked ONESWAP_STATE=FAILED; run the same command again to resume`, 'warn');
    else
      log(
        `kept images ${ids} with what was copied, marked ONESWAP_STATE=FAILED: the copy ran out of room; make room, then run the same command again to resume (it copies only what is missing), or remove them: oneimage delete ${ids.replaceAll(',', ' ')}`,
        'warn',
      );
  } else {
    if (journal.data.vmId !== undefined) {
      await ctx.one.vmAction('terminate-hard', journal.data.vmId).catch((e: unknown) => log(`could not remove VM ${journal.data.vmId}: ${describeError(e)}`, 'error'));
    }
    if (journal.data.templateId !== undefined) {
      await ctx.one.templateDelete(journal.data.templateId, false).catch((e: unknown) => log(`could not remove template ${journal.data.templateId}: ${describeError(e)}`, 'error'));
    }
    await removeImages(ctx.one, journal.data.disks.map((d) => d.imageId).reverse(), (m, level) => log(m, level));
    await removeAddressRanges(ctx.one, journal.data.addressRanges, (m) => log(m));
    await journal.remove();
  }
  ctx.emit({ type: 'phase', vm: label, phase: 'rollback', state: 'done', durationMs: Date.now() - t0 });
}
