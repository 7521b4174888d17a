// atomic-write: files that outlive the process (journals, statuses, measured rates, a directory
// target's resume state, a plan run's summaries) are written whole to `${file}.${pid}.tmp` and
// renamed over the file, so a crash or `kill -9` leaves either the old file or the new one,
// never half of one. Mode 0600 by default: these files name VMs, hosts and datastores. Imports
// nothing of oneswap's, so every layer may use it.

import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** Writes queued per file: two writes of one file in one process share its temporary name. */
const queued = new Map<string, Promise<void>>();

/**
 * Replaces `file` with `data` (its folder made, mode 0700, when missing). Writes of one file
 * land in the order they were asked for, each whole; a failed write removes its temporary file
 * and leaves the old file as it was.
 */
export function writeFileAtomically(file: string, data: string, mode = 0o600): Promise<void> {
  return queue(file, async () => data, mode);
}

/**
 * Replaces `file` with what `update` makes of its current text (undefined: no file yet), queued
 * with every other write of the file in this process, so updates never lose each other's
 * changes. `update` returning undefined leaves the file as it is.
 */
export function updateFileAtomically(file: string, update: (current: string | undefined) => string | undefined, mode = 0o600): Promise<void> {
  const current = (key: string): Promise<string | undefined> =>
    readFile(key, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
  return queue(file, async (key) => update(await current(key)), mode);
}

/** Writes what `data` gives (nothing when undefined) after every earlier write of the file. */
function queue(file: string, data: (key: string) => Promise<string | undefined>, mode: number): Promise<void> {
  const key = resolve(file);
  const write = async (): Promise<void> => {
    const text = await data(key);
    if (text === undefined) return;
    await mkdir(dirname(key), { recursive: true, mode: 0o700 });
    const tmp = `${key}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, text, { mode });
      await rename(tmp, key);
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
  };
  const next = (queued.get(key) ?? Promise.resolve()).then(write, write);
  queued.set(key, next);
  void next.catch(() => undefined).finally(() => {
    if (queued.get(key) === next) queued.delete(key);
  });
  return next;
}

/**
 * The same, done before it returns: for a record that must be on disk before anything else
 * happens (a VM's end before the display shows it and the user kills the run). Never mix it with
 * the asynchronous form on one file: it does not wait for that one's queue.
 */
export function writeFileAtomicallySync(file: string, data: string, mode = 0o600): void {
  const key = resolve(file);
  mkdirSync(dirname(key), { recursive: true, mode: 0o700 });
  const tmp = `${key}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, data, { mode });
    renameSync(tmp, key);
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // the write's own failure is the one to tell
    }
    throw e;
  }
}
