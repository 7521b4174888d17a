// One driver action from start to exit code: read the call, pick who handles it, print the answer
// or one error line.

import { describeError, exitCodeOf, OneswapError } from '../errors/index.js';
import { OneClient, parseDriverActionData } from '../one/index.js';
import { readAllStdin, readDriverCall, type DriverCall } from './action-call.js';
import { readDriverConfig } from './config.js';
import { vcenterCopy } from './datastore-cp.js';
import { vcenterDiskSizeMb } from './datastore-stat.js';
import { monitorMarketplace } from './market-monitor.js';
import { runStockDriver, stockDriverOf } from './stock-driver.js';
import { isVcenterUrl } from './vcenter-url.js';
import { convertImportedVm } from './vm-conversion.js';

export interface DriverIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly readStdin: () => Promise<string>;
}

const processIo: DriverIo = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
  readStdin: readAllStdin,
};

export async function runDriver(script: string, args: readonly string[], io: DriverIo = processIo): Promise<number> {
  const abort = new AbortController();
  const onSignal = (): void => abort.abort(new OneswapError('interrupted', 'the driver action was stopped (signal)'));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  const log = (line: string): void => io.stderr(`${line.replace(/\n/g, ' ')}\n`);
  try {
    const call = await readDriverCall(script, args, io.readStdin);
    return await dispatch(call, io, log, abort.signal);
  } catch (err) {
    // oned joins plain stderr lines with nothing between them: the error must be one line.
    io.stderr(`${describeError(err).replace(/\s*\n\s*/g, ' ')}\n`);
    return Math.max(1, exitCodeOf(err));
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

async function dispatch(call: DriverCall, io: DriverIo, log: (l: string) => void, signal: AbortSignal): Promise<number> {
  if (call.kind === 'market') {
    switch (call.action) {
      case 'monitor': {
        const data = parseDriverActionData(call.xml);
        if (!data.marketplace) throw new OneswapError('data', 'the monitor message from OpenNebula has no MARKETPLACE');
        io.stdout(await monitorMarketplace(data.marketplace, log));
        return 0;
      }
      case 'import':
        throw new OneswapError('usage', 'the oneswap marketplace lists vCenter VMs; it does not take uploads');
      case 'delete':
        return 0;
      default:
        throw new OneswapError('usage', `the oneswap marketplace has no ${call.action} action`);
    }
  }
  const data = parseDriverActionData(call.xml);
  const stock = stockDriverOf(data.datastore);
  if (call.action !== 'stat' && call.action !== 'cp') return runStockDriver(call, stock);
  if (!isVcenterUrl(data.image?.path ?? '')) return runStockDriver(call, stock);

  if (call.action === 'stat') {
    io.stdout(`${await vcenterDiskSizeMb(data, log)}\n`);
    return 0;
  }
  const imageId = Number(call.id);
  const config = await readDriverConfig(process.env.ONESWAP_CONFIG || undefined);
  let one: OneClient | undefined;
  try {
    one = await OneClient.connect({});
  } catch (err) {
    log(`INFO: image ${imageId}: no OpenNebula session for progress updates (${describeError(err)})`);
  }
  try {
    const copied = await vcenterCopy({ call, data, imageId, config, one, log, signal });
    if (data.image?.full?.template.get('FROM_APP') !== undefined) {
      if (!config.convert) log(`INFO: image ${imageId}: conversion after a marketplace import is off (convert: false in the settings)`);
      else if (one) await convertImportedVm({ one, imageId, config, log, signal }, copied);
      else log(`WARN: image ${imageId} came from a marketplace app but there is no OpenNebula session: the VM is not converted (run: oneswap convert --image ${imageId},...)`);
    }
    io.stdout(`${copied.image.source} ${copied.image.format}\n`);
    return 0;
  } finally {
    one?.close();
  }
}
