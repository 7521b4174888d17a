// The resume journal: what a migration run has created and copied, persisted after each step so
// that a crash, kill -9 or Ctrl-C followed by the same command continues instead of starting over.
// One JSON file per source VM, written atomically (temp file + rename), mode 0600.

import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { normalizeExtents, type Extent } from '../extents/index.js';

export interface JournalDisk {
  readonly sourceKey: string;
  readonly imageId: number;
  readonly imagePath: string;
  readonly capacityBytes: number;
  /** Ranges already written into the image (merged). */
  done: Extent[];
  complete: boolean;
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
  /** The source VM was running and oneswap shut it down. */
  shutDownByUs?: boolean;
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

  /** Writes the journal now; serialized so two writes never interleave. */
  flush(): Promise<void> {
    this.lastFlush = Date.now();
    const body = JSON.stringify(this.data, null, 1);
    this.pending = this.pending.then(async () => {
      await mkdir(join(this.file, '..'), { recursive: true, mode: 0o700 });
      const tmp = `${this.file}.${process.pid}.tmp`;
      await writeFile(tmp, body, { mode: 0o600 });
      await rename(tmp, this.file);
    });
    return this.pending;
  }

  /** The migration finished (or was rolled back): nothing left to resume. */
  async remove(): Promise<void> {
    await this.pending.catch(() => undefined);
    await rm(this.file, { force: true });
  }
}
