// The import of a VM that arrives as files (OVA, OVF folder, bare VMDKs), as phases:
//   precheck → placeholders (OpenNebula) → copy → convert → build → cleanup
// The copy decodes each VMDK straight from where it lies (inside the tar) into its final file,
// checking the manifest digests in the same pass. The target is OpenNebula (images, template,
// VM: the same steps as a vCenter import) or a local directory (raw files and template texts).
// A disk is the unit of resume: one that did not finish is decoded again from its start (a
// digest cannot be carried across processes).

import { createHash } from 'node:crypto';
import { OneswapError, describeError } from '../errors/index.js';
import { decodeVmdk, type FileDisk, type FileVm } from '../input/index.js';
import { checkAdditions } from '../convert/index.js';
import {
  diskTarget,
  directoryLayout,
  finishDirectory,
  mapNics,
  markImage,
  prepareDirectory,
  removePartial,
  saveState,
  writingInto,
  forQemu,
  type DirectoryLayout,
  type DirectoryState,
  type DiskFileFormat,
  type ConvertedGuest,
} from '../output/index.js';
import { together } from '../copy/index.js';
import { PidLock } from './pid-lock.js';
import { convertImages, describeConversion, sourceMacsNetwork, vmConversionRequest } from './conversion.js';
import { Phases, build, convert, keptImages, networkCandidates, openTarget, placeholders, rollback, type DiskTarget, type MigrationOptions, type OneContext, type VmResult } from './steps.js';
import type { Journal } from './journal.js';
import type { EventSink } from './events.js';
import type { OneClient } from '../one/index.js';

export type FileTarget = { readonly kind: 'one'; readonly datastoreId: number } | DirectoryTarget;

/** A local directory; `compressed`: qcow2 files with compressed clusters. */
export interface DirectoryTarget {
  readonly kind: 'dir';
  readonly dir: string;
  readonly format: DiskFileFormat;
  readonly compressed?: boolean;
}

export type FileImportOptions = MigrationOptions & { readonly target: FileTarget };

export interface FileImportContext {
  readonly emit: EventSink;
  readonly signal: AbortSignal;
  /** Required for an OpenNebula target. */
  readonly one?: OneClient;
}

export async function fileImportVm(ctx: FileImportContext, vm: FileVm, opts: FileImportOptions): Promise<VmResult> {
  const log = (message: string, level: 'info' | 'warn' = 'info'): void => ctx.emit({ type: 'log', level, vm: vm.description.name, message });
  log(`source: ${vm.summary}`);
  for (const w of vm.warnings) log(w, 'warn');
  if (opts.target.kind === 'dir') return importIntoDirectory(ctx, vm, opts, opts.target);
  if (!ctx.one) throw new OneswapError('internal', 'an OpenNebula target needs a connection');
  return importIntoOne({ one: ctx.one, emit: ctx.emit, signal: ctx.signal }, vm, { ...opts, datastoreId: opts.target.datastoreId });
}

async function importIntoOne(ctx: OneContext, vm: FileVm, opts: FileImportOptions & { readonly datastoreId: number }): Promise<VmResult> {
  const started = Date.now();
  const label = vm.description.name;
  const phases = new Phases(ctx, label);
  const log = phases.log;
  let journal: Journal | undefined;
  try {
    const pre = await phases.run('precheck', async () => {
      if (opts.convert) await checkAdditions(opts.additions);
      const nics = mapNics(label, vm.description.nics, await networkCandidates(ctx.one), opts.networkMap);
      const target = await openTarget(ctx, vm.description, opts, log, label);
      return { nics, ...target };
    });
    journal = pre.journal;
    const targets = await phases.run('placeholders', () => placeholders(ctx, journal!, vm.description, vm.disks, pre.ds, opts), (t) => `images ${t.map((x) => x.imageId).join(', ')}`);

    await phases.run('copy', async () => {
      const pending = targets.filter((t) => !journal!.disk(t.disk.description.sourceKey)!.complete);
      if (pending.length === 0) return 'all disks already copied';
      for (const t of pending) await markImage(ctx.one, t.imageId, 'COPYING');
      const stats = await decodeDisks(ctx, vm, pending, async (t) => {
        journal!.disk(t.disk.description.sourceKey)!.complete = true;
        await journal!.flush();
        await markImage(ctx.one, t.imageId, 'COPIED');
      });
      return stats;
    }, (s) => s);

    let guest: ConvertedGuest | undefined;
    if (opts.convert) guest = await phases.run('convert', () => convert(ctx, journal!, vm.description, targets, pre.nics, opts, log), (g) => g.detail).then((g) => g.guest);
    else ctx.emit({ type: 'phase', vm: label, phase: 'convert', state: 'skipped', detail: '--no-convert' });

    const built = await phases.run('build', () => build(ctx, journal!, vm.description, targets, pre.nics, guest, opts, log), (b) => `template ${b.templateId}${b.vmId === undefined ? '' : `, VM ${b.vmId}`}`);
    await phases.run('cleanup', async () => {
      for (const t of targets) await markImage(ctx.one, t.imageId, 'DONE');
      await journal!.remove();
    });
    const imageIds = targets.map((t) => t.imageId);
    ctx.emit({ type: 'result', vm: label, ok: true, imageIds, templateId: built.templateId, vmId: built.vmId, durationMs: Date.now() - started });
    return { vm: label, ok: true, imageIds, ...built };
  } catch (err) {
    const error = ctx.signal.aborted ? (ctx.signal.reason ?? err) : err;
    const kept = keptImages(phases.failedIn, error, opts.keepOnFailure);
    const imageIds = kept ? (journal?.data.disks.map((d) => d.imageId) ?? []) : [];
    if (journal) await rollback(ctx, journal, undefined, kept, log, label);
    ctx.emit({ type: 'result', vm: label, ok: false, imageIds, error: describeError(error), durationMs: Date.now() - started });
    return { vm: label, ok: false, imageIds, error };
  } finally {
    await journal?.unlock();
  }
}

async function importIntoDirectory(ctx: FileImportContext, vm: FileVm, opts: FileImportOptions, dir: DirectoryTarget): Promise<VmResult> {
  const started = Date.now();
  const label = vm.description.name;
  const phases = new Phases(ctx, label);
  const log = phases.log;
  const layout = directoryLayout(dir.dir, vm.description, opts.namePrefix, dir.format, dir.compressed ?? false);
  const lock = new PidLock(layout.lockFile);
  let locked = false;
  let state: DirectoryState | undefined;
  try {
    state = await phases.run('precheck', async () => {
      if (opts.convert) await checkAdditions(opts.additions);
      const sourceBytes = vm.disks.reduce((s, d) => s + d.image.sourceBytes, 0);
      const prepared = await prepareDirectory(layout, vm.description, Math.min(sourceBytes, vm.description.disks.reduce((s, d) => s + d.capacityBytes, 0)));
      const holder = await lock.tryAcquire();
      if (holder !== undefined) throw new OneswapError('conflict', `another oneswap (pid ${holder}) is importing ${layout.name} into ${layout.dir} right now`);
      locked = true;
      if (prepared.resumed) log(`resuming an earlier run in ${layout.dir}: disks ${prepared.state.copied.join(', ') || 'none'} already copied${prepared.state.guest ? ', guest converted' : ''}`);
      return prepared.state;
    }, () => layout.dir);
    const s = state;
    const targets: DiskTarget<FileDisk>[] = [];
    for (const d of vm.disks) targets.push({ disk: d, imageId: d.description.index, target: await diskTarget(layout, d.description, !s.copied.includes(d.description.index)) });

    await phases.run('copy', async () => {
      const pending = targets.filter((t) => !s.copied.includes(t.disk.description.index));
      if (pending.length === 0) return 'all disks already copied';
      return decodeDisks(ctx, vm, pending, async (t) => {
        s.copied.push(t.disk.description.index);
        await saveState(layout, s);
      });
    }, (r) => r);

    let guest: ConvertedGuest | undefined = s.guest;
    if (!opts.convert) ctx.emit({ type: 'phase', vm: label, phase: 'convert', state: 'skipped', detail: '--no-convert' });
    else if (s.guest || s.noOs) ctx.emit({ type: 'phase', vm: label, phase: 'convert', state: 'skipped', detail: 'converted by an earlier run' });
    else {
      guest = await phases.run(
        'convert',
        async () => {
          const record = async (g: ConvertedGuest): Promise<void> => {
            s.guest = g;
            await saveState(layout, s);
          };
          const r = await forQemu(targets.map((t) => t.target), (qemu) =>
            convertImages(
              { emit: ctx.emit, signal: ctx.signal, record },
              {
                ...vmConversionRequest(vm.description, targets.map((t, k) => ({ id: t.disk.description.index, image: qemu[k]!, bus: t.disk.description.bus })), opts),
                // The template asks for the source MACs unless --no-keep-mac: the guest is bound to what it will get.
                network: sourceMacsNetwork(vm.description.nics, opts.keepMac),
                workKey: `dir-${createHash('sha256').update(layout.stateFile).digest('hex').slice(0, 16)}`,
              },
            ),
          );
          if (r.kind === 'converted' && r.notes.length > 0) {
            s.conversionNotes = [...r.notes];
            await saveState(layout, s);
          }
          if (r.kind === 'no-os') {
            log(`no operating system found on the disks of ${label}: a data-only VM, not converted (${r.reason})`, 'warn');
            s.noOs = true;
            await saveState(layout, s);
          }
          return { guest: r.kind === 'converted' ? r.guest : undefined, detail: describeConversion(r) };
        },
        (g) => g.detail,
      ).then((g) => g.guest);
    }

    const result = await phases.run(
      'build',
      () =>
        finishDirectory(layout, vm.description, guest, opts.networkMap, {
          source: vm.summary,
          notes: [...vm.warnings, ...(s.conversionNotes ?? [])],
          importedAt: new Date(),
          guestAgent: opts.convert && opts.additions.guestAgent === true,
          keepMac: opts.keepMac,
          noOs: s.noOs === true,
        }),
      (r) => `${r.diskFiles.length} disk files, ${r.templateFile}`,
    );
    ctx.emit({ type: 'result', vm: label, ok: true, imageIds: [], templateFile: result.templateFile, durationMs: Date.now() - started });
    return { vm: label, ok: true, imageIds: [], templateFile: result.templateFile };
  } catch (err) {
    const error = ctx.signal.aborted ? (ctx.signal.reason ?? err) : err;
    if (locked) await keepOrRemove(ctx, layout, vm, phases.failedIn === 'convert' || opts.keepOnFailure, log);
    ctx.emit({ type: 'result', vm: label, ok: false, imageIds: [], error: describeError(error), durationMs: Date.now() - started });
    return { vm: label, ok: false, imageIds: [], error };
  } finally {
    if (locked) await lock.release();
  }
}

/** After a failure: the partial files go, unless they are worth resuming (asked, or copied fully). */
async function keepOrRemove(ctx: FileImportContext, layout: DirectoryLayout, vm: FileVm, keep: boolean, log: (m: string, l?: 'warn') => void): Promise<void> {
  const t0 = Date.now();
  ctx.emit({ type: 'phase', vm: layout.name, phase: 'rollback', state: 'start' });
  if (keep) {
    log(`kept the unfinished files in ${layout.dir} (*.${layout.format}.part and the state file ${layout.stateFile}); run the same command again to resume`, 'warn');
  } else {
    await removePartial(layout, vm.description);
    log(`removed the unfinished disk files from ${layout.dir}`);
  }
  ctx.emit({ type: 'phase', vm: layout.name, phase: 'rollback', state: 'done', durationMs: Date.now() - t0 });
}

/**
 * Decodes the disks in parallel into their files, with progress events; a disk that fails stops
 * the others. Each target file must read as zeros: a resumed, unfinished one is emptied first.
 */
async function decodeDisks(
  ctx: { readonly emit: EventSink; readonly signal: AbortSignal },
  vm: FileVm,
  targets: readonly DiskTarget<FileDisk>[],
  onDiskDone: (t: DiskTarget<FileDisk>) => Promise<void>,
): Promise<string> {
  const label = vm.description.name;
  const stats = await together(
    targets.map((t) => async (signal: AbortSignal) => {
      const d = t.disk.description;
      const planned = t.disk.image.sourceBytes;
      const emit = (bytesDone: number, bytesWritten: number, state: 'copying' | 'done' | 'failed'): void =>
        ctx.emit({ type: 'disk', vm: label, disk: d.index, name: `disk${d.index}`, bytesDone, bytesPlanned: planned, bytesWritten, capacityBytes: d.capacityBytes, state });
      emit(0, 0, 'copying');
      try {
        await t.target.clear();
        const s = await writingInto(t.target, (target) =>
          decodeVmdk(t.disk.image, { target, digests: vm.digests, signal, onProgress: (p) => emit(p.bytesRead, p.bytesWritten, 'copying') }),
        );
        await onDiskDone(t);
        emit(s.bytesRead, s.bytesWritten, 'done');
        return s;
      } catch (err) {
        emit(0, 0, 'failed');
        throw err;
      }
    }),
    ctx.signal,
  );
  const read = stats.reduce((s, x) => s + x.bytesRead, 0);
  const written = stats.reduce((s, x) => s + x.bytesWritten, 0);
  const checked = vm.digests.size > 0 ? ', manifest digests checked' : '';
  return `${stats.length} disk${stats.length === 1 ? '' : 's'} decoded: ${read} bytes read, ${written} bytes written${checked}`;
}

