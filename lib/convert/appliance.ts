// The libguestfs appliance that virt-v2v and guestfish boot. Settings that work as root and as
// oneadmin, with or without KVM, and a check of what commonly keeps it from starting, so the user
// hears about it before any conversion starts.

import { access, constants, readdir } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';

/**
 * The environment for every libguestfs program. The direct backend runs qemu itself: it needs no
 * libvirtd (which oneadmin's session may not reach) and falls back to TCG without /dev/kvm.
 * A backend the user chose explicitly is kept.
 */
export function applianceEnv(base: NodeJS.ProcessEnv = process.env): Record<string, string | undefined> {
  return { ...base, LIBGUESTFS_BACKEND: base.LIBGUESTFS_BACKEND || 'direct' };
}

export function applianceHint(): string {
  return (
    'run libguestfs-test-tool as this user to see why; usual fixes: make the host kernel readable ' +
    '(as root: chmod 0644 /boot/vmlinuz-*), install linux-image-amd64, keep ~700 MB free in /var/tmp ' +
    '(or set LIBGUESTFS_CACHEDIR), use LIBGUESTFS_BACKEND=direct; without /dev/kvm it runs emulated (slower, works)'
  );
}

/**
 * What can be known without booting anything: supermin builds the appliance from the host
 * kernel, which Debian installs readable by root only.
 */
export async function checkAppliance(bootDir = '/boot'): Promise<void> {
  if (process.env.LIBGUESTFS_PATH) return; // a fixed appliance brings its own kernel
  const kernels = (await readdir(bootDir).catch(() => [] as string[])).filter((f) => f.startsWith('vmlinuz-'));
  if (kernels.length === 0) {
    throw new OneswapError('usage', `guest conversion needs a Linux kernel in ${bootDir} for the libguestfs appliance, and there is none`, {
      hint: 'install linux-image-amd64 (./install.sh does), or pass --no-convert',
    });
  }
  for (const k of kernels) {
    try {
      await access(`${bootDir}/${k}`, constants.R_OK);
      return;
    } catch {
      // try the next one
    }
  }
  throw new OneswapError('usage', `guest conversion needs a readable kernel for the libguestfs appliance; ${bootDir}/${kernels.join(', ')} cannot be read by this user`, {
    hint: `as root: chmod 0644 ${bootDir}/vmlinuz-* (Debian installs kernels readable by root only), or run as root, or pass --no-convert`,
  });
}
