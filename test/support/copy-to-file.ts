// The copy engine into a raw file by path, as most copy tests want it: the file's writer opened
// for the copy and closed after it, whatever happened.

import { copyExtents, type CopyOptions, type CopyStats } from '../../lib/copy/index.js';
import { openFileWriter } from '../../lib/output/index.js';

export async function copyToFile(o: Omit<CopyOptions, 'target'> & { readonly target: string }): Promise<CopyStats> {
  const writer = await openFileWriter(o.target, o.capacity);
  try {
    return await copyExtents({ ...o, target: writer });
  } finally {
    await writer.close();
  }
}
