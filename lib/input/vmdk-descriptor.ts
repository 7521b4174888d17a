// Reads the text descriptor of a VMDK to find where its bytes live. Only flat layouts
// (monolithicFlat, twoGbMaxExtentFlat, ESXi "vmfs") can be read as raw ranges; sparse and
// snapshot-delta layouts are refused with a message that says why.

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
  let createType = '';
  let parentCID = 'ffffffff';
  const extents: DescriptorExtent[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const kv = /^([A-Za-z.]+)\s*=\s*"?([^"]*)"?$/.exec(line);
    if (kv) {
      if (kv[1] === 'createType') createType = kv[2]!;
      if (kv[1] === 'parentCID') parentCID = kv[2]!.toLowerCase();
      continue;
    }
    // RW <sectors> <TYPE> ["file" [offset-in-sectors]]
    const ext = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Z]+)(?:\s+"([^"]+)"(?:\s+(\d+))?)?$/.exec(line);
    if (!ext) continue;
    const type = ext[3]!;
    const size = Number(ext[2]) * SECTOR;
    if (type === 'FLAT' || type === 'VMFS') {
      const file = ext[4];
      if (!file) throw bad(name, `extent line without a file name: ${line}`);
      if (file.includes('/') || file.includes('\\') || file === '..')
        throw bad(name, `extent file "${file}" points outside the descriptor's folder`);
      extents.push({ kind: type, size, file, fileOffset: Number(ext[5] ?? 0) * SECTOR });
    } else if (type === 'ZERO') {
      extents.push({ kind: 'ZERO', size, fileOffset: 0 });
    } else {
      throw new OneswapError(
        'data',
        `${name} is a ${type} (${createType || 'sparse'}) VMDK, which cannot be read as raw ranges over the datastore`,
        { hint: 'consolidate or clone the disk to a flat (thick or thin) VMDK, or use an export of the VM' },
      );
    }
  }
  if (parentCID !== 'ffffffff')
    throw new OneswapError('conflict', `${name} is a snapshot delta disk (it has a parent)`, {
      hint: 'delete or consolidate the VM snapshots in vCenter first, so the disk is a single flat file',
    });
  if (extents.length === 0) throw bad(name, 'no extents found in the descriptor');
  return { createType, extents, capacityBytes: extents.reduce((s, e) => s + e.size, 0) };
}

function bad(name: string, why: string): OneswapError {
  return new OneswapError('data', `cannot read the VMDK descriptor ${name}: ${why}`);
}
