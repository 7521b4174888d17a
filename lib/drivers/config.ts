// The drivers' settings: oneswap.yaml (its path comes from the driver scripts, which install.sh
// writes; templates/oneswap.yaml is the shipped default). A missing file means the defaults.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { OneswapError } from '../errors/index.js';
import { defaultStateDir } from '../supervisor/index.js';
import type { TransportChoice } from '../input/index.js';

export interface DriverConfig {
  readonly streams: number;
  readonly stateDir: string;
  readonly logDir: string;
  readonly convert: boolean;
  readonly progressIntervalMs: number;
  /** How disks are read (reader-select.ts): auto, folder, lease, vddk or nfc. */
  readonly transport: TransportChoice;
  /** VMware's VDDK for nbdkit's vddk plugin; absent: none. */
  readonly vddkLibdir?: string;
}

const TRANSPORTS: readonly TransportChoice[] = ['auto', 'folder', 'lease', 'vddk', 'nfc'];

export async function readDriverConfig(file: string | undefined): Promise<DriverConfig> {
  let doc: Record<string, unknown> = {};
  if (file) {
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new OneswapError('usage', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`);
    }
    if (text !== undefined) {
      try {
        doc = (parse(text) ?? {}) as Record<string, unknown>;
      } catch (err) {
        throw new OneswapError('usage', `${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
      }
    }
  }
  const where = file ?? 'the settings';
  const int = (key: string, dflt: number, max: number): number => {
    const v = doc[key];
    if (v === undefined || v === null || v === '') return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) throw new OneswapError('usage', `${key} in ${where} must be a whole number from 1 to ${max}, not ${JSON.stringify(v)}`);
    return v;
  };
  const convert = doc['convert'] ?? true;
  if (typeof convert !== 'boolean') throw new OneswapError('usage', `convert in ${where} must be true or false`);
  const stateDirValue = doc['state_dir'];
  const stateDir = typeof stateDirValue === 'string' && stateDirValue !== '' ? stateDirValue : defaultStateDir();
  const transport = doc['transport'] ?? 'auto';
  if (typeof transport !== 'string' || !TRANSPORTS.includes(transport as TransportChoice))
    throw new OneswapError('usage', `transport in ${where} must be one of ${TRANSPORTS.join(', ')}, not ${JSON.stringify(transport)}`);
  const libdir = doc['vddk_libdir'] ?? '';
  if (typeof libdir !== 'string') throw new OneswapError('usage', `vddk_libdir in ${where} must be a directory path`);
  return {
    transport: transport as TransportChoice,
    ...(libdir === '' ? {} : { vddkLibdir: libdir }),
    streams: int('streams', 4, 64),
    stateDir,
    logDir: join(stateDir, 'logs'),
    convert,
    progressIntervalMs: int('progress_interval', 5, 3600) * 1000,
  };
}
