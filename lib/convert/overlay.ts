// qcow2 overlays over the images (raw or qcow2 files, RBD images). The conversion writes only into
// the overlays; the images are opened read-only as their backing files. Committing copies the overlay's clusters
// into the image file and is idempotent, so an interrupted commit is simply run again; discarding
// deletes the overlay and leaves the image exactly as the copy left it.

import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { runTool } from './tools.js';

/** How qemu opens an image: a file name, or a `json:` pseudo-file (an RBD image), and its format. */
export interface QemuImage {
  readonly filename: string;
  readonly format: 'raw' | 'qcow2';
}

export interface Overlay {
  /** The image's qemu file name (the backing file, never written during conversion). */
  readonly base: string;
  /** The qcow2 file conversion writes into. */
  readonly path: string;
}

export async function createOverlay(base: QemuImage, dir: string, index: number, signal?: AbortSignal): Promise<Overlay> {
  const name = base.filename.startsWith('/') ? basename(base.filename) : 'image'; // a json: or nbd: name is no file
  const path = join(dir, `disk${index}-${name}.overlay.qcow2`);
  await rm(path, { force: true });
  // Absolute backing name and explicit format: qemu never probes the image's contents.
  await runTool('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', base.filename, '-F', base.format, path], { signal });
  return { base: base.filename, path };
}

export interface OverlayUsage {
  /** Bytes of new data: what a commit writes into the image file. */
  readonly dataBytes: number;
  /** Bytes the guest discarded (fstrim of free space): a commit turns them into holes. */
  readonly zeroedBytes: number;
}

export async function overlayUsage(overlay: Overlay, signal?: AbortSignal): Promise<OverlayUsage> {
  const { stdout } = await runTool('qemu-img', ['map', '--output=json', '-f', 'qcow2', overlay.path], { signal });
  const extents = JSON.parse(stdout) as Array<{ length: number; depth: number; data: boolean; zero: boolean }>;
  // depth 0: the overlay's own clusters; deeper ones still come from the image.
  const own = extents.filter((e) => e.depth === 0);
  return {
    dataBytes: own.filter((e) => e.data && !e.zero).reduce((s, e) => s + e.length, 0),
    zeroedBytes: own.filter((e) => e.zero).reduce((s, e) => s + e.length, 0),
  };
}

export async function commitOverlay(overlay: Overlay, signal?: AbortSignal): Promise<void> {
  // -d: the overlay is deleted right after, so emptying it would be wasted writes.
  await runTool('qemu-img', ['commit', '-q', '-d', '-f', 'qcow2', overlay.path], { signal });
}

/**
 * Points the overlay at the same image reached another way (-u: nothing is copied, the bytes
 * are the same).
 */
export async function rebaseOverlay(overlay: Overlay, image: QemuImage, signal?: AbortSignal): Promise<Overlay> {
  await runTool('qemu-img', ['rebase', '-q', '-u', '-f', 'qcow2', '-b', image.filename, '-F', image.format, overlay.path], { signal });
  return { base: image.filename, path: overlay.path };
}

export async function discardOverlay(overlay: Overlay): Promise<void> {
  await rm(overlay.path, { force: true });
}
