// Runs the real oneswap command (from the TypeScript sources) as a child process, the way a user
// runs it: argv, environment, exit code, stdout, stderr.

import { execa, type ResultPromise } from 'execa';
import { fileURLToPath } from 'node:url';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withHiddenDirs } from '../support/hidden-dirs.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(REPO_ROOT, 'lib', 'cli', 'main.ts');

export interface CliRun {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /**
   * Directories oneswap must not reach through a local path (a BRIDGE_LIST datastore's files, which
   * live on the bridge host): see withHiddenDirs.
   */
  readonly hide?: readonly string[];
}

export function spawnOneswap(args: readonly string[], env: Record<string, string>, timeoutMs = 300_000, options: RunOptions = {}): ResultPromise<{ reject: false; all: false }> {
  const command = [process.execPath, '--import', 'tsx', MAIN, ...args];
  const argv = withHiddenDirs(options.hide ?? [], command);
  return execa(argv[0]!, argv.slice(1), {
    cwd: REPO_ROOT,
    env: { ...env, FORCE_COLOR: '0' },
    extendEnv: false,
    reject: false,
    timeout: timeoutMs,
    stdin: 'ignore',
  }) as ResultPromise<{ reject: false; all: false }>;
}

export async function oneswap(args: readonly string[], env: Record<string, string>, timeoutMs?: number, options?: RunOptions): Promise<CliRun> {
  const r = await spawnOneswap(args, env, timeoutMs, options);
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/**
 * Kills a running oneswap with SIGKILL once the resume journals under `stateDir` record at least
 * `bytes` written; resolves when it has exited, with whether it was killed (false: it ended first).
 */
export async function killOnceJournalHolds(child: ResultPromise, stateDir: string, bytes: number): Promise<boolean> {
  let killed = false;
  const journalDir = join(stateDir, 'journal');
  const poll = setInterval(() => {
    void (async () => {
      for (const f of (await readdir(journalDir).catch(() => [] as string[])).filter((x) => x.endsWith('.json'))) {
        const j = JSON.parse(await readFile(join(journalDir, f), 'utf8').catch(() => '{}')) as { disks?: Array<{ done: Array<{ length: number }> }> };
        const done = (j.disks ?? []).flatMap((d) => d.done).reduce((sum, e) => sum + e.length, 0);
        if (!killed && done >= bytes) {
          killed = true;
          child.kill('SIGKILL');
        }
      }
    })();
  }, 100);
  await child;
  clearInterval(poll);
  return killed;
}
