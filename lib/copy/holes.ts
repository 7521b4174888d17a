// Hole punching for raw targets that hold older data. Node has no fallocate(2) binding, so this
// runs util-linux's fallocate(1); it is only needed where a previously written area became zero
// (warm rounds) or an interrupted copy is started over, never on a fresh placeholder.

import type { Extent } from '../extents/index.js';

export async function punchHoles(path: string, holes: readonly Extent[]): Promise<void> {
  if (holes.length === 0) return;
  // Loaded here: execa takes a fifth of oneswap's start-up, and most runs punch nothing.
  const { execa } = await import('execa');
  for (const h of holes) {
    await execa('fallocate', ['--punch-hole', '--keep-size', '--offset', String(h.start), '--length', String(h.length), path]);
  }
}
