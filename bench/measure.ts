// Runs one contender of a benchmark as a child process and measures it from outside, the same way
// for every contender: wall time, CPU time and peak RSS (GNU time: CPU of the whole tree, RSS of
// its largest process), bytes written to storage (the /proc/<pid>/io write_bytes of a wrapper
// shell, which includes every reaped child, plus what a storage server outside the tree received,
// such as a Ceph OSD), bytes over the network and the server's CPU time (counters the caller
// reads before and after).
//
// The contender runs in a process group of its own, so a timeout or a stall kills the whole tree
// (GNU time, the shell, and whatever they started), not just the first process.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Measurement {
  readonly name: string;
  readonly wallSeconds: number;
  /** User + system CPU of the contender's process tree. */
  readonly cpuSeconds: number;
  /** CPU the server (the vCenter simulator) used meanwhile. */
  readonly serverCpuSeconds: number;
  readonly peakRssBytes: number;
  readonly writtenBytes: number;
  readonly networkBytes: number;
  readonly ok: boolean;
  /** Why it failed, or a remark on how it ran (shown under the table). */
  readonly note?: string;
  /** Result of the output check: 'ok', 'n/a', or what is wrong. */
  check?: string;
  /** Bytes the output image allocates in its store (qcow2 data clusters, RBD objects), where measured. */
  allocatedBytes?: number;
}

export interface MeasureOptions {
  readonly env?: Record<string, string>;
  /** Bytes over the network so far (any monotonic counter); read before and after. */
  readonly network: () => number;
  /** CPU seconds the server has used so far; read before and after. */
  readonly serverCpu: () => number;
  /**
   * Bytes a storage server outside the contender's tree has received so far (a Ceph OSD's
   * counter), read before and after the run and added to its bytes written.
   */
  readonly storeWritten?: () => Promise<number>;
  /** Whole-run bound (default 10 min). */
  readonly timeoutMs?: number;
  /** Kill the contender when the network counter has not moved for this long (default: never). */
  readonly stallMs?: number;
  readonly cwd?: string;
}

// Ctrl-C (or SIGTERM) reaches a detached contender only through us: it is killed, the pending
// measure() rejects and the benchmark's own clean-up runs. A second signal ends the process.
const contenders = new Set<number>();
let interrupted: NodeJS.Signals | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = sig;
    process.exitCode = sig === 'SIGINT' ? 130 : 143;
    for (const pid of contenders) killGroup(pid);
  });
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export async function measure(name: string, command: string, opts: MeasureOptions): Promise<Measurement> {
  if (interrupted !== undefined) throw new Error(`benchmark interrupted (${interrupted})`);
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-bench-'));
  const timeFile = join(dir, 'time');
  const ioFile = join(dir, 'io');
  // The inner shell runs the command, then reads its own io counters (children are reaped by then).
  const inner = `${command}\nrc=$?\ncat /proc/$$/io > ${ioFile}\nexit $rc`;
  const store0 = await opts.storeWritten?.();
  const net0 = opts.network();
  const cpu0 = opts.serverCpu();
  const started = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', ['-f', '%M %U %S', '-o', timeFile, 'sh', '-c', inner], {
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true, // own process group: killed as a whole
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  contenders.add(child.pid!);
  let killedFor: string | undefined;
  const killTree = (why: string): void => {
    if (killedFor !== undefined) return;
    killedFor = why;
    killGroup(child.pid!);
  };
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  const timer = setTimeout(() => killTree(`timed out after ${Math.round(timeoutMs / 1000)} s`), timeoutMs);
  let lastNet = net0;
  let lastMove = Date.now();
  const watch = setInterval(() => {
    if (opts.stallMs === undefined) return;
    const now = opts.network();
    if (now !== lastNet) {
      lastNet = now;
      lastMove = Date.now();
    } else if (Date.now() - lastMove > opts.stallMs) {
      killTree(`stalled: no byte over the network for ${Math.round(opts.stallMs / 1000)} s`);
    }
  }, 250);
  const exitCode = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  contenders.delete(child.pid!);
  clearTimeout(timer);
  clearInterval(watch);
  if (interrupted !== undefined) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`benchmark interrupted (${interrupted}) during ${name}`);
  }
  const networkBytes = opts.network() - net0;
  const serverCpuSeconds = opts.serverCpu() - cpu0;
  const storeBytes = store0 === undefined ? 0 : (await opts.storeWritten!()) - store0;
  // GNU time's last line: "<max RSS KiB> <user s> <system s>" (earlier lines: exit status).
  const [peakKb = NaN, user = NaN, system = NaN] = ((await readFile(timeFile, 'utf8').catch(() => '')).trim().split('\n').pop() ?? '').split(' ').map(Number);
  const io = await readFile(ioFile, 'utf8').catch(() => '');
  const writtenBytes = Number(/^write_bytes:\s*(\d+)/m.exec(io)?.[1] ?? 'NaN') + storeBytes;
  await rm(dir, { recursive: true, force: true });
  const ok = killedFor === undefined && exitCode === 0;
  const lastLines = stderr
    .trim()
    .split('\n')
    .filter((l) => !/^Command (exited|terminated)/.test(l))
    .slice(-2)
    .join(' | ');
  return {
    name,
    wallSeconds,
    cpuSeconds: user + system,
    serverCpuSeconds,
    peakRssBytes: (Number.isFinite(peakKb) ? peakKb : 0) * 1024,
    writtenBytes,
    networkBytes,
    ok,
    ...(ok ? {} : { note: killedFor ?? `exit ${exitCode}: ${lastLines}` }),
  };
}

/** User + system CPU seconds a process has used (/proc/PID/stat utime + stime): a server's CPU. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux

const MiB = 1024 * 1024;

/**
 * The result table; ratios against the data size and against `reference`'s wall time (the column
 * is headed by `opts.against`, "x curl" by default). `opts.network: false` leaves out the network
 * and server columns (a benchmark without a server). The allocation columns appear when a row has
 * `allocatedBytes`.
 */
export function table(rows: readonly Measurement[], dataBytes: number, reference: Measurement, opts: { readonly against?: string; readonly network?: boolean } = {}): string {
  const network = opts.network ?? true;
  const allocation = rows.some((m) => m.allocatedBytes !== undefined);
  const num = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '?');
  const columns: Array<{ head: string; left?: boolean; net?: boolean; alloc?: boolean; cell: (m: Measurement) => string }> = [
    { head: 'contender', left: true, cell: (m) => m.name },
    { head: 'wall s', cell: (m) => m.wallSeconds.toFixed(2) },
    { head: opts.against ?? 'x curl', cell: (m) => (m.ok && reference.ok ? (m.wallSeconds / reference.wallSeconds).toFixed(2) : '-') },
    { head: 'CPU s', cell: (m) => num(m.cpuSeconds, 2) },
    { head: 'server CPU s', net: true, cell: (m) => num(m.serverCpuSeconds, 2) },
    { head: 'network MiB', net: true, cell: (m) => (m.networkBytes / MiB).toFixed(0) },
    { head: 'net/data', net: true, cell: (m) => (m.networkBytes / dataBytes).toFixed(2) },
    { head: 'written MiB', cell: (m) => num(m.writtenBytes / MiB, 0) },
    { head: 'written/data', cell: (m) => num(m.writtenBytes / dataBytes, 2) },
    { head: 'allocated MiB', alloc: true, cell: (m) => (m.allocatedBytes === undefined ? '-' : num(m.allocatedBytes / MiB, 2)) },
    { head: 'alloc/data', alloc: true, cell: (m) => (m.allocatedBytes === undefined ? '-' : num(m.allocatedBytes / dataBytes, 4)) },
    { head: 'peak RSS MiB', cell: (m) => (m.peakRssBytes / MiB).toFixed(0) },
    { head: 'output', left: true, cell: (m) => m.check ?? 'n/a' },
    { head: 'status', left: true, cell: (m) => (m.ok ? 'ok' : 'FAILED') },
  ];
  const shown = columns.filter((c) => (network || !c.net) && (allocation || !c.alloc));
  const body = rows.map((m) => shown.map((c) => c.cell(m)));
  const widths = shown.map((c, i) => Math.max(c.head.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (shown[i]!.left ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(shown.map((c) => c.head)), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}
