// Where a plan's runs leave their state: `<state-dir>/plans/<plan>-<hash of its path>/`, holding
// status.json (rewritten while a run goes on, at once when a VM ends, so a run killed right
// after a VM finished still knows it finished) and each run's summary. `plan status` reads it
// from another shell; the next `plan run` of the same plan reads it to skip finished VMs.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { writeFileAtomicallySync } from '../atomic-write/index.js';
import { OneswapError } from '../errors/index.js';
import type { RunRecord, RunStatus } from './run-record.js';

export function planStateDir(stateDir: string, planPath: string): string {
  const abs = resolve(planPath);
  const hash = createHash('sha256').update(abs).digest('hex').slice(0, 12);
  return join(stateDir, 'plans', `${basename(abs).replace(/\.ya?ml$/i, '').replace(/[^A-Za-z0-9._-]+/g, '_')}-${hash}`);
}

export function statusFile(stateDir: string, planPath: string): string {
  return join(planStateDir(stateDir, planPath), 'status.json');
}

/**
 * Writes the record's status at most every `intervalMs`, and at once when asked. Every write is
 * synchronous (a few kilobytes): an older snapshot can never land after a newer one, and a write
 * asked for when a VM ends is on disk before the event goes on to the display, so whoever sees a
 * VM end (and kills the run) finds it recorded.
 */
export class StatusWriter {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly path: string,
    private readonly record: RunRecord,
    private readonly intervalMs = 1000,
  ) {}

  /** Something changed: written within the interval. */
  changed(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.now(false);
    }, this.intervalMs);
  }

  /** Written now. */
  now(ended: boolean): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    writeFileAtomicallySync(this.path, `${JSON.stringify(this.record.status(ended), null, 2)}\n`);
  }
}

/** The last status of the plan's runs, or undefined when it never ran here. */
export async function readStatus(stateDir: string, planPath: string): Promise<RunStatus | undefined> {
  const path = statusFile(stateDir, planPath);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  // JSON.parse's own message quotes the text, newlines and all: the error would not be one line.
  let s: unknown;
  try {
    s = JSON.parse(text);
  } catch {
    throw notAStatus(path, 'not JSON');
  }
  const o = typeof s === 'object' && s !== null ? (s as Partial<Record<keyof RunStatus, unknown>>) : {};
  if (o.version !== 1 || !Array.isArray(o.vms)) throw notAStatus(path, 'not a version 1 status');
  return s as RunStatus;
}

function notAStatus(path: string, why: string): OneswapError {
  return new OneswapError('data', `${path} is not a plan status oneswap wrote: ${why}`, { hint: 'remove it; the next plan run starts the plan\'s state afresh (the VMs it finished are then recognised in OpenNebula and skipped)' });
}

/** Whether the process that wrote a status still runs. */
export function writerAlive(status: RunStatus): boolean {
  try {
    process.kill(status.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
