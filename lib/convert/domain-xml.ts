// The libvirt domain XML that `virt-v2v-in-place -i libvirtxml` reads: the source VM as VMware
// presented it (disk buses, NIC models, firmware), with each disk pointing at the file to convert.
// Pure, so every rule is unit-tested.

import type { DiskBus, Firmware, NicAdapter } from '../input/index.js';
import { escapeXml } from '../xml/index.js';

export interface DomainDisk {
  /** Absolute path: virt-v2v 2.2 refuses relative `<source file>` paths. */
  readonly path: string;
  readonly format: 'raw' | 'qcow2';
  readonly bus: DiskBus;
}

export interface DomainNic {
  readonly mac: string;
  /** Source network name, for virt-v2v's network mapping and its log. */
  readonly network: string;
  readonly adapter: NicAdapter;
}

export interface DomainSpec {
  readonly name: string;
  readonly memoryMiB: number;
  readonly cpus: number;
  readonly firmware: Firmware;
  /** In guest (boot) order. */
  readonly disks: readonly DomainDisk[];
  readonly nics: readonly DomainNic[];
}

export function domainXml(spec: DomainSpec): string {
  if (spec.disks.length === 0) throw new Error('a domain needs at least one disk');
  const targets = targetNames(spec.disks);
  const lines = [
    `<domain type='vmware'>`,
    `  <name>${escapeXml(spec.name)}</name>`,
    `  <memory unit='MiB'>${Math.max(1, Math.round(spec.memoryMiB))}</memory>`,
    `  <vcpu>${Math.max(1, Math.round(spec.cpus))}</vcpu>`,
    // virt-v2v takes the firmware from here: with 'efi' it expects and keeps an EFI boot.
    spec.firmware === 'efi' ? `  <os firmware='efi'>` : `  <os>`,
    `    <type arch='x86_64'>hvm</type>`,
    `  </os>`,
    `  <devices>`,
    ...spec.disks.flatMap((d, i) => [
      `    <disk type='file' device='disk'>`,
      `      <driver name='qemu' type='${d.format}'/>`,
      `      <source file='${escapeXml(d.path)}'/>`,
      `      <target dev='${targets[i]}' bus='${libvirtBus(d.bus)}'/>`,
      `    </disk>`,
    ]),
    ...spec.nics.flatMap((n) => [
      `    <interface type='bridge'>`,
      `      <mac address='${escapeXml(n.mac.toLowerCase())}'/>`,
      `      <source bridge='${escapeXml(n.network || 'unattached')}'/>`,
      `      <model type='${nicModel(n.adapter)}'/>`,
      `    </interface>`,
    ]),
    `  </devices>`,
    `</domain>`,
  ];
  return `${lines.join('\n')}\n`;
}

/** libvirt has no NVMe disk bus in the versions virt-v2v 2.2 knows; the guest sees SCSI-like names. */
function libvirtBus(bus: DiskBus): 'scsi' | 'sata' | 'ide' {
  return bus === 'nvme' ? 'scsi' : bus;
}

/** sda, sdb, … for SCSI and SATA, hda, hdb, … for IDE, each counted in guest order. */
function targetNames(disks: readonly DomainDisk[]): string[] {
  const used = { sd: 0, hd: 0 };
  return disks.map((d) => {
    const prefix = d.bus === 'ide' ? 'hd' : 'sd';
    return prefix + driveLetters(used[prefix]++);
  });
}

/** 0 → a, 25 → z, 26 → aa: the kernel's naming of the 27th disk. */
export function driveLetters(n: number): string {
  let s = '';
  let i = n;
  do {
    s = String.fromCharCode(97 + (i % 26)) + s;
    i = Math.floor(i / 26) - 1;
  } while (i >= 0);
  return s;
}

function nicModel(adapter: NicAdapter): string {
  switch (adapter) {
    case 'vmxnet3':
    case 'e1000':
    case 'e1000e':
      return adapter;
    case 'pcnet32':
      return 'pcnet';
    default:
      return 'e1000';
  }
}

