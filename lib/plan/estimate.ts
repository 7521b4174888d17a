// `plan estimate`: what a run of the plan would move and how long it would take, without changing
// anything. Bytes per disk from CBT where vSphere gives them without a snapshot, else the
// provisioned size; copy time from the rate measured for the disk's ESXi host and datastore (a
// short probe where none is stored yet); conversion time from past conversions of the same VM,
// OS or OS family; the timeline from the supervisor's own scheduler on a virtual clock
// (estimate-schedule.ts). Every figure says whether it is measured, from history or assumed.

import { chooseReader, availablePlugins, describeVcenterVm, vmIdentity, type ReaderKind, type Plugins } from '../input/index.js';
import {
  expectedConversion,
  hostKey,
  Journal,
  latestOfFamily,
  measuredRates,
  osFamily,
  rateKey,
  readConversionTimes,
  readCopyRates,
  readStepTimes,
  recordCopySample,
  throughputCap,
  withCopySample,
  type ConversionTimes,
  type CopyRates,
  type CopySample,
  type StepTime,
} from '../supervisor/index.js';
import { describeError } from '../errors/index.js';
import type { VSphereClient, VmSummary } from '../vsphere/index.js';
import type { PlanBudgets, PlannedVm } from './planned-vm.js';
import { bytesToMove, readEstimateInventory, type EstimateInventory } from './estimate-inventory.js';
import { probeCandidate, probeRate, probeTogether, type ProbeCandidate } from './rate-probe.js';
import { simulatePlan, type SimVm } from './estimate-schedule.js';

export type Basis = 'measured' | 'from-history' | 'assumed';

/** A number and where it comes from. */
export interface Figure {
  readonly value: number;
  readonly basis: Basis;
  readonly how: string;
}

export interface DiskEstimate {
  readonly label: string;
  readonly datastore: string;
  /** The reader a run would use for it. */
  readonly reader: ReaderKind;
  readonly bytes: Figure;
  /** Bytes per second of one disk read. */
  readonly rate: Figure;
  /** bytes / rate, without waiting for a slot. */
  readonly copyMs: Figure;
}

export interface VmEstimate {
  readonly key: string;
  readonly wave: string;
  readonly mode: 'cold' | 'warm';
  readonly host: string;
  readonly disks: readonly DiskEstimate[];
  readonly bytes: Figure;
  /** The copy (warm: the first round) under the budgets: first disk read begins → last ends. */
  readonly copyMs: Figure;
  /** Absent when the plan does not convert the VM. */
  readonly conversionMs?: Figure;
  /** Offsets from the start of the plan (ms). */
  readonly startMs: number;
  readonly endMs: number;
  /** Warm: source stopped → template (and VM) made. Cold: the whole import. */
  readonly downtimeMs: Figure;
}

export interface WaveEstimate {
  readonly name: string;
  readonly vms: readonly string[];
  readonly bytes: Figure;
  readonly startMs: number;
  readonly endMs: number;
}

/** A probe made by this estimate. */
export interface ProbeResult {
  readonly host: string;
  readonly datastore: string;
  /** The disk read, or why none was. */
  readonly disk?: string;
  readonly bytes?: number;
  readonly ms?: number;
  /** Reads made at once in this probe (a probe of the reads together); absent: alone. */
  readonly together?: number;
  readonly failed?: string;
}

export interface PlanEstimate {
  readonly version: 1;
  /** When it was made (ISO time); cutover windows are placed relative to it. */
  readonly at: string;
  readonly budgets: { readonly readsPerHost: number; readonly converting: number; readonly inFlight: number };
  readonly vms: readonly VmEstimate[];
  readonly waves: readonly WaveEstimate[];
  readonly totalMs: Figure;
  readonly probes: readonly ProbeResult[];
  /** What is assumed throughout, and what the estimate leaves out. */
  readonly assumptions: readonly string[];
}

export interface EstimateContext {
  readonly vsphere: VSphereClient;
  /** --vddk-libdir: decides, with each VM's transport, which reader a run would use. */
  readonly vddkLibdir?: string;
  /** The plan's sync interval of warm VMs waiting for their window (plan run's setting). */
  readonly syncIntervalMs?: number;
  /** Now; a test fixes it. */
  readonly now?: Date;
}

/** Without a measured rate anywhere: a conservative figure for one datastore HTTP or NFC disk read. */
export const ASSUMED_RATE = 64 * 1024 * 1024;
/** Without a past conversion of the VM, its OS or its OS family. */
export const ASSUMED_CONVERSION_MS = 5 * 60_000;
/**
 * Precheck and placeholders: a few vCenter and OpenNebula calls and oned's mkfs of each image
 * (1.5 to 1.9 s a VM in plan runs against the oned simulator, which runs stock-like drivers as oned 7.4 does).
 */
export const ASSUMED_PREP_MS = 2000;
/** Template, VM, the images marked DONE: a few OpenNebula calls (0.1 to 0.2 s measured likewise). */
export const ASSUMED_BUILD_MS = 500;
/** A guest's own shutdown (a warm cutover; a cold import of a running VM with shutdown). */
export const ASSUMED_SHUTDOWN_MS = 60_000;
/** Share of a warm VM's data its guest changes per hour: the final delta of the cutover. */
export const ASSUMED_CHANGE_PER_HOUR = 0.01;
/** A plan run's default time between two rounds of a warm VM waiting for its window. */
export const ASSUMED_SYNC_INTERVAL_MS = 15 * 60_000;

const worst = (...bases: Basis[]): Basis => (bases.includes('assumed') ? 'assumed' : bases.includes('from-history') ? 'from-history' : 'measured');

export async function estimatePlan(ctx: EstimateContext, vms: readonly PlannedVm[], budgets: PlanBudgets, waves: readonly string[], stateDir: string, signal: AbortSignal): Promise<PlanEstimate> {
  const now = ctx.now ?? new Date();
  const inv = await readEstimateInventory(ctx.vsphere, vms);
  const [times, storedRates, steps] = await Promise.all([readConversionTimes(stateDir), readCopyRates(stateDir), readStepTimes(stateDir)]);
  // The steps around each copy: as past imports took them, else assumed.
  const prep = stepFigure(steps.prep, ASSUMED_PREP_MS, 'precheck and placeholders');
  const buildStep = stepFigure(steps.build, ASSUMED_BUILD_MS, 'template, VM and cleanup');

  // What each disk is, how many bytes a run moves, and through which reader.
  const disks = new Map<string, { summary: VmSummary; list: { label: string; datastore: string; reader: ReaderKind; bytes: Figure }[] }>();
  for (const p of vms) {
    const summary = inv.planned.get(p.key)!;
    const bytes = await bytesToMove(ctx.vsphere, summary, signal);
    const plugins = await availablePlugins({ transport: p.transport, vddkLibdir: ctx.vddkLibdir });
    const running = p.mode.kind === 'warm' && summary.powerState === 'poweredOn';
    disks.set(p.key, {
      summary,
      list: summary.disks.map((d) => {
        const b = bytes.get(d.key)!;
        return { label: d.label, datastore: d.datastoreName, reader: readerOf(p, ctx.vddkLibdir, plugins, d, inv, summary, running), bytes: { value: b.bytes, basis: b.basis, how: b.how } };
      }),
    });
  }

  // A probe for every (host, datastore) the plan reads from that no run or probe measured yet.
  let rates = storedRates;
  // A probe's sample is stored for the next estimates and counts in this one as stored.
  const learn = async (sample: CopySample): Promise<void> => {
    rates = withCopySample(rates, sample);
    await recordCopySample(stateDir, sample);
  };
  const probes: ProbeResult[] = [];
  const pairs = new Map<string, { host: string; datastore: string }>();
  for (const { summary, list } of disks.values()) for (const d of list) pairs.set(JSON.stringify([hostKey(summary.host), d.datastore]), { host: hostKey(summary.host), datastore: d.datastore });
  for (const pair of pairs.values()) {
    if (measuredAt(rates, pair.host, pair.datastore).length > 0) continue;
    const c = probeCandidate(inv.all, pair.host, pair.datastore, inv);
    if (!c) {
      probes.push({ ...pair, failed: 'no powered-off VM on this host has a disk there that can be read without a snapshot or a lease' });
      continue;
    }
    try {
      const sample = await probeRate(ctx.vsphere, c, signal);
      await learn(sample);
      probes.push({ ...pair, disk: c.disk.fileName, bytes: sample.bytes, ms: sample.ms });
    } catch (err) {
      signal.throwIfAborted();
      probes.push({ ...pair, disk: c.disk.fileName, failed: describeError(err) });
    }
  }

  // What a host and this machine deliver to as many reads at once as the plan makes: all hosts
  // read together once, when neither runs nor an earlier estimate measured it.
  const together = togetherReads(disks, inv, budgets);
  if (together.length > 1 && (throughputCap(rates) === undefined || together.some((c) => throughputCap(rates, hostKey(c.vm.host)) === undefined))) {
    try {
      const samples = await probeTogether(ctx.vsphere, together, signal);
      for (const sample of samples) await learn(sample);
      const perHost = new Map<string, { host: string; datastore: string; disk: string; bytes: number; ms: number }>();
      for (const [i, sample] of samples.entries()) {
        const p = perHost.get(sample.host);
        perHost.set(sample.host, { host: sample.host, datastore: sample.datastore, disk: together[i]!.disk.fileName, bytes: (p?.bytes ?? 0) + sample.bytes, ms: Math.max(p?.ms ?? 0, sample.ms) });
      }
      for (const p of perHost.values()) probes.push({ ...p, together: together.length });
    } catch (err) {
      signal.throwIfAborted();
      probes.push({ host: hostKey(together[0]!.vm.host), datastore: together[0]!.disk.datastoreName, together: together.length, failed: describeError(err) });
    }
  }
  const hostCaps = new Map<string, number>();
  for (const pair of pairs.values()) {
    const cap = throughputCap(rates, pair.host);
    if (cap) hostCaps.set(pair.host, cap.bytesPerSec);
  }
  const totalCap = throughputCap(rates);

  const median = medianRate(rates);
  const syncIntervalMs = ctx.syncIntervalMs ?? ASSUMED_SYNC_INTERVAL_MS;
  const sims: SimVm[] = [];
  const perVm = new Map<string, { disks: DiskEstimate[]; conversion?: Figure }>();
  const deltaHow = new Map<string, string>();
  for (const p of vms) {
    const { summary, list } = disks.get(p.key)!;
    const host = hostKey(summary.host);
    const estimates = list.map((d): DiskEstimate => {
      const measured = rateFor(rates, median, { host, datastore: d.datastore, reader: d.reader });
      // The plan's byte budget of the datastore caps a disk read from it (shared with the others
      // read at once in a run: that sharing is not simulated).
      const cap = budgets.datastoreBytesPerSec.get(d.datastore);
      const rate = cap !== undefined && cap < measured.value ? { ...measured, value: cap, how: `the plan's budget of ${d.datastore} (${measured.how})` } : measured;
      return { ...d, rate, copyMs: { value: (d.bytes.value * 1000) / rate.value, basis: worst(d.bytes.basis, rate.basis), how: 'bytes / rate' } };
    });
    const identity = vmIdentity(describeVcenterVm(ctx.vsphere.host, summary));
    const history = p.mode.kind === 'warm' ? await warmHistory(stateDir, identity, p.datastoreId) : {};
    const conversion = p.convert ? conversionFor(times, identity, summary, history.rehearsal) : undefined;
    perVm.set(p.key, { disks: estimates, ...(conversion ? { conversion } : {}) });
    const read = estimates.map((d) => ({ bytes: d.bytes.value, bytesPerSec: d.rate.value, datastore: d.datastore }));
    const base = { key: p.key, wave: p.wave, priority: p.priority, host, disks: read, prepMs: prep.value, buildMs: buildStep.value, ...(conversion ? { conversionMs: conversion.value } : {}) };
    if (p.mode.kind === 'cold') {
      sims.push({ ...base, shutdownMs: summary.powerState === 'poweredOn' && p.mode.shutdown ? ASSUMED_SHUTDOWN_MS : 0 });
    } else {
      const cutoverAt = p.mode.cutover ? Math.max(0, p.mode.cutover.start.getTime() - now.getTime()) : undefined;
      // The guest changes its disks from the last round until the cutover: at most one sync
      // interval before the window (rounds go on until then), else during the rehearsal.
      const sinceLastRoundMs = cutoverAt !== undefined ? syncIntervalMs : (conversion?.value ?? 0);
      // The change rate its rounds measured, where a warm migration of the VM is under way (as
      // `warm status` predicts), else the assumed share of its data per hour.
      const data = estimates.reduce((a, d) => a + d.bytes.value, 0);
      const changed = history.changeRate !== undefined ? (history.changeRate * sinceLastRoundMs) / 1000 : (data * ASSUMED_CHANGE_PER_HOUR * sinceLastRoundMs) / 3_600_000;
      const share = data > 0 ? Math.min(1, changed / data) : 0;
      if (history.changeRate !== undefined) deltaHow.set(p.key, 'the change rate its rounds measured');
      // As the warm status's prediction: a disk the cutover reads through an export lease streams whole.
      const finalDisks = estimates.map((d) => ({ bytes: d.reader === 'lease' ? d.bytes.value : d.bytes.value * share, bytesPerSec: d.rate.value, datastore: d.datastore }));
      sims.push({ ...base, shutdownMs: ASSUMED_SHUTDOWN_MS, warm: { ...(cutoverAt !== undefined ? { cutoverAt } : {}), finalDisks } });
    }
  }

  const sim = await simulatePlan(sims, waves, budgets, { hosts: hostCaps, datastores: budgets.datastoreBytesPerSec, ...(totalCap ? { total: totalCap.bytesPerSec } : {}) });
  const vmEstimates = vms.map((p): VmEstimate => {
    const t = sim.vms.find((x) => x.key === p.key)!;
    const { disks: ds, conversion } = perVm.get(p.key)!;
    const copyBasis = worst(...ds.map((d) => d.copyMs.basis));
    // The guest's own shutdown is always a guess (a warm cutover's, a running cold VM's).
    const shutsDown = sims.find((x) => x.key === p.key)!.shutdownMs > 0;
    const downtimeBasis = shutsDown ? 'assumed' : worst(copyBasis, conversion?.basis ?? 'measured');
    return {
      key: p.key,
      wave: p.wave,
      mode: p.mode.kind,
      host: hostKey(disks.get(p.key)!.summary.host),
      disks: ds,
      bytes: { value: ds.reduce((a, d) => a + d.bytes.value, 0), basis: worst(...ds.map((d) => d.bytes.basis)), how: 'sum of the disks' },
      copyMs: { value: t.copyEnd - t.copyStart, basis: copyBasis, how: 'the disks read at once under the host budget' },
      ...(conversion ? { conversionMs: conversion } : {}),
      startMs: t.start,
      endMs: t.end,
      downtimeMs: {
        value: t.downtimeMs,
        basis: downtimeBasis,
        how:
          p.mode.kind === 'warm'
            ? `guest shutdown (assumed) + final delta (${deltaHow.get(p.key) ?? 'assumed change rate'}) + conversion + build`
            : `the whole import: the VM is off throughout${shutsDown ? ' (from its shutdown, assumed)' : ''}`,
      },
    };
  });
  const waveEstimates = sim.waves.map((w): WaveEstimate => {
    const members = vmEstimates.filter((v) => v.wave === w.name);
    return { name: w.name, vms: members.map((v) => v.key), bytes: { value: members.reduce((a, v) => a + v.bytes.value, 0), basis: worst(...members.map((v) => v.bytes.basis)), how: 'sum of the VMs' }, startMs: w.start, endMs: w.end };
  });
  const totalBasis = worst(prep.basis, buildStep.basis, ...vmEstimates.flatMap((v) => [v.copyMs.basis, v.conversionMs?.basis ?? 'measured']));
  return {
    version: 1,
    at: now.toISOString(),
    budgets: { readsPerHost: budgets.readsPerHost, converting: budgets.converting, inFlight: budgets.inFlight },
    vms: vmEstimates,
    waves: waveEstimates,
    totalMs: { value: sim.totalMs, basis: totalBasis, how: 'the plan simulated under its budgets (waves, priorities, in-flight, reads per host, conversions)' },
    probes,
    assumptions: [
      `per VM: ${prep.how}; ${buildStep.how}`,
      `a guest shuts down in ${ASSUMED_SHUTDOWN_MS / 1000} s`,
      `a warm guest changes ${ASSUMED_CHANGE_PER_HOUR * 100} % of its data per hour (the cutover's final delta)`,
      `without a measured rate: the median of the measured ones, else ${ASSUMED_RATE / 1024 / 1024} MiB/s`,
      `without a past conversion of the VM, its OS or its OS family: ${ASSUMED_CONVERSION_MS / 60_000} min`,
      'the disks read at once share what their host, their datastore\'s byte budget and this machine deliver together, each never faster than alone; ' +
        (totalCap ? `this machine was measured to deliver ${Math.round(totalCap.bytesPerSec / 1024 / 1024)} MiB/s to ${totalCap.level} reads at once (${totalCap.how === 'probe' ? 'a probe' : 'runs'}, latest at ${totalCap.at})` : 'nothing measured how far a host or this machine goes with several reads at once: none is assumed to hold them back'),
      'a disk read through another reader than the one measured is assumed as fast',
    ],
  };
}

function readerOf(p: PlannedVm, vddkLibdir: string | undefined, plugins: Plugins, device: VmSummary['disks'][number], inv: EstimateInventory, vm: VmSummary, running: boolean): ReaderKind {
  const datastoreType = inv.datastoreType(vm.datacenter, device.datastoreName) ?? '';
  try {
    return chooseReader({ transport: p.transport, vddkLibdir }, plugins, { device, datastoreType }, running).reader;
  } catch {
    // A transport that cannot read this disk is plan check's blocker; the estimate takes it as asked.
    return p.transport === 'auto' ? 'lease' : p.transport;
  }
}

/**
 * The reads of the together-probe: on each host the plan reads from, as many as the plan's budget
 * lets it read at once (or as it has disks there), the run's in-flight limit at most in all.
 */
function togetherReads(disks: ReadonlyMap<string, { summary: VmSummary; list: readonly { datastore: string }[] }>, inv: EstimateInventory, budgets: PlanBudgets): ProbeCandidate[] {
  const perHost = new Map<string, { count: number; datastores: Set<string> }>();
  for (const { summary, list } of disks.values()) {
    const host = hostKey(summary.host);
    const h = perHost.get(host) ?? perHost.set(host, { count: 0, datastores: new Set() }).get(host)!;
    h.count += list.length;
    for (const d of list) h.datastores.add(d.datastore);
  }
  const hosts: { candidate: ProbeCandidate; reads: number }[] = [];
  for (const [host, h] of perHost) {
    const candidate = [...h.datastores].map((ds) => probeCandidate(inv.all, host, ds, inv)).find((x) => x !== undefined);
    if (candidate) hosts.push({ candidate, reads: Math.min(budgets.readsPerHost, h.count) });
  }
  // Hosts taken in turn up to the in-flight limit: a run never reads more VMs at once.
  const out: ProbeCandidate[] = [];
  const all = Math.min(budgets.inFlight, hosts.reduce((a, h) => a + h.reads, 0));
  for (let i = 0; out.length < all; i++) for (const h of hosts) if (i < h.reads && out.length < all) out.push(h.candidate);
  return out;
}

function stepFigure(t: StepTime | undefined, assumed: number, what: string): Figure {
  if (t) return { value: t.ms, basis: 'from-history', how: `${what} ${(t.ms / 1000).toFixed(1)} s (the mean of ${t.count} past import${t.count === 1 ? '' : 's'}, latest at ${t.at})` };
  return { value: assumed, basis: 'assumed', how: `${what} ${assumed / 1000} s (no import measured yet)` };
}

function measuredAt(rates: CopyRates, host: string, datastore: string) {
  return Object.values(rates.rates).filter((r) => r.host === host && r.datastore === datastore);
}

function rateFor(rates: CopyRates, median: number | undefined, place: { host: string; datastore: string; reader: ReaderKind }): Figure {
  const exact = rates.rates[rateKey(place)];
  const r = exact ?? measuredAt(rates, place.host, place.datastore).sort((a, b) => Date.parse(b.at) - Date.parse(a.at))[0];
  if (r) {
    const by = r.how === 'probe' ? `a probe at ${r.at}` : `${r.count} run${r.count === 1 ? '' : 's'}, latest at ${r.at}`;
    return { value: r.bytesPerSec, basis: 'measured', how: `${r.reader} reads of ${place.host} and ${place.datastore}: ${by}${exact ? '' : `; the run reads through ${place.reader}`}` };
  }
  if (median !== undefined) return { value: median, basis: 'assumed', how: 'the median of the rates measured elsewhere' };
  return { value: ASSUMED_RATE, basis: 'assumed', how: 'nothing measured yet' };
}

function medianRate(rates: CopyRates): number | undefined {
  const all = Object.values(rates.rates).map((r) => r.bytesPerSec).sort((a, b) => a - b);
  if (all.length === 0) return undefined;
  const mid = Math.floor(all.length / 2);
  return all.length % 2 === 1 ? all[mid]! : (all[mid - 1]! + all[mid]!) / 2;
}

/** What a warm migration of the VM under way measured (its journal, read without a lock). */
async function warmHistory(stateDir: string, identity: string, datastoreId: number): Promise<{ changeRate?: number; rehearsal?: { ms: number; at: string } }> {
  const { journal, resumed } = await Journal.open(stateDir, identity, datastoreId);
  const warm = resumed ? journal.data.warm : undefined;
  if (!warm) return {};
  const { changeRate } = measuredRates(warm.rounds);
  return { ...(changeRate !== undefined ? { changeRate } : {}), ...(warm.rehearsal?.ok ? { rehearsal: { ms: warm.rehearsal.durationMs, at: warm.rehearsal.at } } : {}) };
}

function conversionFor(times: ConversionTimes, identity: string, vm: VmSummary, rehearsal: { ms: number; at: string } | undefined): Figure {
  const e = expectedConversion(times, { identity, ...(vm.guestId ? { osKey: vm.guestId } : {}) }, rehearsal);
  if (e) return { value: e.ms, basis: 'from-history', how: e.from === 'same-os' ? `a ${e.osKey} guest's conversion at ${e.at}` : `this VM's ${e.from === 'this-vm' ? 'conversion' : 'rehearsal'} at ${e.at}` };
  const family = vm.guestId ? latestOfFamily(times, osFamily(vm.guestId)) : undefined;
  if (family) return { value: family.ms, basis: 'from-history', how: `a ${family.osKey} guest's conversion at ${family.at} (same OS family)` };
  return { value: ASSUMED_CONVERSION_MS, basis: 'assumed', how: `no past conversion of ${vm.guestId || 'this'} OS family` };
}
