// The cold migration of one powered-off vCenter VM into OpenNebula, as phases:
//   precheck → (shutdown) → placeholders → copy → convert → build → cleanup
// Every step that creates something records it in the journal first, so a failure rolls back
// exactly what exists (or keeps it with --keep-on-failure) and a re-run resumes.

import { describeError } from '../errors/index.js';
import type { VmSummary } from '../vsphere/index.js';
import type { VmDescription } from '../input/index.js';
import { markImage, type ConvertedGuest } from '../output/index.js';
import type { Journal } from './journal.js';
import type { Phase } from './events.js';
import { recordStepSample } from './step-times.js';
import { Phases, build, convert, copyIntoImages, keptImages, placeholders, planPoweredOffReads, precheck, rollback, type DiskTarget, type ImportContext, type ImportOptions, type StepLog, type VmResult } from './steps.js';

export async function coldImportVm(ctx: ImportContext, vmName: string, opts: ImportOptions): Promise<VmResult> {
  const started = Date.now();
  const label = vmName;
  const phases = new Phases(ctx, label);
  const log = phases.log;

  let journal: Journal | undefined;
  let summary: VmSummary | undefined;
  try {
    const pre = await phases.run('precheck', () => precheck(ctx, vmName, opts, log));
    summary = pre.summary;
    journal = pre.journal;
    const { description, disks, ds, nics } = pre;

    if (summary.powerState === 'poweredOn') {
      await phases.run('shutdown', async () => {
        journal!.data.shutDownByUs = true;
        await journal!.flush();
        await ctx.vsphere.shutdownGuest(summary!.ref, opts.shutdownTimeoutMs, ctx.signal);
      });
    }

    const targets = await phases.run('placeholders', () => placeholders(ctx, journal!, description, disks, ds, opts), (t) => `images ${t.map((x) => x.imageId).join(', ')}`);

    await phases.run('copy', () => copyDisks(ctx, journal!, summary!, pre.dcPath, description, targets, opts, log), (s) => s);

    let guest: ConvertedGuest | undefined;
    if (opts.convert) {
      guest = await phases.run('convert', () => convert(ctx, journal!, description, targets, nics, opts, log), (g) => g.detail).then((g) => g.guest);
    } else {
      ctx.emit({ type: 'phase', vm: label, phase: 'convert', state: 'skipped', detail: '--no-convert: the template keeps the device models the guest has drivers for (SATA disks, source NIC models)' });
    }

    const built = await phases.run('build', () => build(ctx, journal!, description, targets, nics, guest, opts, log), (b) => `template ${b.templateId}${b.vmId === undefined ? '' : `, VM ${b.vmId}`}`);

    await phases.run('cleanup', async () => {
      for (const t of targets) await markImage(ctx.one, t.imageId, 'DONE');
      await journal!.remove();
    });
    const took = (p: Phase): number => phases.took.get(p) ?? 0;
    await recordStepSample(opts.stateDir, { prepMs: took('precheck') + took('placeholders'), buildMs: took('build') + took('cleanup'), at: new Date().toISOString() }).catch(() => undefined);
    const result: VmResult = { vm: label, ok: true, imageIds: targets.map((t) => t.imageId), ...built };
    ctx.emit({ type: 'result', vm: label, ok: true, imageIds: result.imageIds, templateId: built.templateId, vmId: built.vmId, durationMs: Date.now() - started, host: summary.host });
    return result;
  } catch (err) {
    const error = ctx.signal.aborted ? (ctx.signal.reason ?? err) : err;
    // A failed conversion never costs the copy: the images hold exactly the copied disks.
    const kept = keptImages(phases.failedIn, error, opts.keepOnFailure);
    const imageIds = kept ? (journal?.data.disks.map((d) => d.imageId) ?? []) : [];
    if (journal) await rollback(ctx, journal, summary, kept, log);
    ctx.emit({ type: 'result', vm: label, ok: false, imageIds, error: describeError(error), durationMs: Date.now() - started, host: summary?.host });
    return { vm: label, ok: false, imageIds, error };
  } finally {
    await journal?.unlock();
  }
}

/** Copies the allocated areas of every disk not finished yet (CBT "*" when tracking is on). */
async function copyDisks(ctx: ImportContext, journal: Journal, summary: VmSummary, dcPath: string, vm: VmDescription, targets: readonly DiskTarget[], opts: ImportOptions, log: StepLog): Promise<string> {
  const pending = targets.filter((t) => !journal.disk(t.disk.description.sourceKey)!.complete);
  if (pending.length === 0) return 'all disks already copied';
  // A resumed image may carry FAILED from the run that kept it.
  for (const t of pending) if (journal.disk(t.disk.description.sourceKey)!.done.length > 0) await markImage(ctx.one, t.imageId, 'COPYING');
  const { plans, readings } = await planPoweredOffReads(ctx, summary, dcPath, pending.map((t) => t.disk), opts.readers, log);
  const allocation = new Set(plans.map((p) => p.how));
  try {
    // A fresh mkfs placeholder is all holes, and areas of a resumed run that are not in `done`
    // were never written by us.
    const copies = plans.map((p, k) => ({ target: pending[k]!, reading: p.reading, planned: p.areas, targetIsZero: true }));
    const stats = await copyIntoImages(ctx, journal, { name: vm.name, host: summary.host }, copies, opts.streams, async (c) => {
      journal.disk(c.target.disk.description.sourceKey)!.complete = true;
      await journal.flush();
      await markImage(ctx.one, c.target.imageId, 'COPIED');
    });
    await readings.finish(true);
    const read = stats.reduce((s, x) => s + x.bytesRead, 0);
    const written = stats.reduce((s, x) => s + x.bytesWritten, 0);
    return `${[...allocation].join(', ')}: ${read} bytes read, ${written} bytes written`;
  } catch (err) {
    await readings.finish(false, describeError(err));
    throw err;
  }
}
