// Lists the members of a tar file (an OVA) without unpacking it: each header is read where it
// lies with a positional read, and the member's data is stepped over, so an OVA of any size costs
// a few reads of 512 bytes per member. A member is then read straight out of the tar through its
// SourceFile (path, offset, size).
//
// Formats: POSIX ustar (name + prefix), GNU (long names in 'L' members, base-256 sizes for members
// of 8 GiB and more), pax ('x' headers: path and size; 'g' global headers are ignored). Every
// header's checksum is verified. The archive ends at the first zero block; an archive that simply
// stops after a complete member is accepted. Anything else is a one-line OneswapError('data')
// naming the OVA and the member: a wrong checksum, a member whose data runs past the end of the
// file (a truncated OVA), unsafe or duplicate member names, or a file that is not a tar at all.

import { open, type FileHandle } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';
import type { SourceFile } from './source-file.js';

export interface TarMember extends SourceFile {
  /** 'other': links, devices, fifos, GNU sparse members (their data is not the file's bytes). */
  readonly type: 'file' | 'directory' | 'other';
}

const BLOCK = 512;
/** Largest long name ('L') or pax header we read: real ones are a few hundred bytes. */
const MAX_EXTENSION_BYTES = 1024 * 1024;

/** Reads the member list of the tar file at `path`. */
export async function readTarIndex(path: string): Promise<TarMember[]> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw openError(err, path);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new OneswapError('usage', `${path} is a directory, not an OVA file`);
    return await readMembers(fh, path, st.size);
  } finally {
    await fh.close();
  }
}

/**
 * The member called `name` (a leading "./" and doubled slashes do not matter), of any type, or
 * undefined.
 */
export function findMember(members: readonly TarMember[], name: string): TarMember | undefined {
  const wanted = normalizeName(name);
  if (wanted === undefined || wanted === '') return undefined;
  return members.find((m) => m.name === wanted);
}

interface Pending {
  /** From a GNU 'L' member or a pax 'path' record, for the next real header. */
  name?: string;
  /** From a pax 'size' record. */
  size?: number;
  /** The pax header announced a GNU sparse file: its data is not the file's bytes. */
  sparse?: boolean;
}

async function readMembers(fh: FileHandle, path: string, fileSize: number): Promise<TarMember[]> {
  if (fileSize === 0) throw new OneswapError('data', `${path} is empty, not an OVA (tar) file`);
  const members: TarMember[] = [];
  const seen = new Set<string>();
  const header = Buffer.alloc(BLOCK);
  let pending: Pending = {};
  let pos = 0;
  let headers = 0; // headers read, extension headers included
  const last = (): string => (members.length > 0 ? `after member "${members[members.length - 1]!.name}"` : 'at its start');

  for (;;) {
    if (pos === fileSize) {
      // No end-of-archive blocks: accepted when the last member is complete (checked below,
      // before its data was stepped over) and no extension header is left waiting for its member.
      if (headers === 0) throw new OneswapError('data', `${path} is empty, not an OVA (tar) file`);
      if (pending.name !== undefined || pending.size !== undefined)
        throw truncated(path, `it ends after an extension header ${last()}`);
      break;
    }
    if (pos + BLOCK > fileSize) {
      if (headers === 0) throw notTar(path);
      throw truncated(path, `it ends inside a member header at byte ${pos} (${last()})`);
    }
    await readExactly(fh, header, pos, path);
    if (isZeroBlock(header)) {
      if (headers === 0) throw notTar(path);
      if (pending.name !== undefined || pending.size !== undefined)
        throw truncated(path, `the archive ends after an extension header ${last()}`);
      break;
    }
    if (!checksumOk(header)) {
      if (headers === 0) throw notTar(path);
      throw new OneswapError('data', `${path} is damaged: the tar header at byte ${pos} (${last()}) has a wrong checksum`, {
        hint: 'the OVA is corrupt or truncated: download or export it again',
      });
    }
    headers++;
    const type = String.fromCharCode(header[156]!);
    const extension = type === 'L' || type === 'x' || type === 'g' || type === 'K';
    // Links, devices, fifos and directories have no data blocks in the archive.
    const hasData = !(type >= '1' && type <= '6');
    const headerSize = parseNumber(header, 124, 12, path, pos, 'size');
    const size = hasData ? (extension ? headerSize : (pending.size ?? headerSize)) : 0;
    const dataStart = pos + BLOCK;
    const dataBlocks = Math.ceil(size / BLOCK) * BLOCK;
    const describedName = extension ? headerNameOf(header) : (pending.name ?? headerNameOf(header));

    if (dataStart + size > fileSize)
      throw truncated(
        path,
        `member "${printable(describedName)}" needs ${size} bytes at byte ${dataStart}, but the file ends at byte ${fileSize}`,
      );

    if (extension) {
      // Extension headers: their data describes the next member ('g': all of them, ignored).
      if (type === 'L' || type === 'x') {
        if (size > MAX_EXTENSION_BYTES)
          throw new OneswapError('data', `${path} is damaged: an extension header at byte ${pos} claims ${size} bytes`);
        const data = Buffer.alloc(size);
        await readExactly(fh, data, dataStart, path);
        if (type === 'L') pending.name = cString(data, 0, data.length);
        else pending = { ...pending, ...parsePax(data, path, pos) };
      }
      pos = dataStart + dataBlocks;
      continue;
    }

    const kind: TarMember['type'] =
      pending.sparse === true || type === 'S' ? 'other' : type === '0' || type === '\0' || type === '7' ? 'file' : type === '5' ? 'directory' : 'other';
    const rawName = describedName;
    const name = normalizeName(rawName);
    if (name === '') {
      // "./": the folder the archive was made from; a file without a name is damage.
      if (kind !== 'directory') throw new OneswapError('data', `${path} is damaged: the member at byte ${pos} has no name`);
      pending = {};
      pos = dataStart + dataBlocks;
      continue;
    }
    if (name === undefined)
      throw new OneswapError('data', `${path} holds an unsafe member name "${printable(rawName)}" (absolute, "..", or a backslash)`, {
        hint: 'the OVA was not made by an OVF tool, or was tampered with: it is not read',
      });
    if (seen.has(name)) throw new OneswapError('data', `${path} holds the member "${printable(name)}" twice`);
    seen.add(name);
    members.push({ name, path, offset: dataStart, size, type: kind });
    pending = {};
    pos = dataStart + dataBlocks;
    if (pos > fileSize) pos = fileSize; // the last member's padding may be missing
  }
  return members;
}

async function readExactly(fh: FileHandle, buf: Buffer, position: number, path: string): Promise<void> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) throw truncated(path, `it ends at byte ${position + got}`);
    got += bytesRead;
  }
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** The header's checksum: the sum of its bytes with the checksum field read as spaces (unsigned, or signed as some old tars wrote it). */
function checksumOk(h: Buffer): boolean {
  const field = h.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').replace(/^[\0 ]+/, '');
  if (!/^[0-7]{1,8}$/.test(field)) return false;
  const stored = parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

/** An octal field, or a GNU base-256 one (first byte 0x80) for sizes of 8 GiB and more. */
function parseNumber(h: Buffer, off: number, len: number, path: string, at: number, what: string): number {
  const first = h[off]!;
  if (first & 0x80) {
    if (first !== 0x80) throw new OneswapError('data', `${path} is damaged: the tar header at byte ${at} has a negative or huge ${what}`);
    let v = 0;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + h[i]!;
    if (!Number.isSafeInteger(v)) throw new OneswapError('data', `${path} is damaged: the tar header at byte ${at} has a huge ${what}`);
    return v;
  }
  const text = h.subarray(off, off + len).toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ ]+/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new OneswapError('data', `${path} is damaged: the tar header at byte ${at} has an unreadable ${what} "${printable(text)}"`);
  return parseInt(text, 8);
}

/** ustar name: prefix + "/" + name when the header is POSIX ustar and the prefix is set. */
function headerNameOf(h: Buffer): string {
  const name = cString(h, 0, 100);
  const posix = h.subarray(257, 263).toString('latin1') === 'ustar\0';
  if (!posix) return name;
  const prefix = cString(h, 345, 155);
  return prefix === '' ? name : `${prefix}/${name}`;
}

function cString(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 || end > off + len ? off + len : end);
}

/** pax records: "<length> <key>=<value>\n"; path, size and the GNU sparse markers matter here. */
function parsePax(data: Buffer, path: string, at: number): Pending {
  const out: Pending = {};
  let i = 0;
  const bad = (why: string): OneswapError => new OneswapError('data', `${path} is damaged: the pax header at byte ${at} ${why}`);
  while (i < data.length) {
    if (data[i] === 0) break; // padding
    const space = data.indexOf(0x20, i);
    if (space < 0 || space - i > 12) throw bad('has a record without a length');
    const lenText = data.toString('latin1', i, space);
    if (!/^\d+$/.test(lenText)) throw bad('has a record without a length');
    const len = Number(lenText);
    if (len <= space - i + 1 || i + len > data.length || data[i + len - 1] !== 0x0a) throw bad('has a record of a wrong length');
    const record = data.toString('utf8', space + 1, i + len - 1);
    const eq = record.indexOf('=');
    if (eq <= 0) throw bad('has a record without a key');
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === 'path') out.name = value;
    else if (key === 'size') {
      if (!/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) throw bad(`has an unreadable size "${printable(value)}"`);
      out.size = Number(value);
    } else if (key.startsWith('GNU.sparse.')) out.sparse = true;
    i += len;
  }
  return out;
}

/**
 * The member name as it is looked up: without "./" and empty segments, and without the trailing
 * slash of a directory. Undefined for names that could lead outside a folder: absolute, with a
 * ".." segment, with a backslash (a Windows separator) or a drive letter. "" for "." and "./".
 */
function normalizeName(raw: string): string | undefined {
  if (raw.startsWith('/') || raw.includes('\\') || raw.includes('\0') || /^[A-Za-z]:/.test(raw)) return undefined;
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return undefined;
  return parts.join('/');
}

/** Names come from the file: keep them on one line and short in messages. */
function printable(s: string): string {
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 120 ? `${clean.slice(0, 117)}...` : clean;
}

function truncated(path: string, why: string): OneswapError {
  return new OneswapError('data', `${path} is truncated: ${why}`, { hint: 'the OVA was cut short (an interrupted download or copy): get it again' });
}

function notTar(path: string): OneswapError {
  return new OneswapError('data', `${path} is not a tar archive, so not an OVA`, {
    hint: 'an OVA is a tar of the .ovf, the .mf and the disks; give the .ovf file instead if the package is unpacked',
  });
}

function openError(err: unknown, path: string): OneswapError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new OneswapError('not-found', `${path} does not exist`, { cause: err });
  if (code === 'EACCES' || code === 'EPERM') return new OneswapError('usage', `cannot read ${path}: permission denied`, { cause: err });
  if (code === 'EISDIR') return new OneswapError('usage', `${path} is a directory, not an OVA file`, { cause: err });
  return new OneswapError('data', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
}
