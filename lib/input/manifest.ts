// Reads an OVF manifest (.mf): one line per file of the package, `SHA256(disk1.vmdk)= <hex>`
// (VMware's tools write SHA1, SHA256 or SHA512). The digests are checked while the files are read
// for the import (vmdk-decode.ts), not in a separate pass.

import { OneswapError } from '../errors/index.js';
import type { FileDigest } from './source-file.js';

const HEX_LENGTH: Record<FileDigest['algorithm'], number> = { sha1: 40, sha256: 64, sha512: 128 };

/**
 * Digests by file name. `name` is the manifest's own name, for messages. Tolerates CRLF, a
 * missing space after "=", upper-case hex and blank lines; an unknown algorithm, a digest of the
 * wrong length, a line that is not an entry, or a file listed twice with different digests is a
 * OneswapError('data') with the line number.
 */
export function parseManifest(text: string, name: string): Map<string, FileDigest> {
  const digests = new Map<string, FileDigest>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n|\r/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const where = `${name} line ${i + 1}`;
    // The file name may itself hold parentheses: the entry's ")=" is the last one on the line.
    const m = /^([A-Za-z0-9-]+)\s*\((.*)\)\s*=\s*([^\s]*)$/.exec(line);
    if (m === null) throw new OneswapError('data', `${where} is not a manifest entry "ALGORITHM(file)= digest": ${shorten(line)}`);
    const algorithm = m[1]!.toLowerCase().replace('-', '');
    const file = m[2]!.trim();
    const hex = m[3]!.toLowerCase();
    if (algorithm !== 'sha1' && algorithm !== 'sha256' && algorithm !== 'sha512')
      throw new OneswapError('data', `${where} uses the digest algorithm ${m[1]!}, which oneswap does not check (SHA1, SHA256 and SHA512 are)`, {
        hint: 'export the OVA again with SHA256 digests, or remove the manifest to import without a check',
      });
    if (file === '') throw new OneswapError('data', `${where} names no file`);
    if (!/^[0-9a-f]*$/.test(hex) || hex.length !== HEX_LENGTH[algorithm])
      throw new OneswapError('data', `${where}: the ${m[1]!} digest of ${file} must be ${HEX_LENGTH[algorithm]} hex digits, not "${shorten(m[3]!)}"`);
    const before = digests.get(file);
    if (before !== undefined && (before.algorithm !== algorithm || before.hex !== hex))
      throw new OneswapError('data', `${where} lists ${file} a second time with another digest`);
    digests.set(file, { algorithm, hex });
  });
  return digests;
}

function shorten(s: string): string {
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 97)}...` : clean;
}
