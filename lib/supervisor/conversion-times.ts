// How long guest conversions took, kept in the state directory, so the next conversion of the
// same VM (or of a guest of the same OS) can say how long it should take. A conversion runs for
// minutes without a byte counter to show; an expected time is the only honest progress there is.
// Only measured times count: no entry, no expectation.

import { readFile } from 'node:fs/promises';
import { updateFileAtomically } from '../atomic-write/index.js';
import { join } from 'node:path';

/** One measured conversion. */
export interface ConversionTime {
  readonly ms: number;
  /** When it finished (ISO time). */
  readonly at: string;
  /** What the guest turned out to be, e.g. "Debian GNU/Linux 12 (bookworm)"; for the basis text. */
  readonly os: string;
  /** A warm migration's rehearsal (throw-away overlays, no commit). */
  readonly rehearsal?: boolean;
}

export interface ConversionTimes {
  readonly version: 1;
  /** By VM identity (vmIdentity: vCenter host/UUID, or the file's path). */
  readonly vms: Record<string, ConversionTime>;
  /** By the OS the source declares (vSphere guestId, e.g. "debian12_64Guest"), known before converting. */
  readonly os: Record<string, ConversionTime>;
}

/** Who is converted: the keys an expected time is looked up and recorded under. */
export interface ConversionSubject {
  readonly identity?: string;
  readonly osKey?: string;
}

/** The time to expect and where it comes from (the progress displays word it). */
export interface ExpectedConversion {
  readonly ms: number;
  readonly from: 'this-vm' | 'this-vm-rehearsal' | 'same-os';
  /** When the measured conversion finished (ISO time). */
  readonly at: string;
  /** 'same-os': the OS key and what that guest turned out to be. */
  readonly osKey?: string;
  readonly os?: string;
}

// A few hundred entries keep the file small; the oldest go first.
const MAX_VMS = 200;
const MAX_OS = 50;

export function conversionTimesFile(stateDir: string): string {
  return join(stateDir, 'conversion-times.json');
}

export async function readConversionTimes(stateDir: string): Promise<ConversionTimes> {
  return parseConversionTimes(await readFile(conversionTimesFile(stateDir), 'utf8').catch(() => undefined));
}

/** None yet, or unreadable: no expectation, never a failed conversion. */
function parseConversionTimes(text: string | undefined): ConversionTimes {
  try {
    const t = JSON.parse(text ?? '') as ConversionTimes;
    if (t?.version === 1 && typeof t.vms === 'object' && t.vms !== null && typeof t.os === 'object' && t.os !== null) return t;
  } catch {
    // as none
  }
  return { version: 1, vms: {}, os: {} };
}

/**
 * The time to expect: the VM's own latest conversion (a rehearsal included, and the warm
 * journal's rehearsal when given), else the latest of a guest declaring the same OS, else none.
 */
export function expectedConversion(times: ConversionTimes, who: ConversionSubject, rehearsal?: { readonly ms: number; readonly at: string }): ExpectedConversion | undefined {
  const own = [who.identity === undefined ? undefined : times.vms[who.identity], rehearsal && { ...rehearsal, os: '', rehearsal: true }]
    .filter((t): t is ConversionTime => t !== undefined && t.ms > 0)
    .sort((a, b) => Date.parse(b.at) - Date.parse(a.at))[0];
  if (own) return { ms: own.ms, from: own.rehearsal ? 'this-vm-rehearsal' : 'this-vm', at: own.at };
  const same = who.osKey ? times.os[who.osKey] : undefined;
  if (same && same.ms > 0) return { ms: same.ms, from: 'same-os', at: same.at, osKey: who.osKey!, os: same.os };
  return undefined;
}

/** The times with one more measured conversion in; pure, so the choice above is testable. */
export function withConversion(times: ConversionTimes, who: ConversionSubject, t: ConversionTime): ConversionTimes {
  const vms = who.identity === undefined ? times.vms : newest({ ...times.vms, [who.identity]: t }, MAX_VMS);
  const os = who.osKey ? newest({ ...times.os, [who.osKey]: t }, MAX_OS) : times.os;
  return { version: 1, vms, os };
}

/**
 * Records a finished conversion (mode 0600, written whole and renamed; one process's in turn).
 * Two processes finishing at the same moment may lose one entry: the next conversion records
 * again, and nothing depends on it but the expectation shown.
 */
export async function recordConversionTime(stateDir: string, who: ConversionSubject, t: ConversionTime): Promise<void> {
  if (who.identity === undefined && !who.osKey) return;
  await updateFileAtomically(conversionTimesFile(stateDir), (text) => `${JSON.stringify(withConversion(parseConversionTimes(text), who, t), null, 1)}\n`);
}

function newest(entries: Record<string, ConversionTime>, max: number): Record<string, ConversionTime> {
  return Object.fromEntries(Object.entries(entries).sort(([, a], [, b]) => Date.parse(b.at) - Date.parse(a.at)).slice(0, max));
}

/**
 * The OS family of a vSphere guestId: the name without its version and word size, so guests of
 * one distribution share their conversion times across releases ("debian12_64Guest" and
 * "debian11Guest" → "debian", "rhel9_64Guest" → "rhel"; every Windows → "windows").
 */
export function osFamily(guestId: string): string {
  const g = guestId.toLowerCase().replace(/guest$/, '');
  if (g.startsWith('win')) return 'windows';
  return /^[a-z]+/.exec(g)?.[0] ?? g;
}

/** The latest measured conversion of any guest whose declared OS is of `family`, or none. */
export function latestOfFamily(times: ConversionTimes, family: string): (ConversionTime & { readonly osKey: string }) | undefined {
  return Object.entries(times.os)
    .filter(([osKey, t]) => osFamily(osKey) === family && t.ms > 0)
    .map(([osKey, t]) => ({ ...t, osKey }))
    .sort((a, b) => Date.parse(b.at) - Date.parse(a.at))[0];
}
