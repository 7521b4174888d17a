// How OpenNebula calls a driver action, in every version oneswap supports (reference §5.2, §7.3):
//   ≤6.6        <script> <base64> <id>
//   6.6.2 -i    <script> - <id>            base64 on stdin
//   6.8+        <script> <id>              base64 on stdin, no trailing newline
//   market      monitor <base64> <market id>
// The script path itself says which driver and action this is.

import { basename, dirname, join } from 'node:path';
import { OneswapError } from '../errors/index.js';

export type DriverKind = 'datastore' | 'market';

export interface DriverCall {
  readonly kind: DriverKind;
  readonly action: string;
  /** Image id, stat request counter, datastore or market id: whatever oned passed. */
  readonly id: string;
  /** As received, for handing the call on to a stock driver. */
  readonly base64: string;
  readonly xml: string;
  /** The script as oned ran it ($0), not resolved through symlinks. */
  readonly script: string;
}

export async function readDriverCall(script: string, args: readonly string[], readStdin: () => Promise<string>): Promise<DriverCall> {
  const kindDir = basename(dirname(dirname(script)));
  if (kindDir !== 'datastore' && kindDir !== 'market')
    throw new OneswapError('usage', `${script} is not a driver script: it must live in remotes/datastore/<name>/ or remotes/market/<name>/`);
  let base64: string;
  let id: string;
  if (args.length >= 2) {
    base64 = args[0] === '-' ? await readStdin() : args[0]!;
    id = args[1]!;
  } else if (args.length === 1) {
    id = args[0]!;
    base64 = await readStdin();
  } else {
    throw new OneswapError('usage', `${basename(script)}: no arguments; OpenNebula passes the object id (and the message on stdin)`);
  }
  base64 = base64.trim();
  const xml = Buffer.from(base64, 'base64').toString('utf8');
  if (!xml.trimStart().startsWith('<')) throw new OneswapError('data', `${basename(script)} ${id}: the message from OpenNebula is not base64-encoded XML`);
  return { kind: kindDir, action: basename(script), id, base64, xml, script };
}

/** Where the stock driver of the same kind lives: `../fs/<action>` for datastores. */
export function stockScript(call: DriverCall, stock: string): string {
  return join(dirname(call.script), '..', stock, call.action);
}

export async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
