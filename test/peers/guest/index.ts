// A real Debian 12 guest disk for conversion tests (build.sh says what it is), built once and
// cached keyed by its recipe, and a boot check under qemu (TCG) that tells a guest that reaches
// its login prompt from one that drops to the initramfs shell.

import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const BUILD = join(here, 'build.sh');

/** Where built guests are kept between runs: $ONESWAP_TEST_CACHE or ~/.cache/oneswap-test. */
export function cacheDir(): string {
  return process.env.ONESWAP_TEST_CACHE || join(homedir(), '.cache', 'oneswap-test');
}

function recipeKey(): string {
  return createHash('sha256').update(readFileSync(BUILD)).digest('hex').slice(0, 16);
}

function onPath(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Why the conversion tests cannot run here, or false. Like the simulator: a skip is loud, and in
 * CI (CI=true) or with ONESWAP_REQUIRE_PEERS=1 it is an error.
 */
export function guestSkip(): string | false {
  const missing = ['virt-v2v-in-place', 'guestfish', 'qemu-system-x86_64', 'debootstrap'].filter((p) => !onPath(p));
  let reason: string | undefined;
  if (missing.length > 0) reason = `${missing.join(', ')} not installed (run ./install.sh --dev)`;
  else if (process.getuid?.() !== 0 && !cachedGuest()) reason = 'building the test guest needs root (debootstrap)';
  if (reason === undefined) return false;
  if (process.env.CI === 'true' || process.env.ONESWAP_REQUIRE_PEERS === '1') throw new Error(`${reason}; CI requires the conversion tests`);
  process.stderr.write(`\n*** SKIPPED: ${reason} ***\n\n`);
  return reason;
}

function cachedGuest(): string | undefined {
  const path = join(cacheDir(), `debian12-vmware-${recipeKey()}.raw`);
  try {
    accessSync(path, constants.R_OK);
    return path;
  } catch {
    return undefined;
  }
}

/** The guest disk (raw), built now when the cache has none for this recipe. Never modify it. */
export async function testGuest(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<string> {
  const cached = cachedGuest();
  if (cached) return cached;
  const dir = cacheDir();
  await mkdir(dir, { recursive: true });
  const out = join(dir, `debian12-vmware-${recipeKey()}.raw`);
  log(`building the Debian test guest into ${out} (about 6 minutes, cached afterwards)`);
  const t0 = Date.now();
  await new Promise<void>((resolve, reject) => {
    // Its progress goes to our stderr: stdout belongs to whoever runs us (install.sh reads a path there).
    const child = spawn('sh', [BUILD, out], { stdio: ['ignore', 2, 'inherit'] });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${BUILD} failed (exit ${code})`))));
  });
  log(`built the test guest in ${Math.round((Date.now() - t0) / 1000)} s (${((await stat(out)).blocks * 512 / 2 ** 20).toFixed(0)} MiB allocated)`);
  return out;
}

export type BootResult = {
  readonly outcome: 'login' | 'initramfs-shell' | 'timeout';
  readonly seconds: number;
  readonly console: string;
  /** With `nic`: what the guest's network report said (build.sh), once it said it. */
  readonly network?: { readonly links: readonly string[]; readonly ipv4: ReadonlyMap<string, string> };
};

/**
 * Boots a disk under qemu (TCG, no network, writes discarded) and watches the serial console:
 * `login:` is a booted guest, the initramfs' "ALERT!"/"Gave up waiting for root" is not.
 */
export async function bootCheck(
  image: string,
  opts: {
    format: 'raw' | 'qcow2';
    bus: 'virtio' | 'pvscsi';
    firmware?: 'bios' | 'efi';
    timeoutMs?: number;
    workDir: string;
    /** A virtio NIC with this MAC on qemu's user-mode network (its DHCP hands out 10.0.2.15); the check then also waits for the guest's network report. */
    nic?: { readonly mac: string };
  },
): Promise<BootResult> {
  const logFile = join(opts.workDir, `boot-${Date.now()}.log`);
  const drive =
    opts.bus === 'virtio'
      ? ['-drive', `file=${image},format=${opts.format},if=virtio,snapshot=on`]
      : ['-device', 'pvscsi,id=scsi0', '-drive', `file=${image},format=${opts.format},if=none,id=d0,snapshot=on`, '-device', 'scsi-hd,drive=d0,bus=scsi0.0'];
  const fw = opts.firmware === 'efi' ? ['-bios', '/usr/share/OVMF/OVMF_CODE.fd'] : [];
  const net = opts.nic ? ['-netdev', 'user,id=n0,restrict=on', '-device', `virtio-net-pci,netdev=n0,mac=${opts.nic.mac}`] : ['-nic', 'none'];
  const args = ['-machine', 'pc,accel=tcg', '-cpu', 'max', '-m', '1024', ...net, '-display', 'none', '-serial', `file:${logFile}`, ...fw, ...drive];
  const t0 = Date.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  let exited = false;
  qemu.once('close', () => (exited = true));
  const deadline = t0 + (opts.timeoutMs ?? 5 * 60_000);
  let outcome: BootResult['outcome'] = 'timeout';
  let console = '';
  try {
    while (Date.now() < deadline && !exited) {
      await new Promise((r) => setTimeout(r, 1000));
      console = await readFile(logFile, 'utf8').catch(() => '');
      if (/login:/.test(console) && (!opts.nic || /oneswap-netreport: done/.test(console))) {
        outcome = 'login';
        break;
      }
      if (/ALERT!|Gave up waiting for root|Dropping to a shell/.test(console)) {
        outcome = 'initramfs-shell';
        break;
      }
    }
    if (exited && outcome === 'timeout') throw new Error(`qemu exited early: ${stderr.trim().split('\n').at(-1) ?? ''}`);
  } finally {
    qemu.kill('SIGKILL');
    await rm(logFile, { force: true });
  }
  return { outcome, seconds: (Date.now() - t0) / 1000, console, ...(opts.nic ? { network: networkReport(console) } : {}) };
}

/** The lines the guest's oneswap-netreport wrote (build.sh). */
function networkReport(console: string): { links: string[]; ipv4: Map<string, string> } {
  const line = (what: string): string => new RegExp(`oneswap-netreport: ${what}: ([^\\r\\n]*)`).exec(console)?.[1]?.trim() ?? '';
  const links = line('links').split(/\s+/).filter(Boolean);
  const ipv4 = new Map(line('ipv4').split(/\s+/).filter(Boolean).map((kv) => kv.split('=') as [string, string]));
  return { links, ipv4 };
}
