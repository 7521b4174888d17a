// Where an image's bytes live, as the stages that touch them need it: the copy and the warm rounds
// write through a TargetWriter (open), start over on an image of zeros (clear), and the conversion
// opens the same image as the backing file of its qcow2 overlays (forQemu). One implementation per
// kind of storage: a raw file reachable here (file-target.ts), a qcow2 file (qcow2-target.ts; or
// one written with compressed clusters), an RBD image (rbd-target.ts), the last two written
// through qemu-nbd, and a raw or qcow2 file on a BRIDGE_LIST host (served by qemu-nbd there).

import type { TargetWriter } from '../copy/index.js';
import type { QemuImage } from '../convert/index.js';
import { clearFile, openFileWriter } from './file-target.js';
import { createQcow2File, imageFileName, openCompressedQcow2Writer, openImageFileWriter, openQcow2Writer, qcow2Image, serveImageFile } from './qcow2-target.js';
import { exportImage } from './qemu-nbd.js';
import { openRbdAccess, type RbdLocation } from './rbd-access.js';
import { openRbdWriter, serveRbd } from './rbd-target.js';

/** An image opened for qemu: how qemu names it, valid until released. */
export interface QemuAccess {
  readonly image: QemuImage;
  release(): Promise<void>;
}

export interface ImageTarget {
  /** The file's path, or "rbd one/one-12": shown in logs and errors, kept in the journal. */
  readonly name: string;
  /** The disk's capacity, which the image holds exactly. */
  readonly capacity: number;
  /** Opens the image for writing; the caller closes the writer. */
  open(): Promise<TargetWriter>;
  /** Makes the whole image read as zeros again, deallocated (an interrupted copy started over). */
  clear(): Promise<void>;
  /** Opens the image for qemu: a conversion overlay's backing file. */
  forQemu(): Promise<QemuAccess>;
}

/** A raw image file reachable from this host. */
export function fileTarget(path: string, capacity: number): ImageTarget {
  return {
    name: path,
    capacity,
    open: () => openFileWriter(path, capacity),
    clear: () => clearFile(path, capacity),
    forQemu: async () => ({ image: { filename: path, format: 'raw' }, release: async () => undefined }),
  };
}

/** A qcow2 image file reachable from this host, of exactly the disk's virtual size. */
export function qcow2Target(path: string, capacity: number): ImageTarget {
  const target: ImageTarget = {
    name: path,
    capacity,
    open: () => openQcow2Writer(path, capacity),
    clear: () => zeroAll(target),
    forQemu: async () => ({ image: qcow2Image(path), release: async () => undefined }),
  };
  return target;
}

/**
 * An image file (raw or qcow2) on a BRIDGE_LIST host, never reached through a local path: qemu-nbd
 * serves it there, over the ssh connection that started it, for the copy and for the conversion.
 */
export function bridgeFileTarget(host: string, path: string, format: 'raw' | 'qcow2', capacity: number): ImageTarget {
  const target: ImageTarget = {
    name: imageFileName(path, host),
    capacity,
    open: () => openImageFileWriter(path, format, capacity, { host }),
    clear: () => zeroAll(target),
    forQemu: async () => {
      // One connection of ours keeps the export up between qemu's own (the appliance's, the commit's).
      const server = await serveImageFile(path, format, { host, connections: 1, otherClients: 4 });
      return { image: exportImage(server), release: () => server.stop() };
    },
  };
  return target;
}

/**
 * A qcow2 file written with compressed clusters, in one go: opening it for writing creates it
 * afresh (a compressed cluster is written once), so a copy that stopped starts over. Made for a
 * fresh file of an output directory, not for warm rounds.
 */
export function compressedQcow2Target(path: string, capacity: number): ImageTarget {
  return {
    name: path,
    capacity,
    open: () => openCompressedQcow2Writer(path, capacity),
    clear: () => createQcow2File(path, capacity),
    forQemu: async () => ({ image: qcow2Image(path), release: async () => undefined }),
  };
}

/**
 * An RBD image of a Ceph datastore, reached with the datastore's conf and key: from this host, or
 * from the BRIDGE_LIST host that has them (location.host), whose qemu-nbd then serves the image
 * for the conversion too, as bridgeFileTarget's does.
 */
export function rbdTarget(location: RbdLocation, capacity: number): ImageTarget {
  const target: ImageTarget = {
    name: `rbd ${location.pool}/${location.image}`,
    capacity,
    open: () => openRbdWriter({ ...location, size: capacity }),
    clear: () => zeroAll(target),
    forQemu: async () => {
      const access = await openRbdAccess(location);
      if (location.host === undefined) return { image: access.qemu, release: () => access.dispose() };
      try {
        // One connection of ours keeps the export up between qemu's own (the appliance's, the commit's).
        const server = await serveRbd(access, { connections: 1, otherClients: 4 });
        return { image: exportImage(server), release: () => server.stop().finally(() => access.dispose()) };
      } catch (err) {
        await access.dispose();
        throw err;
      }
    },
  };
  return target;
}

/** Zeroes (and so deallocates) the whole image through its writer. */
async function zeroAll(target: ImageTarget): Promise<void> {
  await writingInto(target, async (w) => {
    await w.zero([{ start: 0, length: target.capacity }]);
    await w.flush();
  });
}

/** Runs `body` with the target open for writing, closed afterwards whatever happened. */
export async function writingInto<T>(target: ImageTarget, body: (writer: TargetWriter) => Promise<T>): Promise<T> {
  const writer = await target.open();
  try {
    return await body(writer);
  } finally {
    await writer.close();
  }
}

/** Runs `body` with every target opened for qemu, released afterwards whatever happened. */
export async function forQemu<T>(targets: readonly ImageTarget[], body: (images: QemuImage[]) => Promise<T>): Promise<T> {
  const opened: QemuAccess[] = [];
  try {
    for (const t of targets) opened.push(await t.forQemu());
    return await body(opened.map((o) => o.image));
  } finally {
    for (const o of opened) await o.release().catch(() => undefined);
  }
}
