// OpenNebula object names (reference §1 rule 5, PoolObjectSQL::name_is_valid): at most 128 bytes,
// none of & | : \ " ; / ' # { } $ < > and no tab, CR, LF, VT or FF. vCenter names often hold `/`
// or `:`, so names are made valid rather than refused.

import { OneswapError } from '../errors/index.js';

export const MAX_NAME_BYTES = 128;

const FORBIDDEN = /[&|:\\";/'#{}$<>\t\r\n\v\f\u0000-\u001F\u007F]/g;

/**
 * Replaces each forbidden character by `_` (spaces stay) and cuts the name to 128 bytes of UTF-8
 * (oned measures bytes, not characters) without splitting a character.
 */
export function sanitizeName(name: string): string {
  const replaced = name.replace(FORBIDDEN, '_');
  if (replaced.trim() === '') throw new OneswapError('usage', 'an OpenNebula object name cannot be empty');
  let out = '';
  let bytes = 0;
  for (const char of replaced) {
    const size = Buffer.byteLength(char, 'utf8');
    if (bytes + size > MAX_NAME_BYTES) break;
    out += char;
    bytes += size;
  }
  return out;
}
