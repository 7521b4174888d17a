// Runs one contender of a benchmark as a child process and measures it from outside, the same way
// for every contender: wall time, peak RSS (GNU time, largest process of the tree), bytes written
// to storage (the /proc/<pid>/io write_bytes of a wrapper shell, which includes every reaped
// child), and bytes through the counting proxy in front of the vCenter simulator.

import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TcpProxy } from '../test/peers/net/tcp-proxy.js';

export interface Measurement {
  readonly name: string;
  readonly wallSeconds: number;
  readonly peakRssBytes: number;
  readonly writtenBytes: number;
  readonly networkBytes: number;
  readonly ok: boolean;
  readonly note?: string;
}

export async function measure(
  name: string,
  command: string,
  opts: { env?: Record<string, string>; proxy: TcpProxy; timeoutMs?: number; cwd?: string },
): Promise<Measurement> {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-bench-'));
  const timeFile = join(dir, 'time');
  const ioFile = join(dir, 'io');
  opts.proxy.reset();
  const started = process.hrtime.bigint();
  // The inner shell runs the command, then reads its own io counters (children are reaped by then).
  const inner = `${command}\nrc=$?\ncat /proc/$$/io > ${ioFile}\nexit $rc`;
  const r = await execa('/usr/bin/time', ['-f', '%M', '-o', timeFile, 'sh', '-c', inner], {
    env: { ...process.env, ...opts.env },
    reject: false,
    timeout: opts.timeoutMs ?? 30 * 60_000,
    cwd: opts.cwd,
    stdin: 'ignore',
  });
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const networkBytes = opts.proxy.counters.down + opts.proxy.counters.up;
  const peakKb = Number((await readFile(timeFile, 'utf8').catch(() => '0')).trim().split('\n').pop());
  const io = await readFile(ioFile, 'utf8').catch(() => '');
  const writtenBytes = Number(/^write_bytes:\s*(\d+)/m.exec(io)?.[1] ?? 'NaN');
  await rm(dir, { recursive: true, force: true });
  const ok = r.exitCode === 0;
  return {
    name,
    wallSeconds,
    peakRssBytes: peakKb * 1024,
    writtenBytes,
    networkBytes,
    ok,
    note: ok ? undefined : `exit ${r.exitCode}: ${String(r.stderr).trim().split('\n').slice(-2).join(' | ')}`,
  };
}

const MiB = 1024 * 1024;

export function table(rows: readonly Measurement[], dataBytes: number): string {
  const head = ['contender', 'wall s', 'network MiB', 'net/data', 'written MiB', 'written/data', 'peak RSS MiB', 'status'];
  const body = rows.map((m) => [
    m.name,
    m.wallSeconds.toFixed(2),
    (m.networkBytes / MiB).toFixed(0),
    (m.networkBytes / dataBytes).toFixed(2),
    (m.writtenBytes / MiB).toFixed(0),
    (m.writtenBytes / dataBytes).toFixed(2),
    (m.peakRssBytes / MiB).toFixed(0),
    m.ok ? 'ok' : `FAILED ${m.note ?? ''}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}
