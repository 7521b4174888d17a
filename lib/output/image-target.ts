// Where an image's bytes live, as the stages that touch them need it: the copy and the warm rounds
// write through a TargetWriter (open), start over on an image of zeros (clear), and the conversion
// opens the same image as the backing file of its qcow2 overlays (qemu). One implementation per
// kind of storage: a raw file reachable here (file-target.ts), a qcow2 file, an RBD image.

import type { TargetWriter } from '../copy/index.js';
import type { QemuImage } from '../convert/index.js';
import { clearFile, openFileWriter } from './file-target.js';


export interface ImageTarget {
  /** The file's path, or "rbd one/one-12": shown in logs and errors, kept in the journal. */
  readonly name: string;
  /** The disk's capacity, which the image holds exactly. */
  readonly capacity: number;
  /** Opens the image for writing; the caller closes the writer. */
  open(): Promise<TargetWriter>;
  /** Makes the whole image read as zeros again, deallocated (an interrupted copy started over). */
  clear(): Promise<void>;
  /** How qemu opens it as a conversion overlay's backing file. */
  readonly qemu: QemuImage;
}

/** A raw image file reachable from this host. */
export function fileTarget(path: string, capacity: number): ImageTarget {
  return {
    name: path,
    capacity,
    open: () => openFileWriter(path, capacity),
    clear: () => clearFile(path, capacity),
    qemu: { filename: path, format: 'raw' },
  };
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
