// How long a VM's steps around its copy take, kept in the state directory for `plan estimate`:
// before it (precheck and placeholders: vCenter calls, OpenNebula's mkfs of each image) and after
// it (template, VM, the images marked DONE). In a run of many VMs they hold a VM's place in flight
// as much as its copy does. Only finished imports count; older samples fade after MAX_COUNT.

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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
  try {
    const t = JSON.parse(await readFile(stepTimesFile(stateDir), 'utf8')) as StepTimes;
    if (t.version === 1) return t;
  } catch {
    // none yet, or unreadable: nothing measured, never a failed import
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

// One process records one import after another, so parallel imports never lose each other's sample.
let queue: Promise<void> = Promise.resolve();

/** Records a finished import's steps (mode 0600, written whole and renamed). */
export function recordStepSample(stateDir: string, s: StepSample): Promise<void> {
  const write = queue.then(async () => {
    const next = withStepSample(await readStepTimes(stateDir), s);
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const file = stepTimesFile(stateDir);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(next, null, 1)}\n`, { mode: 0o600 });
    await rename(tmp, file);
  });
  queue = write.catch(() => undefined);
  return write;
}
