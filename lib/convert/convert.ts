// One guest conversion, overlay-safe: qcow2 overlays over the image files → libvirt XML pointing
// at them → virt-v2v-in-place → inspection of the result. The image files are only read until
// the caller commits; any failure discards the overlays and leaves the images as the copy made
// them.

import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OneswapError } from '../errors/index.js';
import type { DiskBus, Firmware } from '../input/index.js';
import { checkAppliance } from './appliance.js';
import { applyAdditions, checkAdditions, hasAdditions, type GuestAdditions } from './additions.js';
import { domainXml, type DomainNic } from './domain-xml.js';
import { inspectGuest, type GuestFacts } from './inspect.js';
import { bindGuestNetwork, type GuestNetwork, type NetworkRequest } from './network-step.js';
import { createOverlay, discardOverlay, overlayUsage, commitOverlay, rebaseOverlay, type Overlay, type OverlayUsage, type QemuImage } from './overlay.js';
import { runVirtV2vInPlace } from './virt-v2v.js';
import { explainWarning, isKnownWarning, readBootFiles, type BootFiles, type ExplainedWarning } from './v2v-warnings.js';

export interface ConversionRequest {
  readonly name: string;
  readonly firmware: Firmware;
  readonly memoryMiB: number;
  readonly cpus: number;
  /** The images, in guest (boot) order, with the bus the source gave each. */
  readonly disks: ReadonlyArray<{ readonly image: QemuImage; readonly bus: DiskBus }>;
  readonly nics: readonly DomainNic[];
  /** The guest's network configuration made to follow its NICs (Linux guests; see network-step.ts). */
  readonly network: NetworkRequest;
  /** For the overlays and the domain XML; created, and emptied afterwards. */
  readonly workDir: string;
  /** The full conversion log (virt-v2v verbose output). */
  readonly logFile: string;
  readonly signal: AbortSignal;
  /** Steps for the progress stream: virt-v2v's messages, inspection, commit. */
  readonly onStep?: (text: string) => void;
  /** virt-v2v's warnings that are not explained (see ConversionResult.warnings), as it wrote them. */
  readonly onWarning?: (text: string) => void;
  readonly additions?: GuestAdditions;
}

export type ConversionResult =
  | {
      readonly kind: 'converted';
      /** Overlays holding the conversion, one per disk in request order; commit or discard them. */
      readonly overlays: readonly Overlay[];
      readonly facts: GuestFacts;
      /** What the overlays hold, summed: the data committing writes, the areas it turns into holes. */
      readonly usage: OverlayUsage;
      /** What the guest additions did, one line each. */
      readonly added: readonly string[];
      /** What the network step found and changed; undefined for guests other than Linux. */
      readonly network: GuestNetwork | undefined;
      /** virt-v2v's known warnings, each with what it means for this guest (lib/convert/v2v-warnings.ts). */
      readonly warnings: readonly ExplainedWarning[];
    }
  | { readonly kind: 'no-os'; readonly reason: string };

export async function convertGuest(req: ConversionRequest): Promise<ConversionResult> {
  if (req.disks.length === 0) throw new OneswapError('usage', `${req.name}: no disks to convert`);
  const emulated = await checkAppliance();
  if (emulated !== undefined) req.onWarning?.(emulated);
  await checkAdditions(req.additions);
  await mkdir(req.workDir, { recursive: true, mode: 0o700 });
  const overlays: Overlay[] = [];
  let keep = false;
  // Known warnings wait for the boot files the inspection reads, so each is said once, explained.
  const held: string[] = [];
  try {
    for (const [i, d] of req.disks.entries()) overlays.push(await createOverlay(d.image, req.workDir, i, req.signal));
    const xmlPath = join(req.workDir, 'domain.xml');
    await writeFile(
      xmlPath,
      domainXml({
        name: req.name,
        memoryMiB: req.memoryMiB,
        cpus: req.cpus,
        firmware: req.firmware,
        disks: overlays.map((o, i) => ({ path: o.path, format: 'qcow2', bus: req.disks[i]!.bus })),
        nics: req.nics,
      }),
      { mode: 0o600 },
    );
    const ran = await runVirtV2vInPlace({
      domainXmlPath: xmlPath,
      logFile: req.logFile,
      signal: req.signal,
      ...(req.onStep ? { onMessage: req.onStep } : {}),
      onWarning: (text) => (isKnownWarning(text) ? held.push(text) : req.onWarning?.(text)),
    });
    if (ran.kind === 'no-os') return ran;
    req.onStep?.('Inspecting the converted guest and binding its network configuration to its NICs');
    let network: GuestNetwork | undefined;
    let bootFiles: BootFiles | undefined;
    const facts = await inspectGuest(
      overlays.map((o) => ({ path: o.path, format: 'qcow2' as const })),
      req.signal,
      async (fs, found) => {
        if (found.type !== 'linux') return;
        bootFiles = await readBootFiles(fs);
        network = await bindGuestNetwork(fs, req.network);
      },
    );
    if (facts === undefined) throw new OneswapError('conversion', `${req.name}: after conversion no operating system is found on the disks; full log: ${req.logFile}`);
    let added: string[] = [];
    if (hasAdditions(req.additions)) {
      req.onStep?.('Adding the requested guest additions (virt-customize)');
      added = await applyAdditions(overlays.map((o) => ({ path: o.path, format: 'qcow2' as const })), facts.type, req.additions, req.signal);
    }
    const usages = await Promise.all(overlays.map((o) => overlayUsage(o, req.signal)));
    const usage = { dataBytes: usages.reduce((s, u) => s + u.dataBytes, 0), zeroedBytes: usages.reduce((s, u) => s + u.zeroedBytes, 0) };
    const boot = bootFiles && { files: bootFiles, virtioBlock: facts.virtioBlock, distro: facts.distro };
    const warnings = held.splice(0).map((w) => explainWarning(w, boot)!);
    keep = true;
    return { kind: 'converted', overlays, facts, usage, added, network, warnings };
  } finally {
    // Stopped before the boot files were read: what each warning means, without a verdict.
    for (const w of held) req.onWarning?.(explainWarning(w, undefined)!.text);
    if (!keep) {
      for (const o of overlays) await discardOverlay(o);
      await rm(join(req.workDir, 'domain.xml'), { force: true });
    }
  }
}

/**
 * Writes the conversion into the image files. Idempotent: an interrupted commit is run again
 * from the same overlays, which are deleted only once every one is committed. `images`: how qemu
 * reaches each overlay's image now, when that may have changed since the overlays were made (a
 * later run's private Ceph configuration or qemu-nbd socket): the overlays are pointed there first.
 */
export async function commitConversion(overlays: readonly Overlay[], signal?: AbortSignal, images?: readonly QemuImage[]): Promise<void> {
  for (const [i, o] of overlays.entries()) {
    const now = images?.[i];
    await commitOverlay(now && now.filename !== o.base ? await rebaseOverlay(o, now, signal) : o, signal);
  }
  for (const o of overlays) await discardOverlay(o);
}

/** Drops a conversion: the overlays go, the images stay as they were (a rehearsal's end). */
export async function discardConversion(overlays: readonly Overlay[]): Promise<void> {
  for (const o of overlays) await discardOverlay(o);
}
