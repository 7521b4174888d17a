// How fast disks read from vSphere, kept in the state directory so `plan estimate` can turn bytes
// into time. Three figures, because a disk read is held back by whichever is tightest: the disk
// read itself (its streams, the datastore), its ESXi host (one NIC, a bounded NFC service, shared
// by every disk read from the host at once), and this machine (its CPU, its NIC, the writes behind
// the reads, shared by every disk read of the run). A timed probe (lib/plan) gives the first
// figures; every real disk copy refines them (copyIntoImages records each disk it finishes, with
// how many reads shared its host and the machine meanwhile: read-meter.ts).
// It lives here, beside conversion-times.ts, because the supervisor's copies write it and
// lib/plan only reads it: the dependency points from plan to supervisor, never back.

import { readFile } from 'node:fs/promises';
import { updateFileAtomically } from '../atomic-write/index.js';
import { join } from 'node:path';
import type { ReaderKind } from '../input/index.js';

/** Where a disk is read from, and how. */
export interface RatePlace {
  /** The ESXi host (hostKey of budgets.ts: what a run's budget counts by). */
  readonly host: string;
  /** The vSphere datastore's name. */
  readonly datastore: string;
  readonly reader: ReaderKind;
}

/** Bytes moved in a time, older samples fading (at most MAX_COUNT samples' weight). */
export interface Throughput {
  /** bytes / ms of the samples kept: a big copy weighs more than a small one. */
  readonly bytesPerSec: number;
  readonly bytes: number;
  readonly ms: number;
  /** The latest measurement (ISO time). */
  readonly at: string;
  /** A short timed read by `plan estimate`, or real runs' disk copies. */
  readonly how: 'probe' | 'run';
  /** Samples in this figure (runs only; a probe stands alone). */
  readonly count: number;
}

/** One disk read's rate at a place. */
export interface CopyRate extends RatePlace, Throughput {
  /**
   * Measured only while other reads shared the host or the machine: what one disk read reached
   * then, so at least what it reaches alone. A read alone replaces it.
   */
  readonly shared?: true;
}

/** Per number of disk reads at once (rounded; "1", "2", …): their bytes per second together. */
export type ThroughputByLevel = Readonly<Record<string, Throughput>>;

export interface CopyRates {
  readonly version: 1;
  /** rateKey → one disk read alone. */
  readonly rates: Record<string, CopyRate>;
  /** hostKey → all the host's disk reads together, by how many there were. */
  readonly hosts?: Readonly<Record<string, ThroughputByLevel>>;
  /** All disk reads of a run together (this machine's), by how many there were. */
  readonly total?: ThroughputByLevel;
}

/** One disk read, as measured. */
export interface CopySample extends RatePlace {
  readonly bytes: number;
  readonly ms: number;
  readonly how: 'probe' | 'run';
  readonly at: string;
  /**
   * How many disk reads went on at once during this one, itself included, averaged over its
   * time: from its host, and in all. Absent: it was alone.
   */
  readonly hostLevel?: number;
  readonly totalLevel?: number;
}

const MAX_COUNT = 8;
const MAX_ENTRIES = 500;
/** A read that shared its host or the machine less than this on average counts as alone. */
const ALONE_BELOW = 1.25;

export function copyRatesFile(stateDir: string): string {
  return join(stateDir, 'copy-rates.json');
}

export function rateKey(p: RatePlace): string {
  return JSON.stringify([p.host, p.datastore, p.reader]);
}

export async function readCopyRates(stateDir: string): Promise<CopyRates> {
  return parseCopyRates(await readFile(copyRatesFile(stateDir), 'utf8').catch(() => undefined));
}

/** None yet, or unreadable: no measured rate, never a failed copy. */
function parseCopyRates(text: string | undefined): CopyRates {
  try {
    const r = JSON.parse(text ?? '') as CopyRates;
    if (r?.version === 1 && typeof r.rates === 'object' && r.rates !== null) return r;
  } catch {
    // as none
  }
  return { version: 1, rates: {} };
}

/** The rounded number of reads at once a figure is kept under. */
export function levelKey(level: number): string {
  return String(Math.max(1, Math.round(level)));
}

/**
 * A figure with one more sample in; pure. A run's sample replaces a probe's figure (it moved real
 * data the way the run reads it) and adds to earlier runs'; a probe replaces only a probe.
 */
function withSample(old: Throughput | undefined, bytes: number, ms: number, how: 'probe' | 'run', at: string): Throughput | undefined {
  if (how === 'probe' && old?.how === 'run') return undefined;
  const earlier = how === 'run' && old?.how === 'run' ? old : undefined;
  const fade = earlier && earlier.count >= MAX_COUNT ? (MAX_COUNT - 1) / earlier.count : 1;
  const b = (earlier?.bytes ?? 0) * fade + bytes;
  const t = (earlier?.ms ?? 0) * fade + ms;
  return { bytesPerSec: (b * 1000) / t, bytes: b, ms: t, at, how, count: Math.min(MAX_COUNT, (earlier?.count ?? 0) + 1) };
}

/**
 * The rates with one more sample in; pure. The read's own rate is the place's figure when it was
 * alone, else only a floor of it (`shared`); its rate times the reads at once is what its host,
 * and the machine, delivered at that level.
 */
export function withCopySample(rates: CopyRates, s: CopySample): CopyRates {
  if (!(s.bytes > 0 && s.ms > 0)) return rates;
  const hostLevel = s.hostLevel ?? 1;
  const totalLevel = s.totalLevel ?? 1;
  const alone = hostLevel < ALONE_BELOW && totalLevel < ALONE_BELOW;
  const key = rateKey(s);
  const old = rates.rates[key];
  const place = { host: s.host, datastore: s.datastore, reader: s.reader };
  let rate: CopyRate | undefined;
  if (alone) {
    const t = withSample(old?.shared ? undefined : old, s.bytes, s.ms, s.how, s.at);
    if (t) rate = { ...place, ...t };
  } else if (old === undefined || (old.shared && old.bytesPerSec < (s.bytes * 1000) / s.ms)) {
    rate = { ...place, bytesPerSec: (s.bytes * 1000) / s.ms, bytes: s.bytes, ms: s.ms, at: s.at, how: s.how, count: 1, shared: true };
  }
  const level = (byLevel: ThroughputByLevel | undefined, n: number): ThroughputByLevel | undefined => {
    const k = levelKey(n);
    const t = withSample(byLevel?.[k], s.bytes * n, s.ms, s.how, s.at);
    return t && { ...byLevel, [k]: t };
  };
  const host = level(rates.hosts?.[s.host], hostLevel);
  const total = level(rates.total, totalLevel);
  // A probe where runs measured everything: nothing learnt.
  if (!rate && !host && !total) return rates;
  const entries = Object.entries(rate ? { ...rates.rates, [key]: rate } : rates.rates)
    .sort(([, a], [, b]) => Date.parse(b.at) - Date.parse(a.at))
    .slice(0, MAX_ENTRIES);
  return {
    version: 1,
    rates: Object.fromEntries(entries),
    ...(host || rates.hosts ? { hosts: { ...rates.hosts, ...(host ? { [s.host]: host } : {}) } } : {}),
    ...(total || rates.total ? { total: total ?? rates.total } : {}),
  };
}

/**
 * The most a host (or, without a host, the machine) was measured to deliver with several reads at
 * once: what the reads of it share. Undefined until reads were measured together: a read alone
 * says nothing of how far the host goes (a level-1 figure counts only beside higher ones).
 */
export function throughputCap(rates: CopyRates, host?: string): { bytesPerSec: number; level: number; how: 'probe' | 'run'; at: string } | undefined {
  const byLevel = Object.entries((host === undefined ? rates.total : rates.hosts?.[host]) ?? {});
  if (!byLevel.some(([level]) => Number(level) >= 2)) return undefined;
  let best: { bytesPerSec: number; level: number; how: 'probe' | 'run'; at: string } | undefined;
  for (const [level, t] of byLevel) if (!best || t.bytesPerSec > best.bytesPerSec) best = { bytesPerSec: t.bytesPerSec, level: Number(level), how: t.how, at: t.at };
  return best;
}

/** Records a sample (mode 0600, written whole and renamed; the samples of one process in turn, none lost). */
export function recordCopySample(stateDir: string, s: CopySample): Promise<void> {
  return updateFileAtomically(copyRatesFile(stateDir), (text) => `${JSON.stringify(withCopySample(parseCopyRates(text), s), null, 1)}\n`);
}
