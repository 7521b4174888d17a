// A run of bytes in a local file: a whole file, or a member of an OVA (a tar file). The OVA and
// VMDK readers take these so a disk is read straight out of the tar, where it lies, with no
// unpacking to a work directory.

import { stat } from 'node:fs/promises';
import { basename } from 'node:path';

export interface SourceFile {
  /** The name the package or the user knows it by (tar member or file name): messages, manifest. */
  readonly name: string;
  /** The file on disk that holds the bytes. */
  readonly path: string;
  /** Where the bytes start in `path`. */
  readonly offset: number;
  readonly size: number;
}

/** A whole file on disk as a SourceFile named by its base name. */
export async function wholeFile(path: string, name = basename(path)): Promise<SourceFile> {
  const s = await stat(path);
  return { name, path, offset: 0, size: s.size };
}

/** A manifest (.mf) entry: the digest a file must have. */
export interface FileDigest {
  readonly algorithm: 'sha1' | 'sha256' | 'sha512';
  readonly hex: string;
}
