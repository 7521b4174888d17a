// `stat` of a vcenter:// PATH: the disk's size in MiB, rounded up. oned waits for it inside
// one.image.allocate and gives up after 90 s, so this answers well before that or fails clearly.

import { OneswapError } from '../errors/index.js';
import type { DriverActionData } from '../one/index.js';
import { describeVcenterVm } from '../input/index.js';
import { connectTo, credentialsFileOf, findVmOf } from './vcenter-source.js';
import { describeRef, parseVcenterUrl } from './vcenter-url.js';

const MiB = 1024 * 1024;
/** Under oned's 90 s, with room for node's start and the answer. */
const STAT_DEADLINE_MS = 75_000;

export async function vcenterDiskSizeMb(data: DriverActionData, log: (line: string) => void): Promise<number> {
  const ref = parseVcenterUrl(data.image?.path ?? '');
  if (ref.disk === undefined) throw new OneswapError('usage', `${data.image?.path} names no disk: add ?disk=N (0 = the boot disk)`);
  const work = (async () => {
    const client = await connectTo(ref, credentialsFileOf(data), log);
    try {
      const vm = describeVcenterVm(ref.host, await findVmOf(client, ref));
      const disk = vm.disks[ref.disk!];
      if (!disk) throw new OneswapError('not-found', `VM ${vm.name} has ${vm.disks.length} disk(s); there is no disk ${ref.disk} (${describeRef(ref)})`);
      return Math.ceil(disk.capacityBytes / MiB);
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
