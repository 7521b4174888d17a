// The folder reader: a disk's flat extents over the datastore's HTTPS /folder service, with
// Range. ESXi serves these only for a powered-off VM's disks on a file datastore (VMFS, NFS): a
// running VM's disk chain is locked (HTTP 500), and vSAN keeps disks as objects, not files. The
// selector (reader-select.ts) never picks it otherwise.

import type { Readable } from 'node:stream';
import { OneswapError } from '../errors/index.js';
import type { RangeSource } from '../copy/index.js';
import type { VSphereClient, VmDisk } from '../vsphere/index.js';
import { parseVmdkDescriptor, vmdkKind, type DescriptorExtent } from './vmdk-descriptor.js';
import type { RangeReading } from './disk-reader.js';

/** Streams per disk: datastore HTTP gives each stream tens of MB/s, so several run at once. */
const FOLDER_STREAMS = 16;

/** Opens a disk's descriptor over /folder and gives a raw range reader over its extents. */
export async function openFolderReading(client: VSphereClient, dcPath: string, device: VmDisk): Promise<RangeReading> {
  const folder = device.datastorePath.includes('/') ? device.datastorePath.slice(0, device.datastorePath.lastIndexOf('/') + 1) : '';
  const descriptorUrl = client.datastoreUrl(dcPath, device.datastoreName, device.datastorePath);
  const fileName = device.datastorePath.slice(folder.length);
  const layout = await readLayout(client, descriptorUrl, device.fileName, fileName);
  if (layout.capacityBytes < device.capacityBytes)
    throw new OneswapError('data', `${device.fileName} holds ${layout.capacityBytes} bytes but the disk has ${device.capacityBytes}`);
  const segments = layout.extents.map((e) => ({
    ...e,
    url: e.file === undefined ? undefined : client.datastoreUrl(dcPath, device.datastoreName, folder + e.file),
  }));
  return { access: 'ranges', reader: 'folder', source: flatSource(client, device.fileName, segments), maxStreams: FOLDER_STREAMS, close: async () => undefined };
}

interface Layout {
  readonly extents: readonly DescriptorExtent[];
  readonly capacityBytes: number;
}

async function readLayout(client: VSphereClient, url: string, name: string, fileName: string): Promise<Layout> {
  const { size } = await client.head(url);
  const head = await readAll(await client.openRange(url, 0, Math.min(size, 65536)));
  const kind = vmdkKind(head);
  if (kind === 'descriptor') {
    if (size > 65536) throw new OneswapError('data', `${name} looks like a descriptor but is ${size} bytes long`);
    return parseVmdkDescriptor(head.toString('utf8'), name);
  }
  if (kind === 'hosted-sparse' || kind === 'vmfs-sparse')
    throw new OneswapError('data', `${name} is a sparse VMDK (${kind}), which cannot be read as raw ranges over the datastore`, {
      hint: 'use --transport lease or vddk, or consolidate the disk or clone it to a flat disk first',
    });
  // No descriptor: a plain raw file (seen on some NFS datastores and in the simulator).
  return { extents: [{ kind: 'FLAT', size, file: fileName, fileOffset: 0 }], capacityBytes: size };
}

interface Segment extends DescriptorExtent {
  readonly url: string | undefined;
}

/** A RangeSource over the descriptor's extents laid end to end (ZERO extents read as zeros). */
function flatSource(client: VSphereClient, name: string, segments: readonly Segment[]): RangeSource {
  const starts: number[] = [];
  let at = 0;
  for (const s of segments) {
    starts.push(at);
    at += s.size;
  }
  return {
    name,
    async open(start, end, signal) {
      const pieces: Array<() => Promise<AsyncIterable<Uint8Array>>> = [];
      segments.forEach((seg, i) => {
        const segStart = starts[i]!;
        const from = Math.max(start, segStart);
        const to = Math.min(end, segStart + seg.size);
        if (from >= to) return;
        const url = seg.url;
        if (url === undefined) pieces.push(async () => zeros(to - from));
        else pieces.push(async () => (await client.openRange(url, seg.fileOffset + from - segStart, seg.fileOffset + to - segStart, signal)) as AsyncIterable<Uint8Array>);
      });
      if (pieces.length === 1) return pieces[0]!();
      return (async function* () {
        for (const p of pieces) yield* await p();
      })();
    },
  };
}

async function* zeros(n: number): AsyncIterable<Uint8Array> {
  const block = Buffer.alloc(Math.min(n, 1024 * 1024));
  for (let left = n; left > 0; left -= block.length) yield left >= block.length ? block : block.subarray(0, left);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
