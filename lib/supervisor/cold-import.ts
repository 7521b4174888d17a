// The cold migration of one powered-off vCenter VM into OpenNebula, as phases:
//   precheck → (shutdown) → placeholders → copy → convert → build → cleanup
// Every step that creates something records it in the journal first, so a failure rolls back
// exactly what exists (or keeps it with --keep-on-failure) and a re-run resumes.

import { OneswapError, describeError } from '../errors/index.js';
import type { VSphereClient, VmSummary } from '../vsphere/index.js';
import type { OneClient } from '../one/index.js';
import {
  describeVcenterVm,
  checkCopyableDisks,
  openVcenterDisks,
  allocatedAreas,
  isOwnSnapshot,
  vmIdentity,
  type VcenterDisk,
  type VmDescription,
} from '../input/index.js';
import { copyExtents, together } from '../copy/index.js';
import { checkAdditions, type GuestAdditions } from '../convert/index.js';
import { subtractExtents, normalizeExtents, totalLength } from '../extents/index.js';
import {
  allocatePlaceholder,
  checkImageDatastore,
  checkNamesFree,
  imageName,
  markImage,
  convertedGuestOf,
  placeholderFile,
  removeImages,
  templateName,
  mapNics,
  keepMacs,
  removeAddressRanges,
  buildVmTemplate,
  type ImageDatastore,
  type NicMapping,
  type ConvertedGuest,
} from '../output/index.js';
import { Journal } from './journal.js';
import { convertImages, describeConversion } from './conversion.js';
import type { EventSink, Phase } from './events.js';

export interface ColdImportOptions {
  readonly datacenter?: string;
  readonly datastoreId: number;
  /** Ask the guest to shut down when the VM runs, and wait for it. */
  readonly shutdown: boolean;
  readonly shutdownTimeoutMs: number;
  readonly convert: boolean;
  readonly networkMap: ReadonlyMap<string, string>;
  readonly keepMac: boolean;
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

export interface ColdImportContext {
  readonly vsphere: VSphereClient;
  readonly vcenterHost: string;
  readonly one: OneClient;
  readonly emit: EventSink;
  readonly signal: AbortSignal;
}

export interface VmResult {
  readonly vm: string;
  readonly ok: boolean;
  readonly imageIds: number[];
  readonly templateId?: number;
  readonly vmId?: number;
  readonly error?: unknown;
}

export async function coldImportVm(ctx: ColdImportContext, vmName: string, opts: ColdImportOptions): Promise<VmResult> {
  const started = Date.now();
  const label = vmName;
  const log = (message: string, level: 'info' | 'warn' | 'error' = 'info'): void => ctx.emit({ type: 'log', level, vm: label, message });
  let failedIn: Phase | undefined;
  const phase = async <T>(name: Phase, fn: () => Promise<T>, detail?: (r: T) => string | undefined): Promise<T> => {
    ctx.signal.throwIfAborted();
    const t0 = Date.now();
    ctx.emit({ type: 'phase', vm: label, phase: name, state: 'start' });
    try {
      const r = await fn();
      ctx.emit({ type: 'phase', vm: label, phase: name, state: 'done', durationMs: Date.now() - t0, detail: detail?.(r) });
      return r;
    } catch (err) {
      failedIn = name;
      ctx.emit({ type: 'phase', vm: label, phase: name, state: 'failed', durationMs: Date.now() - t0, detail: describeError(err) });
      throw err;
    }
  };

  let journal: Journal | undefined;
  let summary: VmSummary | undefined;
  try {
    const pre = await phase('precheck', () => precheck(ctx, vmName, opts, log));
    summary = pre.summary;
    journal = pre.journal;
    const { description, disks, ds, nics } = pre;

    if (summary.powerState === 'poweredOn') {
      await phase('shutdown', async () => {
        journal!.data.shutDownByUs = true;
        await journal!.flush();
        await ctx.vsphere.shutdownGuest(summary!.ref, opts.shutdownTimeoutMs, ctx.signal);
      });
    }

    const targets = await phase('placeholders', () => placeholders(ctx, journal!, description, disks, ds, opts), (t) => `images ${t.map((x) => x.imageId).join(', ')}`);

    await phase('copy', () => copyDisks(ctx, journal!, summary!, description, targets, opts, log), (s) => s);

    let guest: ConvertedGuest | undefined;
    if (opts.convert) {
      guest = await phase('convert', () => convert(ctx, description, targets, opts, log), (g) => g.detail).then((g) => g.guest);
    } else {
      ctx.emit({ type: 'phase', vm: label, phase: 'convert', state: 'skipped', detail: '--no-convert: the template keeps the device models the guest has drivers for (SATA disks, source NIC models)' });
    }

    const built = await phase('build', () => build(ctx, journal!, description, targets, nics, guest, opts, log), (b) => `template ${b.templateId}${b.vmId === undefined ? '' : `, VM ${b.vmId}`}`);

    await phase('cleanup', async () => {
      for (const t of targets) await markImage(ctx.one, t.imageId, 'DONE');
      await journal!.remove();
    });
    const result: VmResult = { vm: label, ok: true, imageIds: targets.map((t) => t.imageId), ...built };
    ctx.emit({ type: 'result', vm: label, ok: true, imageIds: result.imageIds, templateId: built.templateId, vmId: built.vmId, durationMs: Date.now() - started });
    return result;
  } catch (err) {
    const error = ctx.signal.aborted ? (ctx.signal.reason ?? err) : err;
    const imageIds = journal?.data.disks.map((d) => d.imageId) ?? [];
    // A failed conversion never costs the copy: the images hold exactly the copied disks.
    const keepImages = opts.keepOnFailure || failedIn === 'convert';
    if (journal) await rollback(ctx, journal, summary, { ...opts, keepOnFailure: keepImages, keptAfterConvert: failedIn === 'convert' }, log);
    ctx.emit({ type: 'result', vm: label, ok: false, imageIds: keepImages ? imageIds : [], error: describeError(error), durationMs: Date.now() - started });
    return { vm: label, ok: false, imageIds: keepImages ? imageIds : [], error };
  }
}

interface Prechecked {
  readonly summary: VmSummary;
  readonly description: VmDescription;
  readonly disks: VcenterDisk[];
  readonly ds: ImageDatastore;
  readonly nics: NicMapping[];
  readonly journal: Journal;
}

async function precheck(ctx: ColdImportContext, vmName: string, opts: ColdImportOptions, log: (m: string, l?: 'warn') => void): Promise<Prechecked> {
  if (opts.convert) await checkAdditions(opts.additions);
  const summary = await ctx.vsphere.findVm(vmName, { datacenter: opts.datacenter });
  checkCopyableDisks(summary);
  if (summary.disks.length === 0) throw new OneswapError('usage', `VM ${summary.name} has no disks to migrate`);
  if (summary.powerState === 'suspended')
    throw new OneswapError('conflict', `VM ${summary.name} is suspended`, { hint: 'power it on and shut it down from the guest, or power it off, then run again' });
  if (summary.powerState === 'poweredOn' && !opts.shutdown)
    throw new OneswapError('conflict', `VM ${summary.name} is powered on; a cold import needs it off`, {
      hint: 'shut it down first, or pass --shutdown to have oneswap ask the guest to shut down',
    });
  if (summary.hasSnapshots) {
    const snaps = await ctx.vsphere.snapshots(summary.ref);
    const foreign = snaps.filter((s) => !isOwnSnapshot(s));
    if (foreign.length > 0)
      throw new OneswapError('conflict', `VM ${summary.name} has snapshots (${foreign.map((s) => `"${s.name}"`).join(', ')}); its disks are snapshot deltas`, {
        hint: 'delete or consolidate the snapshots in vCenter first (oneswap never touches snapshots it did not create)',
      });
    for (const s of snaps) {
      log(`removing oneswap's leftover snapshot "${s.name}"`, 'warn');
      await ctx.vsphere.removeSnapshot(s.ref);
    }
  }

  const description = describeVcenterVm(ctx.vcenterHost, summary);
  const nics = mapNics(summary.name, description.nics, await networkCandidates(ctx.one), opts.networkMap);
  const disks = await openVcenterDisks(ctx.vsphere, summary, description);

  const { journal, resumed } = await Journal.open(opts.stateDir, vmIdentity(description), opts.datastoreId);
  const ownIds = new Set<number>();
  if (resumed) {
    for (const d of journal.data.disks) {
      try {
        const img = await ctx.one.image(d.imageId);
        if (img.template.get('ONESWAP_SOURCE_DISK') === undefined) throw new Error('not ours');
        ownIds.add(d.imageId);
      } catch {
        log(`image ${d.imageId} of an earlier run is gone; its disk is copied again`, 'warn');
        journal.data.disks = journal.data.disks.filter((x) => x !== d);
      }
    }
    if (journal.data.disks.length > 0) log(`resuming an earlier run: images ${[...ownIds].join(', ')}`);
  }
  const pendingBytes = disks.filter((d) => !journal.disk(d.description.sourceKey)).reduce((s, d) => s + d.description.capacityBytes, 0);
  const ds = await checkImageDatastore(ctx.one, opts.datastoreId, pendingBytes);
  await checkNamesFree(
    ctx.one,
    disks.filter((d) => !journal.disk(d.description.sourceKey)).map((d) => imageName(description, d.description, opts.namePrefix)),
    templateName(description, opts.namePrefix),
    ownIds,
  );
  return { summary, description, disks, ds, nics, journal };
}

async function networkCandidates(one: OneClient) {
  return (await one.vnets()).map((n) => ({ id: n.id, name: n.name, vcenterMatch: n.template.get('VCENTER_NETWORK_MATCH') }));
}

interface DiskTarget {
  readonly disk: VcenterDisk;
  readonly imageId: number;
  readonly path: string;
}

async function placeholders(
  ctx: ColdImportContext,
  journal: Journal,
  vm: VmDescription,
  disks: readonly VcenterDisk[],
  ds: ImageDatastore,
  opts: ColdImportOptions,
): Promise<DiskTarget[]> {
  // Allocate all first (the driver creates the files in parallel), then wait for each.
  for (const d of disks) {
    if (journal.disk(d.description.sourceKey)) continue;
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
  const out: DiskTarget[] = [];
  for (const d of disks) {
    const j = journal.disk(d.description.sourceKey)!;
    const path = await placeholderFile(ctx.one, j.imageId, d.description.capacityBytes, ctx.signal);
    if (j.imagePath !== path) {
      Object.assign(j, { imagePath: path });
      await journal.flush();
    }
    out.push({ disk: d, imageId: j.imageId, path });
  }
  return out;
}

async function copyDisks(
  ctx: ColdImportContext,
  journal: Journal,
  summary: VmSummary,
  vm: VmDescription,
  targets: readonly DiskTarget[],
  opts: ColdImportOptions,
  log: (m: string) => void,
): Promise<string> {
  const pending = targets.filter((t) => !journal.disk(t.disk.description.sourceKey)!.complete);
  if (pending.length === 0) return 'all disks already copied';
  const areas = await allocatedAreas(ctx.vsphere, summary, pending.map((t) => t.disk), log);
  // A disk that fails stops the others, and the failure is reported once all of them have
  // stopped: the rollback then removes placeholders nothing writes to any more.
  const stats = await together(
    pending.map((t) => async (signal: AbortSignal) => {
      const jd = journal.disk(t.disk.description.sourceKey)!;
      const cap = t.disk.description.capacityBytes;
      const planned = normalizeExtents(areas.extents.get(t.disk.device.key) ?? [], cap);
      const todo = subtractExtents(planned, jd.done);
      const name = `disk${t.disk.description.index}`;
      const base = totalLength(planned) - totalLength(todo);
      const emit = (bytesDone: number, bytesWritten: number, state: 'copying' | 'done' | 'failed'): void =>
        ctx.emit({ type: 'disk', vm: vm.name, disk: t.disk.description.index, name, bytesDone: base + bytesDone, bytesPlanned: totalLength(planned), bytesWritten, capacityBytes: cap, state });
      emit(0, 0, 'copying');
      try {
        // A resumed image may carry FAILED from the run that kept it.
        if (jd.done.length > 0) await markImage(ctx.one, t.imageId, 'COPYING');
        const s = await copyExtents({
          source: t.disk.source,
          target: t.path,
          capacity: cap,
          extents: todo,
          // A fresh mkfs placeholder is all holes, and areas of a resumed run that are not in
          // `done` were never written by us.
          targetIsZero: true,
          streams: opts.streams,
          signal,
          onProgress: (p) => emit(p.bytesDone, p.bytesWritten, 'copying'),
          onWritten: (r) => journal.rangeDone(t.disk.description.sourceKey, r),
        });
        jd.complete = true;
        await journal.flush();
        emit(s.bytesPlanned, s.bytesWritten, 'done');
        await markImage(ctx.one, t.imageId, 'COPIED');
        return s;
      } catch (err) {
        emit(0, 0, 'failed');
        await journal.flush();
        throw err;
      }
    }),
    ctx.signal,
  );
  const read = stats.reduce((s, x) => s + x.bytesRead, 0);
  const written = stats.reduce((s, x) => s + x.bytesWritten, 0);
  return `${areas.method === 'cbt' ? 'CBT allocated areas' : 'whole disks'}: ${read} bytes read, ${written} bytes written`;
}

/** The convert phase: skipped for images an earlier run (or `oneswap convert`) already converted. */
async function convert(
  ctx: ColdImportContext,
  vm: VmDescription,
  targets: readonly DiskTarget[],
  opts: ColdImportOptions,
  log: (m: string, l?: 'warn') => void,
): Promise<{ guest: ConvertedGuest | undefined; detail: string }> {
  const recorded = convertedGuestOf(await ctx.one.image(targets[0]!.imageId));
  if (recorded) {
    log(`images ${targets.map((t) => t.imageId).join(', ')} were converted by an earlier run; not converting again`);
    return { guest: recorded, detail: `already converted: ${recorded.productName}` };
  }
  const r = await convertImages(ctx, {
    vm: vm.name,
    images: targets.map((t) => ({ id: t.imageId, path: t.path, bus: t.disk.description.bus })),
    firmware: vm.firmware,
    memoryMiB: vm.memoryMiB,
    cpus: vm.cpus,
    nics: vm.nics.map((n) => ({ mac: n.mac, network: n.network, adapter: n.adapter })),
    stateDir: opts.stateDir,
    logDir: opts.logDir,
    runId: opts.runId,
    additions: opts.additions,
  });
  if (r.kind === 'no-os') log(`no operating system found on the disks of ${vm.name}: a data-only VM, not converted (${r.reason})`, 'warn');
  return { guest: r.kind === 'converted' ? r.guest : undefined, detail: describeConversion(r) };
}

async function build(
  ctx: ColdImportContext,
  journal: Journal,
  vm: VmDescription,
  targets: readonly DiskTarget[],
  nics: readonly NicMapping[],
  guest: ConvertedGuest | undefined,
  opts: ColdImportOptions,
  log: (m: string, l?: 'warn') => void,
): Promise<{ templateId: number; vmId?: number }> {
  const placedNics = await keepMacs(ctx.one, nics, { keep: opts.keepMac, journal: journal.data, log });
  await journal.flush();
  const version = await ctx.one.version();
  const template = buildVmTemplate({
    name: templateName(vm, opts.namePrefix),
    vm,
    disks: targets.map((t) => ({ disk: t.disk.description, imageId: t.imageId })),
    nics: placedNics,
    guest,
    guestAgent: opts.convert && opts.additions.guestAgent === true,
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

async function rollback(
  ctx: ColdImportContext,
  journal: Journal,
  summary: VmSummary | undefined,
  opts: ColdImportOptions & { keptAfterConvert: boolean },
  log: (m: string, l?: 'warn' | 'error') => void,
): Promise<void> {
  const t0 = Date.now();
  ctx.emit({ type: 'phase', vm: summary?.name ?? '?', phase: 'rollback', state: 'start' });
  // Source first: the VM must run again whatever happens on the OpenNebula side.
  if (journal.data.shutDownByUs && summary && journal.data.vmId === undefined) {
    try {
      await ctx.vsphere.powerOn(summary.ref);
      journal.data.shutDownByUs = false;
      log(`powered ${summary.name} on again in vCenter`);
    } catch (err) {
      log(`could not power ${summary.name} on again: ${describeError(err)}; power it on in vCenter`, 'error');
    }
  }
  const ids = journal.data.disks.map((d) => d.imageId).join(',');
  if (opts.keptAfterConvert) {
    // The images are marked COPIED already and hold the copy byte for byte.
    await journal.flush().catch(() => undefined);
    log(`kept images ${ids} with the copied disks (ONESWAP_STATE=COPIED); after fixing the cause, run the same import again (it resumes at the conversion) or: oneswap convert --image ${ids}`, 'warn');
  } else if (opts.keepOnFailure) {
    for (const d of journal.data.disks) await markImage(ctx.one, d.imageId, 'FAILED').catch(() => undefined);
    await journal.flush().catch(() => undefined);
    log(`kept images ${ids || '(none)'} (--keep-on-failure): they are marked ONESWAP_STATE=FAILED; run the same command again to resume`, 'warn');
  } else {
    if (journal.data.vmId !== undefined) {
      await ctx.one.vmAction('terminate-hard', journal.data.vmId).catch((e: unknown) => log(`could not remove VM ${journal.data.vmId}: ${describeError(e)}`, 'error'));
    }
    if (journal.data.templateId !== undefined) {
      await ctx.one.templateDelete(journal.data.templateId, false).catch((e: unknown) => log(`could not remove template ${journal.data.templateId}: ${describeError(e)}`, 'error'));
    }
    await removeImages(ctx.one, journal.data.disks.map((d) => d.imageId).reverse(), (m) => log(m));
    await removeAddressRanges(ctx.one, journal.data.addressRanges, (m) => log(m));
    await journal.remove();
  }
  ctx.emit({ type: 'phase', vm: summary?.name ?? '?', phase: 'rollback', state: 'done', durationMs: Date.now() - t0 });
}
