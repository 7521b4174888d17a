// How fast one disk reads from one ESXi host and vSphere datastore through one reader, kept in the
// state directory so `plan estimate` can turn bytes into time. A timed probe (lib/plan) gives the
// first figure; every real disk copy refines it (copyIntoImages records each disk it finishes).
// It lives here, beside conversion-times.ts, because the supervisor's copies write it and
// lib/plan only reads it: the dependency points from plan to supervisor, never back.

import { readFile } from 'node:fs/promises';
import { writeFileAtomically } from '../atomic-write/index.js';
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

/** One measured copy rate: bytes per second of one disk read. */
export interface CopyRate extends RatePlace {
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

export interface CopyRates {
  readonly version: 1;
  readonly rates: Record<string, CopyRate>;
}

/** One disk read, as measured. */
export interface CopySample extends RatePlace {
  readonly bytes: number;
  readonly ms: number;
  readonly how: 'probe' | 'run';
  readonly at: string;
}

// The runs' samples are summed with older ones fading (at most MAX_COUNT samples' weight), so one
// slow copy is smoothed out and a changed host or network shows within a few runs.
const MAX_COUNT = 8;
const MAX_ENTRIES = 500;

export function copyRatesFile(stateDir: string): string {
  return join(stateDir, 'copy-rates.json');
}

export function rateKey(p: RatePlace): string {
  return JSON.stringify([p.host, p.datastore, p.reader]);
}

export async function readCopyRates(stateDir: string): Promise<CopyRates> {
  try {
    const r = JSON.parse(await readFile(copyRatesFile(stateDir), 'utf8')) as CopyRates;
    if (r.version === 1 && typeof r.rates === 'object' && r.rates !== null) return r;
  } catch {
    // none yet, or unreadable: no measured rate, never a failed copy
  }
  return { version: 1, rates: {} };
}

/**
 * The rates with one more sample in; pure. A run's copy replaces a probe's figure (it moved real
 * data the way the run reads it) and adds to earlier runs'; a probe replaces only a probe.
 */
export function withCopySample(rates: CopyRates, s: CopySample): CopyRates {
  if (!(s.bytes > 0 && s.ms > 0)) return rates;
  const key = rateKey(s);
  const old = rates.rates[key];
  if (s.how === 'probe' && old?.how === 'run') return rates;
  const earlier = s.how === 'run' && old?.how === 'run' ? old : undefined;
  const fade = earlier && earlier.count >= MAX_COUNT ? (MAX_COUNT - 1) / earlier.count : 1;
  const bytes = (earlier?.bytes ?? 0) * fade + s.bytes;
  const ms = (earlier?.ms ?? 0) * fade + s.ms;
  const count = Math.min(MAX_COUNT, (earlier?.count ?? 0) + 1);
  const next: CopyRate = { host: s.host, datastore: s.datastore, reader: s.reader, bytesPerSec: (bytes * 1000) / ms, bytes, ms, at: s.at, how: s.how, count };
  const entries = Object.entries({ ...rates.rates, [key]: next })
    .sort(([, a], [, b]) => Date.parse(b.at) - Date.parse(a.at))
    .slice(0, MAX_ENTRIES);
  return { version: 1, rates: Object.fromEntries(entries) };
}

// One process records its disks one after another, so parallel copies never lose each other's
// sample; two processes at the same moment may lose one, which the next copy makes good.
let queue: Promise<void> = Promise.resolve();

/** Records a sample (mode 0600, written whole and renamed). */
export function recordCopySample(stateDir: string, s: CopySample): Promise<void> {
  const write = queue.then(async () => {
    const next = withCopySample(await readCopyRates(stateDir), s);
    await writeFileAtomically(copyRatesFile(stateDir), `${JSON.stringify(next, null, 1)}\n`);
  });
  queue = write.catch(() => undefined);
  return write;
}
