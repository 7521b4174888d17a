// Hole punching for raw targets that hold older data. Node has no fallocate(2) binding, so this
// runs util-linux's fallocate(1); it is only needed where a previously written area became zero
// (warm rounds), never on a fresh placeholder.

import { execa } from 'execa';
import type { Extent } from '../extents/index.js';

export async function punchHoles(path: string, holes: readonly Extent[]): Promise<void> {
  for (const h of holes) {
    await execa('fallocate', ['--punch-hole', '--keep-size', '--offset', String(h.start), '--length', String(h.length), path]);
  }
}
