// The resume journal: what a migration run has created and copied, persisted after each step so
// that a crash, kill -9 or Ctrl-C followed by the same command continues instead of starting over.
// One JSON file per source VM, written atomically (temp file + rename), mode 0600.

import type { ReaderKind } from '../input/index.js';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { writeFileAtomically } from '../atomic-write/index.js';
import { PidLock } from './pid-lock.js';
import { OneswapError } from '../errors/index.js';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { normalizeExtents, type Extent } from '../extents/index.js';

export interface JournalDisk {
  readonly sourceKey: string;
  readonly imageId: number;
  readonly imagePath: string;
  readonly capacityBytes: number;
  /** Ranges already written into the image (merged). */
  done: Extent[];
  complete: boolean;
  /** Warm: the image equals the disk at the snapshot with this changeId, outside `pending`. */
  changeId?: string;
  /** Warm: the areas of the round under way; those in `done` are written already. */
  pending?: Extent[];
}

/** One finished CBT round of a warm migration, for the status and the downtime prediction. */
export interface WarmRound {
  readonly round: number;
  /** Some disk was copied in full: the first round, or CBT was reset. */
  readonly full: boolean;
  readonly final: boolean;
  /** When the round's snapshot was taken: the point in time the images now hold. */
  readonly snapshotAt: string;
  readonly snapshotMs: number;
  readonly copyMs: number;
  /** Bytes of areas copied in this round, per disk source key. */
  readonly bytes: Record<string, number>;
  /** The reader each disk was read with, per disk source key (absent in older journals). */
  readonly readers?: Record<string, ReaderKind>;
}

export interface WarmState {
  rounds: WarmRound[];
  /** Rounds done before this journal existed (resumed from the images' attributes). */
  baseRound?: number;
  /** oneswap's migration snapshot (moref) while a round or the cutover holds one. */
  snapshot?: string;
  /**
   * Whether the cutover converts the guest: set by the stage that started the migration, turned off
   * for good by any stage run with --no-convert. Absent in older journals: converts.
   */
  convert?: boolean;
  /** The conversion tried on throw-away overlays during the rounds; `noOs`: it found no operating system. */
  rehearsal?: { readonly ok: boolean; readonly at: string; readonly durationMs: number; readonly detail: string; readonly noOs?: boolean };
  /** Set when the cutover began; the source's power state before it decides the rollback. */
  cutover?: { readonly startedAt: string; readonly sourceWasOn: boolean };
}

export interface JournalData {
  readonly version: 1;
  /** Source identity (vCenter host + instance UUID) and target datastore. */
  readonly source: string;
  readonly datastoreId: number;
  readonly createdAt: string;
  disks: JournalDisk[];
  /** Address ranges oneswap added to keep MACs, to take back on rollback. */
  addressRanges: Array<{ readonly vnetId: number; readonly arId: number }>;
  templateId?: number;
  vmId?: number;
  /**
   * IPv4 address per NIC index that VMware Tools reported while the source ran (the last precheck
   * that saw it running), for --keep-ip after the shutdown and on resume.
   */
  reportedAddresses?: Record<string, string>;
  /** The source VM was running and oneswap shut it down. */
  shutDownByUs?: boolean;
  /** Present for a warm migration. */
  warm?: WarmState;
}

export function defaultStateDir(): string {
  if (process.env.ONESWAP_STATE_DIR) return process.env.ONESWAP_STATE_DIR;
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'oneswap');
}

export class Journal {
  private pending: Promise<void> = Promise.resolve();
  private lastFlush = 0;

  private constructor(
    readonly file: string,
    readonly data: JournalData,
  ) {}

  /** The state directory the journal lives in (fileFor's layout). */
  get stateDir(): string {
    return dirname(dirname(this.file));
  }

  static fileFor(stateDir: string, source: string, datastoreId: number): string {
    const safe = source.replace(/[^A-Za-z0-9._-]+/g, '_');
    return join(stateDir, 'journal', `${safe}.ds${datastoreId}.json`);
  }

  /** Loads the journal of an earlier, unfinished run, or starts a new one. */
  static async open(stateDir: string, source: string, datastoreId: number): Promise<{ journal: Journal; resumed: boolean }> {
    const file = Journal.fileFor(stateDir, source, datastoreId);
    try {
      const data = JSON.parse(await readFile(file, 'utf8')) as JournalData;
      if (data.version === 1 && data.source === source && data.datastoreId === datastoreId) return { journal: new Journal(file, data), resumed: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !(err instanceof SyntaxError)) throw err;
    }
    const data: JournalData = { version: 1, source, datastoreId, createdAt: new Date().toISOString(), disks: [], addressRanges: [] };
    return { journal: new Journal(file, data), resumed: false };
  }

  disk(sourceKey: string): JournalDisk | undefined {
    return this.data.disks.find((d) => d.sourceKey === sourceKey);
  }

  /** Records a finished range; persisted at most every `intervalMs` (and on flush()). */
  rangeDone(sourceKey: string, range: Extent, intervalMs = 2000): void {
    const d = this.disk(sourceKey);
    if (!d) return;
    d.done = normalizeExtents([...d.done, range], d.capacityBytes);
    if (Date.now() - this.lastFlush >= intervalMs) void this.flush().catch(() => undefined);
  }

  /** Writes the journal now; writes of one file land in the order asked, never interleaved. */
  flush(): Promise<void> {
    this.lastFlush = Date.now();
    this.pending = writeFileAtomically(this.file, JSON.stringify(this.data, null, 1));
    return this.pending;
  }

  /** The migration finished (or was rolled back): nothing left to resume. */
  async remove(): Promise<void> {
    await this.pending.catch(() => undefined);
    await rm(this.file, { force: true });
    await rm(this.cutoverRequestFile, { force: true });
  }

  private get cutoverRequestFile(): string {
    return `${this.file}.cutover`;
  }

  private get vmLock(): PidLock {
    return new PidLock(`${this.file}.lock`);
  }

  /**
   * Makes this process the only one migrating the VM. A lock whose process is gone (kill -9) is
   * taken over. Throws a conflict naming the process that holds it.
   */
  async lock(vm: string): Promise<void> {
    const holder = await this.vmLock.tryAcquire();
    if (holder !== undefined)
      throw new OneswapError('conflict', `another oneswap (pid ${holder}) is migrating VM ${vm} right now`, {
        hint: `wait for it; to cut a running warm migration over, run: oneswap warm cutover ${vm}`,
      });
  }

  async unlock(): Promise<void> {
    await this.vmLock.release();
  }

  /** The live process holding the lock, if any. */
  async lockHolder(): Promise<number | undefined> {
    return this.vmLock.holder();
  }

  /** Asks the process running the warm rounds to cut over after its current round. */
  async requestCutover(): Promise<void> {
    await writeFile(this.cutoverRequestFile, new Date().toISOString(), { mode: 0o600 });
  }

  /** True once, when a cutover was requested. */
  async takeCutoverRequest(): Promise<boolean> {
    try {
      await rm(this.cutoverRequestFile);
      return true;
    } catch {
      return false;
    }
  }
}
