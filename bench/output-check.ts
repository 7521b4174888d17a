// How a benchmark checks what a contender produced (every output must equal the source before its
// time counts), and how it reports a target: PASS or MISS with the measured ratio.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
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

/**
 * 'ok' when the qcow2 image's virtual disk is, byte for byte, the source (its sha256 and size):
 * `qemu-img convert -O raw` into a scratch file in `dir`, hashed and removed.
 */
export async function qcow2Matches(path: string, source: { sha256: string; sizeBytes: number }, dir: string): Promise<string> {
  const scratch = await mkdtemp(join(dir, 'qcow2-raw-'));
  const raw = join(scratch, 'disk.raw');
  try {
    await execa('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, raw]);
    const { size } = await stat(raw);
    return bytesMatch(size, await sha256Prefix(raw, size), source);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** 'ok' when `rbd export` of the image (through `rbd`, a command with the cluster's conf and id) is the source. */
export async function rbdMatches(rbd: readonly string[], image: string, source: { sha256: string; sizeBytes: number }): Promise<string> {
  const info = JSON.parse((await execa(rbd[0]!, [...rbd.slice(1), 'info', '--format', 'json', image])).stdout) as { size: number };
  const h = createHash('sha256');
  const exp = execa(rbd[0]!, [...rbd.slice(1), 'export', '--no-progress', image, '-'], { buffer: false, stdout: 'pipe' });
  for await (const chunk of exp.stdout!) h.update(chunk as Buffer);
  await exp;
  return bytesMatch(info.size, h.digest('hex'), source);
}

function bytesMatch(size: number, sha256: string, source: { sha256: string; sizeBytes: number }): string {
  if (size !== source.sizeBytes) return `SIZE ${size}`;
  return sha256 === source.sha256 ? 'ok' : 'DIFFERS';
}

/** One target line: "PASS"/"MISS", what, the value; MISS without a value when a contender failed. */
export function check(what: string, valid: boolean, value: number, limit: number, unit = ''): string {
  if (!valid) return `  MISS  ${what}: no result (a contender failed)`;
  return `  ${value <= limit ? 'PASS' : 'MISS'}  ${what}: ${Number.isInteger(value) ? value : value.toFixed(2)}${unit ? ` ${unit}` : ''}`;
}

/** A target that must hold exactly: PASS when `value` equals `expected`, otherwise MISS with both. */
export function checkExact(what: string, valid: boolean, value: number, expected: number, unit = ''): string {
  if (!valid) return `  MISS  ${what}: no result (a contender failed)`;
  const u = unit ? ` ${unit}` : '';
  return value === expected ? `  PASS  ${what}: ${value}${u}` : `  MISS  ${what}: ${value}${u}, expected ${expected}${u}`;
}

/** a's wall time (less `lessA` seconds) over b's, or '-' when either failed. */
export function ratio(a: Measurement, b: Measurement, lessA = 0): string {
  return a.ok && b.ok ? ((a.wallSeconds - lessA) / b.wallSeconds).toFixed(2) : '-';
}
