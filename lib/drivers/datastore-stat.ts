// `stat` of a vcenter:// PATH: the disk's size in MiB, rounded up. oned waits for it inside
// one.image.allocate and gives up after 90 s, so this answers well before that or fails clearly.

import { OneswapError } from '../errors/index.js';
import type { DriverActionData } from '../one/index.js';
import { describeVcenterVm } from '../input/index.js';
import { connectTo, credentialsFileOf, diskOf, diskRefOf, findVmOf } from './vcenter-source.js';
import { describeRef } from './vcenter-url.js';

const MiB = 1024 * 1024;
/** Under oned's 90 s, with room for node's start and the answer. */
const STAT_DEADLINE_MS = 75_000;

export async function vcenterDiskSizeMb(data: DriverActionData, log: (line: string) => void): Promise<number> {
  const ref = diskRefOf(data);
  const work = (async () => {
    const client = await connectTo(ref, credentialsFileOf(data), log);
    try {
      return Math.ceil(diskOf(describeVcenterVm(ref.host, await findVmOf(client, ref)), ref).capacityBytes / MiB);
    } finally {
      await client.logout().catch(() => undefined);
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new OneswapError('connection', `vCenter ${ref.host} did not tell the size of ${describeRef(ref)} within ${STAT_DEADLINE_MS / 1000} s`)),
      STAT_DEADLINE_MS,
    );
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
