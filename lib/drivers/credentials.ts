// vCenter credentials for the drivers. oned keeps no secret for us: a datastore or marketplace
// attribute (ONESWAP_CREDENTIALS) names a YAML file, owned by the oned user and readable by it
// only, that maps vCenter hosts to a user, a password and how to trust the certificate:
//
//   vc.example.com:              # or "vc.example.com:8443" when the URL names a port
//     user: migrate@vsphere.local
//     password: "…"
//     thumbprint: "AB:CD:…"      # or  ca: /etc/one/oneswap/vc-ca.pem   or  insecure: true
//
// Without thumbprint/ca/insecure the certificate is verified against the system CAs.

import { readFile, stat } from 'node:fs/promises';
import { parse } from 'yaml';
import { OneswapError } from '../errors/index.js';
import type { TlsPolicy } from '../vsphere/index.js';

export const CREDENTIALS_ATTRIBUTE = 'ONESWAP_CREDENTIALS';

export interface VcenterCredentials {
  readonly user: string;
  readonly password: string;
  readonly tls: TlsPolicy;
}

export async function readCredentials(file: string, host: string, port: number): Promise<VcenterCredentials> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(file);
  } catch (err) {
    throw new OneswapError('usage', `cannot read the vCenter credentials file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid)
    throw new OneswapError('usage', `the vCenter credentials file ${file} belongs to uid ${info.uid}, not to the user running OpenNebula's drivers (uid ${uid})`, {
      hint: `chown it to that user and chmod 600 it`,
    });
  if ((info.mode & 0o077) !== 0)
    throw new OneswapError('usage', `the vCenter credentials file ${file} can be read by other users (mode ${(info.mode & 0o777).toString(8)})`, { hint: `chmod 600 ${file}` });
  let doc: unknown;
  try {
    doc = parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new OneswapError('usage', `the vCenter credentials file ${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const entries = (doc ?? {}) as Record<string, unknown>;
  const entry = entries[`${host}:${port}`] ?? entries[host];
  if (typeof entry !== 'object' || entry === null)
    throw new OneswapError('usage', `the vCenter credentials file ${file} has no entry for ${host}`, { hint: `add "${host}:" with user, password and thumbprint or ca` });
  const e = entry as Record<string, unknown>;
  const text = (key: string): string | undefined => (e[key] === undefined || e[key] === null ? undefined : String(e[key]));
  const user = text('user');
  const password = text('password');
  if (!user || !password) throw new OneswapError('usage', `the entry for ${host} in ${file} needs both user and password`);
  return { user, password, tls: await tlsOf(file, host, text('thumbprint'), text('ca'), e['insecure'] === true) };
}

async function tlsOf(file: string, host: string, thumbprint: string | undefined, ca: string | undefined, insecure: boolean): Promise<TlsPolicy> {
  if ([thumbprint, ca, insecure ? 'x' : undefined].filter((x) => x !== undefined).length > 1)
    throw new OneswapError('usage', `the entry for ${host} in ${file} sets more than one of thumbprint, ca and insecure`);
  if (thumbprint) return { kind: 'thumbprint', thumbprint };
  if (insecure) return { kind: 'insecure' };
  if (ca) {
    try {
      return { kind: 'verify', ca: await readFile(ca, 'utf8') };
    } catch (err) {
      throw new OneswapError('usage', `cannot read the CA file ${ca} named for ${host} in ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return { kind: 'verify' };
}
