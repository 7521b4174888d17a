// Turning command-line options into connected clients. Secrets never come from argv.

import { readFile } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import { VSphereClient, parseEndpoint, type Endpoint, type TlsPolicy } from '../vsphere/index.js';
import { OneClient } from '../one/index.js';
import { promptHidden, resolvePassword } from './secrets.js';

export interface VcenterOptions {
  vcenter?: string;
  user?: string;
  passwordFile?: string;
  thumbprint?: string;
  ca?: string;
  insecure?: boolean;
}

export function parseHost(spec: string): Endpoint {
  return parseEndpoint(spec, '--vcenter');
}

export async function tlsPolicy(opts: VcenterOptions, warn: (m: string) => void): Promise<TlsPolicy> {
  const chosen = [opts.thumbprint, opts.ca, opts.insecure ? 'x' : undefined].filter((x) => x !== undefined);
  if (chosen.length > 1) throw new OneswapError('usage', 'choose one of --thumbprint, --ca and --insecure');
  if (opts.thumbprint) return { kind: 'thumbprint', thumbprint: opts.thumbprint };
  if (opts.ca) {
    try {
      return { kind: 'verify', ca: await readFile(opts.ca, 'utf8') };
    } catch (err) {
      throw new OneswapError('usage', `cannot read the CA file ${opts.ca}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (opts.insecure) {
    warn('--insecure: the vCenter certificate is NOT verified; anyone on the path can read the disks and the password. Prefer --thumbprint.');
    return { kind: 'insecure' };
  }
  return { kind: 'verify' };
}

export async function connectVcenter(opts: VcenterOptions, warn: (m: string) => void): Promise<VSphereClient> {
  const spec = opts.vcenter ?? process.env.ONESWAP_VCENTER;
  if (!spec) throw new OneswapError('usage', 'no vCenter given', { hint: 'pass --vcenter HOST (or set ONESWAP_VCENTER)' });
  const { host, port } = parseHost(spec);
  const user = opts.user ?? process.env.ONESWAP_VCENTER_USER;
  if (!user) throw new OneswapError('usage', `no vCenter user for ${host}`, { hint: 'pass --user NAME (or set ONESWAP_VCENTER_USER)' });
  const tls = await tlsPolicy(opts, warn);
  const password = await resolvePassword(user, host, {
    passwordFile: opts.passwordFile,
    prompt: process.stdin.isTTY ? promptHidden : undefined,
  });
  return VSphereClient.connect({ host, port, credentials: { user, password }, tls, logger: { warn } });
}

export async function connectOne(endpoint: string | undefined): Promise<OneClient> {
  return OneClient.connect(endpoint ? { endpoint } : {});
}
