// What a copy writes into. One interface over the places an image's bytes live: a raw file reachable
// here, or an image a block server (qemu-nbd) serves: a qcow2 file, an RBD image, either of them on
// a bridge host. The implementations are lib/output's; the copy engine, the VMDK decoder and the
// warm rounds only see this.

import type { Extent } from '../extents/index.js';

export interface TargetWriter {
  /** Shown in errors and logs: the file's path, or "rbd one/one-12". */
  readonly name: string;
  /** The disk's capacity: what the target holds, exactly. */
  readonly size: number;
  /**
   * Set by a target that takes data only in whole blocks of this many bytes, aligned, each block
   * written once: a qcow2 file written with compressed clusters, where qemu compresses a cluster
   * whole and never into one already written. A writer that knows (the VMDK decoder) finds zeros
   * and cuts its writes at this granularity, and sends the part of a block it cuts even when
   * that part is zero, so the target can tell when a block it assembles from parts is complete.
   */
  readonly blockSize?: number;
  /**
   * Writes all of `data` at `position`. Several writes may be in flight at once; `data` must not
   * change until the promise settles. Errors a user can act on (disk full, pool full, storage
   * gone) come as OneswapErrors saying so.
   */
  write(data: Uint8Array, position: number): Promise<void>;
  /**
   * Makes the areas read as zeros again, deallocated where the storage can (file holes, RBD
   * discard, qcow2 zero clusters): where a warm round finds zeros over older data.
   */
  zero(areas: readonly Extent[]): Promise<void>;
  /** Everything written so far is on stable storage; an earlier background sync's error comes here. */
  flush(): Promise<void>;
  /** Releases the target once the writes in flight are over; safe after a failure and twice. */
  close(): Promise<void>;
}
