// A local directory as the target, for converting now and importing into OpenNebula later (or
// elsewhere): the raw disk files, the converted guest in them, image templates and a VM template
// that `oneimage create` / `onetemplate create` accept, and a short summary.
//
// Nothing half-written looks finished: disks are `<name>-diskN.raw.part` until the whole import
// (conversion included) succeeded; the templates and the summary are written last. The progress
// of an unfinished import lives in `.<name>.oneswap.json` beside them, so a re-run resumes.

import { access, constants, mkdir, readFile, rename, rm, statfs, writeFile, open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { OneswapError } from '../errors/index.js';
import { Template, sanitizeName } from '../one/index.js';
import { vmIdentity, type DiskDescription, type VmDescription } from '../input/index.js';
import { RULES_FILE } from '../convert/index.js';
import { buildVmTemplate, type ConvertedGuest, type PlacedNic } from './vm-template.js';
import { diskImageDescription, diskSourceAttributes, guestAttributes } from './one-target.js';

const MiB = 1024 * 1024;

/** The files of one VM in the output directory. */
export interface DirectoryLayout {
  readonly dir: string;
  readonly name: string;
  readonly stateFile: string;
  readonly lockFile: string;
  readonly templateFile: string;
  readonly summaryFile: string;
  disk(index: number): { readonly part: string; readonly final: string; readonly imageTemplate: string; readonly imageName: string };
}

export function directoryLayout(dir: string, vm: VmDescription, prefix = ''): DirectoryLayout {
  const abs = resolve(dir);
  const name = sanitizeName(`${prefix}${vm.name}`);
  // File names from the VM name: keep them to characters every shell and filesystem takes.
  const file = name.replace(/[^A-Za-z0-9._-]+/g, '_');
  return {
    dir: abs,
    name,
    stateFile: join(abs, `.${file}.oneswap.json`),
    lockFile: join(abs, `.${file}.oneswap.lock`),
    templateFile: join(abs, `${file}.template`),
    summaryFile: join(abs, `${file}.README.txt`),
    disk: (index) => ({
      part: join(abs, `${file}-disk${index}.raw.part`),
      final: join(abs, `${file}-disk${index}.raw`),
      imageTemplate: join(abs, `${file}-disk${index}.image`),
      imageName: sanitizeName(`${name}-disk${index}`),
    }),
  };
}

/** What a directory import has done so far (the state file). */
export interface DirectoryState {
  readonly version: 1;
  readonly source: string;
  /** Disk indexes whose file is complete. */
  copied: number[];
  guest?: ConvertedGuest;
  /** The conversion ran and found no operating system: nothing to convert again. */
  noOs?: boolean;
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
  const state: DirectoryState = previous ?? { version: 1, source: vmIdentity(vm), copied: [] };
  return { state, resumed: previous !== undefined };
}

/** A fresh, all-holes disk file of the disk's size (or the one an earlier run left, kept). */
export async function diskFile(layout: DirectoryLayout, disk: DiskDescription, fresh: boolean): Promise<string> {
  const { part } = layout.disk(disk.index);
  const h = await open(part, fresh ? 'w' : 'a', 0o644);
  try {
    if (fresh) await h.truncate(0);
    await h.truncate(disk.capacityBytes);
  } finally {
    await h.close();
  }
  return part;
}

/** Writes in flight per state file: disks finish in parallel, and their saves must not interleave. */
const saving = new Map<string, Promise<void>>();

/** Writes the state file atomically (temporary file, then rename), one save after the other. */
export function saveState(layout: DirectoryLayout, state: DirectoryState): Promise<void> {
  const text = JSON.stringify(state, null, 1);
  const write = async (): Promise<void> => {
    const tmp = `${layout.stateFile}.${process.pid}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, layout.stateFile);
  };
  const next = (saving.get(layout.stateFile) ?? Promise.resolve()).then(write, write);
  saving.set(layout.stateFile, next);
  void next.finally(() => {
    if (saving.get(layout.stateFile) === next) saving.delete(layout.stateFile);
  }).catch(() => undefined);
  return next;
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
  facts: { readonly source: string; readonly notes: readonly string[]; readonly importedAt: Date; readonly guestAgent: boolean },
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
      FORMAT: 'raw',
      PERSISTENT: 'YES',
      DEV_PREFIX: virtio ? 'vd' : 'sd',
      DESCRIPTION: diskImageDescription(vm, d),
      ONESWAP_STATE: guest ? 'CONVERTED' : 'COPIED',
      ...diskSourceAttributes(vm, d),
      ...(guest ? guestAttributes(guest) : {}),
    });
    await writeFile(f.imageTemplate, t.toText() + '\n', { mode: 0o644 });
    imageTemplates.push(f.imageTemplate);
  }
  const nics: PlacedNic[] = vm.nics.map((n) => ({ nic: n, networkName: networkMap.get(n.network) ?? (n.network || 'default') }));
  const template = buildVmTemplate({
    name: layout.name,
    vm,
    disks: disks.map((d) => ({ disk: d, imageName: layout.disk(d.index).imageName })),
    nics,
    guest,
    guestAgent: facts.guestAgent,
    oneMajorVersion: 7,
    importedAt: facts.importedAt,
  });
  await writeFile(layout.templateFile, template.toText() + '\n', { mode: 0o644 });
  await writeFile(layout.summaryFile, summaryText(layout, vm, guest, nics, facts), { mode: 0o644 });
  await rm(layout.stateFile, { force: true });
  return { templateFile: layout.templateFile, summaryFile: layout.summaryFile, diskFiles: disks.map((d) => layout.disk(d.index).final), imageTemplates };
}

/** Takes back what an unfinished import wrote (the partial disk files and the state). */
export async function removePartial(layout: DirectoryLayout, vm: VmDescription): Promise<void> {
  for (const d of vm.disks) await rm(layout.disk(d.index).part, { force: true });
  await rm(layout.stateFile, { force: true });
}

function summaryText(
  layout: DirectoryLayout,
  vm: VmDescription,
  guest: ConvertedGuest | undefined,
  nics: readonly PlacedNic[],
  facts: { readonly source: string; readonly notes: readonly string[]; readonly importedAt: Date },
): string {
  const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const lines = [
    `${layout.name}: imported by oneswap on ${facts.importedAt.toISOString()}`,
    '',
    `Source:    ${facts.source}`,
    `Hardware:  ${vm.cpus} vCPU, ${vm.memoryMiB} MiB memory, ${vm.firmware.toUpperCase()} firmware${vm.guestFullName ? `, ${vm.guestFullName}` : ''}`,
    `Guest:     ${guest ? `${guest.productName || guest.distro} converted for KVM (${guest.virtioBlock ? 'virtio-blk' : 'no virtio-blk'}, ${guest.virtioNet ? 'virtio-net' : 'no virtio-net'})` : 'not converted (the template keeps SATA disks and the source NIC models)'}`,
    '',
    'Disks (raw, sparse; boot disk first):',
    ...[...vm.disks]
      .sort((a, b) => a.index - b.index)
      .map((d) => `  ${layout.disk(d.index).final}  ${gib(d.capacityBytes)}  (${d.label}, was ${d.bus} ${d.sourceName})`),
    '',
    'NICs:',
    ...(nics.length === 0
      ? ['  none']
      : nics.map((n) => `  NIC ${n.nic.index}: source network "${n.nic.network}", MAC ${n.nic.mac || '-'} (${n.nic.adapter}) -> ${'networkName' in n ? `OpenNebula network "${n.networkName}"` : `network ${n.networkId}`}`)),
    '',
    ...guestNetworkLines(vm, guest),
    ...(facts.notes.length > 0 ? ['', 'Notes:', ...facts.notes.map((n) => `  - ${n}`)] : []),
    '',
    'To import into OpenNebula (the datastore must accept this folder: see its SAFE_DIRS / RESTRICTED_DIRS):',
    ...[...vm.disks].sort((a, b) => a.index - b.index).map((d) => `  oneimage create -d <image datastore> ${layout.disk(d.index).imageTemplate}`),
    `  onetemplate create ${layout.templateFile}`,
    'The template names its images and networks by name: create the images first, under the same',
    'user, and make sure networks with those names exist (or edit the NIC lines). The source MACs are',
    'listed above; keeping them needs an address range that holds them (oneswap import does that).',
    '',
  ];
  return lines.join('\n');
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
    '  A VM created from these files must keep those MACs for the names to apply (see NICs above).',
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
