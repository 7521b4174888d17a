// Reads the text descriptor of a VMDK to find where its bytes live. For the datastore reader
// (parseVmdkDescriptor) only flat layouts (monolithicFlat, twoGbMaxExtentFlat, ESXi "vmfs") can be
// read as raw ranges; sparse and snapshot-delta layouts are refused with a message that says why.
// For files (parseImageDescriptor: OVA members, VMDKs on disk) hosted sparse extents are accepted
// too, since vmdk-decode.ts decodes them.

import { OneswapError } from '../errors/index.js';

export type ExtentKind = 'FLAT' | 'VMFS' | 'ZERO';

export interface DescriptorExtent {
  readonly kind: ExtentKind;
  /** Size in bytes. */
  readonly size: number;
  /** File name relative to the descriptor's folder (absent for ZERO). */
  readonly file?: string;
  /** Byte offset inside that file. */
  readonly fileOffset: number;
}

export interface VmdkDescriptor {
  readonly createType: string;
  readonly extents: readonly DescriptorExtent[];
  readonly capacityBytes: number;
}

const SECTOR = 512;

/** Classifies the first bytes of a .vmdk file: a text descriptor, or a binary sparse header. */
export function vmdkKind(head: Buffer): 'descriptor' | 'hosted-sparse' | 'vmfs-sparse' | 'unknown' {
  const magic = head.subarray(0, 4).toString('latin1');
  if (magic === 'KDMV') return 'hosted-sparse';
  if (magic === 'COWD') return 'vmfs-sparse';
  const text = head.toString('latin1');
  if (/^\s*#\s*Disk DescriptorFile/m.test(text) || /^\s*createType\s*=/m.test(text)) return 'descriptor';
  return 'unknown';
}

export function parseVmdkDescriptor(text: string, name: string): VmdkDescriptor {
  const d = readDescriptorLines(text);
  const extents: DescriptorExtent[] = [];
  for (const ext of d.extents) {
    const { type, size, line } = ext;
    if (type === 'FLAT' || type === 'VMFS') {
      const file = ext.file;
      if (!file) throw bad(name, `extent line without a file name: ${line}`);
      if (file.includes('/') || file.includes('\\') || file === '..')
        throw bad(name, `extent file "${file}" points outside the descriptor's folder`);
      extents.push({ kind: type, size, file, fileOffset: ext.offsetSectors * SECTOR });
    } else if (type === 'ZERO') {
      extents.push({ kind: 'ZERO', size, fileOffset: 0 });
    } else {
      throw new OneswapError(
        'data',
        `${name} is a ${type} (${ext.createTypeBefore || 'sparse'}) VMDK, which cannot be read as raw ranges over the datastore`,
        { hint: 'consolidate or clone the disk to a flat (thick or thin) VMDK, or use an export of the VM' },
      );
    }
  }
  if (d.parentCID !== 'ffffffff')
    throw new OneswapError('conflict', `${name} is a snapshot delta disk (it has a parent)`, {
      hint: 'delete or consolidate the VM snapshots in vCenter first, so the disk is a single flat file',
    });
  if (extents.length === 0) throw bad(name, 'no extents found in the descriptor');
  return { createType: d.createType, extents, capacityBytes: extents.reduce((s, e) => s + e.size, 0) };
}

/** An extent of a VMDK read as a file (an OVA member, a VMDK on disk): flat bytes, zeros, or a hosted sparse file. */
export interface ImageExtent {
  readonly kind: ExtentKind | 'SPARSE';
  /** Size in bytes. */
  readonly size: number;
  /** File name relative to the descriptor's folder (absent for ZERO). */
  readonly file?: string;
  /** Byte offset inside that file (FLAT and VMFS only). */
  readonly fileOffset: number;
}

export interface ImageDescriptor {
  readonly createType: string;
  readonly extents: readonly ImageExtent[];
  readonly capacityBytes: number;
  /** ddb.adapterType: lsilogic, buslogic, ide, pvscsi, lsisas1068, ... */
  readonly adapterType?: string;
}

/**
 * A descriptor read for a file import (OVA, OVF folder, VMDKs on disk): unlike
 * parseVmdkDescriptor, hosted SPARSE extents are accepted (their files are decoded), and every
 * refusal is a data error about the file. Refused: snapshot deltas (a parent, or VMFSSPARSE /
 * SESPARSE extents), other extent types, extent names that are not plain names. With
 * `embedded`, the descriptor is the one inside a sparse file: its extent lines name the file itself
 * and are not checked.
 */
export function parseImageDescriptor(text: string, name: string, options: { readonly embedded?: boolean } = {}): ImageDescriptor {
  const d = readDescriptorLines(text);
  if (d.parentCID !== 'ffffffff')
    throw new OneswapError('data', `${name} is a snapshot delta disk (its parentCID is ${d.parentCID}), not a whole disk`, {
      hint: 'consolidate the snapshots (or export the VM again) so each disk is a single VMDK',
    });
  const extents: ImageExtent[] = [];
  for (const ext of d.extents) {
    const { type, size, line } = ext;
    if (type === 'VMFSSPARSE' || type === 'SESPARSE')
      throw new OneswapError('data', `${name} is a ${type === 'SESPARSE' ? 'seSparse' : 'vmfsSparse'} snapshot delta disk, not a whole disk`, {
        hint: 'consolidate the snapshots (or export the VM again) so each disk is a single VMDK',
      });
    if (type !== 'FLAT' && type !== 'VMFS' && type !== 'ZERO' && type !== 'SPARSE')
      throw bad(name, `unsupported extent type ${type} (${shorten(line)})`);
    if (options.embedded) continue;
    if (type === 'ZERO') {
      extents.push({ kind: 'ZERO', size, fileOffset: 0 });
      continue;
    }
    const file = ext.file;
    if (!file) throw bad(name, `extent line without a file name: ${shorten(line)}`);
    if (file.includes('/') || file.includes('\\') || file === '..' || file === '.' || file.includes('\0'))
      throw bad(name, `extent file "${shorten(file)}" points outside the descriptor's folder`);
    extents.push({ kind: type, size, file, fileOffset: type === 'SPARSE' ? 0 : ext.offsetSectors * SECTOR });
  }
  if (!options.embedded && extents.length === 0) throw bad(name, 'no extents found in the descriptor');
  return {
    createType: d.createType,
    extents,
    capacityBytes: extents.reduce((s, e) => s + e.size, 0),
    ...(d.adapterType === undefined ? {} : { adapterType: d.adapterType }),
  };
}

interface RawExtent {
  readonly type: string;
  readonly size: number;
  readonly file?: string;
  readonly offsetSectors: number;
  readonly line: string;
  /** The createType as far as the descriptor had said it when this extent line came. */
  readonly createTypeBefore: string;
}

/** The descriptor's lines as they are: keys that matter and every extent line, unchecked. */
function readDescriptorLines(text: string): { createType: string; parentCID: string; adapterType?: string; extents: RawExtent[] } {
  let createType = '';
  let parentCID = 'ffffffff';
  let adapterType: string | undefined;
  const extents: RawExtent[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const kv = /^([A-Za-z.]+)\s*=\s*"?([^"]*)"?$/.exec(line);
    if (kv) {
      if (kv[1] === 'createType') createType = kv[2]!;
      if (kv[1] === 'parentCID') parentCID = kv[2]!.toLowerCase();
      if (kv[1] === 'ddb.adapterType') adapterType = kv[2]!;
      continue;
    }
    // RW <sectors> <TYPE> ["file" [offset-in-sectors]]
    const ext = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Z]+)(?:\s+"([^"]+)"(?:\s+(\d+))?)?$/.exec(line);
    if (!ext) continue;
    extents.push({
      type: ext[3]!,
      size: Number(ext[2]) * SECTOR,
      ...(ext[4] === undefined ? {} : { file: ext[4] }),
      offsetSectors: Number(ext[5] ?? 0),
      line,
      createTypeBefore: createType,
    });
  }
  return { createType, parentCID, ...(adapterType === undefined ? {} : { adapterType }), extents };
}

function shorten(s: string): string {
  const clean = s.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 97)}...` : clean;
}

function bad(name: string, why: string): OneswapError {
  return new OneswapError('data', `cannot read the VMDK descriptor ${name}: ${why}`);
}
