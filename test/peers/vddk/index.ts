// Test harness for the VDDK stand-in (README.md): where to find the wrapper `nbdkit` that the
// product process must find first in PATH, and a VDDK directory that passes the library check.

import { spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The directory holding the wrapper `nbdkit`; put it first in the product's PATH. */
export const VDDK_STANDIN_BIN = join(here, 'bin');

export interface VddkStandin {
  /** Put first in PATH: `nbdkit … vddk|nfc …` then runs the stand-in. */
  readonly pathDir: string;
  /** A stand-in VDDK distribution directory: lib64/libvixDiskLib.so.8 (an empty file). */
  readonly libdir: string;
  /** `env` with pathDir first in PATH. */
  env(base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  /** Removes libdir. */
  cleanup(): Promise<void>;
}

export async function vddkStandin(): Promise<VddkStandin> {
  const libdir = await mkdtemp(join(tmpdir(), 'oneswap-vddk-'));
  await mkdir(join(libdir, 'lib64'));
  await writeFile(join(libdir, 'lib64', 'libvixDiskLib.so.8'), '');
  return {
    pathDir: VDDK_STANDIN_BIN,
    libdir,
    env: (base = process.env) => ({ ...base, PATH: `${VDDK_STANDIN_BIN}:${base.PATH ?? '/usr/bin:/bin'}` }),
    cleanup: () => rm(libdir, { recursive: true, force: true }),
  };
}

/**
 * For `describe(name, { skip })`: false when nbdkit and its python plugin are installed; else the
 * reason, printed loudly. In CI (CI=true) or with ONESWAP_REQUIRE_PEERS=1 it is an error instead.
 */
export function vddkStandinSkip(): string | false {
  const probe = spawnSync('nbdkit', ['python', '--dump-plugin'], { stdio: 'ignore' });
  if (probe.status === 0) return false;
  const reason = 'the VDDK stand-in needs nbdkit and its python plugin (apt-get install -y nbdkit nbdkit-plugin-python)';
  if (process.env.CI === 'true' || process.env.ONESWAP_REQUIRE_PEERS === '1') throw new Error(`${reason}; CI requires it`);
  process.stderr.write(`\n*** SKIPPED: ${reason} ***\n\n`);
  return reason;
}
