// qemu-img for the few questions and changes the image targets need outside qemu-nbd (how much
// of a qcow2 holds data, an RBD image's size). Its reason for a failure is handed to the caller,
// who knows what the image is and says what to do.

import { OneswapError } from '../errors/index.js';
import { onBridge, shellQuote } from './bridge-host.js';

export interface QemuImgOptions {
  readonly signal?: AbortSignal | undefined;
  /** Gives up after this long (Ceph's own timeouts are in the private ceph.conf; this is the backstop). */
  readonly timeoutMs?: number;
  /** A BRIDGE_LIST host to run qemu-img on, over ssh (bridge-host.ts); undefined: here. */
  readonly host?: string;
  /** The error for qemu-img's reason (its last error line, without the echoed image name). */
  readonly explain: (reason: string) => unknown;
}

/** Runs `qemu-img <args>` and returns its stdout. */
export async function qemuImg(args: readonly string[], options: QemuImgOptions): Promise<string> {
  if (options.host !== undefined) return qemuImgOnBridge(options.host, args, options);
  // Loaded here: execa is a fifth of oneswap's start-up, and most runs never ask qemu-img.
  const { execa } = await import('execa');
  const r = await execa('qemu-img', args, {
    reject: false,
    stdin: 'ignore',
    stripFinalNewline: true,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    timeout: options.timeoutMs ?? 300_000,
  });
  if (r.isCanceled) throw new OneswapError('interrupted', `qemu-img ${args[0]} was stopped`);
  if (r.exitCode === 0) return String(r.stdout);
  if ((r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')
    throw new OneswapError('usage', 'qemu-img is not installed', { hint: 'install the Debian package qemu-utils (./install.sh does)' });
  if (r.timedOut) throw options.explain(`qemu-img ${args[0]} did not finish within ${Math.round((options.timeoutMs ?? 300_000) / 1000)} s`);
  throw options.explain(qemuImgReason(String(r.stderr)) ?? `qemu-img ${args[0]} failed (exit code ${r.exitCode ?? r.signal})`);
}

async function qemuImgOnBridge(host: string, args: readonly string[], options: QemuImgOptions): Promise<string> {
  const r = await onBridge(host, `exec qemu-img ${args.map(shellQuote).join(' ')} </dev/null`, { signal: options.signal, timeoutMs: options.timeoutMs ?? 300_000 });
  if (r.code === 0) return r.stdout;
  if (r.code === 127)
    throw new OneswapError('usage', `qemu-img is not installed on the bridge host ${host}`, { hint: `install it there: ./install.sh --bridge on ${host} (Debian packages qemu-utils, qemu-block-extra)` });
  throw options.explain(qemuImgReason(r.stderr) ?? `qemu-img ${args[0]} failed on ${host} (exit code ${r.code})`);
}

/** "qemu-img: Could not open '<name>': <reason>" → "<reason>"; other "qemu-img: …" lines whole. */
export function qemuImgReason(stderr: string): string | undefined {
  const last = stderr.split('\n').filter((l) => l.startsWith('qemu-img: ')).at(-1);
  if (last === undefined) return undefined;
  const open = /^qemu-img: Could not open '(?:[^']|'(?!: ))*': (.+)$/.exec(last);
  return (open ? open[1]! : last.slice('qemu-img: '.length)).trim();
}
