// VMs that arrive as files: an OVA (read in place: the tar is indexed, never unpacked), an
// unpacked OVF folder, or bare VMDKs with the hardware the user gives. Each becomes the same
// neutral VM description the vCenter input gives, plus per disk the VMDK to decode and the
// manifest digests its files must have.

import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { open, readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { OneswapError } from '../errors/index.js';
import { describeOvfVm, ovfDisks, parseOvf } from './ovf.js';
import { parseManifest } from './manifest.js';
import { readTarIndex, type TarMember } from './tar-index.js';
import { wholeFile, type FileDigest, type SourceFile } from './source-file.js';
import { openVmdk, type VmdkImage } from './vmdk-image.js';
import type { DiskBus, DiskDescription, Firmware, VmDescription } from './vm-description.js';

export interface FileDisk {
  readonly description: DiskDescription;
  readonly image: VmdkImage;
}

export interface FileVm {
  readonly description: VmDescription;
  readonly disks: readonly FileDisk[];
  /** Manifest digests by file name; empty without a manifest. */
  readonly digests: ReadonlyMap<string, FileDigest>;
  /** What the package is, for logs: "OVA x.ova (manifest SHA256)". */
  readonly summary: string;
  /** Things the user should know that do not stop the import. */
  readonly warnings: readonly string[];
}

/** How the files of a package are found: tar members, or files in one folder. */
interface PackageFiles {
  readonly label: string;
  list(): readonly string[];
  get(name: string): SourceFile | undefined;
}

const MAX_OVF_BYTES = 16 * 1024 * 1024;

/** An OVA file, or a folder holding an unpacked OVF package. */
export async function openOva(path: string, overrides: { readonly name?: string } = {}): Promise<FileVm> {
  let s;
  try {
    s = await stat(path);
  } catch (err) {
    throw new OneswapError('not-found', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const real = await realpath(path);
  const files = s.isDirectory() ? await folderFiles(real) : await tarFiles(real);
  const descriptors = files.list().filter((n) => n.toLowerCase().endsWith('.ovf'));
  if (descriptors.length === 0) throw new OneswapError('data', `${files.label} holds no .ovf descriptor`, { hint: 'an OVA is a tar whose first member is the .ovf file' });
  if (descriptors.length > 1) throw new OneswapError('data', `${files.label} holds ${descriptors.length} .ovf descriptors (${descriptors.join(', ')}); give the folder of one package`);
  const ovfName = descriptors[0]!;
  const ovfFile = files.get(ovfName)!;
  if (ovfFile.size > MAX_OVF_BYTES) throw new OneswapError('data', `${ovfName} in ${files.label} is ${ovfFile.size} bytes, too large for an OVF descriptor`);
  const ovfBytes = await readWhole(ovfFile);

  const warnings: string[] = [];
  const manifests = files.list().filter((n) => n.toLowerCase().endsWith('.mf'));
  let digests = new Map<string, FileDigest>();
  let manifestNote = 'no manifest';
  if (manifests.length > 1) throw new OneswapError('data', `${files.label} holds ${manifests.length} manifests (${manifests.join(', ')})`);
  if (manifests.length === 1) {
    const mf = files.get(manifests[0]!)!;
    if (mf.size > MAX_OVF_BYTES) throw new OneswapError('data', `${mf.name} in ${files.label} is ${mf.size} bytes, too large for a manifest`);
    digests = parseManifest((await readWhole(mf)).toString('utf8'), `${mf.name} in ${files.label}`);
    const algorithms = [...new Set([...digests.values()].map((d) => d.algorithm.toUpperCase()))];
    manifestNote = `manifest ${algorithms.join('+') || 'empty'}`;
    checkDigest(ovfBytes, ovfName, digests.get(ovfName), files.label, warnings);
  } else {
    warnings.push(`${files.label} has no manifest (.mf): the disks cannot be checked against their digests`);
  }

  const pkg = parseOvf(ovfBytes.toString('utf8'), `${ovfName} in ${files.label}`);
  const base = describeOvfVm(pkg, { path: real }, overrides);
  const disks: FileDisk[] = [];
  const described: DiskDescription[] = [];
  for (const d of ovfDisks(pkg)) {
    if (d.chunked) throw new OneswapError('data', `disk file ${d.href} of ${files.label} is split into chunks, which oneswap does not read`, { hint: 'export the VM again without --chunkSize' });
    const file = files.get(d.href);
    if (!file) throw new OneswapError('data', `${files.label} has no file "${d.href}" for ${d.description.label}`, { hint: 'the package is incomplete: copy or export it again' });
    if (digests.size > 0 && !digests.has(d.href)) warnings.push(`the manifest of ${files.label} lists no digest for ${d.href}: that disk is not checked`);
    const image = await openVmdk(file, (extent) => siblingOf(files, d.href, extent));
    for (const f of image.files) if (f !== file && digests.size > 0 && !digests.has(f.name)) warnings.push(`the manifest of ${files.label} lists no digest for ${f.name}: that file is not checked`);
    // The OVF says what the VM sees; a VMDK larger than that keeps every byte it has.
    const description = { ...d.description, capacityBytes: Math.max(d.description.capacityBytes, image.capacityBytes) };
    disks.push({ description, image });
    described.push(description);
  }
  if (disks.length === 0) throw new OneswapError('data', `${ovfName} in ${files.label} describes no disks to import`);
  return {
    description: { ...base, disks: described },
    disks,
    digests,
    summary: `${s.isDirectory() ? 'OVF folder' : 'OVA'} ${real} (${manifestNote})`,
    warnings,
  };
}

export interface BareVmHardware {
  readonly name?: string;
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly firmware: Firmware;
}

/** One VM from VMDK files, boot disk first; what a VMDK cannot tell comes from `hw`. */
export async function openVmdks(paths: readonly string[], hw: BareVmHardware): Promise<FileVm> {
  if (paths.length === 0) throw new OneswapError('usage', 'no VMDK file given');
  const disks: FileDisk[] = [];
  const reals: string[] = [];
  for (const [index, path] of paths.entries()) {
    let real: string;
    try {
      real = await realpath(path);
      if (!(await stat(real)).isFile()) throw new OneswapError('usage', `${path} is not a file`);
    } catch (err) {
      if (err instanceof OneswapError) throw err;
      throw new OneswapError('not-found', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (reals.includes(real)) throw new OneswapError('usage', `${path} is given twice`);
    reals.push(real);
    const file = await wholeFile(real);
    const folder = dirname(real);
    const image = await openVmdk(file, (extent) => folderExtent(folder, extent, file.name));
    for (const f of image.files) {
      if (reals.includes(f.path) && f.path !== real) throw new OneswapError('usage', `${path} uses ${f.name}, which is given as a disk of its own`);
    }
    const { bus, controllerModel } = busOf(image.adapterType);
    disks.push({
      image,
      description: {
        index,
        label: `Hard disk ${index + 1}`,
        capacityBytes: image.capacityBytes,
        bus,
        controllerModel,
        busNumber: 0,
        unitNumber: index,
        sourceName: real,
        sourceKey: `vmdk:${index}`,
      },
    });
  }
  const name = hw.name ?? basename(reals[0]!).replace(/\.vmdk$/i, '');
  const description: VmDescription = {
    name,
    source: { kind: 'file', path: reals[0]! },
    cpus: hw.cpus,
    coresPerSocket: 1,
    memoryMiB: hw.memoryMiB,
    firmware: hw.firmware,
    secureBoot: false,
    guestId: '',
    guestFullName: '',
    annotation: '',
    disks: disks.map((d) => d.description),
    nics: [],
  };
  return { description, disks, digests: new Map(), summary: `VMDK ${reals.join(', ')}`, warnings: [] };
}

/** What a descriptor's ddb.adapterType says about the bus the guest booted from. */
function busOf(adapterType: string | undefined): { bus: DiskBus; controllerModel: string } {
  switch ((adapterType ?? '').toLowerCase()) {
    case 'ide':
      return { bus: 'ide', controllerModel: 'VirtualIDEController' };
    case 'buslogic':
      return { bus: 'scsi', controllerModel: 'VirtualBusLogicController' };
    case 'lsisas1068':
      return { bus: 'scsi', controllerModel: 'VirtualLsiLogicSASController' };
    case 'pvscsi':
      return { bus: 'scsi', controllerModel: 'ParaVirtualSCSIController' };
    default:
      return { bus: 'scsi', controllerModel: 'VirtualLsiLogicController' };
  }
}

async function tarFiles(path: string): Promise<PackageFiles> {
  const label = `OVA ${basename(path)}`;
  const members = await readTarIndex(path);
  const files = new Map<string, TarMember>();
  for (const m of members) if (m.type === 'file') files.set(m.name.replace(/^\.\//, ''), m);
  return { label, list: () => [...files.keys()], get: (name) => files.get(name.replace(/^\.\//, '')) };
}

async function folderFiles(dir: string): Promise<PackageFiles> {
  const label = `OVF folder ${dir}`;
  const names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  const cache = new Map<string, SourceFile>();
  for (const n of names) cache.set(n, await wholeFile(join(dir, n), n));
  return {
    label,
    list: () => names,
    get: (name) => {
      checkPlainName(name, label);
      return cache.get(name);
    },
  };
}

/** A package's file names are plain names: nothing outside the package can be reached. */
function checkPlainName(name: string, label: string): void {
  if (name === '' || name.includes('/') || name.includes('\\') || name === '.' || name === '..')
    throw new OneswapError('data', `${label} refers to "${name}", which is not a file of the package`, { hint: 'file references must be plain names inside the package' });
}

function siblingOf(files: PackageFiles, diskHref: string, extent: string): SourceFile {
  checkPlainName(extent, files.label);
  const folder = diskHref.includes('/') ? diskHref.slice(0, diskHref.lastIndexOf('/') + 1) : '';
  const f = files.get(folder + extent);
  if (!f) throw new OneswapError('data', `${files.label} has no file "${folder + extent}", which ${diskHref} names as an extent`);
  return f;
}

/** An extent a descriptor names: a file beside it (the resolver is synchronous, hence statSync). */
function folderExtent(folder: string, extent: string, descriptor: string): SourceFile {
  checkPlainName(extent, `the VMDK descriptor ${descriptor}`);
  const path = join(folder, extent);
  let size: number | undefined;
  try {
    const s = statSync(path);
    if (s.isFile()) size = s.size;
  } catch {
    size = undefined;
  }
  if (size === undefined) throw new OneswapError('data', `the VMDK descriptor ${descriptor} names the extent ${extent}, which is not a file in ${folder}`);
  return { name: extent, path, offset: 0, size };
}

async function readWhole(f: SourceFile): Promise<Buffer> {
  const h = await open(f.path, 'r');
  try {
    const buf = Buffer.alloc(f.size);
    let got = 0;
    while (got < f.size) {
      const { bytesRead } = await h.read(buf, got, f.size - got, f.offset + got);
      if (bytesRead === 0) throw new OneswapError('data', `${f.name} is truncated (${got} of ${f.size} bytes)`);
      got += bytesRead;
    }
    return buf;
  } finally {
    await h.close();
  }
}

function checkDigest(bytes: Buffer, name: string, digest: FileDigest | undefined, label: string, warnings: string[]): void {
  if (!digest) {
    warnings.push(`the manifest of ${label} lists no digest for ${name}`);
    return;
  }
  const actual = createHash(digest.algorithm).update(bytes).digest('hex');
  if (actual !== digest.hex.toLowerCase())
    throw new OneswapError('data', `checksum mismatch for ${name} in ${label}: the manifest says ${digest.algorithm.toUpperCase()} ${digest.hex.toLowerCase()}, the file has ${actual}`, {
      hint: 'the package is damaged or was changed after export: copy or export it again',
    });
}
