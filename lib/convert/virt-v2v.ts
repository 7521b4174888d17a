// Runs `virt-v2v-in-place -i libvirtxml` (Debian's virt-v2v 2.2). Its whole output (verbose and
// trace, for support) goes to the conversion log; its machine-readable messages become progress;
// a failure is classified so the user reads one line that says what to do.

import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { OneswapError } from '../errors/index.js';
import { missingProgram } from './tools.js';
import { applianceEnv, applianceHint } from './appliance.js';

export interface V2vRunOptions {
  readonly domainXmlPath: string;
  readonly logFile: string;
  readonly signal: AbortSignal;
  /** virt-v2v's progress messages ("Inspecting the source", "Converting … to run on KVM", …). */
  readonly onMessage?: (text: string) => void;
  readonly onWarning?: (text: string) => void;
}

export type V2vOutcome =
  | { readonly kind: 'converted' }
  | { readonly kind: 'no-os'; readonly reason: string };

/** Machine-readable lines virt-v2v 2.2 prints on stdout, mixed with human ones. */
interface V2vJsonLine {
  readonly type?: string;
  readonly message?: string;
}

const PROGRAM = 'virt-v2v-in-place';

export async function runVirtV2vInPlace(opts: V2vRunOptions): Promise<V2vOutcome> {
  opts.signal.throwIfAborted();
  const log = createWriteStream(opts.logFile, { flags: 'a', mode: 0o600 });
  const args = ['--machine-readable', '-v', '-x', '--root', 'first', '-i', 'libvirtxml', opts.domainXmlPath];
  log.write(`# ${new Date().toISOString()} ${PROGRAM} ${args.join(' ')}\n`);
  const child = spawn(PROGRAM, args, { env: await applianceEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: false });
  const onAbort = (): void => void child.kill('SIGTERM');
  opts.signal.addEventListener('abort', onAbort, { once: true });

  // The last lines of stderr, for the error: virt-v2v prints its own error last, libguestfs's
  // appliance errors just before it.
  const tail: string[] = [];
  let errorLine = '';
  const stdout = createInterface({ input: child.stdout });
  stdout.on('line', (line) => {
    log.write(`${line}\n`);
    const msg = parseJsonLine(line);
    if (!msg?.message) return;
    if (msg.type === 'message') {
      opts.onMessage?.(msg.message);
    } else if (msg.type === 'warning') {
      opts.onWarning?.(msg.message);
    } else if (msg.type === 'error') {
      errorLine = msg.message;
    }
  });
  const stderr = createInterface({ input: child.stderr });
  stderr.on('line', (line) => {
    log.write(`${line}\n`);
    tail.push(line);
    if (tail.length > 400) tail.splice(0, tail.length - 400);
    const msg = parseJsonLine(line);
    if (msg?.type === 'error' && msg.message) errorLine = msg.message;
  });

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: NodeJS.ErrnoException }>((resolve) => {
    child.once('error', (e: NodeJS.ErrnoException) => resolve({ code: null, signal: null, spawnError: e }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  opts.signal.removeEventListener('abort', onAbort);
  await new Promise<void>((resolve) => log.end(resolve));

  if (exit.spawnError?.code === 'ENOENT') throw missingProgram(PROGRAM);
  if (exit.spawnError) throw new OneswapError('conversion', `${PROGRAM} could not start: ${exit.spawnError.message}`);
  if (opts.signal.aborted) throw new OneswapError('interrupted', `conversion stopped (${PROGRAM} was killed)`);
  if (exit.code === 0) return { kind: 'converted' };
  return classifyFailure(errorLine || findErrorLine(tail), tail, opts.logFile);
}

function parseJsonLine(line: string): V2vJsonLine | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as V2vJsonLine;
  } catch {
    return undefined;
  }
}

function findErrorLine(tail: readonly string[]): string {
  const own = [...tail].reverse().find((l) => /^virt-v2v(-in-place)?: error: /.test(l));
  if (own) return own.replace(/^virt-v2v(-in-place)?: error: /, '');
  return [...tail].reverse().find((l) => /error/i.test(l))?.trim() ?? 'no error message (see the log)';
}

/**
 * Turns virt-v2v's last words into the outcome: no operating system is a notice, not an error;
 * an appliance that does not start says how to fix the host; anything else names the log.
 */
export function classifyFailure(error: string, tail: readonly string[], logFile: string): V2vOutcome {
  const oneLine = error.replace(/\s+/g, ' ').trim();
  if (/inspection could not detect the source guest|no root device found|no operating system/i.test(oneLine)) {
    // virt-v2v goes on for three sentences about blank disks; the first says it.
    return { kind: 'no-os', reason: /^[^.]*\./.exec(oneLine)?.[0] ?? oneLine };
  }
  // With -x libguestfs traces every call: a launch that returned -1 is the appliance not starting.
  const appliance =
    tail.some((l) => /\blaunch = -1\b/.test(l)) ||
    /guestfs_launch failed|could not connect to libvirt|appliance|supermin|qemu (exited|was killed|terminated)/i.test(oneLine);
  if (appliance) {
    throw new OneswapError('conversion', `guest conversion failed: the libguestfs appliance did not start: ${oneLine}; full log: ${logFile}`, {
      hint: applianceHint(),
    });
  }
  throw new OneswapError('conversion', `guest conversion failed: ${oneLine}; full log: ${logFile}`);
}
