// The whole suite in two lanes that run side by side: the files that convert or boot the Debian
// guest (minutes of emulated CPU each, found by their call of testGuest()), and all the
// others (unit tests first). Inside a lane, files run one at a time, as each starts its own peers.
// The guest lane is the long one and runs at the lowest CPU priority (see lowered()); the other
// lane's tests mostly wait on sockets and timers, so the two together take little more than the
// guest lane alone.
//
//   node --import tsx test/lanes.ts [--lane guest|rest]
//
// Each line is printed as it comes, prefixed with its lane; the exit code is non-zero when either
// lane failed. The lanes' TAP output is kept whole in test-results/ for reading afterwards.

import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

interface Lane {
  readonly name: 'guest' | 'rest';
  readonly files: readonly string[];
}

interface LaneResult {
  readonly name: string;
  readonly code: number;
  readonly seconds: number;
  readonly counts: string;
}

const root = join(import.meta.dirname, '..');

async function lanes(): Promise<Lane[]> {
  const dir = join(root, 'test', 'integration');
  const integration = (await readdir(dir)).filter((f) => f.endsWith('.test.ts')).sort();
  const guest: string[] = [];
  const rest: string[] = [];
  for (const f of integration) {
    const text = await readFile(join(dir, f), 'utf8');
    (/\btestGuest\(/.test(text) ? guest : rest).push(join('test', 'integration', f));
  }
  const unit = (await readdir(join(root, 'test', 'unit'))).filter((f) => f.endsWith('.test.ts')).sort().map((f) => join('test', 'unit', f));
  return [
    { name: 'guest', files: guest },
    { name: 'rest', files: [...unit, ...rest] },
  ];
}

/**
 * The guest lane runs at the lowest CPU priority: the libguestfs appliance runs with as many
 * emulated CPUs as the host has, and under TCG each takes a whole core, which would starve the
 * other lane's tests of the time their timeouts assume (a 1 s export lease, a keep-alive). At
 * nice 19 it still gets every cycle the other lane leaves, which is most of them: that lane's
 * tests mostly wait. (Held to one CPU instead, a conversion took twice as long.)
 */
function lowered(lane: Lane): string[] {
  return lane.name === 'guest' ? ['nice', '-n', '19'] : [];
}

function runLane(lane: Lane, outDir: string): { done: Promise<LaneResult>; stop: (sig: NodeJS.Signals) => void } {
  const t0 = Date.now();
  const tap = createWriteStream(join(outDir, `${lane.name}.tap`));
  const argv = [...lowered(lane), process.execPath, '--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=tap', ...lane.files];
  if (argv[0] === 'nice') process.stdout.write(`[${lane.name}] at nice 19\n`);
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const counts: Record<string, string> = {};
  const prefix = `[${lane.name}] `;
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      tap.write(`${line}\n`);
      process.stdout.write(`${prefix}${line}\n`);
      const m = /^# (tests|pass|fail|cancelled|skipped) (\d+)$/.exec(line);
      if (m) counts[m[1]!] = m[2]!;
    });
  }
  const done = new Promise<LaneResult>((resolve) => {
    child.on('close', (code, signal) => {
      tap.end();
      resolve({
        name: lane.name,
        code: code ?? (signal ? 1 : 0),
        seconds: Math.round((Date.now() - t0) / 1000),
        counts: Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ') || 'no counts (the runner stopped early)',
      });
    });
  });
  // The lane's runner and the test processes it starts share one process group.
  const stop = (sig: NodeJS.Signals): void => {
    try {
      if (child.pid) process.kill(-child.pid, sig);
    } catch {
      // already gone
    }
  };
  return { done, stop };
}

async function main(): Promise<number> {
  const only = process.argv.includes('--lane') ? process.argv[process.argv.indexOf('--lane') + 1] : undefined;
  const chosen = (await lanes()).filter((l) => only === undefined || l.name === only);
  if (chosen.length === 0) throw new Error(`no lane "${only}": say guest or rest`);
  const outDir = join(root, 'test-results');
  await mkdir(outDir, { recursive: true });
  const running = chosen.map((l) => runLane(l, outDir));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => running.forEach((r) => r.stop(sig)));
  const results = await Promise.all(running.map((r) => r.done));
  for (const r of results) process.stdout.write(`lane ${r.name}: ${r.code === 0 ? 'passed' : `FAILED (exit ${r.code})`} in ${r.seconds} s: ${r.counts}\n`);
  return results.some((r) => r.code !== 0) ? 1 : 0;
}

process.exitCode = await main();
