// The demo OVA the README converts: the Debian test guest packed as VMware exports a VM (OVF 1.0,
// streamOptimized VMDK on PVSCSI, a vmxnet3 NIC, SHA256 manifest). Built once next to the guest
// and rebuilt when the guest's recipe changes. Run directly (install.sh --dev does) to build it
// and print its path.

import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir, testGuest } from './index.js';
import { buildOva } from '../ova/index.js';

export function demoOvaPath(): string {
  return join(cacheDir(), 'oneswap-demo.ova');
}

/** The demo OVA, built now when missing or made from an older guest. */
export async function demoOva(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string> {
  const guest = await testGuest(log);
  const out = demoOvaPath();
  const stamp = `${out}.source`;
  if ((await readFile(stamp, 'utf8').catch(() => '')) === basename(guest)) return out;
  log(`packing the test guest into the demo OVA ${out}`);
  const work = await mkdtemp(join(cacheDir(), 'demo-ova-'));
  try {
    await buildOva(
      {
        name: 'oneswap-demo',
        cpus: 1,
        memoryMiB: 1024,
        guestId: 'debian12_64Guest',
        guestFullName: 'Debian GNU/Linux 12 (64-bit)',
        annotation: 'A small Debian 12 guest, exported from VMware (oneswap demo)',
        scsiModel: 'VirtualSCSI',
        nics: [{ network: 'VM Network', adapter: 'vmxnet3', mac: '00:50:56:8a:00:01' }],
        disks: [{ raw: guest, bus: 'scsi' }],
        manifest: 'sha256',
        unpackedDir: join(work, 'ovf'),
      },
      join(work, 'demo.ova'),
    );
    await rename(join(work, 'demo.ova'), out);
    await writeFile(stamp, basename(guest));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo OVA: building the test guest needs root (debootstrap); skipped\n');
  } else {
    process.stdout.write(`${await demoOva()}\n`);
  }
}
