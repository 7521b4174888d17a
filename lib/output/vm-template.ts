// The OpenNebula VM template for a migrated VM, built from the neutral VM description, the images
// that hold its disks and the networks its NICs map to. Pure: no I/O, so every rule is unit-tested.

import { Template } from '../one/index.js';
import type { DiskDescription, NicAdapter, NicDescription, VmDescription } from '../input/index.js';

export interface PlacedDisk {
  readonly disk: DiskDescription;
  readonly imageId: number;
}

export interface PlacedNic {
  readonly nic: NicDescription;
  readonly networkId: number;
  /** Set when the source MAC is kept (it lies in an address range of the network). */
  readonly mac?: string;
}

/** What the guest can drive. Until conversion says otherwise the source's own device kinds are used. */
export interface GuestDevices {
  /** virtio-blk disks and virtio-net NICs (a converted guest). */
  readonly virtio: boolean;
}

export interface VmTemplateInput {
  readonly name: string;
  readonly vm: VmDescription;
  readonly disks: readonly PlacedDisk[];
  readonly nics: readonly PlacedNic[];
  readonly devices: GuestDevices;
  /** Major version of the OpenNebula server: UEFI auto-selection exists from 7.0. */
  readonly oneMajorVersion: number;
  readonly importedAt: Date;
}

/** The UEFI firmware path for OpenNebula 6.x, which has no automatic selection (reference 9.2). */
const OVMF_CODE_6X = '/usr/share/OVMF/OVMF_CODE.fd';
const OVMF_SECBOOT_6X = '/usr/share/OVMF/OVMF_CODE.secboot.fd';

export function buildVmTemplate(input: VmTemplateInput): Template {
  const { vm, devices } = input;
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
  for (const d of disks) t.add('DISK', { IMAGE_ID: d.imageId, DEV_PREFIX: devices.virtio ? 'vd' : 'sd' });

  for (const n of [...input.nics].sort((a, b) => a.nic.index - b.nic.index)) {
    const nic: Record<string, string | number> = { NETWORK_ID: n.networkId, MODEL: devices.virtio ? 'virtio' : nicModel(n.nic.adapter) };
    if (n.mac) nic.MAC = n.mac;
    t.add('NIC', nic);
  }

  t.add('OS', osVector(input));
  t.add('FEATURES', { ACPI: 'YES' });
  t.add('GRAPHICS', { TYPE: 'VNC', LISTEN: '0.0.0.0' });
  t.add('CONTEXT', { NETWORK: 'YES', SSH_PUBLIC_KEY: '$USER[SSH_PUBLIC_KEY]' });
  t.add('DESCRIPTION', description(input));
  const logo = logoFor(vm.guestId);
  if (logo) t.add('LOGO', `images/logos/${logo}.png`);
  if (vm.source.kind === 'vcenter') {
    t.add('ONESWAP_SOURCE', `vcenter://${vm.source.host}${vm.source.path}`);
    t.add('ONESWAP_SOURCE_UUID', vm.source.instanceUuid || vm.source.uuid);
  } else {
    t.add('ONESWAP_SOURCE', vm.source.path);
  }
  t.add('ONESWAP_GUEST_ID', vm.guestId);
  t.add('ONESWAP_IMPORTED_AT', input.importedAt.toISOString());
  return t;
}

function osVector(input: VmTemplateInput): Record<string, string> {
  const { vm, devices } = input;
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
  if (!devices.virtio) os.SD_DISK_BUS = 'sata';
  return os;
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
  const os = vm.guestFullName ? ` (${vm.guestFullName})` : '';
  const head = `Migrated by oneswap from ${from}${os} on ${input.importedAt.toISOString().slice(0, 10)}.`;
  return vm.annotation ? `${head}\n${vm.annotation}` : head;
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
