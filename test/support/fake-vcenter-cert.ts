// A throw-away self-signed certificate for local fake vCenter servers (SAN 127.0.0.1), made with
// openssl at test time. Without openssl the tests that need it skip, loudly.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** false when openssl is there, else the reason to pass as `describe(..., { skip })`. */
export function opensslSkip(what: string): string | false {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return false;
  } catch {
    const reason = `openssl is not installed: ${what} SKIPPED`;
    console.warn(`\n*** ${reason} ***\n`);
    return reason;
  }
}

/** Writes key.pem and cert.pem into `dir` and returns both. */
export function makeFakeVcenterCert(dir: string): { keyPem: string; certPem: string } {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=fake-vcenter', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  return { keyPem: readFileSync(key, 'utf8'), certPem: readFileSync(cert, 'utf8') };
}
