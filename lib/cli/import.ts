// `oneswap import --vcenter HOST --datastore ID VM...`: cold import of powered-off VMs.

import { join } from 'node:path';
import { OneswapError, describeError } from '../errors/index.js';
import { coldImport, defaultStateDir, fanOut, newRunId, type VmResult } from '../supervisor/index.js';
import { openRunLog } from '../progress/index.js';
import { progressDisplay, type RunCliOptions } from './run-options.js';
import { parseNetworkMap } from '../output/index.js';
import { connectOne, connectVcenter, parseHost, type VcenterOptions } from './connect.js';

export interface ImportCliOptions extends VcenterOptions, RunCliOptions {
  datacenter?: string;
  datastore: string;
  shutdown?: boolean;
  shutdownTimeout: string;
  convert: boolean;
  networkMap: string[];
  keepMac: boolean;
  instantiate?: boolean;
  keepOnFailure?: boolean;
  namePrefix: string;
  streams: string;
  parallel: string;
}

export async function runImport(vms: string[], o: ImportCliOptions, signal: AbortSignal): Promise<number> {
  if (vms.length === 0) throw new OneswapError('usage', 'no VM named', { hint: 'oneswap import --vcenter HOST --datastore ID VM...' });
  const datastoreId = positiveInt(o.datastore, '--datastore', true);
  const streams = positiveInt(o.streams, '--streams');
  const parallelVms = positiveInt(o.parallel, '--parallel');
  const shutdownTimeoutMs = positiveInt(o.shutdownTimeout, '--shutdown-timeout') * 1000;
  const networkMap = parseNetworkMap(o.networkMap);
  const stateDir = o.stateDir ?? defaultStateDir();
  const runId = newRunId();
  const logDir = o.logDir ?? join(stateDir, 'logs');
  const runLog = openRunLog(logDir, runId);
  const display = progressDisplay(o.progress);
  const emit = fanOut(display, runLog.sink);
  const warn = (message: string): void => emit({ type: 'log', level: 'warn', message });
  emit({ type: 'run', state: 'start', runId, logFile: runLog.path });
  let results: VmResult[] = [];
  try {
    const vsphere = await connectVcenter(o, warn);
    try {
      const one = await connectOne(o.endpoint);
      try {
        results = await coldImport(
          { vsphere, vcenterHost: parseHost(o.vcenter ?? process.env.ONESWAP_VCENTER ?? '').host, one, emit, signal },
          vms,
          {
            datacenter: o.datacenter,
            datastoreId,
            shutdown: o.shutdown ?? false,
            shutdownTimeoutMs,
            convert: o.convert,
            networkMap,
            keepMac: o.keepMac,
            instantiate: o.instantiate ?? false,
            keepOnFailure: o.keepOnFailure ?? false,
            namePrefix: o.namePrefix,
            streams,
            stateDir,
            logDir,
            runId,
            additions: { contextPackage: o.contextPackage, guestAgent: o.guestAgent ?? false },
            parallelVms,
          },
        );
      } finally {
        one.close();
      }
    } finally {
      await vsphere.logout().catch(() => undefined);
    }
  } catch (err) {
    // The display gets the error once, as the command's last line (main.ts); the log keeps it too.
    runLog.sink({ type: 'log', level: 'error', message: describeError(err) });
    emit({ type: 'run', state: 'end', runId, ok: false });
    await runLog.close();
    throw err;
  }
  const failed = results.filter((r) => !r.ok);
  emit({ type: 'run', state: 'end', runId, ok: failed.length === 0 });
  await runLog.close();
  if (failed.length === 0) return 0;
  const first = failed[0]!.error;
  if (results.length === 1) throw first;
  // A batch keeps the exit code of its first failure and names every failed VM on the one line.
  const kind = first instanceof OneswapError ? first.kind : 'internal';
  throw new OneswapError(kind, `${failed.length} of ${results.length} VMs failed: ${failed.map((f) => `${f.vm}: ${describeError(f.error)}`).join('; ')}`);
}

export function positiveInt(value: string, option: string, allowZero = false): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || (!allowZero && n === 0)) throw new OneswapError('usage', `${option} "${value}" is not a ${allowZero ? 'non-negative' : 'positive'} integer`);
  return n;
}
