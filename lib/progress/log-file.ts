// The per-run log file: every event as a timestamped line, mode 0600, in the logs folder.

import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { EventSink } from '../supervisor/index.js';
import { plainLines } from './lines.js';

export interface RunLog {
  readonly path: string;
  readonly sink: EventSink;
  close(): Promise<void>;
}

export function openRunLog(dir: string, runId: string): RunLog {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${runId}.log`);
  const stream: WriteStream = createWriteStream(path, { flags: 'a', mode: 0o600 });
  return {
    path,
    // A line that arrives after close is dropped: losing it must not crash the run it records.
    sink: plainLines((line) => {
      if (!stream.writableEnded) stream.write(line);
    }, 5, true),
    close: () => new Promise((resolve) => stream.end(resolve)),
  };
}
