// Where oned is and who we are, found the way the Ruby OCA (and so every `one*` command) finds them
// (reference §2.1), so that oneswap works wherever the CLI already does.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { inspect } from 'node:util';
import { OneswapError } from '../errors/index.js';

export const DEFAULT_ENDPOINT = 'http://localhost:2633/RPC2';
export const DEFAULT_TIMEOUT_MS = 30_000;
/** oneadmin's own ~/.one, the last place the OCA looks. */
export const SYSTEM_ONE_DIR = '/var/lib/one/.one';

export interface Environment {
  readonly env?: NodeJS.ProcessEnv;
  /** Replaces /var/lib/one/.one (tests). */
  readonly systemDir?: string;
}

export interface Resolved<T> {
  readonly value: T;
  /** Where it came from, for messages: "option", "ONE_XMLRPC", a file path, "default". */
  readonly from: string;
}

/** explicit → $ONE_XMLRPC → ~/.one/one_endpoint → /var/lib/one/.one/one_endpoint → default. */
export function resolveEndpoint(explicit: string | undefined, where: Environment = {}): Resolved<string> {
  const env = where.env ?? process.env;
  if (explicit !== undefined && explicit.trim() !== '') return { value: explicit.trim(), from: 'option' };
  const fromEnv = env['ONE_XMLRPC'];
  if (fromEnv !== undefined && fromEnv.trim() !== '') return { value: fromEnv.trim(), from: 'ONE_XMLRPC' };
  for (const file of candidateFiles('one_endpoint', env, where.systemDir)) {
    const text = readIfFile(file);
    if (text !== undefined && text.trim() !== '') return { value: text.trim(), from: file };
  }
  return { value: DEFAULT_ENDPOINT, from: 'default' };
}

/**
 * The session string `user:password` (or `user:token`). The password never appears in a message,
 * in util.inspect output or in JSON.
 */
export class Credentials {
  readonly user: string;
  readonly #session: string;

  constructor(session: string) {
    const colon = session.indexOf(':');
    // oned splits at the first colon, so the password itself may hold colons.
    if (colon <= 0) throw new OneswapError('auth', 'the OpenNebula credentials are not of the form user:password');
    this.user = session.slice(0, colon);
    this.#session = session;
  }

  /** The string sent as parameter 0 of every call. */
  get session(): string {
    return this.#session;
  }

  toJSON(): { user: string } {
    return { user: this.user };
  }

  [inspect.custom](): string {
    return `Credentials { user: ${JSON.stringify(this.user)} }`;
  }
}

/**
 * explicit → the file named by $ONE_AUTH → $HOME/.one/one_auth → /var/lib/one/.one/one_auth →
 * error. From a file: its first line, trailing whitespace stripped.
 */
export function resolveCredentials(explicit: string | undefined, where: Environment = {}): Resolved<Credentials> {
  const env = where.env ?? process.env;
  if (explicit !== undefined) return { value: new Credentials(explicit.trimEnd()), from: 'option' };
  const named = env['ONE_AUTH'];
  const files = [...(named ? [named] : []), ...candidateFiles('one_auth', env, where.systemDir)];
  for (const file of files) {
    const text = readIfFile(file);
    if (text === undefined) continue;
    const line = (text.split(/\r?\n/)[0] ?? '').trimEnd();
    try {
      return { value: new Credentials(line), from: file };
    } catch {
      throw new OneswapError('auth', `${file} does not hold user:password on its first line`);
    }
  }
  throw new OneswapError('auth', 'ONE_AUTH file not present', {
    hint: 'put user:password in ~/.one/one_auth or point ONE_AUTH at such a file',
  });
}

/** explicit → $ONE_XMLRPC_TIMEOUT (seconds, as the OCA reads it) → 30 s. */
export function resolveTimeoutMs(explicitMs: number | undefined, where: Environment = {}): number {
  if (explicitMs !== undefined) {
    if (!(explicitMs > 0)) throw new OneswapError('usage', `the OpenNebula call timeout must be positive, not ${explicitMs} ms`);
    return explicitMs;
  }
  const raw = (where.env ?? process.env)['ONE_XMLRPC_TIMEOUT'];
  if (raw === undefined || raw.trim() === '') return DEFAULT_TIMEOUT_MS;
  const seconds = Number(raw);
  if (!(seconds > 0) || !Number.isFinite(seconds)) {
    throw new OneswapError('usage', `ONE_XMLRPC_TIMEOUT must be a positive number of seconds, not "${raw}"`);
  }
  return seconds * 1000;
}

/** $ONE_CERT_DIR adds CA certificates for https endpoints; $ONE_DISABLE_SSL_VERIFY turns checking off. */
export function resolveTls(where: Environment = {}): { ca?: string[]; rejectUnauthorized?: boolean } {
  const env = where.env ?? process.env;
  const tls: { ca?: string[]; rejectUnauthorized?: boolean } = {};
  const dir = env['ONE_CERT_DIR'];
  if (dir) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      throw new OneswapError('usage', `ONE_CERT_DIR ${dir} cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const extra = names.map((n) => readIfFile(join(dir, n))).filter((pem): pem is string => pem?.includes('-----BEGIN CERTIFICATE-----') ?? false);
    // Node replaces its default CAs when `ca` is given; the OCA adds to them.
    tls.ca = [...rootCertificates, ...extra];
  }
  if (env['ONE_DISABLE_SSL_VERIFY']) tls.rejectUnauthorized = false;
  return tls;
}

function candidateFiles(name: string, env: NodeJS.ProcessEnv, systemDir = SYSTEM_ONE_DIR): string[] {
  const home = env['HOME'];
  return [...(home ? [join(home, '.one', name)] : []), join(systemDir, name)];
}

function readIfFile(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return undefined;
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
