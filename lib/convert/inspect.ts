// Guest facts after conversion, from libguestfs inspection: one read-only appliance (guestfish in
// remote mode) answers both what virt-inspector would (OS, distro, version, arch, osinfo) and
// whether the guest carries virtio block and network drivers, which decides the VM template's
// device models. virt-v2v-inspector would run a second whole conversion for the same answers.

import { OneswapError } from '../errors/index.js';
import type { Firmware } from '../input/index.js';
import { applianceEnv, applianceHint } from './appliance.js';
import { spawn } from 'node:child_process';
import { lastErrorLine, missingProgram, runTool } from './tools.js';

export interface GuestFacts {
  /** libguestfs inspect-get-type: linux, windows, freebsd, … */
  readonly type: string;
  /** inspect-get-distro: debian, ubuntu, rhel, windows, … */
  readonly distro: string;
  /** e.g. "Debian GNU/Linux 12 (bookworm)" or "Windows Server 2019 Standard". */
  readonly productName: string;
  readonly majorVersion: number;
  readonly minorVersion: number;
  readonly arch: string;
  /** libosinfo short id, e.g. "debian12", or "" when unknown. */
  readonly osinfo: string;
  readonly hostname: string;
  readonly virtioBlock: boolean;
  readonly virtioNet: boolean;
  /** 'efi' when a disk carries an EFI system partition, else 'bios'. */
  readonly firmware: Firmware;
}

export interface InspectTarget {
  readonly path: string;
  readonly format: 'raw' | 'qcow2';
}

/** The guest's mounted filesystems, for work done in the inspection's appliance. */
export interface GuestFs {
  /** The paths a glob pattern matches (files and directories). */
  glob(pattern: string): Promise<string[]>;
  /** A regular file's text, or undefined when there is none. */
  read(path: string): Promise<string | undefined>;
  /** Writes a file (and its directory), mode 0644. */
  write(path: string, text: string): Promise<void>;
}

/**
 * Inspects the disks of one guest; undefined when they hold no operating system. Read-only,
 * unless `then` is given: a Linux guest's filesystems are then mounted read-write (the disks
 * must be the conversion's overlays) and `then` runs with them before the appliance closes.
 */
export async function inspectGuest(
  disks: readonly InspectTarget[],
  signal?: AbortSignal,
  then?: (fs: GuestFs, facts: GuestFacts) => Promise<void>,
): Promise<GuestFacts | undefined> {
  const env = await applianceEnv();
  const args = then ? ['--listen'] : ['--listen', '--ro'];
  for (const d of disks) args.push('--format=' + d.format, '-a', d.path);
  const pid = await startServer(args, env);
  const gf = async (...cmd: string[]): Promise<string> => (await runTool('guestfish', [`--remote=${pid}`, '--', ...cmd], { env, signal })).stdout;
  try {
    try {
      await gf('run');
    } catch (err) {
      throw new OneswapError('conversion', `guest inspection failed: the libguestfs appliance did not start: ${(err as Error).message}`, { hint: applianceHint() });
    }
    const roots = (await gf('inspect-os')).split('\n').map((l) => l.trim()).filter(Boolean);
    const root = roots[0];
    if (root === undefined) return undefined;
    const get = async (what: string): Promise<string> => (await gf(`inspect-get-${what}`, root).catch(() => '')).trim();
    const type = await get('type');
    const facts = {
      type,
      distro: await get('distro'),
      productName: await get('product-name'),
      majorVersion: Number(await get('major-version')) || 0,
      minorVersion: Number(await get('minor-version')) || 0,
      arch: await get('arch'),
      osinfo: (await get('osinfo')).replace(/^unknown$/, ''),
      hostname: (await get('hostname')).replace(/^unknown$/, ''),
    };
    const firmware: Firmware = (await hasEfiSystemPartition(gf)) ? 'efi' : 'bios';
    // Read-write only where something is written (Linux guests' network files): NTFS of a
    // hibernated Windows mounts read-only only.
    await mountAll(gf, root, then !== undefined && type === 'linux');
    const drivers = type === 'windows' ? await windowsVirtio(gf, root) : type === 'linux' ? await linuxVirtio(gf) : { virtioBlock: false, virtioNet: false };
    // libguestfs gives Debian's product name as the bare /etc/debian_version ("12.15").
    const pretty = type === 'linux' ? await osReleaseName(gf) : '';
    const productName = pretty || (/^[\d.]+$/.test(facts.productName) ? `${facts.distro} ${facts.productName}` : facts.productName);
    const result = { ...facts, productName, firmware, ...drivers };
    if (then) {
      await then(guestFs(gf), result);
      await gf('umount-all');
      await gf('sync');
    }
    return result;
  } finally {
    await gf('exit').catch(() => {
      try {
        process.kill(Number(pid), 'SIGTERM');
      } catch {
        // already gone
      }
    });
  }
}

type Fish = (...cmd: string[]) => Promise<string>;

/**
 * Starts guestfish as a server and returns its pid. The server forks off with the pipes it was
 * given, so the output never ends: read up to the GUESTFISH_PID line, then let go of the pipes.
 */
async function startServer(args: readonly string[], env: Record<string, string | undefined>): Promise<string> {
  const child = spawn('guestfish', args, { env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new OneswapError('conversion', 'guestfish --listen did not answer within 60 s')), 60_000);
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        const pid = /GUESTFISH_PID=(\d+)/.exec(out)?.[1];
        if (pid) {
          clearTimeout(timer);
          resolve(pid);
        }
      });
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(e.code === 'ENOENT' ? missingProgram('guestfish') : e);
      });
      child.once('exit', (code) => {
        setTimeout(() => {
          clearTimeout(timer);
          reject(new OneswapError('conversion', `guestfish --listen exited (${code}) without a server: ${lastErrorLine(err) || out.trim()}`));
        }, 200);
      });
    });
  } finally {
    child.stdout.destroy();
    child.stderr.destroy();
  }
}

function guestFs(gf: Fish): GuestFs {
  return {
    glob: async (pattern) => (await gf('glob-expand', pattern).catch(() => '')).split('\n').filter(Boolean),
    read: async (path) => {
      if ((await gf('is-file', path).catch(() => 'false')).trim() !== 'true') return undefined;
      const text = await gf('cat', path);
      // The tool runner strips the output's final newline; a file rewritten later keeps its own.
      const size = Number((await gf('filesize', path)).trim());
      return Buffer.byteLength(text) === size - 1 ? `${text}\n` : text;
    },
    write: async (path, text) => {
      await gf('mkdir-p', path.slice(0, path.lastIndexOf('/')) || '/');
      await gf('write', path, text);
      await gf('chmod', '0644', path);
    },
  };
}

/** Mounts the guest's filesystems as its fstab says, shortest mountpoint first. */
async function mountAll(gf: Fish, root: string, writable: boolean): Promise<void> {
  const points = (await gf('inspect-get-mountpoints', root))
    .split('\n')
    .map((l) => /^(\S+): (\S+)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ mp: m[1]!, dev: m[2]! }))
    .sort((a, b) => a.mp.length - b.mp.length);
  for (const p of points) {
    try {
      await gf(writable ? 'mount' : 'mount-ro', p.dev, p.mp);
    } catch (err) {
      // Without "/" every answer below would be a silent "no"; a missing /boot/efi is not fatal.
      if (p.mp === '/') throw new OneswapError('conversion', `guest inspection could not mount the root filesystem ${p.dev}: ${(err as Error).message}`);
    }
  }
}

const ESP_GPT_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';

/** A GPT partition of the EFI system type (or an MBR partition of type 0xef) on any disk. */
async function hasEfiSystemPartition(gf: Fish): Promise<boolean> {
  const parts = (await gf('list-partitions').catch(() => '')).split('\n').map((l) => l.trim()).filter(Boolean);
  for (const part of parts) {
    const dev = (await gf('part-to-dev', part).catch(() => '')).trim();
    const n = (await gf('part-to-partnum', part).catch(() => '')).trim();
    if (!dev || !n) continue;
    const table = (await gf('part-get-parttype', dev).catch(() => '')).trim();
    if (table === 'gpt' && (await gf('part-get-gpt-type', dev, n).catch(() => '')).trim().toUpperCase() === ESP_GPT_TYPE) return true;
    if (table === 'msdos' && Number((await gf('part-get-mbr-id', dev, n).catch(() => '0')).trim()) === 0xef) return true;
  }
  return false;
}

/** PRETTY_NAME of /etc/os-release, e.g. "Debian GNU/Linux 12 (bookworm)", or "". */
async function osReleaseName(gf: Fish): Promise<string> {
  const text = await gf('cat', '/etc/os-release').catch(() => '');
  return /^PRETTY_NAME=(?:"([^"]*)"|(\S*))/m.exec(text)?.slice(1).find((x) => x !== undefined) ?? '';
}

/** A module file for any installed kernel, or the module built into one. */
async function linuxVirtio(gf: Fish): Promise<{ virtioBlock: boolean; virtioNet: boolean }> {
  const has = async (module: string, dir: string): Promise<boolean> => {
    const files = (await gf('glob-expand', `/lib/modules/*/kernel/drivers/${dir}/${module}.ko*`).catch(() => '')).trim();
    if (files) return true;
    for (const builtin of (await gf('glob-expand', '/lib/modules/*/modules.builtin').catch(() => '')).split('\n').filter(Boolean)) {
      if ((await gf('grep', `/${module}.ko`, builtin).catch(() => '')).trim()) return true;
    }
    return false;
  };
  return { virtioBlock: await has('virtio_blk', 'block'), virtioNet: await has('virtio_net', 'net') };
}

/** viostor and netkvm are the virtio-win drivers virt-v2v installs. */
async function windowsVirtio(gf: Fish, root: string): Promise<{ virtioBlock: boolean; virtioNet: boolean }> {
  const systemroot = (await gf('inspect-get-windows-systemroot', root).catch(() => '/Windows')).trim() || '/Windows';
  const has = async (file: string): Promise<boolean> => {
    try {
      const path = (await gf('case-sensitive-path', `${systemroot}/system32/drivers/${file}`)).trim();
      return (await gf('is-file', path)).trim() === 'true';
    } catch {
      return false;
    }
  };
  return { virtioBlock: await has('viostor.sys'), virtioNet: await has('netkvm.sys') };
}
