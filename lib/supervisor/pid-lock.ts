// A lock file holding the pid of its owner, for work that one process at a time may do on this
// machine (migrating a VM, converting a group of images). A lock whose process is gone (kill -9,
// a crash) counts as free and is taken over.

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export class PidLock {
  constructor(readonly file: string) {}

  /** Takes the lock; returns undefined when taken, else the pid of the live process holding it. */
  async tryAcquire(): Promise<number | undefined> {
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(this.file, String(process.pid), { flag: 'wx', mode: 0o600 });
        return undefined;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await this.holder();
      if (holder !== undefined) return holder;
      await rm(this.file, { force: true });
    }
    return (await this.holder()) ?? -1;
  }

  /** Waits until the lock is taken; `signal` ends the wait. */
  async acquire(signal: AbortSignal, pollMs = 200): Promise<void> {
    while ((await this.tryAcquire()) !== undefined) {
      signal.throwIfAborted();
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  async release(): Promise<void> {
    if ((await this.holder()) === process.pid) await rm(this.file, { force: true });
  }

  /** The live process holding the lock, if any. */
  async holder(): Promise<number | undefined> {
    let pid: number;
    try {
      pid = Number.parseInt(await readFile(this.file, 'utf8'), 10);
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    try {
      process.kill(pid, 0);
      return pid;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
    }
  }
}
