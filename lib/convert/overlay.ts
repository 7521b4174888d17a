// qcow2 overlays over the raw image files. The conversion writes only into the overlays; the image
// files are opened read-only as their backing files. Committing copies the overlay's clusters
// into the image file and is idempotent, so an interrupted commit is simply run again; discarding
// deletes the overlay and leaves the image exactly as the copy left it.

import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { runTool } from './tools.js';

export interface Overlay {
  /** The raw image file (backing file, never written during conversion). */
  readonly base: string;
  /** The qcow2 file conversion writes into. */
  readonly path: string;
}

export async function createOverlay(base: string, dir: string, index: number, signal?: AbortSignal): Promise<Overlay> {
  const path = join(dir, `disk${index}-${basename(base)}.overlay.qcow2`);
  await rm(path, { force: true });
  // Absolute backing path and explicit format: qemu never probes the raw image's contents.
  await runTool('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', '-b', base, '-F', 'raw', path], { signal });
  return { base, path };
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

export async function discardOverlay(overlay: Overlay): Promise<void> {
  await rm(overlay.path, { force: true });
}
