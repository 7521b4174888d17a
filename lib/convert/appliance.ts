// The libguestfs appliance that virt-v2v and guestfish boot. Settings that work as root and as
// oneadmin, with or without KVM, and a check of what commonly keeps it from starting, so the user
// hears about it before any conversion starts.

import { spawn } from 'node:child_process';
import { access, constants, readdir } from 'node:fs/promises';
import { OneswapError } from '../errors/index.js';

/**
 * The environment for every libguestfs program. The direct backend runs qemu itself: it needs no
 * libvirtd (which oneadmin's session may not reach) and falls back to TCG without /dev/kvm.
 * A backend the user chose explicitly is kept. Where /dev/kvm is present but qemu cannot start a
 * guest on it (kvmProblem), the appliance is told to run emulated: libguestfs would try KVM and
 * the appliance would abort.
 */
export async function applianceEnv(base: NodeJS.ProcessEnv = process.env): Promise<Record<string, string | undefined>> {
  const env: Record<string, string | undefined> = { ...base, LIBGUESTFS_BACKEND: base.LIBGUESTFS_BACKEND || 'direct' };
  if (!base.LIBGUESTFS_BACKEND_SETTINGS && (await kvmProblem(base)) !== undefined) env.LIBGUESTFS_BACKEND_SETTINGS = 'force_tcg';
  return env;
}

let probed: Promise<string | undefined> | undefined;

/**
 * Why KVM cannot run the appliance although this user may open /dev/kvm, or undefined (KVM works,
 * or there is none and libguestfs emulates by itself). Seen in nested virtualization: qemu aborts
 * with "failed to set MSR 0x10a" for the CPU model libguestfs asks for. Found by starting qemu
 * once, stopped before its first instruction (a tenth of a second); asked once per process.
 */
export function kvmProblem(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  probed ??= probeKvm(env.LIBGUESTFS_HV || 'qemu-system-x86_64');
  return probed;
}

/** kvmProblem without the cache, for a given qemu and KVM device. */
export async function probeKvm(qemu: string, device = '/dev/kvm'): Promise<string | undefined> {
  try {
    await access(device, constants.R_OK | constants.W_OK);
  } catch {
    return undefined;
  }
  return new Promise((resolve) => {
    // -cpu max is what libguestfs 1.48 passes; -S: set up the vCPU (where the MSRs fail), run nothing.
    const child = spawn(qemu, ['-machine', 'accel=kvm', '-cpu', 'max', '-nodefaults', '-no-user-config', '-display', 'none', '-S', '-monitor', 'stdio'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', () => {
      clearTimeout(timer);
      resolve(undefined); // no qemu here: libguestfs says so itself, better than we could
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const first = stderr.split('\n').find((l) => l.trim() !== '')?.replace(/^[^:]*qemu[^:]*: (error: )?/, '');
      resolve(code === 0 ? undefined : `qemu cannot start a guest on ${device} (${first ?? (signal ? `killed by ${signal}` : `exit ${code}`)})`);
    });
    child.stdin.on('error', () => undefined); // a qemu that aborts at once never reads it
    child.stdin.end('quit\n');
  });
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
 * kernel, which Debian installs readable by root only. Returns a warning for the user when the
 * appliance will run emulated although /dev/kvm is there.
 */
export async function checkAppliance(bootDir = '/boot'): Promise<string | undefined> {
  if (!process.env.LIBGUESTFS_PATH) await checkKernel(bootDir); // a fixed appliance brings its own kernel
  if (process.env.LIBGUESTFS_BACKEND_SETTINGS) return undefined;
  const kvm = await kvmProblem();
  return kvm === undefined ? undefined : `${kvm}: the conversion runs emulated (TCG), several times slower; a host whose KVM works converts faster`;
}

async function checkKernel(bootDir: string): Promise<void> {
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
