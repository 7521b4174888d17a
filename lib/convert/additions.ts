// Opt-in guest additions applied to the converted overlays with virt-customize (virt-v2v 2.2 has
// no customization options of its own): the OpenNebula context package, installed at first boot
// (it configures the network from OpenNebula's CONTEXT by MAC, whatever the NICs are now called),
// and qemu-guest-agent, installed at first boot.

import { access, constants } from 'node:fs/promises';
import { basename } from 'node:path';
import { OneswapError } from '../errors/index.js';
import { applianceEnv } from './appliance.js';
import { runTool } from './tools.js';

export interface GuestAdditions {
  /** A one-context .deb or .rpm to install at first boot. */
  readonly contextPackage?: string | undefined;
  /** Install qemu-guest-agent at first boot. */
  readonly guestAgent?: boolean | undefined;
}

/** Where the package waits in the guest for its first boot. */
const GUEST_DIR = '/var/lib/oneswap';

export function hasAdditions(a: GuestAdditions | undefined): a is GuestAdditions {
  return a !== undefined && (a.contextPackage !== undefined || a.guestAgent === true);
}

/** Refuses what cannot work before anything is copied or converted. */
export async function checkAdditions(a: GuestAdditions | undefined): Promise<void> {
  if (a?.contextPackage === undefined) return;
  if (!/\.(deb|rpm)$/.test(a.contextPackage))
    throw new OneswapError('usage', `--context-package ${a.contextPackage}: not a .deb or .rpm file`, {
      hint: 'use the one-context package for the guest, from https://github.com/OpenNebula/one-apps/releases',
    });
  try {
    await access(a.contextPackage, constants.R_OK);
  } catch (err) {
    throw new OneswapError('usage', `--context-package ${a.contextPackage}: cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
}

/** First-boot commands that install a package file, with the distro's fallback for dependencies. */
function installCommand(file: string): string {
  const path = `${GUEST_DIR}/${basename(file)}`;
  return file.endsWith('.deb')
    ? `dpkg -i ${path} || (apt-get update && apt-get -y -f install)`
    : `rpm -Uvh ${path} || dnf -y install ${path} || yum -y install ${path} || zypper --non-interactive install ${path}`;
}

/**
 * Applies the additions to a converted Linux guest (on its overlays) and says what it did.
 * Windows first-boot scripts need rhsrvany, which Debian does not ship: refused with the reason.
 */
export async function applyAdditions(
  disks: ReadonlyArray<{ path: string; format: 'raw' | 'qcow2' }>,
  guestType: string,
  a: GuestAdditions,
  signal?: AbortSignal,
): Promise<string[]> {
  if (guestType !== 'linux') {
    throw new OneswapError('conversion', `guest additions (--context-package, --guest-agent) are supported for Linux guests; this guest is ${guestType}`, {
      hint: 'install them in the guest after the first boot, or run without these options',
    });
  }
  const args: string[] = [];
  // virt-customize 1.48 adds its -a disks in reverse order: given in order, the boot disk of a
  // two-disk guest becomes /dev/sdb and the guest's fstab ("/dev/sda1 /") no longer mounts.
  for (const d of [...disks].reverse()) args.push('--format', d.format, '-a', d.path);
  const done: string[] = [];
  if (a.contextPackage !== undefined) {
    args.push('--mkdir', GUEST_DIR, '--copy-in', `${a.contextPackage}:${GUEST_DIR}`, '--firstboot-command', installCommand(a.contextPackage));
    done.push(`context package ${basename(a.contextPackage)} installed at first boot`);
  }
  if (a.guestAgent) {
    args.push('--firstboot-install', 'qemu-guest-agent');
    done.push('qemu-guest-agent installed at first boot');
  }
  await runTool('virt-customize', args, { env: await applianceEnv(), signal });
  return done;
}
