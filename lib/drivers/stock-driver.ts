// Plain paths and http(s) URLs are the stock `fs` driver's business: the call is handed on to
// `../fs/<action>` unchanged (6.8+ convention: id in argv, the message on stdin), its stdout,
// stderr and exit code become ours. So oneswap's datastore behaves like a file datastore, with
// every feature of the installed OpenNebula version (BRIDGE_LIST, NFS_AUTO_*, s3, …).

import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import { stockScript, type DriverCall } from './action-call.js';

export async function runStockDriver(call: DriverCall, stock = 'fs'): Promise<number> {
  const script = stockScript(call, stock);
  try {
    await access(script, constants.X_OK);
  } catch {
    throw new OneswapError('not-found', `the ${call.action} action for plain paths needs OpenNebula's ${stock} driver at ${script}, which is not there`);
  }
  return new Promise<number>((resolve, reject) => {
    const child = spawn(script, [call.id], { stdio: ['pipe', 'inherit', 'inherit'] });
    child.on('error', (err) => reject(new OneswapError('internal', `cannot run ${script}: ${err.message}`)));
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.stdin.on('error', () => undefined);
    child.stdin.end(call.base64);
  });
}
