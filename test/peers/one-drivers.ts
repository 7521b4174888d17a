// The OpenNebula simulator set up as a frontend with oneswap's drivers installed: the datastore
// driver (and the marketplace driver) from driver/, a datastore using it, oneadmin's ~/.one files
// in oned's var dir (what the drivers use to report progress), and a vCenter credentials file
// owned by the oned user, mode 0600, named by the datastore.

import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startOned, type Oned } from './one/index.js';
import type { Vcsim } from './vcsim/index.js';
import { DS_MAD_CONF_BLOCK, MARKET_MAD_CONF_BLOCK } from '../../lib/install/index.js';
import { parseTemplateText } from '../../lib/one/index.js';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const DS_DRIVER_DIR = join(REPO, 'driver/datastore/oneswap');
export const MARKET_DRIVER_DIR = join(REPO, 'driver/market/oneswap');

/** DS_MAD_CONF / MARKET_MAD_CONF exactly as install.sh registers them in oned.conf. */
function registered(block: string): Record<string, string> {
  const conf = parseTemplateText(block).attributes[0]!.value as ReadonlyMap<string, string>;
  return Object.fromEntries([...conf].filter(([k]) => k !== 'NAME'));
}

export interface DriverPeers {
  readonly oned: Oned;
  readonly dsId: number;
  readonly credentials: string;
  /** `vcenter://127.0.0.1:<port>/DC0/<vm>?disk=N` */
  url(vm: string, disk?: number): string;
}

export async function startOnedWithDrivers(
  sim: Vcsim,
  o: { asyncDelayMs?: number; market?: boolean; marketMonitorFirstCycleMs?: number; driverEnv?: Record<string, string> } = {},
): Promise<DriverPeers> {
  const oned = await startOned({
    asyncDelayMs: o.asyncDelayMs ?? 50,
    ...(o.driverEnv === undefined ? {} : { driverEnv: o.driverEnv }),
    ...(o.marketMonitorFirstCycleMs === undefined ? {} : { marketMonitorFirstCycleMs: o.marketMonitorFirstCycleMs }),
    drivers: { oneswap: { dir: DS_DRIVER_DIR, conf: registered(DS_MAD_CONF_BLOCK) } },
    ...(o.market ? { marketDrivers: { oneswap: { dir: MARKET_DRIVER_DIR, conf: registered(MARKET_MAD_CONF_BLOCK) } } } : {}),
  });
  // oneadmin's home on a frontend is oned's var dir; the drivers find oned through it.
  await mkdir(join(oned.varDir, '.one'), { recursive: true, mode: 0o700 });
  await writeFile(join(oned.varDir, '.one', 'one_auth'), `${oned.adminSession}\n`, { mode: 0o600 });
  await writeFile(join(oned.varDir, '.one', 'one_endpoint'), `${oned.endpoint}\n`, { mode: 0o600 });
  const credentials = join(oned.varDir, '.oneswap', 'vcenter.yaml');
  await writeVcenterCredentials(credentials, sim);
  const dsId = await oned.createDatastore({
    name: 'vcenter-images',
    type: 'IMAGE_DS',
    dsMad: 'oneswap',
    tmMad: 'shared',
    template: { ONESWAP_CREDENTIALS: credentials, RESTRICTED_DIRS: '/', SAFE_DIRS: '/tmp /var/tmp' },
  });
  return {
    oned,
    dsId,
    credentials,
    url: (vm, disk) => `vcenter://127.0.0.1:${sim.port}/DC0/${encodeURIComponent(vm)}${disk === undefined ? '' : `?disk=${disk}`}`,
  };
}

export async function writeVcenterCredentials(file: string, sim: Vcsim, o: { password?: string; mode?: number } = {}): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true, mode: 0o700 });
  await writeFile(
    file,
    [`"127.0.0.1:${sim.port}":`, `  user: ${sim.username}`, `  password: "${o.password ?? sim.password}"`, `  thumbprint: "${sim.thumbprintSha256}"`, ''].join('\n'),
    { mode: 0o600 },
  );
  await chmod(file, o.mode ?? 0o600);
}
