// How long a VM's steps around its copy take, kept in the state directory for `plan estimate`:
// before it (precheck and placeholders: vCenter calls, OpenNebula's mkfs of each image) and after
// it (template, VM, the images marked DONE). In a run of many VMs they hold a VM's place in flight
// as much as its copy does. Only finished imports count; older samples fade after MAX_COUNT.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { updateFileAtomically } from '../atomic-write/index.js';

/** The mean of the samples kept. */
export interface StepTime {
  readonly ms: number;
  readonly count: number;
  /** The latest sample (ISO time). */
  readonly at: string;
}

export interface StepTimes {
  readonly version: 1;
  readonly prep?: StepTime;
  readonly build?: StepTime;
}

/** One finished import's steps. */
export interface StepSample {
  readonly prepMs: number;
  readonly buildMs: number;
  readonly at: string;
}

const MAX_COUNT = 8;

export function stepTimesFile(stateDir: string): string {
  return join(stateDir, 'step-times.json');
}

export async function readStepTimes(stateDir: string): Promise<StepTimes> {
  return parseStepTimes(await readFile(stepTimesFile(stateDir), 'utf8').catch(() => undefined));
}

/** None yet, or unreadable: nothing measured, never a failed import. */
function parseStepTimes(text: string | undefined): StepTimes {
  try {
    const t = JSON.parse(text ?? '') as StepTimes;
    if (t?.version === 1) return t;
  } catch {
    // as none
  }
  return { version: 1 };
}

const fold = (old: StepTime | undefined, ms: number, at: string): StepTime => {
  const count = Math.min(MAX_COUNT, (old?.count ?? 0) + 1);
  // The mean of the last MAX_COUNT samples, older ones fading.
  return { ms: old ? old.ms + (ms - old.ms) / count : ms, count, at };
};

/** The times with one more import in; pure. */
export function withStepSample(t: StepTimes, s: StepSample): StepTimes {
  return { version: 1, prep: fold(t.prep, s.prepMs, s.at), build: fold(t.build, s.buildMs, s.at) };
}

/** Records a finished import's steps (mode 0600, written whole and renamed; one process's in turn, none lost). */
export function recordStepSample(stateDir: string, s: StepSample): Promise<void> {
  return updateFileAtomically(stepTimesFile(stateDir), (text) => `${JSON.stringify(withStepSample(parseStepTimes(text), s), null, 1)}\n`);
}
