// What virt-v2v's warnings mean for the guest at hand. virt-v2v warns in general terms ("could
// not determine a way to update the configuration of Grub2") and carries on; whether that
// matters depends on the guest's boot files, which the inspection appliance reads after the
// conversion. Each known warning gets its meaning (read in virt-v2v's source: convert_linux.ml,
// linux_bootloaders.ml, linux_kernels.ml, convert.ml) and a verdict for this guest: harmless, or
// the file, line and command to fix. Unknown warnings pass through as virt-v2v wrote them.

import type { GuestFs } from './inspect.js';

/** The guest's boot files, read in the appliance after the conversion. */
export interface BootFiles {
  readonly grubCfg?: { readonly path: string; readonly text: string };
  /** grubenv beside grub.cfg (GRUB_DEFAULT=saved keeps the default entry there). */
  readonly grubEnv?: string;
  readonly fstab?: string;
  /** The names of the files in /boot (virt-v2v moves each initramfs it rebuilds to `<name>.pre-v2v`). */
  readonly boot: readonly string[];
}

/** What the verdicts depend on. */
export interface GuestBoot {
  readonly files: BootFiles;
  /** The template's disks are virtio-blk (vdX); else SATA (sdX). */
  readonly virtioBlock: boolean;
  /** libguestfs' distro name (debian, ubuntu, rhel, …): which commands fix things. */
  readonly distro: string;
}

export interface ExplainedWarning {
  /** virt-v2v's text, on one line. */
  readonly warning: string;
  /** Nothing to do for this guest. */
  readonly harmless: boolean;
  /** The whole explanation, one line: the warning, what it means, the verdict for this guest. */
  readonly text: string;
}

export async function readBootFiles(fs: GuestFs): Promise<BootFiles> {
  let grubCfg: BootFiles['grubCfg'];
  for (const path of ['/boot/grub/grub.cfg', '/boot/grub2/grub.cfg', ...(await fs.glob('/boot/efi/EFI/*/grub.cfg'))]) {
    const text = await fs.read(path);
    if (text !== undefined) {
      grubCfg = { path, text };
      break;
    }
  }
  const grubEnv = grubCfg ? await fs.read(`${grubCfg.path.slice(0, grubCfg.path.lastIndexOf('/'))}/grubenv`) : undefined;
  const fstab = await fs.read('/etc/fstab');
  const boot = (await fs.glob('/boot/*')).map((p) => p.slice(p.lastIndexOf('/') + 1));
  return { ...(grubCfg ? { grubCfg } : {}), ...(grubEnv !== undefined ? { grubEnv } : {}), ...(fstab !== undefined ? { fstab } : {}), boot };
}

interface KnownWarning {
  readonly match: RegExp;
  /** What virt-v2v did or could not do. */
  readonly meaning: (m: RegExpExecArray) => string;
  /** For this guest; without boot files (the conversion stopped before), only the meaning is said. */
  readonly verdict: (m: RegExpExecArray, boot: GuestBoot) => { readonly harmless: boolean; readonly text: string };
}

const DEBIAN_FAMILY = new Set(['debian', 'ubuntu', 'linuxmint', 'kalilinux']);

const KNOWN: readonly KnownWarning[] = [
  {
    // linux_bootloaders.ml: neither /sbin/grubby nor Perl's Bootloader::Tools (every Debian and Ubuntu guest).
    match: /^could not determine a way to update the configuration of Grub2$/,
    meaning: () =>
      'the guest has neither grubby nor Perl Bootloader::Tools, so virt-v2v can neither read nor change which kernel GRUB starts by default: GRUB keeps its default entry (virt-v2v still renames disks in fstab and the GRUB settings, and then reruns grub-mkconfig)',
    verdict: (_m, boot) => grubVerdict(boot),
  },
  {
    // convert_linux.ml remap_block_devices: a device name in fstab or the GRUB settings that is no disk of the VM.
    match: /^(\S+) references unknown device "([^"]+)"\. You may have to fix this entry manually after conversion\.$/,
    meaning: (m) => `${augeasPlace(m[1]!)} names the device ${m[2]}, which is none of the VM's disks, so virt-v2v could not give it its name on KVM`,
    verdict: (m, boot) => unknownDeviceVerdict(m[1]!, m[2]!, boot),
  },
  {
    // convert_linux.ml uninstall_packages (open-vm-tools, vmware-tools-*).
    match: /^could not uninstall packages ['‘’"]?(.+?)['‘’"]?: (.*) \(ignored\)$/,
    meaning: (m) => `the packages ${m[1]} (VMware Tools) stay installed in the guest`,
    verdict: (m, boot) => ({
      harmless: true,
      text: `harmless for booting: on KVM their services find no VMware hypervisor and stay idle; remove them after the first boot with: ${removeCommand(boot.distro, m[1]!)}`,
    }),
  },
  {
    match: /^VMware tools was detected, but uninstallation failed\.\s+The error message was: (.*) \(ignored\)$/,
    meaning: () => 'VMware Tools installed from VMware\'s tarball stay in the guest',
    verdict: () => ({ harmless: true, text: 'harmless for booting: on KVM they stay idle; remove them after the first boot with: /usr/bin/vmware-uninstall-tools.pl' }),
  },
  {
    // convert.ml do_fstrim: only the trimming of free space failed.
    match: /^fstrim on guest filesystem (\S+) failed\./,
    meaning: (m) => `the free space of ${m[1]} was not trimmed`,
    verdict: () => ({ harmless: true, text: 'harmless: the guest is unchanged by it; only the disk file keeps blocks the filesystem no longer uses' }),
  },
  {
    match: /^The display driver was updated to ['‘’"]?([^'‘’"]+)['‘’"]?, but X11 does not seem to be installed in the guest\./,
    meaning: (m) => `virt-v2v set the X11 driver to ${m[1]} in the guest's xorg.conf, but the guest has no X server`,
    verdict: () => ({ harmless: true, text: 'harmless for a guest without a graphical desktop' }),
  },
  {
    // linux_kernels.ml: a kernel without an initramfs gets no virtio drivers added.
    match: /^no initrd was found in \/boot matching (\S+) (\S+)\.$/,
    meaning: (m) => `kernel ${m[2]} (${m[1]}) has no initramfs, so virt-v2v added no virtio drivers to it`,
    verdict: (m, boot) => kernelWithoutInitrdVerdict(m[2]!, boot),
  },
  {
    match: /^ignoring kernel (\S+) in bootloader, as it does not exist\.$/,
    meaning: (m) => `the boot configuration lists ${m[1]}, a file that does not exist`,
    verdict: () => ({ harmless: true, text: 'harmless: GRUB cannot start that entry anyway, and virt-v2v converted the kernels that exist' }),
  },
  {
    match: /^could not rebuild grub2 configuration file \(([^)]+)\)\./,
    meaning: (m) => `virt-v2v changed the serial console setting but could not regenerate ${m[1]}`,
    verdict: (m, boot) => ({ harmless: true, text: `harmless for booting (GRUB's output may not go to the serial port); after the first boot run: ${mkconfigCommand(m[1]!, boot.distro)}` }),
  },
  {
    match: /^could not (add|remove) grub2 serial console \(ignored\)$/,
    meaning: (m) => `the guest has no GRUB_CMDLINE_LINUX setting, so virt-v2v could not ${m[1]} the serial console there`,
    verdict: () => ({ harmless: true, text: 'harmless: the kernel command line stays as it was' }),
  },
];

/** Whether virt-v2v's warning is one explained here (held back until the boot files are read). */
export function isKnownWarning(warning: string): boolean {
  const text = oneLine(warning);
  return KNOWN.some((k) => k.match.test(text));
}

/**
 * The explanation of a known warning (undefined for others). Without the boot files (the
 * conversion failed before they were read), it says what the warning means and no verdict.
 */
export function explainWarning(warning: string, boot: GuestBoot | undefined): ExplainedWarning | undefined {
  const text = oneLine(warning);
  for (const k of KNOWN) {
    const m = k.match.exec(text);
    if (!m) continue;
    const head = `virt-v2v warned "${text}": ${k.meaning(m)}`;
    if (boot === undefined) return { warning: text, harmless: false, text: `${head}.` };
    const v = k.verdict(m, boot);
    return { warning: text, harmless: v.harmless, text: `${head}. ${v.text.charAt(0).toUpperCase()}${v.text.slice(1)}.` };
  }
  return undefined;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** GRUB2's default entry, its kernel and root, and /etc/fstab against the disk names on KVM. */
function grubVerdict(boot: GuestBoot): { harmless: boolean; text: string } {
  const { files } = boot;
  const problems: string[] = [];
  const fine: string[] = [];
  const cfg = files.grubCfg;
  if (cfg === undefined) return { harmless: false, text: 'check this guest: no grub.cfg was found under /boot, so oneswap cannot tell what GRUB starts; watch its console at the first boot' };
  const mkconfig = mkconfigCommand(cfg.path, boot.distro);
  const found = defaultEntry(cfg.text, files.grubEnv);
  if (found.entry === undefined) {
    problems.push(`${cfg.path} does not say plainly which entry GRUB starts (${found.why}): at the first boot choose the newest kernel in the GRUB menu, then set GRUB_DEFAULT in /etc/default/grub and run ${mkconfig}`);
  } else {
    const e = found.entry;
    const kernel = e.kernel?.slice(e.kernel.lastIndexOf('/') + 1);
    const version = kernel?.replace(/^vmlinuz-/, '');
    // virt-v2v moves the initramfs it rebuilds (with the virtio drivers) aside as <name>.pre-v2v.
    const rebuilt = files.boot.filter((n) => n.endsWith('.pre-v2v')).map((n) => n.replace(/\.pre-v2v$/, '').replace(/^(initrd\.img|initramfs|initrd)-/, '').replace(/\.img$/, ''));
    if (kernel === undefined) problems.push(`GRUB's default entry "${e.title}" (${cfg.path} line ${e.line}) starts no Linux kernel: check what it boots`);
    else if (rebuilt.includes(version!)) fine.push(`GRUB starts ${kernel} by default, the kernel whose initramfs virt-v2v rebuilt with the virtio drivers`);
    else if (rebuilt.length > 0)
      problems.push(
        `GRUB starts ${kernel} by default (${cfg.path} line ${e.line}), but virt-v2v added the virtio drivers to the initramfs of ${rebuilt.join(', ')} only: choose that kernel in the GRUB menu at the first boot, then make it the default (GRUB_DEFAULT in /etc/default/grub) and run ${mkconfig}`,
      );
    else problems.push(`virt-v2v rebuilt no initramfs in /boot, so ${kernel} must have the virtio drivers built in: check that the guest finds its disk at the first boot`);
    if (e.root !== undefined) {
      const kvm = nameOnKvm(e.root, boot.virtioBlock);
      if (kvm === undefined) fine.push(`${cfg.path} passes root=${e.root}`);
      else problems.push(`${cfg.path} line ${e.rootLine} passes root=${e.root}, which is ${kvm} on KVM: at the GRUB menu press e and change it to root=${kvm}, then after the first boot run ${mkconfig}`);
    }
  }
  const fstab = fstabVerdict(files.fstab, boot.virtioBlock);
  problems.push(...fstab.problems);
  fine.push(...fstab.fine);
  if (problems.length === 0) return { harmless: true, text: `harmless for this guest: ${fine.join('; ')}: the guest boots` };
  return { harmless: false, text: `check this guest: ${problems.join('; ')}${fine.length > 0 ? ` (fine: ${fine.join('; ')})` : ''}` };
}

function fstabVerdict(fstab: string | undefined, virtioBlock: boolean): { problems: string[]; fine: string[] } {
  if (fstab === undefined) return { problems: [], fine: ['there is no /etc/fstab'] };
  const problems: string[] = [];
  const mounts: string[] = [];
  for (const e of fstabEntries(fstab)) {
    const kvm = nameOnKvm(e.spec, virtioBlock);
    if (kvm === undefined) mounts.push(`${e.file} from ${e.spec}${/^\/dev\/[sv]d[a-z]/.test(e.spec) ? ` (its name on ${virtioBlock ? 'virtio-blk' : 'SATA'})` : ''}`);
    else if (e.options.includes('nofail')) mounts.push(`${e.file} from ${e.spec} (wrong on KVM, where it is ${kvm}, but nofail)`);
    else problems.push(`/etc/fstab line ${e.line} mounts ${e.file} from ${e.spec}, which is ${kvm} on KVM, so the boot stops there: change it to UUID=… (blkid ${kvm} prints it) or ${kvm}`);
  }
  const shown = mounts.length > 3 ? [...mounts.slice(0, 3), `${mounts.length - 3} more`] : mounts;
  return { problems, fine: mounts.length > 0 ? [`/etc/fstab mounts ${shown.join(', ')}`] : [] };
}

interface FstabEntry {
  readonly line: number;
  readonly spec: string;
  readonly file: string;
  readonly options: readonly string[];
}

function fstabEntries(fstab: string): FstabEntry[] {
  const out: FstabEntry[] = [];
  fstab.split('\n').forEach((raw, i) => {
    const fields = raw.replace(/#.*/, '').trim().split(/\s+/);
    if (fields.length < 2 || fields[0] === '') return;
    out.push({ line: i + 1, spec: fields[0]!, file: fields[1]!, options: (fields[3] ?? '').split(',') });
  });
  return out;
}

/**
 * The name a kernel device name (/dev/sda1, /dev/nvme0n1p2) has on KVM, when it differs: disks
 * are vdX on virtio-blk and sdX on SATA, in the source's order. UUID=, LABEL=, device-mapper
 * and /dev/disk/by-* names do not change: undefined.
 */
export function nameOnKvm(spec: string, virtioBlock: boolean): string | undefined {
  const prefix = virtioBlock ? 'vd' : 'sd';
  const classic = /^\/dev\/(sd|vd|hd|xvd)([a-z]+)(\d*)$/.exec(spec);
  if (classic) return classic[1] === prefix ? undefined : `/dev/${prefix}${classic[2]}${classic[3]}`;
  const nvme = /^\/dev\/nvme(\d+)n1(?:p(\d+))?$/.exec(spec);
  if (nvme) return `/dev/${prefix}${String.fromCharCode(97 + Number(nvme[1]))}${nvme[2] ?? ''}`;
  return undefined;
}

interface GrubEntry {
  readonly title: string;
  readonly id?: string;
  readonly line: number;
  readonly kernel?: string;
  readonly root?: string;
  readonly rootLine?: number;
  /** A submenu's entries; undefined for a menuentry. */
  readonly children?: GrubEntry[];
}

/** The entry GRUB starts without a key pressed: `set default` (an index, a title or id, "a>b", ${saved_entry}). */
export function defaultEntry(cfg: string, grubEnv: string | undefined): { entry?: GrubEntry; why: string } {
  const items = grubMenu(cfg);
  // `set default="${next_entry}"` is grub-reboot's one-time choice, normally empty; the other one counts.
  let chosen = [...cfg.matchAll(/^\s*set default="?([^"\n]*)"?\s*$/gm)].map((m) => m[1]!).find((v) => v !== '${next_entry}') ?? '0';
  if (chosen === '${saved_entry}') chosen = /^saved_entry=(.*)$/m.exec(grubEnv ?? '')?.[1]?.trim() || '0';
  let level: GrubEntry[] = items;
  let found: GrubEntry | undefined;
  for (const part of chosen.split('>')) {
    found = /^\d+$/.test(part) ? level[Number(part)] : level.find((e) => e.title === part || e.id === part);
    if (found === undefined) return { why: `set default="${chosen}" names no entry` };
    level = found.children ?? [];
  }
  if (found?.children) return { why: `set default="${chosen}" is a submenu` };
  return found ? { entry: found, why: '' } : { why: 'no menu entry' };
}

/** The top-level entries and submenus of a grub.cfg, with each entry's kernel and root=. */
function grubMenu(cfg: string): GrubEntry[] {
  type Open = { title: string; id?: string; line: number; kernel?: string; root?: string; rootLine?: number; children?: Open[]; depth: number };
  const top: Open[] = [];
  const stack: Open[] = [];
  let depth = 0;
  cfg.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const head = /^(menuentry|submenu)\s+(?:'([^']*)'|"([^"]*)"|(\S+))(.*)\{$/.exec(line);
    if (head) {
      const id = /\$menuentry_id_option\s+(?:'([^']*)'|"([^"]*)"|(\S+))/.exec(head[5]!);
      const item: Open = { title: head[2] ?? head[3] ?? head[4]!, ...(id ? { id: id[1] ?? id[2] ?? id[3]! } : {}), line: i + 1, depth, ...(head[1] === 'submenu' ? { children: [] } : {}) };
      const parent = stack.at(-1);
      if (parent?.children) parent.children.push(item);
      else if (parent === undefined) top.push(item);
      stack.push(item);
      depth++;
      return;
    }
    const linux = /^linux(?:efi|16)?\s+(\S+)(.*)$/.exec(line);
    const inEntry = stack.at(-1);
    if (linux && inEntry && !inEntry.children && inEntry.kernel === undefined) {
      inEntry.kernel = linux[1];
      const root = /(?:^|\s)root=(\S+)/.exec(linux[2]!);
      if (root) {
        inEntry.root = root[1];
        inEntry.rootLine = i + 1;
      }
    }
    if (line.endsWith('{')) depth++;
    if (line === '}' || line.startsWith('}')) {
      depth--;
      if (stack.at(-1)?.depth === depth) stack.pop();
    }
  });
  return top;
}

function unknownDeviceVerdict(place: string, device: string, boot: GuestBoot): { harmless: boolean; text: string } {
  const path = `/dev/${device}`;
  if (place.startsWith('/files/etc/fstab/')) {
    const e = fstabEntries(boot.files.fstab ?? '').find((x) => x.spec === path || x.spec.startsWith(path));
    if (e?.options.includes('nofail')) return { harmless: true, text: `harmless for this guest: /etc/fstab line ${e.line} (${e.spec} on ${e.file}) has nofail, so the boot goes on without it` };
    const where = e ? `/etc/fstab line ${e.line} (${e.spec} on ${e.file})` : `/etc/fstab's entry for ${path}`;
    return { harmless: false, text: `check this guest: ${where} waits for a disk the VM does not have, so the boot stops in emergency mode; name it by UUID= or LABEL=, add nofail, or remove the line` };
  }
  return { harmless: false, text: `check this guest: ${augeasPlace(place)} still says ${path}; change it to the name the disk has on KVM (vdX on virtio-blk, sdX on SATA) or to a UUID=, and rerun ${mkconfigCommand(boot.files.grubCfg?.path ?? '/boot/grub/grub.cfg', boot.distro)} after the first boot` };
}

function kernelWithoutInitrdVerdict(version: string, boot: GuestBoot): { harmless: boolean; text: string } {
  const cfg = boot.files.grubCfg;
  const entry = cfg ? defaultEntry(cfg.text, boot.files.grubEnv).entry : undefined;
  if (entry?.kernel !== undefined && !entry.kernel.endsWith(`vmlinuz-${version}`))
    return { harmless: true, text: `harmless for this guest: GRUB starts ${entry.kernel.slice(entry.kernel.lastIndexOf('/') + 1)} by default, not that kernel` };
  return { harmless: false, text: `check this guest: if GRUB starts that kernel, it needs the virtio drivers built in; otherwise choose another kernel in the GRUB menu at the first boot` };
}

/** "/files/etc/fstab/3/spec" → "/etc/fstab (entry 3)"; "/files/etc/default/grub/GRUB_CMDLINE_LINUX" → "/etc/default/grub (GRUB_CMDLINE_LINUX)". */
function augeasPlace(path: string): string {
  const fstab = /^\/files\/etc\/fstab\/(\d+)\//.exec(path);
  if (fstab) return `/etc/fstab (entry ${fstab[1]})`;
  const m = /^\/files(\/.*)\/([^/]+)$/.exec(path);
  return m ? `${m[1]} (${m[2]})` : path;
}

function mkconfigCommand(cfgPath: string, distro: string): string {
  if (cfgPath === '/boot/grub/grub.cfg' && DEBIAN_FAMILY.has(distro)) return 'update-grub';
  return `${cfgPath.includes('grub2') ? 'grub2-mkconfig' : 'grub-mkconfig'} -o ${cfgPath}`;
}

function removeCommand(distro: string, packages: string): string {
  if (DEBIAN_FAMILY.has(distro)) return `apt-get remove ${packages}`;
  if (/^(sles|suse-based|opensuse)$/.test(distro)) return `zypper remove ${packages}`;
  return `dnf remove ${packages} (yum on older releases)`;
}
