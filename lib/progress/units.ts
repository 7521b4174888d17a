// Sizes, durations and times as people write them, the other way round from formatBytes and
// formatDuration: sizes (512M, 2G), durations (90s, 5m, 1h) and a cutover time (an ISO date-time,
// or HH:MM meaning the next such local time). Options and plan files are read with them.

import { OneswapError } from '../errors/index.js';

const SIZE_UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Bytes from "1048576", "512K", "64M", "1.5G" (binary units; a trailing "iB" or "B" is allowed). */
export function parseSize(value: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(value.trim());
  if (!m) throw new OneswapError('usage', `${option} "${value}" is not a size`, { hint: 'e.g. 512M, 2G or a number of bytes' });
  return Math.floor(Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]!);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, '': 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds from "0", "90s", "5m", "1h" (a bare number is seconds). */
export function parseDuration(value: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|)$/i.exec(value.trim());
  if (!m) throw new OneswapError('usage', `${option} "${value}" is not a duration`, { hint: 'e.g. 90s, 5m or 1h' });
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!);
}

/** An ISO date-time, or HH:MM for the next time the local clock shows it. */
export function parseCutoverAt(value: string, now = new Date()): Date {
  const hm = /^(\d{1,2}):(\d{2})$/.exec(value.trim());
  if (hm) {
    const h = Number(hm[1]);
    const min = Number(hm[2]);
    if (h > 23 || min > 59) throw new OneswapError('usage', `--cutover-at "${value}" is not a time of day`);
    const at = new Date(now);
    at.setHours(h, min, 0, 0);
    if (at.getTime() <= now.getTime()) at.setDate(at.getDate() + 1);
    return at;
  }
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value.trim()) || Number.isNaN(t))
    throw new OneswapError('usage', `--cutover-at "${value}" is not a time`, { hint: 'e.g. 22:30 (the next 22:30 here) or 2026-11-24T22:30:00Z' });
  return new Date(t);
}
