// Fixture OVAs for tests and benchmarks: raw disk files become VMDKs (qemu-img), an OVF envelope
// shaped like a VMware export describes the VM, a manifest lists the digests, and GNU tar packs the
// members in VMware's order (.ovf, .mf, disks) or with the manifest last. The unpacked folder is
// kept as well, for `--ova DIR`.
//
// Needs qemu-img and GNU tar (ovaToolsSkip says when they are missing).

import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type OvaBus = 'scsi' | 'sata' | 'ide' | 'nvme';
export type OvaNicAdapter = 'vmxnet3' | 'vmxnet2' | 'e1000' | 'e1000e' | 'pcnet32';
export type OvaSubformat = 'streamOptimized' | 'monolithicSparse' | 'monolithicFlat';
/** ResourceSubType of the SCSI controller: LSI Logic, LSI Logic SAS, BusLogic, PVSCSI. */
export type OvaScsiModel = 'lsilogic' | 'lsilogicsas' | 'buslogic' | 'VirtualSCSI';

export interface OvaDiskSpec {
  /** A raw disk image; its size (rounded up to 512 bytes, as qemu-img does) is the disk's capacity. */
  readonly raw: string;
  /** Controller kind the disk hangs on; 'scsi' by default. Units are given in spec order per bus. */
  readonly bus?: OvaBus;
  /** VMDK flavour; 'streamOptimized' (what VMware exports) by default. */
  readonly subformat?: OvaSubformat;
}

export interface OvaNicSpec {
  readonly network: string;
  readonly adapter?: OvaNicAdapter;
  /** Written as rasd:Address (what ovftool --exportFlags=mac does); none by default. */
  readonly mac?: string;
}

export interface OvaSpec {
  readonly name: string;
  readonly cpus: number;
  readonly coresPerSocket?: number;
  readonly memoryMiB: number;
  readonly firmware?: 'bios' | 'efi';
  readonly secureBoot?: boolean;
  /** vSphere guestId written as vmw:osType, e.g. "debian12_64Guest". */
  readonly guestId?: string;
  /** OperatingSystemSection Description. */
  readonly guestFullName?: string;
  readonly annotation?: string;
  readonly nics?: readonly OvaNicSpec[];
  readonly disks: readonly OvaDiskSpec[];
  readonly scsiModel?: OvaScsiModel;
  /** Digest algorithm of the .mf; 'sha256' by default, 'none' writes no manifest. */
  readonly manifest?: 'sha1' | 'sha256' | 'none';
  /** GNU tar --format; 'ustar' by default (what VMware writes). */
  readonly tarFormat?: 'ustar' | 'gnu' | 'pax';
  /** Put the manifest after the disks instead of right after the .ovf. */
  readonly manifestLast?: boolean;
  /** OVF envelope version; '1.0' by default. */
  readonly ovfVersion?: '1.0' | '2.0';
  /** Disks and NICs as StorageItem/EthernetPortItem (newer vCenter); by default only for OVF 2.0. */
  readonly storageItems?: boolean;
  /** Folder for the unpacked package; "<out without .ova>-ovf" beside `out` by default. Must be empty or absent. */
  readonly unpackedDir?: string;
}

export interface BuiltOvaDisk {
  /** The VMDK the OVF names (tar member and file in unpackedDir). */
  readonly member: string;
  /** Every package file of this disk: the VMDK, plus the -flat extent of a monolithicFlat disk. */
  readonly files: readonly string[];
  readonly subformat: OvaSubformat;
  readonly bus: OvaBus;
  readonly busNumber: number;
  readonly unitNumber: number;
  /** Raw size rounded up to 512 bytes: the disk the guest sees. */
  readonly capacityBytes: number;
  /** SHA-256 of the raw content padded with zeros to capacityBytes: what an import must reproduce. */
  readonly rawSha256: string;
  readonly rawPath: string;
}

export interface BuiltOva {
  readonly ova: string;
  /** The same package unpacked: .ovf, .mf (unless 'none') and disk files, nothing else. */
  readonly unpackedDir: string;
  readonly ovfName: string;
  readonly ovfPath: string;
  readonly manifestName: string | undefined;
  /** Tar member names in archive order. */
  readonly members: readonly string[];
  /** Manifest digests (hex) by file name; empty with manifest 'none'. */
  readonly digests: ReadonlyMap<string, string>;
  readonly disks: readonly BuiltOvaDisk[];
}

/** Why fixture OVAs cannot be built here, or false. */
export function ovaToolsSkip(): string | false {
  const missing = ['qemu-img', 'tar'].filter((p) => {
    try {
      execFileSync('sh', ['-c', `command -v ${p}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) return `${missing.join(', ')} not installed`;
  try {
    if (!/GNU tar/.test(execFileSync('tar', ['--version'], { encoding: 'utf8' }))) return 'tar is not GNU tar';
  } catch {
    return 'tar --version failed';
  }
  return false;
}

const SECTOR = 512;

/** Builds `out` (an OVA) and its unpacked folder from `spec`. */
export async function buildOva(spec: OvaSpec, out: string): Promise<BuiltOva> {
  if (spec.disks.length === 0) throw new Error('an OVA fixture needs at least one disk');
  const base = spec.name.replace(/[^A-Za-z0-9._-]/g, '_') || 'vm';
  const dir = spec.unpackedDir ?? join(dirname(out), `${basename(out).replace(/\.ova$/i, '')}-ovf`);
  await mkdir(dir, { recursive: true });
  const existing = await readdir(dir);
  if (existing.length > 0) throw new Error(`${dir} is not empty (${existing.slice(0, 3).join(', ')}…); give buildOva an empty folder`);

  const placed = placeDisks(spec.disks);
  const disks: BuiltOvaDisk[] = [];
  const populated: number[] = [];
  for (const [i, d] of spec.disks.entries()) {
    const subformat = d.subformat ?? 'streamOptimized';
    const member = `${base}-disk${i + 1}.vmdk`;
    const before = new Set(await readdir(dir));
    const adapter = (d.bus ?? 'scsi') === 'ide' ? 'ide' : spec.scsiModel === 'buslogic' ? 'buslogic' : 'lsilogic';
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${subformat},adapter_type=${adapter}`, d.raw, join(dir, member)]);
    const created = (await readdir(dir)).filter((n) => !before.has(n));
    const extents = created.filter((n) => n !== member).sort();
    const { sha256, capacityBytes, populatedBytes } = await rawDigest(d.raw);
    populated.push(populatedBytes);
    disks.push({ member, files: [member, ...extents], subformat, bus: d.bus ?? 'scsi', busNumber: placed[i]!.busNumber, unitNumber: placed[i]!.unitNumber, capacityBytes, rawSha256: sha256, rawPath: d.raw });
  }

  const ovfName = `${base}.ovf`;
  const fileSizes = new Map<string, number>();
  for (const d of disks) for (const f of d.files) fileSizes.set(f, (await stat(join(dir, f))).size);
  const ovfPath = join(dir, ovfName);
  await writeFile(ovfPath, ovfDescriptor(spec, disks, fileSizes, populated));

  const algorithm = spec.manifest ?? 'sha256';
  const digests = new Map<string, string>();
  const diskFiles = disks.flatMap((d) => d.files);
  let manifestName: string | undefined;
  if (algorithm !== 'none') {
    manifestName = `${base}.mf`;
    const lines: string[] = [];
    for (const f of [ovfName, ...diskFiles]) {
      const hex = await fileDigest(join(dir, f), algorithm);
      digests.set(f, hex);
      lines.push(`${algorithm.toUpperCase()}(${f})= ${hex}\n`);
    }
    await writeFile(join(dir, manifestName), lines.join(''));
  }

  const members = [ovfName, ...(manifestName && !spec.manifestLast ? [manifestName] : []), ...diskFiles, ...(manifestName && spec.manifestLast ? [manifestName] : [])];
  await run('tar', ['--create', `--file=${out}`, `--format=${spec.tarFormat ?? 'ustar'}`, '--owner=0', '--group=0', '--numeric-owner', '--mode=0644', '-C', dir, '--', ...members]);
  return { ova: out, unpackedDir: dir, ovfName, ovfPath, manifestName, members, digests, disks };
}

/** Controller bus numbers and units per disk, in spec order: SCSI skips unit 7, IDE has two per channel. */
function placeDisks(disks: readonly OvaDiskSpec[]): Array<{ busNumber: number; unitNumber: number }> {
  const counts = new Map<OvaBus, number>();
  return disks.map((d) => {
    const bus = d.bus ?? 'scsi';
    const n = counts.get(bus) ?? 0;
    counts.set(bus, n + 1);
    switch (bus) {
      case 'scsi':
        if (n >= 15) throw new Error('more than 15 SCSI disks');
        return { busNumber: 0, unitNumber: n >= 7 ? n + 1 : n };
      case 'ide':
        if (n >= 4) throw new Error('more than 4 IDE disks');
        return { busNumber: Math.floor(n / 2), unitNumber: n % 2 };
      default:
        if (n >= 30) throw new Error(`more than 30 ${bus} disks`);
        return { busNumber: 0, unitNumber: n };
    }
  });
}

async function rawDigest(path: string): Promise<{ sha256: string; capacityBytes: number; populatedBytes: number }> {
  const hash = createHash('sha256');
  let size = 0;
  let populatedBytes = 0;
  const block = 64 * 1024;
  let carry = Buffer.alloc(0);
  const count = (buf: Buffer) => {
    if (buf.some((b) => b !== 0)) populatedBytes += buf.length;
  };
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    const buf = chunk as Buffer;
    hash.update(buf);
    size += buf.length;
    let data = carry.length > 0 ? Buffer.concat([carry, buf]) : buf;
    while (data.length >= block) {
      count(data.subarray(0, block));
      data = data.subarray(block);
    }
    carry = Buffer.from(data);
  }
  if (carry.length > 0) count(carry);
  const capacityBytes = Math.ceil(size / SECTOR) * SECTOR;
  if (capacityBytes > size) hash.update(Buffer.alloc(capacityBytes - size));
  if (capacityBytes === 0) throw new Error(`${path} is empty`);
  return { sha256: hash.digest('hex'), capacityBytes, populatedBytes };
}

async function fileDigest(path: string, algorithm: 'sha1' | 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// The descriptor, shaped like vCenter's "Export OVF Template".

const NS = {
  ovf1: 'http://schemas.dmtf.org/ovf/envelope/1',
  ovf2: 'http://schemas.dmtf.org/ovf/envelope/2',
  cim: 'http://schemas.dmtf.org/wbem/wscim/1/common',
  rasd: 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData',
  sasd: 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData',
  epasd: 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData',
  vmw: 'http://www.vmware.com/schema/ovf',
  vssd: 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData',
  xsi: 'http://www.w3.org/2001/XMLSchema-instance',
};

const NIC_SUBTYPES: Record<OvaNicAdapter, string> = { vmxnet3: 'VmxNet3', vmxnet2: 'VmxNet2', e1000: 'E1000', e1000e: 'E1000e', pcnet32: 'PCNet32' };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/\r/g, '&#13;');
}

/** ovf:capacity with the largest whole binary unit, as vCenter writes it. */
function capacityAttrs(bytes: number): string {
  for (const [exp, unit] of [[30, 'byte * 2^30'], [20, 'byte * 2^20']] as const) {
    if (bytes % 2 ** exp === 0) return `ovf:capacity="${bytes / 2 ** exp}" ovf:capacityAllocationUnits="${unit}"`;
  }
  return `ovf:capacity="${bytes}" ovf:capacityAllocationUnits="byte"`;
}

/** An OVF descriptor for `spec` with `disks` (already converted); exported for tests of the shape. */
export function ovfDescriptor(spec: OvaSpec, disks: readonly BuiltOvaDisk[], fileSizes: ReadonlyMap<string, number>, populated: readonly number[] = []): string {
  const v2 = spec.ovfVersion === '2.0';
  const storageItems = spec.storageItems ?? v2;
  const nics = spec.nics ?? [];
  const L: string[] = [];
  L.push('<?xml version="1.0" encoding="UTF-8"?>');
  L.push('<!--Generated by oneswap test/peers/ova for tests-->');
  L.push(
    `<Envelope${v2 ? ' ovf:version="2.0"' : ''} vmw:buildId="build-00000000" xmlns="${v2 ? NS.ovf2 : NS.ovf1}" xmlns:cim="${NS.cim}" xmlns:ovf="${v2 ? NS.ovf2 : NS.ovf1}" xmlns:rasd="${NS.rasd}"${storageItems ? ` xmlns:sasd="${NS.sasd}" xmlns:epasd="${NS.epasd}"` : ''} xmlns:vmw="${NS.vmw}" xmlns:vssd="${NS.vssd}" xmlns:xsi="${NS.xsi}">`,
  );
  L.push('  <References>');
  let fileNo = 0;
  const fileIds = new Map<string, string>();
  for (const d of disks)
    for (const f of d.files) {
      const id = `file${++fileNo}`;
      fileIds.set(f, id);
      L.push(`    <File ovf:href="${esc(f)}" ovf:id="${id}" ovf:size="${fileSizes.get(f) ?? 0}"/>`);
    }
  L.push('  </References>');
  L.push('  <DiskSection>');
  L.push('    <Info>Virtual disk information</Info>');
  disks.forEach((d, i) => {
    L.push(
      `    <Disk ${capacityAttrs(d.capacityBytes)} ovf:diskId="vmdisk${i + 1}" ovf:fileRef="${fileIds.get(d.member)}" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#${d.subformat}" ovf:populatedSize="${populated[i] ?? 0}"/>`,
    );
  });
  L.push('  </DiskSection>');
  const networks = [...new Set(nics.map((n) => n.network))];
  L.push('  <NetworkSection>');
  L.push('    <Info>The list of logical networks</Info>');
  for (const n of networks) L.push(`    <Network ovf:name="${esc(n)}">`, `      <Description>The ${esc(n)} network</Description>`, '    </Network>');
  L.push('  </NetworkSection>');
  L.push(`  <VirtualSystem ovf:id="${esc(spec.name)}">`);
  L.push('    <Info>A virtual machine</Info>');
  L.push(`    <Name>${esc(spec.name)}</Name>`);
  L.push(`    <OperatingSystemSection ovf:id="101"${spec.guestId ? ` vmw:osType="${esc(spec.guestId)}"` : ''}>`);
  L.push('      <Info>The kind of installed guest operating system</Info>');
  if (spec.guestFullName) L.push(`      <Description>${esc(spec.guestFullName)}</Description>`);
  L.push('    </OperatingSystemSection>');
  L.push('    <VirtualHardwareSection>');
  L.push('      <Info>Virtual hardware requirements</Info>');
  L.push('      <System>');
  L.push('        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>');
  L.push('        <vssd:InstanceID>0</vssd:InstanceID>');
  L.push(`        <vssd:VirtualSystemIdentifier>${esc(spec.name)}</vssd:VirtualSystemIdentifier>`);
  L.push('        <vssd:VirtualSystemType>vmx-19</vssd:VirtualSystemType>');
  L.push('      </System>');
  let instance = 0;
  const item = (fields: Array<[string, string | number]>, extra: string[] = [], kind: 'Item' | 'StorageItem' | 'EthernetPortItem' = 'Item', required = true) => {
    const prefix = kind === 'StorageItem' ? 'sasd' : kind === 'EthernetPortItem' ? 'epasd' : 'rasd';
    L.push(`      <${kind}${required ? '' : ' ovf:required="false"'}>`);
    // rasd elements are written in alphabetical order, as VMware does (the schema's sequence).
    for (const [k, v] of [...fields].sort((a, b) => (a[0] < b[0] ? -1 : 1))) L.push(`        <${prefix}:${k}>${esc(String(v))}</${prefix}:${k}>`);
    for (const e of extra) L.push(`        ${e}`);
    L.push(`      </${kind}>`);
  };
  const cpuId = ++instance;
  item(
    [['AllocationUnits', 'hertz * 10^6'], ['Description', 'Number of Virtual CPUs'], ['ElementName', `${spec.cpus} virtual CPU(s)`], ['InstanceID', cpuId], ['ResourceType', 3], ['VirtualQuantity', spec.cpus]],
    spec.coresPerSocket ? [`<vmw:CoresPerSocket ovf:required="false">${spec.coresPerSocket}</vmw:CoresPerSocket>`] : [],
  );
  const memId = ++instance;
  item([['AllocationUnits', 'byte * 2^20'], ['Description', 'Memory Size'], ['ElementName', `${spec.memoryMiB}MB of memory`], ['InstanceID', memId], ['ResourceType', 4], ['VirtualQuantity', spec.memoryMiB]]);

  // Controllers: one per bus kind in use (two IDE channels, as every VMware VM has).
  const controllerId = new Map<string, number>();
  const used = new Set(disks.map((d) => d.bus));
  if (used.has('scsi')) {
    const id = ++instance;
    controllerId.set('scsi:0', id);
    item([['Address', 0], ['Description', 'SCSI Controller'], ['ElementName', 'SCSI controller 0'], ['InstanceID', id], ['ResourceSubType', spec.scsiModel ?? 'lsilogic'], ['ResourceType', 6]], [
      '<vmw:Config ovf:required="false" vmw:key="slotInfo.pciSlotNumber" vmw:value="160"/>',
    ]);
  }
  if (used.has('sata')) {
    const id = ++instance;
    controllerId.set('sata:0', id);
    item([['Address', 0], ['Description', 'SATA Controller'], ['ElementName', 'SATA controller 0'], ['InstanceID', id], ['ResourceSubType', 'vmware.sata.ahci'], ['ResourceType', 20]]);
  }
  if (used.has('nvme')) {
    const id = ++instance;
    controllerId.set('nvme:0', id);
    item([['Address', 0], ['Description', 'NVME Controller'], ['ElementName', 'NVME controller 0'], ['InstanceID', id], ['ResourceSubType', 'vmware.nvme.controller'], ['ResourceType', 20]]);
  }
  for (const bus of [1, 0]) {
    const id = ++instance;
    controllerId.set(`ide:${bus}`, id);
    item([['Address', bus], ['Description', 'IDE Controller'], ['ElementName', `IDE ${bus}`], ['InstanceID', id], ['ResourceType', 5]]);
  }
  item([['AutomaticAllocation', 'false'], ['ElementName', 'Video card'], ['InstanceID', ++instance], ['ResourceType', 24]], [], 'Item', false);

  disks.forEach((d, i) => {
    const fields: Array<[string, string | number]> = [
      ['AddressOnParent', d.unitNumber],
      ['ElementName', `Hard disk ${i + 1}`],
      ['HostResource', `ovf:/disk/vmdisk${i + 1}`],
      ['InstanceID', ++instance],
      ['Parent', controllerId.get(`${d.bus}:${d.busNumber}`)!],
      ['ResourceType', 17],
    ];
    item(fields, ['<vmw:Config ovf:required="false" vmw:key="backing.writeThrough" vmw:value="false"/>'], storageItems ? 'StorageItem' : 'Item');
  });
  nics.forEach((n, i) => {
    const sub = NIC_SUBTYPES[n.adapter ?? 'vmxnet3'];
    const fields: Array<[string, string | number]> = [
      ['AddressOnParent', 7 + i],
      ['AutomaticAllocation', 'true'],
      ['Connection', n.network],
      ['Description', `${sub} ethernet adapter on "${n.network}"`],
      ['ElementName', `Network adapter ${i + 1}`],
      ['InstanceID', ++instance],
      ['ResourceSubType', sub],
      ['ResourceType', 10],
    ];
    if (n.mac) fields.push(['Address', n.mac]);
    item(fields, [`<vmw:Config ovf:required="false" vmw:key="slotInfo.pciSlotNumber" vmw:value="${192 + 32 * i}"/>`, '<vmw:Config ovf:required="false" vmw:key="wakeOnLanEnabled" vmw:value="true"/>'], storageItems ? 'EthernetPortItem' : 'Item');
  });
  L.push('      <vmw:Config ovf:required="false" vmw:key="cpuHotAddEnabled" vmw:value="false"/>');
  if ((spec.firmware ?? 'bios') === 'efi') {
    L.push('      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>');
    L.push(`      <vmw:Config ovf:required="false" vmw:key="uefi.secureBoot.enabled" vmw:value="${spec.secureBoot ? 'true' : 'false'}"/>`);
  }
  L.push('      <vmw:Config ovf:required="false" vmw:key="tools.syncTimeWithHost" vmw:value="false"/>');
  L.push('    </VirtualHardwareSection>');
  if (spec.annotation) {
    L.push('    <AnnotationSection ovf:required="false">');
    L.push('      <Info>A human-readable annotation</Info>');
    L.push(`      <Annotation>${esc(spec.annotation)}</Annotation>`);
    L.push('    </AnnotationSection>');
  }
  L.push('  </VirtualSystem>');
  L.push('</Envelope>');
  return `${L.join('\n')}\n`;
}
