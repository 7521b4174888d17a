// The convert phase on OpenNebula images, shared by `oneswap import` and `oneswap convert`:
// conversion over overlays (lib/convert), then the commit into the image files, then the guest
// facts recorded on the images. A commit marker in the work directory makes a crash during the
// commit safe: the next run finishes that commit before anything else touches the images. Each
// conversion is announced with the time an earlier one took (conversion-times.ts) and timed for
// the next one, and virt-v2v's warnings are logged with what they mean for the guest.

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { convertGuest, commitConversion, discardConversion, type ConversionRequest, type ExplainedWarning, type GuestAdditions, type GuestFacts, type Overlay, type OverlayUsage, type QemuImage } from '../convert/index.js';
import type { DomainNic, GuestNetwork, NetworkRequest } from '../convert/index.js';
import { vmIdentity, type DiskBus, type Firmware, type NicDescription, type VmDescription } from '../input/index.js';
import type { OneClient } from '../one/index.js';
import { recordConversion, recordNoOperatingSystem, type ConvertedGuest } from '../output/index.js';
import type { EventSink } from './events.js';
import { Slots, type RunBudgets } from './budgets.js';
import { expectedConversion, readConversionTimes, recordConversionTime, type ConversionSubject } from './conversion-times.js';

export interface ImageToConvert {
  /** The OpenNebula image id, or the disk index for a directory target. */
  readonly id: number;
  readonly image: QemuImage;
  readonly bus: DiskBus;
}

export interface ConvertImagesRequest {
  /** Label of the VM in events and log names. */
  readonly vm: string;
  /** In guest (boot) order. */
  readonly images: readonly ImageToConvert[];
  readonly firmware: Firmware;
  readonly memoryMiB: number;
  readonly cpus: number;
  readonly nics: readonly DomainNic[];
  /** The guest's network configuration made to follow the NICs; see lib/convert/network-step.ts. */
  readonly network: NetworkRequest;
  readonly stateDir: string;
  readonly logDir: string;
  readonly runId: string;
  readonly additions?: GuestAdditions;
  /** Names the work directory; default `images-<ids>` (OpenNebula images are unique by id). */
  readonly workKey?: string;
  /** The VM's identity (vmIdentity): its earlier conversions give the time to expect. */
  readonly identity?: string;
  /** The OS the source declares (vSphere guestId): another guest's conversion of it is the next best guess. */
  readonly osKey?: string;
  /** A warm migration's rehearsal of this conversion, from the journal. */
  readonly rehearsed?: { readonly ms: number; readonly at: string };
}

/**
 * Where the guest facts go once the conversion is committed: onto the OpenNebula images, or to
 * whatever `record` keeps them in (a directory target's state file).
 */
export type ConvertImagesContext = {
  readonly emit: EventSink;
  readonly signal: AbortSignal;
  /** A plan run's budget of conversions at once; else one at a time in this process. */
  readonly budgets?: Pick<RunBudgets, 'converting'>;
} & ({ readonly one: OneClient } | { readonly record: (guest: ConvertedGuest) => Promise<void> });

export type ImagesConversion =
  | {
      readonly kind: 'converted';
      readonly guest: ConvertedGuest;
      readonly usage: OverlayUsage;
      readonly logFile: string;
      readonly resumedCommit: boolean;
      /** virt-v2v's warnings explained for this guest, one line each (a directory summary's notes). */
      readonly notes: readonly string[];
    }
  | { readonly kind: 'no-os'; readonly reason: string; readonly logFile: string };

/** Where a conversion keeps its work and logs, and what it adds to the guest. */
export interface ConversionRun {
  readonly stateDir: string;
  readonly logDir: string;
  readonly runId: string;
  readonly additions?: GuestAdditions;
}

/** The conversion of a described VM's images: name, firmware, size and NICs from the description. */
export function vmConversionRequest(vm: VmDescription, images: readonly ImageToConvert[], run: ConversionRun): ConvertImagesRequest {
  return {
    vm: vm.name,
    images,
    firmware: vm.firmware,
    memoryMiB: vm.memoryMiB,
    cpus: vm.cpus,
    nics: vm.nics.map((n) => ({ mac: n.mac, network: n.network, adapter: n.adapter })),
    network: sourceMacsNetwork(vm.nics),
    stateDir: run.stateDir,
    logDir: run.logDir,
    runId: run.runId,
    additions: run.additions,
    identity: vmIdentity(vm),
    ...(vm.guestId ? { osKey: vm.guestId } : {}),
  };
}

/**
 * The network step when the NICs keep the source's MACs on KVM (a rehearsal, a directory
 * target; an OpenNebula import replaces `assign` with what OpenNebula grants). Without them
 * (a directory import with --no-keep-mac) OpenNebula will pick the MACs: none is known now.
 */
export function sourceMacsNetwork(nics: readonly NicDescription[] | undefined, keepMac = true): NetworkRequest {
  return {
    nics: nics?.map((n) => ({ index: n.index, label: n.label, sourceMac: n.mac, pciSlot: n.pciSlot })),
    assign: async () => new Map((nics ?? []).map((n) => [n.index, keepMac ? n.mac || undefined : undefined])),
  };
}

/** The commit marker: written before the first overlay is committed, removed after the last. */
interface CommitMarker {
  readonly version: 1;
  readonly imageIds: number[];
  readonly overlays: Overlay[];
  readonly guest: ConvertedGuest;
  readonly usage: OverlayUsage;
}

/** Work directory of a conversion: keyed by the images, so import and convert share it. */
export function conversionWorkDir(stateDir: string, imageIds: readonly number[], workKey = `images-${imageIds.join('-')}`): string {
  return join(stateDir, 'convert', workKey);
}

function conversionLogFile(logDir: string, runId: string, vm: string): string {
  return join(logDir, `${runId}-${vm.replace(/[^A-Za-z0-9._-]+/g, '_')}-convert.log`);
}

/**
 * Conversions of one process run one at a time unless a plan's budget says otherwise: a libguestfs
 * appliance takes about 2 GB, and without KVM one conversion already keeps both cores of a small
 * frontend busy. Copies of other VMs go on meanwhile.
 */
const oneAtATime = new Slots(1);

function queued<T>(ctx: ConvertImagesContext, fn: () => Promise<T>): Promise<T> {
  return (ctx.budgets?.converting ?? oneAtATime).with(fn, ctx.signal);
}

export function convertImages(ctx: ConvertImagesContext, req: ConvertImagesRequest): Promise<ImagesConversion> {
  return queued(ctx, () => convertImagesNow(ctx, req));
}

export type Rehearsal =
  | { readonly kind: 'converted'; readonly guest: ConvertedGuest; readonly logFile: string }
  | { readonly kind: 'no-os'; readonly reason: string; readonly logFile: string };

/**
 * The whole conversion on throw-away overlays: a guest that will not convert is found while the
 * source still runs, and the images are left exactly as they are. Throws what a real conversion
 * would throw.
 */
export function rehearseConversion(ctx: ConvertImagesContext, req: ConvertImagesRequest): Promise<Rehearsal> {
  return queued(ctx, async () => {
    ctx.signal.throwIfAborted();
    const ids = req.images.map((i) => i.id);
    const workDir = join(req.stateDir, 'convert', `rehearse-${req.workKey ?? `images-${ids.join('-')}`}`);
    await rm(workDir, { recursive: true, force: true });
    await mkdir(req.logDir, { recursive: true, mode: 0o700 });
    const logFile = conversionLogFile(req.logDir, req.runId, `${req.vm}-rehearsal`);
    ctx.emit({ type: 'log', level: 'info', vm: req.vm, message: `rehearsing the conversion on throw-away overlays (full log: ${logFile})` });
    try {
      return await announced(ctx, req, true, async (step) => {
        const result = await convertGuest(conversionOf(ctx, req, workDir, logFile, step));
        if (result.kind === 'no-os') return { kind: 'no-os', reason: result.reason, logFile };
        logWarnings(ctx, req, result.warnings);
        await discardConversion(result.overlays);
        return { kind: 'converted', guest: convertedGuest(result.facts, result.network), logFile };
      });
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  });
}

/**
 * Runs a conversion between a start and an end event (the displays' live line and the log's
 * durations), with the time an earlier one took; a guest converted records its own time.
 */
async function announced<T extends { readonly kind: 'converted' | 'no-os'; readonly guest?: ConvertedGuest }>(
  ctx: ConvertImagesContext,
  req: ConvertImagesRequest,
  rehearsal: boolean,
  body: (step: (text: string) => void) => Promise<T>,
): Promise<T> {
  const who: ConversionSubject = { identity: req.identity, ...(req.osKey ? { osKey: req.osKey } : {}) };
  const expected = expectedConversion(await readConversionTimes(req.stateDir), who, req.rehearsed);
  const flag = rehearsal ? { rehearsal: true } : {};
  const t0 = Date.now();
  const steps: { step: string; ms: number }[] = [];
  let current: { step: string; at: number } | undefined;
  const close = (now: number): void => {
    if (current) steps.push({ step: current.step, ms: now - current.at });
    current = undefined;
  };
  ctx.emit({ type: 'conversion', vm: req.vm, state: 'start', ...flag, ...(expected ? { expected } : {}) });
  let ok = false;
  let endedAt: number | undefined;
  try {
    const r = await body((text) => {
      const now = Date.now();
      close(now);
      current = { step: text, at: now };
      ctx.emit({ type: 'conversion', vm: req.vm, state: 'step', step: text, ...flag });
    });
    ok = true;
    endedAt = Date.now();
    if (r.kind === 'converted' && r.guest) {
      const t = { ms: endedAt - t0, at: new Date(endedAt).toISOString(), os: r.guest.productName || r.guest.distro, ...flag };
      // Only the next expectation depends on it: an unwritable state dir must not fail a conversion.
      await recordConversionTime(req.stateDir, who, t).catch((err: Error) => ctx.emit({ type: 'log', level: 'warn', vm: req.vm, message: `could not record the conversion time: ${err.message}` }));
    }
    return r;
  } finally {
    const now = endedAt ?? Date.now();
    close(now);
    ctx.emit({ type: 'conversion', vm: req.vm, state: 'end', ok, durationMs: now - t0, steps, ...flag, ...(expected ? { expected } : {}) });
  }
}

/** Each explained warning once, as a warning only where the guest needs something done. */
function logWarnings(ctx: ConvertImagesContext, req: ConvertImagesRequest, warnings: readonly ExplainedWarning[]): void {
  for (const w of warnings) ctx.emit({ type: 'log', level: w.harmless ? 'info' : 'warn', vm: req.vm, message: `convert: ${w.text}` });
}

async function convertImagesNow(ctx: ConvertImagesContext, req: ConvertImagesRequest): Promise<ImagesConversion> {
  ctx.signal.throwIfAborted();
  const ids = req.images.map((i) => i.id);
  const workDir = conversionWorkDir(req.stateDir, ids, req.workKey);
  const markerFile = join(workDir, 'commit.json');
  const log = (message: string, level: 'info' | 'warn' = 'info'): void => ctx.emit({ type: 'log', level, vm: req.vm, message });

  // What the commit marker says, carried out; the same whether this run or an earlier one wrote it.
  const commit = async (marker: CommitMarker): Promise<void> => {
    await commitConversion(marker.overlays, ctx.signal, req.images.map((i) => i.image));
    if ('record' in ctx) await ctx.record(marker.guest);
    else await recordConversion(ctx.one, ids, marker.guest);
    await rm(workDir, { recursive: true, force: true });
  };

  const pending = await readMarker(markerFile);
  if (pending) {
    log(`an earlier run was committing the conversion into images ${ids.join(', ')}; finishing that commit`, 'warn');
    await commit(pending);
    return { kind: 'converted', guest: pending.guest, usage: pending.usage, logFile: '', resumedCommit: true, notes: [] };
  }

  await mkdir(req.logDir, { recursive: true, mode: 0o700 });
  const logFile = conversionLogFile(req.logDir, req.runId, req.vm);
  log(`converting the guest in place (virt-v2v-in-place over qcow2 overlays; full log: ${logFile})`);
  return announced(ctx, req, false, async (step) => {
    const result = await convertGuest(conversionOf(ctx, req, workDir, logFile, step));
    if (result.kind === 'no-os') {
      await rm(workDir, { recursive: true, force: true });
      // The images say what happened, as they do after a conversion: CONVERTED would be a lie.
      if ('one' in ctx) await recordNoOperatingSystem(ctx.one, ids);
      return { kind: 'no-os', reason: result.reason, logFile };
    }
    logWarnings(ctx, req, result.warnings);
    for (const line of result.added) log(`convert: ${line}`);
    for (const line of result.network?.changes ?? []) log(`network: ${line}`);
    for (const line of result.network?.warnings ?? []) log(`network: ${line}`, 'warn');
    if (result.facts.firmware !== req.firmware) {
      // The VM booted with the source's firmware, which is what the template keeps; say so when the
      // disks suggest the other one (a BIOS guest with a leftover ESP, or a UEFI VM without one).
      log(`the source VM boots with ${req.firmware.toUpperCase()} but its disks ${result.facts.firmware === 'efi' ? 'carry' : 'carry no'} EFI system partition; the template keeps ${req.firmware.toUpperCase()}`, 'warn');
    }
    const guest = convertedGuest(result.facts, result.network);
    const marker: CommitMarker = { version: 1, imageIds: ids, overlays: [...result.overlays], guest, usage: result.usage };
    await writeFile(markerFile, JSON.stringify(marker), { mode: 0o600 });
    step('Committing the conversion into the images');
    log(`convert: committing ${result.usage.dataBytes} bytes of changes into images ${ids.join(', ')} (and ${result.usage.zeroedBytes} bytes of trimmed free space as holes)`);
    await commit(marker);
    return { kind: 'converted', guest, usage: result.usage, logFile, resumedCommit: false, notes: result.warnings.map((w) => w.text) };
  });
}

function conversionOf(ctx: ConvertImagesContext, req: ConvertImagesRequest, workDir: string, logFile: string, step: (text: string) => void): ConversionRequest {
  const log = (message: string, level: 'info' | 'warn' = 'info'): void => ctx.emit({ type: 'log', level, vm: req.vm, message });
  return {
    name: req.vm,
    firmware: req.firmware,
    memoryMiB: req.memoryMiB,
    cpus: req.cpus,
    disks: req.images.map((i) => ({ image: i.image, bus: i.bus })),
    nics: req.nics,
    network: req.network,
    workDir,
    logFile,
    signal: ctx.signal,
    onStep: step,
    onWarning: (text) => log(`convert: ${text.replace(/\s+/g, ' ')}`, 'warn'),
    ...(req.additions ? { additions: req.additions } : {}),
  };
}

function convertedGuest(f: GuestFacts, network: GuestNetwork | undefined): ConvertedGuest {
  return {
    productName: f.productName,
    distro: f.distro,
    osinfo: f.osinfo,
    arch: f.arch,
    virtioBlock: f.virtioBlock,
    virtioNet: f.virtioNet,
    firmware: f.firmware,
    ...(network === undefined ? {} : { network: network.interfaces.map((i) => ({ nic: i.nic, name: i.name, mode: i.mode, address: i.address, mac: i.mac })) }),
  };
}

async function readMarker(file: string): Promise<CommitMarker | undefined> {
  try {
    const m = JSON.parse(await readFile(file, 'utf8')) as CommitMarker;
    return m.version === 1 ? m : undefined;
  } catch {
    return undefined;
  }
}

/** One line for the progress stream once a conversion is through. */
export function describeConversion(r: ImagesConversion): string {
  if (r.kind === 'no-os') return `no operating system found (data disks only): not converted`;
  const g = r.guest;
  const devices = `${g.virtioBlock ? 'virtio-blk' : 'no virtio-blk'}, ${g.virtioNet ? 'virtio-net' : 'no virtio-net'}${
    g.network === undefined ? '' : `; network ${g.network.map((n) => `${n.name ?? 'by MAC'} ${n.mode}${n.address ? ` ${n.address}` : ''} on NIC ${n.nic}`).join(', ') || 'not configured in the guest'}`
  }`;
  return `${g.productName || g.distro || 'guest'} (${g.arch || '?'}; ${devices}); ${r.usage.dataBytes} bytes written into the images, ${r.usage.zeroedBytes} bytes of free space trimmed${r.resumedCommit ? ' (finished an interrupted commit)' : ''}`;
}
