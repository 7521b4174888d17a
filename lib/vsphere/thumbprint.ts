// Certificate fingerprints as users and vSphere write them: "AB:CD:…" (colons, any case), or
// bare hex, SHA-256 preferred, SHA-1 where vSphere still reports only that.

import { OneswapError } from '../errors/index.js';

export interface Thumbprint {
  readonly algorithm: 'sha256' | 'sha1';
  /** Lower-case hex, no separators. */
  readonly hex: string;
}

/** Parses a user-supplied thumbprint; the error names the option so the user knows what to fix. */
export function parseThumbprint(input: string): Thumbprint {
  const hex = input.replace(/^(sha-?256|sha-?1)[:=\s]+/i, '').replace(/[\s:-]/g, '').toLowerCase();
  if (/^[0-9a-f]{64}$/.test(hex)) return { algorithm: 'sha256', hex };
  if (/^[0-9a-f]{40}$/.test(hex)) return { algorithm: 'sha1', hex };
  throw new OneswapError('usage', `--thumbprint "${input}" is not a certificate fingerprint: give the SHA-256 (64 hex digits, colons allowed) or SHA-1 (40 hex digits)`);
}

/** Normalizes a fingerprint (as Node's `fingerprint256` gives it) to bare lower-case hex. */
export function normalizeHex(fingerprint: string): string {
  return fingerprint.replace(/[\s:-]/g, '').toLowerCase();
}

/** "AB:CD:…": the form vCenter, openssl and the simulator print, and the form users paste. */
export function formatThumbprint(hex: string): string {
  return normalizeHex(hex).toUpperCase().match(/../g)?.join(':') ?? '';
}

export function thumbprintMatches(pin: Thumbprint, sha256Hex: string, sha1Hex: string): boolean {
  return pin.hex === normalizeHex(pin.algorithm === 'sha256' ? sha256Hex : sha1Hex);
}
