// How a benchmark checks what a contender produced (every output must equal the source before its
// time counts), and how it reports a target: PASS or MISS with the measured ratio.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { execa } from 'execa';
import type { Measurement } from './measure.js';

const MiB = 1024 * 1024;

/** SHA-256 of a file's first `length` bytes. */
export async function sha256Prefix(path: string, length: number): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, highWaterMark: 4 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** `qemu-img compare` of an output image with the raw source: 'ok' or the difference. */
export async function compareImage(path: string, format: 'raw' | 'qcow2', raw: string): Promise<string> {
  const r = await execa('qemu-img', ['compare', '-q', '-f', format, '-F', 'raw', path, raw], { reject: false });
  if (r.exitCode === 0) return 'ok';
  return r.exitCode === 1 ? 'DIFFERS' : `compare failed: ${String(r.stderr).trim().split('\n')[0]}`;
}

/** One target line: "PASS"/"MISS", what, the value; MISS without a value when a contender failed. */
export function check(what: string, valid: boolean, value: number, limit: number, unit = ''): string {
  if (!valid) return `  MISS  ${what}: no result (a contender failed)`;
  return `  ${value <= limit ? 'PASS' : 'MISS'}  ${what}: ${Number.isInteger(value) ? value : value.toFixed(2)}${unit ? ` ${unit}` : ''}`;
}

/** a's wall time (less `lessA` seconds) over b's, or '-' when either failed. */
export function ratio(a: Measurement, b: Measurement, lessA = 0): string {
  return a.ok && b.ok ? ((a.wallSeconds - lessA) / b.wallSeconds).toFixed(2) : '-';
}
