// The OpenNebula VM template for a migrated VM, built from the neutral VM description, the images
// that hold its disks and the networks its NICs map to. Pure: no I/O, so every rule is unit-tested.

import { Template } from '../one/index.js';
import type { DiskDescription, Firmware, NicAdapter, NicDescription, VmDescription } from '../input/index.js';

/**
 * A disk and the image that holds it: by id once the image exists, by name in a template written
 * for images still to be created from a directory target's files.
 */
export type PlacedDisk = { readonly disk: DiskDescription; readonly imageId: number } | { readonly disk: DiskDescription; readonly imageName: string };

/**
 * A NIC and its network: by id when mapped against OpenNebula; by name in a directory target's
 * template, with the source MAC when it is kept (the summary says which address range to add so
 * that OpenNebula leases it).
 */
export type PlacedNic =
  | {
      readonly nic: NicDescription;
      readonly networkId: number;
      /** The NIC asks for this MAC (the source's, in an address range of the network). */
      readonly mac?: string;
      /** The NIC asks for this IP instead (OpenNebula allows only one of the two). */
      readonly ip?: string;
      /** The MAC the NIC will have when it asks for an IP: the address range's MAC for that IP. */
      readonly ipMac?: string;
    }
  | { readonly nic: NicDescription; readonly networkName: string; readonly mac?: string };

/** The MAC a placed NIC will have in OpenNebula, when that is known before the VM exists. */
export function macOnKvm(n: PlacedNic): string | undefined {
  return 'networkName' in n ? n.mac : (n.mac ?? n.ipMac);
}

/** What the conversion found in the guest (lib/convert's inspection, as the images record it). */
export interface ConvertedGuest {
  /** e.g. "Debian GNU/Linux 12 (bookworm)". */
  readonly productName: string;
  readonly distro: string;
  readonly osinfo: string;
  readonly arch: string;
  readonly virtioBlock: boolean;
  readonly virtioNet: boolean;
  /** What the disks show: an EFI system partition or not. */
  readonly firmware: Firmware;
  /** The guest's network configuration per NIC, as the conversion bound it (Linux guests). */
  readonly network?: readonly GuestNicConfig[] | undefined;
}

/** What the guest configures on one of its NICs. */
export interface GuestNicConfig {
  readonly nic: number;
  /** The interface name the configuration uses (kept on KVM); undefined when it follows a MAC. */
  readonly name?: string | undefined;
  readonly mode: 'dhcp' | 'static' | 'manual';
  /** The static address, or the last DHCP lease. */
  readonly address?: string | undefined;
  /** The MAC the guest's udev rule gives that name to; undefined when none could be (MAC not known yet). */
  readonly mac?: string | undefined;
}

/**
 * "0 ens192 dhcp addr=10.0.2.15 mac=00:50:56:8a:00:01; 1 ens224 static addr=192.168.1.5": one
 * image attribute, read back by parseGuestNetwork.
 */
export function formatGuestNetwork(network: readonly GuestNicConfig[]): string {
  return network.map((n) => [n.nic, n.name ?? '-', n.mode, ...(n.address ? [`addr=${n.address}`] : []), ...(n.mac ? [`mac=${n.mac}`] : [])].join(' ')).join('; ');
}

export function parseGuestNetwork(text: string): GuestNicConfig[] {
  const out: GuestNicConfig[] = [];
  for (const entry of text.split(';')) {
    const [nic, name, mode, ...rest] = entry.trim().split(/\s+/);
    if (!/^\d+$/.test(nic ?? '') || !name || (mode !== 'dhcp' && mode !== 'static' && mode !== 'manual')) continue;
    const kv = new Map(rest.map((t) => [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)] as const));
    out.push({ nic: Number(nic), ...(name === '-' ? {} : { name }), mode, ...(kv.get('addr') ? { address: kv.get('addr') } : {}), ...(kv.get('mac') ? { mac: kv.get('mac') } : {}) });
  }
  return out;
}

export interface VmTemplateInput {
  readonly name: string;
  readonly vm: VmDescription;
  readonly disks: readonly PlacedDisk[];
  readonly nics: readonly PlacedNic[];
  /** Undefined for a guest that was not converted: it keeps the device kinds it has drivers for. */
  readonly guest: ConvertedGuest | undefined;
  /** The guest gets qemu-guest-agent: give it the agent's channel. */
  readonly guestAgent?: boolean;
  /** Major version of the OpenNebula server: UEFI auto-selection exists from 7.0. */
  readonly oneMajorVersion: number;
  /** CONTEXT NETWORK=YES (true) or left out (false); by default the rule of contextNetwork(). */
  readonly contextNetwork?: boolean | undefined;
  readonly importedAt: Date;
}

/** The UEFI firmware path for OpenNebula 6.x, which has no automatic selection (reference 9.2). */
const OVMF_CODE_6X = '/usr/share/OVMF/OVMF_CODE.fd';
const OVMF_SECBOOT_6X = '/usr/share/OVMF/OVMF_CODE.secboot.fd';

export function buildVmTemplate(input: VmTemplateInput): Template {
  const { vm, guest } = input;
  const virtioBlock = guest?.virtioBlock ?? false;
  const t = new Template();
  t.add('NAME', input.name);
  t.add('HYPERVISOR', 'kvm');
  t.add('CPU', vm.cpus);
  t.add('VCPU', vm.cpus);
  if (vm.coresPerSocket > 1 && vm.cpus % vm.coresPerSocket === 0) {
    t.add('TOPOLOGY', { SOCKETS: vm.cpus / vm.coresPerSocket, CORES: vm.coresPerSocket, THREADS: 1 });
  }
  t.add('MEMORY', vm.memoryMiB);

  const disks = [...input.disks].sort((a, b) => a.disk.index - b.disk.index);
  for (const d of disks) t.add('DISK', { ...('imageId' in d ? { IMAGE_ID: d.imageId } : { IMAGE: d.imageName }), DEV_PREFIX: virtioBlock ? 'vd' : 'sd' });

  for (const n of [...input.nics].sort((a, b) => a.nic.index - b.nic.index)) {
    const model = nicModelFor(n.nic.adapter, guest);
    if ('networkName' in n) {
      t.add('NIC', n.mac ? { NETWORK: n.networkName, MAC: n.mac, MODEL: model } : { NETWORK: n.networkName, MODEL: model });
      continue;
    }
    const nic: Record<string, string | number> = { NETWORK_ID: n.networkId, MODEL: model };
    if (n.ip) nic.IP = n.ip;
    else if (n.mac) nic.MAC = n.mac;
    t.add('NIC', nic);
  }

  t.add('OS', osVector(input, virtioBlock));
  t.add('FEATURES', input.guestAgent ? { ACPI: 'YES', GUEST_AGENT: 'YES' } : { ACPI: 'YES' });
  t.add('GRAPHICS', { TYPE: 'VNC', LISTEN: '0.0.0.0' });
  t.add('CONTEXT', contextNetwork(input) ? { NETWORK: 'YES', SSH_PUBLIC_KEY: '$USER[SSH_PUBLIC_KEY]' } : { SSH_PUBLIC_KEY: '$USER[SSH_PUBLIC_KEY]' });
  t.add('DESCRIPTION', description(input));
  const logo = (guest && logoForDistro(guest.distro)) ?? logoFor(vm.guestId);
  if (logo) t.add('LOGO', `images/logos/${logo}.png`);
  if (vm.source.kind === 'vcenter') {
    t.add('ONESWAP_SOURCE', `vcenter://${vm.source.host}${vm.source.path}`);
    t.add('ONESWAP_SOURCE_UUID', vm.source.instanceUuid || vm.source.uuid);
  } else {
    t.add('ONESWAP_SOURCE', vm.source.path);
  }
  t.add('ONESWAP_GUEST_ID', vm.guestId);
  if (guest) {
    if (guest.productName) t.add('ONESWAP_GUEST_OS', guest.productName);
    if (guest.osinfo) t.add('ONESWAP_GUEST_OSINFO', guest.osinfo);
  }
  t.add('ONESWAP_IMPORTED_AT', input.importedAt.toISOString());
  return t;
}

/**
 * Whether OpenNebula's contextualization configures the guest's network (CONTEXT NETWORK=YES).
 * The guest's own static configuration wins: when the conversion kept one, contextualization
 * would rewrite it (a context package reconfigures every NIC it is given addresses for), so it is
 * left out unless asked for. DHCP guests and guests without a configuration get it: with the
 * context package they take OpenNebula's lease, without it nothing changes.
 */
function contextNetwork(input: VmTemplateInput): boolean {
  if (input.contextNetwork !== undefined) return input.contextNetwork;
  return !(input.guest?.network ?? []).some((n) => n.mode === 'static');
}

function osVector(input: VmTemplateInput, virtioBlock: boolean): Record<string, string> {
  const { vm } = input;
  const os: Record<string, string> = { ARCH: 'x86_64', BOOT: 'disk0' };
  if (vm.firmware === 'efi') {
    if (input.oneMajorVersion >= 7) {
      os.FIRMWARE = 'UEFI';
    } else {
      os.FIRMWARE = vm.secureBoot ? OVMF_SECBOOT_6X : OVMF_CODE_6X;
    }
    if (vm.secureBoot) os.FIRMWARE_SECURE = 'YES';
    // IDE does not exist on q35, and UEFI guests from vSphere expect a PCIe machine.
    os.MACHINE = 'q35';
  } else if (input.oneMajorVersion >= 7) {
    os.FIRMWARE = 'BIOS';
  }
  // Unconverted guests carry no virtio drivers; SATA (AHCI) is what VMware guests of every OS boot from
  // without new drivers.
  if (!virtioBlock) os.SD_DISK_BUS = 'sata';
  return os;
}

/**
 * virtio when the guest has the driver. A converted guest without it gets e1000, which every OS
 * drives out of the box (the conversion removed VMware Tools, and with them Windows' vmxnet3
 * driver); an unconverted guest keeps the model it has drivers for.
 */
function nicModelFor(adapter: NicAdapter, guest: ConvertedGuest | undefined): string {
  if (guest === undefined) return nicModel(adapter);
  return guest.virtioNet ? 'virtio' : 'e1000';
}

/** QEMU models for the NICs a VMware guest already has drivers for. */
function nicModel(adapter: NicAdapter): string {
  switch (adapter) {
    case 'vmxnet3':
      return 'vmxnet3';
    case 'e1000e':
      return 'e1000e';
    case 'pcnet32':
      return 'pcnet';
    default:
      return 'e1000';
  }
}

function description(input: VmTemplateInput): string {
  const { vm } = input;
  const from = vm.source.kind === 'vcenter' ? `vCenter ${vm.source.host} VM ${vm.source.path}` : vm.source.path;
  const name = input.guest?.productName || vm.guestFullName;
  const os = name ? ` (${name})` : '';
  const head = `Migrated by oneswap from ${from}${os} on ${input.importedAt.toISOString().slice(0, 10)}.`;
  return vm.annotation ? `${head}\n${vm.annotation}` : head;
}

/** FireEdge logo names (reference 9.1) from libguestfs' distro name. */
function logoForDistro(distro: string): string | undefined {
  const table: Record<string, string> = {
    debian: 'debian',
    ubuntu: 'ubuntu',
    centos: 'centos',
    rhel: 'redhat',
    oraclelinux: 'oracle',
    sles: 'suse',
    opensuse: 'suse',
    suse: 'suse',
    fedora: 'fedora',
    freebsd: 'freebsd',
    windows: 'windows8',
    rocky: 'linux',
    alma: 'linux',
    archlinux: 'linux',
    alpine: 'linux',
  };
  return table[distro.toLowerCase()];
}

/** FireEdge logo names (reference 9.1) from a vSphere guestId. */
export function logoFor(guestId: string): string | undefined {
  const g = guestId.toLowerCase();
  const table: Array<[RegExp, string]> = [
    [/^debian/, 'debian'],
    [/^ubuntu/, 'ubuntu'],
    [/^centos/, 'centos'],
    [/^(rhel|redhat)/, 'redhat'],
    [/^oracle/, 'oracle'],
    [/^(sles|suse|opensuse)/, 'suse'],
    [/^fedora/, 'fedora'],
    [/^freebsd/, 'freebsd'],
    // windows7…windows2019srv… are the modern ids; win2000/winXP/winNet the old ones.
    [/^windows/, 'windows8'],
    [/^win/, 'windowsxp'],
    [/^(other.*linux|linux|asianux|coreos|photon|amazonlinux|rocky|alma)/, 'linux'],
  ];
  return table.find(([re]) => re.test(g))?.[1];
}
