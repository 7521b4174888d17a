// Runs the external programs conversion needs (qemu-img, virt-v2v-in-place, guestfish,
// virt-customize) with one error shape: a missing program names its Debian package, a failing one
// gives its last error line.

import { OneswapError, type ErrorKind } from '../errors/index.js';

/** The Debian package of each program, for the "not installed" hint. */
const PACKAGES: Record<string, string> = {
  'qemu-img': 'qemu-utils',
  'virt-v2v-in-place': 'virt-v2v',
  guestfish: 'libguestfs-tools',
  'virt-customize': 'guestfs-tools',
};

export interface ToolOptions {
  readonly signal?: AbortSignal | undefined;
  readonly env?: Record<string, string | undefined>;
  /** The error kind when the program fails (default: conversion). */
  readonly kind?: ErrorKind;
  readonly input?: string;
}

export async function runTool(program: string, args: readonly string[], options: ToolOptions = {}): Promise<{ stdout: string; stderr: string }> {
  // Loaded here: execa is a fifth of oneswap's start-up and most commands never convert.
  const { execa } = await import('execa');
  const r = await execa(program, args, {
    reject: false,
    stripFinalNewline: true,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    ...(options.env ? { env: options.env } : {}),
    ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
  });
  if (r.isCanceled) throw new OneswapError('interrupted', `${program} was stopped`);
  if (r.exitCode === 0) return { stdout: String(r.stdout), stderr: String(r.stderr) };
  if ((r.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') throw missingProgram(program);
  const last = lastErrorLine(String(r.stderr)) || `exit code ${r.exitCode ?? r.signal}`;
  throw new OneswapError(options.kind ?? 'conversion', `${program} ${args[0] ?? ''} failed: ${last}`.replace(/\s+/g, ' '));
}

export function missingProgram(program: string): OneswapError {
  const pkg = PACKAGES[program];
  return new OneswapError('usage', `${program} is not installed`, {
    hint: pkg ? `install the Debian package ${pkg} (./install.sh does)` : 'install it (./install.sh does)',
  });
}

/** The most telling line of a tool's stderr: its last "error" line, else its last line. */
export function lastErrorLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  return [...lines].reverse().find((l) => /error/i.test(l)) ?? lines.at(-1) ?? '';
}
