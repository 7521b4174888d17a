// The options every command that runs a migration step shares: where OpenNebula is, where state
// and logs go, how progress shows (a live TTY display, plain lines, JSON lines), and the opt-in
// guest additions of a conversion.

import { OneswapError, describeError } from '../errors/index.js';
import { fanOut, type EventSink, type VmResult } from '../supervisor/index.js';
import { jsonLines, openRunLog, plainLines, ttyDisplay } from '../progress/index.js';

export interface RunCliOptions {
  progress?: string;
  endpoint?: string;
  stateDir?: string;
  logDir?: string;
  contextPackage?: string;
  guestAgent?: boolean;
}

export function progressDisplay(kind: string | undefined): EventSink {
  const mode = kind ?? (process.stderr.isTTY ? 'tty' : 'plain');
  switch (mode) {
    case 'tty':
      return ttyDisplay(process.stderr);
    case 'plain':
      return plainLines((l) => process.stderr.write(l));
    case 'json':
      return jsonLines((l) => process.stdout.write(l));
    default:
      throw new OneswapError('usage', `--progress "${kind}" is not one of tty, plain, json`);
  }
}

/** One run: its log file, the progress display, the results turned into one exit code. */
export async function inRun(o: RunCliOptions, opts: { readonly logDir: string; readonly runId: string }, body: (emit: EventSink, warn: (m: string) => void, logFile: string) => Promise<VmResult[]>): Promise<number> {
  const runLog = openRunLog(opts.logDir, opts.runId);
  const display = progressDisplay(o.progress);
  const emit = fanOut(display, runLog.sink);
  const warn = (message: string): void => emit({ type: 'log', level: 'warn', message });
  emit({ type: 'run', state: 'start', runId: opts.runId, logFile: runLog.path });
  let results: VmResult[];
  try {
    results = await body(emit, warn, runLog.path);
  } catch (err) {
    // The display gets the error once, as the command's last line (main.ts); the log keeps it too.
    runLog.sink({ type: 'log', level: 'error', message: describeError(err) });
    emit({ type: 'run', state: 'end', runId: opts.runId, ok: false });
    await runLog.close();
    throw err;
  }
  const failed = results.filter((r) => !r.ok);
  emit({ type: 'run', state: 'end', runId: opts.runId, ok: failed.length === 0 });
  await runLog.close();
  if (failed.length === 0) return 0;
  const first = failed[0]!.error;
  if (results.length === 1) throw first;
  // A batch keeps the exit code of its first failure and names every failed VM on the one line.
  const kind = first instanceof OneswapError ? first.kind : 'internal';
  throw new OneswapError(kind, `${failed.length} of ${results.length} VMs failed: ${failed.map((f) => `${f.vm}: ${describeError(f.error)}`).join('; ')}`);
}
