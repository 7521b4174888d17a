// Both simulators and a counting proxy, set up the way the import tests and benchmarks need them:
// a vCenter (behind the proxy), an OpenNebula with an fs image datastore, credentials in the
// environment a real user would use (ONE_AUTH file, ONESWAP_VCENTER_PASSWORD), and the arguments
// every `oneswap import` of these tests shares.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startVcsim, type Vcsim } from './vcsim/index.js';
import { startOned, type Oned, type StartOnedOptions } from './one/index.js';
import { startTcpProxy, type TcpProxy } from './net/tcp-proxy.js';
import { vddkStandin, type VddkStandin } from './vddk/index.js';
import type { VcsimOptions } from './vcsim/index.js';
import type { PlanRunSummary } from '../../lib/plan/index.js';

export interface MigrationPeers {
  readonly sim: Vcsim;
  readonly oned: Oned;
  readonly proxy: TcpProxy;
  readonly work: string;
  readonly dsId: number;
  /** Environment for the oneswap child process. */
  readonly env: Record<string, string>;
  /** The same with the VDDK stand-in's `nbdkit` first in PATH (test/peers/vddk). */
  readonly vddkEnv: Record<string, string>;
  readonly vddk: VddkStandin;
  /** `import --vcenter … --datastore … --endpoint … --no-convert --progress json` (`vddk`: and `--vddk-libdir`). */
  importArgs(o?: { port?: number; thumbprint?: string; datastore?: number; vddk?: boolean }): string[];
  /** Ids of the images and templates that exist now. */
  imageIds(): number[];
  templateIds(): number[];
  stop(): Promise<void>;
}

/** The `result` event of an import run with `--progress json` (one VM). */
export interface ImportResult {
  readonly ok: boolean;
  readonly imageIds: number[];
  readonly error?: string;
}

export function importResult(stdout: string): ImportResult {
  const r = stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ImportResult & { type: string })
    .find((e) => e.type === 'result');
  if (!r) throw new Error(`no result event in: ${stdout.slice(-2000)}`);
  return r;
}

export async function startMigrationPeers(name: string, o: { dataDir?: boolean; vcsim?: VcsimOptions; oned?: StartOnedOptions } = {}): Promise<MigrationPeers> {
  const work = await mkdtemp(join(tmpdir(), `oneswap-${name}-`));
  const sim = await startVcsim(o.vcsim);
  const vddk = await vddkStandin();
  const proxy = await startTcpProxy(sim.port);
  const oned = await startOned({ asyncDelayMs: 20, ...o.oned, ...(o.dataDir ? { dataDir: join(work, 'one') } : {}) });
  const dsId = await oned.createDatastore({ name: 'images', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared' });
  const auth = join(work, 'one_auth');
  await writeFile(auth, `${oned.adminSession}\n`, { mode: 0o600 });
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: work,
    ONE_AUTH: auth,
    ONESWAP_VCENTER_PASSWORD: sim.password,
    ONESWAP_STATE_DIR: join(work, 'state'),
  };
  const vddkEnv = { ...env, PATH: `${vddk.pathDir}:${env.PATH}` };
  const ids = (get: (id: number) => unknown): number[] => [...Array(500).keys()].filter((id) => get(id) !== undefined);
  return {
    sim,
    oned,
    proxy,
    work,
    dsId,
    env,
    vddkEnv,
    vddk,
    importArgs: (a = {}) => [
      'import',
      '--vcenter', `127.0.0.1:${a.port ?? proxy.port}`,
      '--user', sim.username,
      '--thumbprint', a.thumbprint ?? sim.thumbprintSha256,
      '--datastore', String(a.datastore ?? dsId),
      '--endpoint', oned.endpoint,
      '--no-convert',
      '--progress', 'json',
      ...(a.vddk ? ['--vddk-libdir', vddk.libdir] : []),
    ],
    imageIds: () => ids((id) => oned.image(id)),
    templateIds: () => ids((id) => oned.template(id)),
    stop: async () => {
      await proxy.close();
      await oned.stop();
      await sim.stop();
      await vddk.cleanup();
      await rm(work, { recursive: true, force: true });
    },
  };
}

/**
 * The start of a plan file for these peers: version, the vCenter (behind the proxy, the certificate
 * pinned, the password in the environment) and OpenNebula's endpoint; the caller adds the rest.
 */
export function planFileHead(peers: Pick<MigrationPeers, 'sim' | 'proxy' | 'oned'>): string[] {
  return [
    'version: 1',
    'vcenter:',
    `  host: 127.0.0.1:${peers.proxy.port}`,
    `  user: ${peers.sim.username}`,
    `  thumbprint: ${peers.sim.thumbprintSha256}`,
    'one:',
    `  endpoint: ${peers.oned.endpoint}`,
  ];
}

/**
 * A plan's `defaults:` for these peers: the images in their datastore, no conversion (the
 * simulator's disks hold no guest), the names given `namePrefix` so each test's VMs stand apart.
 */
export function planFileDefaults(peers: Pick<MigrationPeers, 'dsId'>, namePrefix?: string): string[] {
  return ['defaults:', `  datastore: ${peers.dsId}`, '  convert: false', ...(namePrefix === undefined ? [] : [`  namePrefix: "${namePrefix}"`])];
}

/** The files a plan run wrote its summary to, from the `plan summary: …` line of its `--progress json` output. */
export function planSummaryFiles(stdout: string): { readonly text: string; readonly json: string; readonly html: string } {
  const line = stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { type: string; message?: string })
    .find((e) => e.type === 'log' && /^plan summary: /.test(e.message ?? ''));
  const m = line && /^plan summary: (\S+), (\S+), report (\S+)$/.exec(line.message!);
  if (!m) throw new Error(`no plan summary line in: ${stdout.slice(-2000)}`);
  return { text: m[1]!, json: m[2]!, html: m[3]! };
}

/** The JSON summary of a plan run (lib/plan/run-summary.ts), found through its output. */
export async function planSummary(stdout: string): Promise<PlanRunSummary> {
  return JSON.parse(await readFile(planSummaryFiles(stdout).json, 'utf8')) as PlanRunSummary;
}
