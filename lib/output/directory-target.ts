// A local directory as the target, for converting now and importing into OpenNebula later (or
// elsewhere): the disk files (raw, or qcow2 written in the same single pass through qemu-nbd,
// optionally with compressed clusters), the converted guest in them, image templates and a VM
// template that `oneimage create` / `onetemplate create` accept, and a short summary.
//
// Nothing half-written looks finished: disks are `<name>-diskN.raw.part` (`.qcow2.part`) until the whole import
// (conversion included) succeeded; the templates and the summary are written last. The progress
// of an unfinished import lives in `.<name>.oneswap.json` beside them, so a re-run resumes.

import { access, constants, mkdir, readFile, rename, rm, statfs, writeFile, open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomically } from '../atomic-write/index.js';
import { OneswapError } from '../errors/index.js';
import { Template, sanitizeName } from '../one/index.js';
import { vmIdentity, type DiskDescription, type VmDescription } from '../input/index.js';
import { RULES_FILE } from '../convert/index.js';
import { buildVmTemplate, type ConvertedGuest, type PlacedNic } from './vm-template.js';
import { diskImageDescription, diskSourceAttributes, guestAttributes } from './one-target.js';
import { keptAddressRange } from './nic-placement.js';
import { compressedQcow2Target, fileTarget, qcow2Target, type ImageTarget } from './image-target.js';
import { createQcow2File } from './qcow2-target.js';

const MiB = 1024 * 1024;

/** The format of the disk files a directory import writes. */
export type DiskFileFormat = 'raw' | 'qcow2';

/** The files of one VM in the output directory. */
export interface DirectoryLayout {
  readonly dir: string;
  readonly format: DiskFileFormat;
  /** qcow2 disk files written with compressed clusters. */
  readonly compressed: boolean;
  readonly name: string;
  readonly stateFile: string;
  readonly lockFile: string;
  readonly templateFile: string;
  readonly summaryFile: string;
  /** The address range that keeps a NIC's source MAC, for `onevnet addar`. */
  addressRange(nicIndex: number): string;
  disk(index: number): { readonly part: string; readonly final: string; readonly imageTemplate: string; readonly imageName: string };
}

export function directoryLayout(dir: string, vm: VmDescription, prefix = '', format: DiskFileFormat = 'raw', compressed = false): DirectoryLayout {
  if (compressed && format !== 'qcow2') throw new OneswapError('usage', 'compressed disk files are qcow2 files');
  const abs = resolve(dir);
  const name = sanitizeName(`${prefix}${vm.name}`);
  // File names from the VM name: keep them to characters every shell and filesystem takes.
  const file = name.replace(/[^A-Za-z0-9._-]+/g, '_');
  return {
    dir: abs,
    format,
    compressed,
    name,
    stateFile: join(abs, `.${file}.oneswap.json`),
    lockFile: join(abs, `.${file}.oneswap.lock`),
    templateFile: join(abs, `${file}.template`),
    summaryFile: join(abs, `${file}.README.txt`),
    addressRange: (nicIndex) => join(abs, `${file}-nic${nicIndex}.ar`),
    disk: (index) => ({
      part: join(abs, `${file}-disk${index}.${format}.part`),
      final: join(abs, `${file}-disk${index}.${format}`),
      imageTemplate: join(abs, `${file}-disk${index}.image`),
      imageName: sanitizeName(`${name}-disk${index}`),
    }),
  };
}

/** What a directory import has done so far (the state file). */
export interface DirectoryState {
  readonly version: 1;
  readonly source: string;
  /** The disk files' format; absent: raw (state files of earlier versions). */
  readonly format?: DiskFileFormat;
  /** The qcow2 files are written with compressed clusters; absent: not. */
  readonly compressed?: boolean;
  /** Disk indexes whose file is complete. */
  copied: number[];
  guest?: ConvertedGuest;
  /** The conversion ran and found no operating system: nothing to convert again. */
  noOs?: boolean;
  /** What the conversion tool's warnings mean for this guest, for the summary. */
  conversionNotes?: string[];
}

/**
 * Makes the directory ready for `vm`: creates it, refuses a finished import of the same name and
 * a filesystem without room for the data, and returns the state of an unfinished run (resume).
 */
export async function prepareDirectory(layout: DirectoryLayout, vm: VmDescription, dataBytes: number): Promise<{ state: DirectoryState; resumed: boolean }> {
  try {
    await mkdir(layout.dir, { recursive: true });
    await access(layout.dir, constants.W_OK);
  } catch (err) {
    throw new OneswapError('usage', `cannot write into ${layout.dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const previous = await readState(layout.stateFile);
  if (previous && previous.source !== vmIdentity(vm))
    throw new OneswapError('conflict', `${layout.dir} holds an unfinished import of ${previous.source} under the name ${layout.name}`, {
      hint: 'use another --output-dir or --name, or remove the files of that import',
    });
  if (previous && (previous.format ?? 'raw') !== layout.format)
    throw new OneswapError('conflict', `${layout.dir} holds an unfinished import of ${layout.name} in ${previous.format ?? 'raw'} disk files, not ${layout.format}`, {
      hint: `run it again with --output-format ${previous.format ?? 'raw'} to resume, or remove its files`,
    });
  if (previous && (previous.compressed ?? false) !== layout.compressed)
    throw new OneswapError('conflict', `${layout.dir} holds an unfinished import of ${layout.name} in ${previous.compressed ? 'compressed' : 'uncompressed'} qcow2 files`, {
      hint: `run it again ${previous.compressed ? 'with' : 'without'} --compressed to resume, or remove its files`,
    });
  if (!previous) {
    const taken = [layout.templateFile, ...vm.disks.map((d) => layout.disk(d.index).final)];
    for (const f of taken) {
      if (await exists(f))
        throw new OneswapError('conflict', `${f} already exists: ${layout.dir} holds an import named ${layout.name}`, {
          hint: 'remove those files, or pass --output-dir DIR or --name-prefix to import under another name',
        });
    }
  }
  const fs = await statfs(layout.dir);
  const free = fs.bavail * fs.bsize;
  if (free < dataBytes)
    throw new OneswapError('capacity', `${layout.dir} has ${Math.floor(free / MiB)} MiB free, the disks hold at least ${Math.ceil(dataBytes / MiB)} MiB of data`, {
      hint: 'free space or choose another --output-dir',
    });
  const state: DirectoryState = previous ?? { version: 1, source: vmIdentity(vm), format: layout.format, ...(layout.compressed ? { compressed: true } : {}), copied: [] };
  return { state, resumed: previous !== undefined };
}

/**
 * A disk file to write into: fresh and all holes (raw), or empty (qcow2 of the disk's virtual
 * size); or the one an earlier run left, kept. A compressed qcow2 file is created afresh each
 * time it is opened for writing.
 */
export async function diskTarget(layout: DirectoryLayout, disk: DiskDescription, fresh: boolean): Promise<ImageTarget> {
  const { part } = layout.disk(disk.index);
  if (layout.format === 'qcow2') {
    if (fresh || !(await exists(part))) await createQcow2File(part, disk.capacityBytes);
    return (layout.compressed ? compressedQcow2Target : qcow2Target)(part, disk.capacityBytes);
  }
  const h = await open(part, fresh ? 'w' : 'a', 0o644);
  try {
    if (fresh) await h.truncate(0);
    await h.truncate(disk.capacityBytes);
  } finally {
    await h.close();
  }
  return fileTarget(part, disk.capacityBytes);
}

/** Writes the state file atomically; disks finish in parallel, and their saves land in order. */
export function saveState(layout: DirectoryLayout, state: DirectoryState): Promise<void> {
  return writeFileAtomically(layout.stateFile, JSON.stringify(state, null, 1));
}

async function readState(file: string): Promise<DirectoryState | undefined> {
  try {
    const s = JSON.parse(await readFile(file, 'utf8')) as DirectoryState;
    return s.version === 1 && Array.isArray(s.copied) ? s : undefined;
  } catch {
    return undefined;
  }
}

export interface DirectoryResult {
  readonly templateFile: string;
  readonly summaryFile: string;
  readonly diskFiles: readonly string[];
  readonly imageTemplates: readonly string[];
  readonly addressRanges: readonly string[];
}

/** What the summary records besides the VM itself. */
export interface DirectoryFacts {
  readonly source: string;
  readonly notes: readonly string[];
  readonly importedAt: Date;
  readonly guestAgent: boolean;
  /** The NICs keep the source MACs (the guest's network is bound to them); false with --no-keep-mac. */
  readonly keepMac: boolean;
  /** The conversion found no operating system (so `guest` is undefined for that reason, not --no-convert). */
  readonly noOs: boolean;
}

/** A NIC of the template with the address range that lets OpenNebula lease its MAC (and static IP). */
interface KeptNic {
  readonly placed: PlacedNic & { readonly networkName: string };
  /** The range file, when the NIC keeps a MAC. */
  readonly rangeFile?: string;
  readonly ip?: string;
}

/**
 * Finishes the import: the disk files take their final names, then the image templates, the VM
 * template and the summary are written, and the state file goes.
 */
export async function finishDirectory(
  layout: DirectoryLayout,
  vm: VmDescription,
  guest: ConvertedGuest | undefined,
  networkMap: ReadonlyMap<string, string>,
  facts: DirectoryFacts,
): Promise<DirectoryResult> {
  const virtio = guest?.virtioBlock ?? false;
  const disks = [...vm.disks].sort((a, b) => a.index - b.index);
  for (const d of disks) {
    const f = layout.disk(d.index);
    if (await exists(f.part)) await rename(f.part, f.final);
  }
  const imageTemplates: string[] = [];
  for (const d of disks) {
    const f = layout.disk(d.index);
    const t = Template.of({
      NAME: f.imageName,
      PATH: f.final,
      TYPE: d.index === 0 ? 'OS' : 'DATABLOCK',
      FORMAT: layout.format,
      PERSISTENT: 'YES',
      DEV_PREFIX: virtio ? 'vd' : 'sd',
      DESCRIPTION: diskImageDescription(vm, d),
      // COPIED (--no-convert) tells `oneswap convert` there is something left to do; NOT_CONVERTED is final.
      ONESWAP_STATE: guest ? 'CONVERTED' : facts.noOs ? 'NOT_CONVERTED' : 'COPIED',
      ...diskSourceAttributes(vm, d),
      ...(guest ? guestAttributes(guest) : {}),
    });
    await writeFile(f.imageTemplate, t.toText() + '\n', { mode: 0o644 });
    imageTemplates.push(f.imageTemplate);
  }
  const nics = keptNics(layout, vm, guest, networkMap, facts.keepMac);
  for (const n of nics) {
    if (n.rangeFile === undefined) continue;
    const range = keptAddressRange(n.ip === undefined ? { mac: n.placed.mac! } : { mac: n.placed.mac!, ip: n.ip });
    await writeFile(n.rangeFile, Template.of({ AR: range }).toText() + '\n', { mode: 0o644 });
  }
  const template = buildVmTemplate({
    name: layout.name,
    vm,
    disks: disks.map((d) => ({ disk: d, imageName: layout.disk(d.index).imageName })),
    nics: nics.map((n) => n.placed),
    guest,
    guestAgent: facts.guestAgent,
    oneMajorVersion: 7,
    importedAt: facts.importedAt,
  });
  await writeFile(layout.templateFile, template.toText() + '\n', { mode: 0o644 });
  await writeFile(layout.summaryFile, summaryText(layout, vm, guest, nics, facts), { mode: 0o644 });
  await rm(layout.stateFile, { force: true });
  return {
    templateFile: layout.templateFile,
    summaryFile: layout.summaryFile,
    diskFiles: disks.map((d) => layout.disk(d.index).final),
    imageTemplates,
    addressRanges: nics.flatMap((n) => (n.rangeFile === undefined ? [] : [n.rangeFile])),
  };
}

/**
 * The template's NICs. A kept source MAC goes into the NIC with a one-address range for it (the
 * shape an administrator's import adds): the guest's network is bound to that MAC, and OpenNebula
 * leases a MAC only from a range of the network. A NIC the guest configures statically gets its
 * address in that range too, so OpenNebula's lease agrees with the guest.
 */
function keptNics(layout: DirectoryLayout, vm: VmDescription, guest: ConvertedGuest | undefined, networkMap: ReadonlyMap<string, string>, keepMac: boolean): KeptNic[] {
  return vm.nics.map((n) => {
    const networkName = networkMap.get(n.network) ?? (n.network || 'default');
    const mac = n.mac.toLowerCase();
    if (!keepMac || mac === '') return { placed: { nic: n, networkName } };
    const ip = guest?.network?.find((g) => g.nic === n.index && g.mode === 'static' && g.address)?.address;
    return { placed: { nic: n, networkName, mac }, rangeFile: layout.addressRange(n.index), ...(ip ? { ip } : {}) };
  });
}

/** Takes back what an unfinished import wrote (the partial disk files and the state). */
export async function removePartial(layout: DirectoryLayout, vm: VmDescription): Promise<void> {
  for (const d of vm.disks) await rm(layout.disk(d.index).part, { force: true });
  await rm(layout.stateFile, { force: true });
}

function summaryText(layout: DirectoryLayout, vm: VmDescription, guest: ConvertedGuest | undefined, nics: readonly KeptNic[], facts: DirectoryFacts): string {
  const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const disks = [...vm.disks].sort((a, b) => a.index - b.index);
  const lines = [
    `${layout.name}: imported by oneswap on ${facts.importedAt.toISOString()}`,
    '',
    `Source:    ${facts.source}`,
    `Hardware:  ${vm.cpus} vCPU, ${vm.memoryMiB} MiB memory, ${vm.firmware.toUpperCase()} firmware${vm.guestFullName ? `, ${vm.guestFullName}` : ''}`,
    `Guest:     ${guest ? `${guest.productName || guest.distro} converted for KVM (${guest.virtioBlock ? 'virtio-blk' : 'no virtio-blk'}, ${guest.virtioNet ? 'virtio-net' : 'no virtio-net'})` : `${facts.noOs ? 'no operating system found (data disks only): ' : ''}not converted (the template keeps SATA disks and the source NIC models)`}`,
    '',
    `Disks (${layout.format === 'raw' ? 'raw, sparse' : `qcow2, data clusters only${layout.compressed ? ', compressed' : ''}`}; boot disk first):`,
    ...disks.map((d) => `  ${layout.disk(d.index).final}  ${gib(d.capacityBytes)}  (${d.label}, was ${d.bus} ${d.sourceName})`),
    '',
    'NICs:',
    ...(nics.length === 0
      ? ['  none']
      : nics.map(({ placed: n }) => `  NIC ${n.nic.index}: source network "${n.nic.network}", MAC ${n.nic.mac || '-'} (${n.nic.adapter}) -> OpenNebula network "${n.networkName}"${n.mac ? `, keeps MAC ${n.mac}` : ''}`)),
    '',
    ...guestNetworkLines(vm, guest),
    ...(facts.notes.length > 0 ? ['', 'Notes:', ...facts.notes.map((n) => `  - ${n}`)] : []),
    '',
    ...importSteps(layout, disks, nics, facts.keepMac),
    '',
  ];
  return lines.join('\n');
}

/**
 * How to bring the files into OpenNebula, as commands a person (or a test) runs one by one. A
 * kept MAC makes two things necessary: a range that holds it (OpenNebula leases MACs only from
 * ranges, else instantiate fails with "Cannot get IP/MAC lease"), and an administrator to create
 * the template (NIC/MAC is in VM_RESTRICTED_ATTR).
 */
function importSteps(layout: DirectoryLayout, disks: readonly DiskDescription[], nics: readonly KeptNic[], keepMac: boolean): string[] {
  const kept = nics.filter((n) => n.rangeFile !== undefined);
  const lines = [
    `To import into OpenNebula${kept.length > 0 ? ', as oneadmin' : ''}:`,
    '  1. The images (the datastore must accept this folder: see its SAFE_DIRS / RESTRICTED_DIRS):',
    ...disks.map((d) => `     oneimage create -d <image datastore> ${shellWord(layout.disk(d.index).imageTemplate)}`),
  ];
  if (kept.length > 0) {
    lines.push(
      '  2. One address range per NIC, holding the MAC the guest\'s network is bound to (skip a NIC whose',
      '     network already has that MAC in a free lease: onevnet addar then says the range overlaps):',
      ...kept.map((n) => `     onevnet addar ${shellWord(n.placed.networkName)} ${shellWord(n.rangeFile!)}`),
      '  3. The VM template:',
      `     onetemplate create ${shellWord(layout.templateFile)}`,
      'Its NICs ask for the source MACs. NIC/MAC is a restricted attribute (VM_RESTRICTED_ATTR): a user',
      'outside the oneadmin group gets "VM Template includes a restricted attribute NIC/MAC". Create it',
      'as oneadmin, then give it and its images to their user: onetemplate chown <template id> <user>,',
      'oneimage chown <image id> <user>.',
    );
  } else {
    lines.push('  2. The VM template:', `     onetemplate create ${shellWord(layout.templateFile)}`);
    if (!keepMac && nics.length > 0) lines.push('The NICs ask for no MAC (--no-keep-mac): OpenNebula picks them.');
  }
  lines.push(
    'The template names its images and networks by name: OpenNebula looks them up among those of the',
    'user who instantiates it, unless the DISK or NIC says whose (IMAGE_UNAME, NETWORK_UNAME).',
  );
  return lines;
}

/** A word the shell reads back as it is: OpenNebula names and paths may hold blanks. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9._\/:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/** What the conversion did to the guest's network configuration, for the summary. */
function guestNetworkLines(vm: VmDescription, guest: ConvertedGuest | undefined): string[] {
  if (guest?.network === undefined) return ['Guest network: not looked at (the guest was not converted, or is not Linux)'];
  if (guest.network.length === 0) return ['Guest network: the guest configures none of its NICs; nothing changed (OpenNebula contextualization can configure them)'];
  return [
    `Guest network (oneswap wrote ${RULES_FILE} so each configuration keeps its interface name on KVM):`,
    ...guest.network.map((n) => {
      const nic = vm.nics.find((x) => x.index === n.nic);
      const how = n.mode === 'dhcp' ? `dhcp${n.address ? `, last lease ${n.address}` : ''}` : `${n.mode}${n.address ? ` ${n.address}` : ''}`;
      return `  ${n.name ?? 'a configuration following its MAC'} (${how}) -> NIC ${n.nic}${nic ? ` "${nic.network}"` : ''}, ${n.mac ? `MAC ${n.mac}` : 'any MAC (the only NIC)'}`;
    }),
    ...(guest.network.some((n) => n.mac) ? ['  A VM created from these files must have those MACs for the names to apply: the template asks for them.'] : []),
  ];
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
