// What is not a vcenter:// copy is the stock drivers' business: the call is handed on to
// `../<stock>/<action>` unchanged (6.8+ convention: id in argv, the message on stdin), its stdout,
// stderr and exit code become ours. The stock driver is the one the datastore's storage needs:
// `ceph` when its images are RBD images (TM_MAD ceph), else `fs`. So oneswap's datastore behaves
// like a Ceph or a file datastore, with every feature of the installed OpenNebula version
// (BRIDGE_LIST, NFS_AUTO_*, s3, CEPH_TRASH, …).
//
// The Ceph `cp` also asks the stock driver for single actions of its own (callStockAction): the
// RBD image made as `mkfs` makes it, removed as `rm` removes it, on a BRIDGE_LIST host that has
// the rbd tool, which this host need not have.

import { spawn, type ChildProcess } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import type { OneDatastore } from '../one/index.js';
import { imageStorageOf } from '../output/index.js';
import { stockScript, type DriverCall } from './action-call.js';

export type StockDriver = 'ceph' | 'fs';

/** The stock DS_MAD that knows the datastore's storage (a message without DATASTORE: fs). */
export function stockDriverOf(ds: OneDatastore | undefined): StockDriver {
  return ds !== undefined && imageStorageOf(ds).kind === 'ceph' ? 'ceph' : 'fs';
}

/** Hands the whole call to the stock driver; its output is ours. */
export async function runStockDriver(call: DriverCall, stock: StockDriver): Promise<number> {
  const child = await spawnStock(call, stock, call.action, call.base64, 'inherit');
  return new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/**
 * Runs one action of the stock driver for the image of `call` with the message `xml`, and returns
 * its stdout. Its log lines go to `log`; its failure is one error carrying its plain stderr lines.
 */
export async function callStockAction(call: DriverCall, stock: StockDriver, action: string, xml: string, log: (line: string) => void): Promise<string> {
  const child = await spawnStock(call, stock, action, Buffer.from(xml, 'utf8').toString('base64'), 'pipe');
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
  });
  const plain: string[] = [];
  for (const line of Buffer.concat(err).toString('utf8').split('\n')) {
    if (/^(ERROR|INFO|WARN|DEBUG):/.test(line)) log(line);
    else if (line.trim() !== '') plain.push(line.trim());
  }
  if (code !== 0) throw new OneswapError('remote', `the ${stock} driver's ${action} failed (exit ${code})${plain.length > 0 ? `: ${plain.join(' ')}` : ''}`);
  return Buffer.concat(out).toString('utf8');
}

async function spawnStock(call: DriverCall, stock: StockDriver, action: string, base64: string, output: 'inherit' | 'pipe'): Promise<ChildProcess> {
  const script = stockScript({ ...call, action }, stock);
  try {
    await access(script, constants.X_OK);
  } catch {
    throw new OneswapError('not-found', `the ${action} action needs OpenNebula's ${stock} datastore driver at ${script}, which is not there`);
  }
  const child = spawn(script, [call.id], { stdio: ['pipe', output, output] });
  child.on('error', () => undefined);
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(base64);
  return new Promise<ChildProcess>((resolve, reject) => {
    child.once('spawn', () => resolve(child));
    child.once('error', (err) => reject(new OneswapError('internal', `cannot run ${script}: ${err.message}`)));
  });
}
