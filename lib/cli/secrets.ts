// Where the vCenter password comes from. Never from argv (visible in ps and shell history):
// a file readable only by the user, an environment variable, or a no-echo prompt on a terminal.

import { readFile, stat } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';

export interface PasswordSources {
  readonly passwordFile?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly prompt?: (question: string) => Promise<string>;
}

export async function resolvePassword(user: string, host: string, src: PasswordSources): Promise<string> {
  const env = src.env ?? process.env;
  const file = src.passwordFile ?? env.ONESWAP_VCENTER_PASSWORD_FILE;
  if (file) return readPasswordFile(file);
  const fromEnv = env.ONESWAP_VCENTER_PASSWORD;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (src.prompt) return src.prompt(`Password for ${user} at ${host}: `);
  throw new OneswapError('usage', `no password for vCenter user ${user} at ${host}`, {
    hint: 'use --password-file FILE (mode 0600), or ONESWAP_VCENTER_PASSWORD, or run on a terminal to be asked',
  });
}

/** As ssh does with a private key: a secret others can read is refused, not used. */
async function readPasswordFile(file: string): Promise<string> {
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (err) {
    throw new OneswapError('usage', `cannot read the password file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if ((mode & 0o077) !== 0)
    throw new OneswapError('usage', `the password file ${file} can be read by other users (mode ${(mode & 0o777).toString(8)}): refused`, { hint: `chmod 600 ${file}` });
  const text = await readFile(file, 'utf8');
  const first = text.split(/\r?\n/)[0] ?? '';
  if (first === '') throw new OneswapError('usage', `the password file ${file} is empty`);
  return first;
}

/** Reads a line from the terminal without echoing it. */
export async function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new OneswapError('usage', 'no terminal to ask for the password', { hint: 'use --password-file FILE or ONESWAP_VCENTER_PASSWORD' });
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let value = '';
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new OneswapError('interrupted', 'interrupted'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}
