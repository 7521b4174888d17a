// The OVF descriptor (.ovf) of an OVA or OVF folder, read into what it says about one VM, and that
// VM as the neutral description (vm-description.ts) with the same conventions as the vCenter input:
// disks in bus order (SCSI, SATA, NVMe, IDE; then bus number, then unit), the boot disk first,
// vSphere controller model names, vSphere guestIds.
//
// Producers differ: vCenter and ovftool write OVF 1.0 with rasd:Item elements (newer vCenter
// releases write disks and NICs as StorageItem/EthernetPortItem), VirtualBox writes OVF 1.0 or 2.0
// with its own ResourceSubTypes and a vbox:Machine section. Elements and attributes are matched by
// local name, never by prefix or namespace URI: producers disagree on the URIs (VirtualBox appends
// ".xsd" to the sasd/epasd ones), and no two OVF namespaces share a local name that matters here.

import { OneswapError } from '../errors/index.js';
import { localName, parseElementTree, type Element as El } from '../xml/index.js';
import { normalizeMac, type DiskBus, type DiskDescription, type Firmware, type NicAdapter, type NicDescription, type VmDescription } from './vm-description.js';

export interface OvfFile {
  readonly id: string;
  /** The file's name inside the package (tar member or file in the folder). */
  readonly href: string;
  readonly size?: number;
  /** Set when the file is split into chunks (href.000000000, href.000000001, …). */
  readonly chunkSize?: number;
  /** ovf:compression, e.g. "gzip"; absent when the file is stored as is. */
  readonly compression?: string;
}

export interface OvfDisk {
  readonly diskId: string;
  /** The File holding the disk; absent for an empty disk the importer must create blank. */
  readonly fileRef?: string;
  readonly capacityBytes: number;
  /** ovf:format as written, e.g. "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized". */
  readonly formatUrl?: string;
  /** The VMDK subformat named by a VMware VMDK format URL ("streamOptimized"). */
  readonly subformat?: string;
  readonly populatedSize?: number;
}

export interface OvfController {
  readonly instanceId: string;
  readonly resourceType: number;
  /** ResourceSubType as written ("VirtualSCSI", "vmware.sata.ahci", "AHCI", "PIIX4", …). */
  readonly subType: string;
  readonly bus: DiskBus;
  /** vSphere model name, e.g. "ParaVirtualSCSIController"; the subtype itself when vSphere has none. */
  readonly model: string;
  readonly busNumber: number;
}

export interface OvfDiskAttachment {
  readonly instanceId: string;
  readonly diskId: string;
  /** InstanceID of the controller item (rasd:Parent). */
  readonly controllerId: string;
  readonly unitNumber: number;
  /** ElementName of the item, "" when it has none. */
  readonly label: string;
}

export interface OvfNic {
  readonly instanceId: string;
  readonly label: string;
  readonly subType: string;
  readonly adapter: NicAdapter;
  /** rasd:Connection: the network name; "" when not connected. */
  readonly network: string;
  /** Lower-case, colon-separated; "" when the descriptor carries none. */
  readonly mac: string;
  /** VMware's vmw:Config slotInfo.pciSlotNumber (the guest names the NIC ens<slot>). */
  readonly pciSlot?: number | undefined;
}

export interface OvfHardware {
  /** vssd:VirtualSystemType, e.g. "vmx-19" or "virtualbox-2.2"; "" when absent. */
  readonly systemType: string;
  readonly cpus: number;
  readonly coresPerSocket: number;
  readonly memoryMiB: number;
  readonly firmware: Firmware;
  readonly secureBoot: boolean;
  readonly controllers: readonly OvfController[];
  /** Hard disk items in document order. */
  readonly attachments: readonly OvfDiskAttachment[];
  /** NICs in document order. */
  readonly nics: readonly OvfNic[];
}

export interface OvfPackage {
  /** What the descriptor is called in messages, e.g. "web01.ovf in OVA web01.ova". */
  readonly descriptor: string;
  /** ovf:version of the envelope ("1.0", "2.0"), or the version its namespace implies. */
  readonly version: string;
  readonly vmName: string;
  /** References: File ovf:id → file. */
  readonly files: ReadonlyMap<string, OvfFile>;
  /** DiskSection: ovf:diskId → disk. */
  readonly disks: ReadonlyMap<string, OvfDisk>;
  /** NetworkSection network names. */
  readonly networks: readonly string[];
  readonly hardware: OvfHardware;
  /** vmw:osType (a vSphere guestId such as "debian12_64Guest"); "" when the producer is not VMware. */
  readonly guestId: string;
  readonly guestFullName: string;
  /** OperatingSystemSection ovf:id (CIM OS type), when numeric. */
  readonly osCimId?: number;
  readonly annotation: string;
  /** The DeploymentOptionSection configuration whose items were read, when there is one. */
  readonly deploymentOption?: string;
  /** Things worth a log line that do not stop the import. */
  readonly warnings: readonly string[];
}

/** A disk of the description together with the package file that holds it. */
export interface OvfDiskFile {
  readonly description: DiskDescription;
  /** File href inside the package: the tar member or the file in the folder. */
  readonly href: string;
  /** VMDK subformat ("streamOptimized") for VMware VMDK format URLs, else the format URL; absent when unstated. */
  readonly format?: string;
  readonly chunked: boolean;
}

// ---------------------------------------------------------------------------------------------
// The element tree (lib/xml), read namespace-free: by local names.

function child(el: El, name: string): El | undefined {
  return el.children.find((c) => c.name === name);
}

function childrenNamed(el: El, name: string): El[] {
  return el.children.filter((c) => c.name === name);
}

/** Text of the first child called `name`, trimmed; "" when there is none. */
function childText(el: El, name: string): string {
  return child(el, name)?.text.trim() ?? '';
}

/**
 * Sections by name. OVF 1.0/2.0 name the element after the section; OVF 0.9 (early VMware) wrote
 * `<Section xsi:type="ovf:DiskSection_Type">`, which is matched too.
 */
function sections(el: El, name: string): El[] {
  return el.children.filter((c) => c.name === name || (c.name === 'Section' && localName(c.attrs.get('type') ?? '') === `${name}_Type`));
}

function section(el: El, name: string): El | undefined {
  return sections(el, name)[0];
}

// ---------------------------------------------------------------------------------------------
// Numbers and units.

function dataError(message: string, hint?: string): OneswapError {
  return new OneswapError('data', message, hint === undefined ? undefined : { hint });
}

/** A whole, non-negative number as text; anything else is refused with `what` named. */
function wholeNumber(text: string, what: string, descriptor: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw dataError(`${descriptor}: ${what} is "${t}", not a whole number`);
  const n = Number(t);
  if (!Number.isSafeInteger(n)) throw dataError(`${descriptor}: ${what} is ${t}, which is out of range`);
  return n;
}

const NAMED_UNITS: Record<string, number> = {
  byte: 1,
  bytes: 1,
  b: 1,
  kilobyte: 2 ** 10,
  kilobytes: 2 ** 10,
  kb: 2 ** 10,
  kib: 2 ** 10,
  megabyte: 2 ** 20,
  megabytes: 2 ** 20,
  mb: 2 ** 20,
  mib: 2 ** 20,
  gigabyte: 2 ** 30,
  gigabytes: 2 ** 30,
  gb: 2 ** 30,
  gib: 2 ** 30,
  terabyte: 2 ** 40,
  terabytes: 2 ** 40,
  tb: 2 ** 40,
  tib: 2 ** 40,
};

/**
 * Bytes per unit of a DSP0004 programmatic unit ("byte", "byte * 2^30", "byte*10^6") or of the
 * names VirtualBox and older tools write ("MegaBytes", "GB"); undefined when it is none of those.
 */
export function bytesPerUnit(units: string): number | undefined {
  const u = units.replace(/\s+/g, '').toLowerCase();
  const named = NAMED_UNITS[u];
  if (named !== undefined) return named;
  const factors = u.split('*');
  if (factors[0] !== 'byte' && factors[0] !== 'bytes') return undefined;
  let product = 1;
  for (const f of factors.slice(1)) {
    const pow = /^(\d+)\^(-?\d+)$/.exec(f);
    if (pow) product *= Number(pow[1]) ** Number(pow[2]);
    else if (/^\d+$/.test(f)) product *= Number(f);
    else return undefined;
  }
  return Number.isSafeInteger(product) && product > 0 ? product : undefined;
}

function scaled(quantity: string, units: string | undefined, defaultUnits: string, what: string, descriptor: string): number {
  const n = wholeNumber(quantity, what, descriptor);
  const unitText = units === undefined || units.trim() === '' ? defaultUnits : units;
  const factor = bytesPerUnit(unitText);
  if (factor === undefined) throw dataError(`${descriptor}: ${what} is given in "${unitText.trim()}", which is not a unit of bytes`);
  const bytes = n * factor;
  if (!Number.isSafeInteger(bytes)) throw dataError(`${descriptor}: ${what} (${n} × ${unitText.trim()}) is out of range`);
  return bytes;
}

// Far beyond any real VM; a descriptor asking for more is damaged, not big.
const MAX_CPUS = 4096;
const MAX_MEMORY_MIB = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Controllers, NICs, guest OS.

/** vSphere model names by lower-cased ResourceSubType of a SCSI controller (ResourceType 6). */
const SCSI_MODELS: Record<string, string> = {
  '': 'VirtualLsiLogicController',
  lsilogic: 'VirtualLsiLogicController',
  lsilogicsas: 'VirtualLsiLogicSASController',
  buslogic: 'VirtualBusLogicController',
  virtualscsi: 'ParaVirtualSCSIController',
  pvscsi: 'ParaVirtualSCSIController',
};

function controllerOf(resourceType: number, subType: string): { bus: DiskBus; model: string } | undefined {
  const s = subType.trim().toLowerCase();
  switch (resourceType) {
    case 5: // IDE; VirtualBox writes PIIX3/PIIX4/ICH6, VMware nothing
      return { bus: 'ide', model: 'VirtualIDEController' };
    case 6: // parallel SCSI HBA
      if (s === 'virtioscsi' || s === 'virtio-scsi') return { bus: 'scsi', model: subType.trim() };
      return { bus: 'scsi', model: SCSI_MODELS[s] ?? subType.trim() };
    case 20: // "other storage device": SATA AHCI, NVMe, VirtualBox's virtio-scsi
      if (s === 'vmware.nvme.controller' || s === 'nvme') return { bus: 'nvme', model: 'VirtualNVMEController' };
      if (s === 'virtioscsi' || s === 'virtio-scsi') return { bus: 'scsi', model: subType.trim() };
      if (s === 'vmware.sata.ahci' || s === 'ahci' || s === '') return { bus: 'sata', model: 'VirtualAHCIController' };
      return { bus: 'sata', model: subType.trim() };
    default:
      return undefined;
  }
}

function nicAdapter(subType: string): NicAdapter {
  switch (subType.trim().toLowerCase()) {
    case 'vmxnet3':
      return 'vmxnet3';
    case 'vmxnet2':
    case 'vmxnet':
      return 'vmxnet2';
    case 'e1000':
      return 'e1000';
    case 'e1000e':
      return 'e1000e';
    case 'pcnet32':
    case 'am79c970a':
    case 'am79c973':
      return 'pcnet32';
    case 'sriovethernetcard':
    case 'vmware.sriovethernetcard':
      return 'sriov';
    default:
      return 'other';
  }
}

/** "00:50:56:AB:CD:EF", "00-50-56-ab-cd-ef" or "005056abcdef" → "00:50:56:ab:cd:ef"; else "". */
/** CIM_OperatingSystem.OSType values (DSP1045) an OVF is likely to carry, for a display name only. */
const CIM_OS_NAMES: Record<number, string> = {
  1: 'Other',
  2: 'macOS',
  29: 'Solaris',
  36: 'Linux',
  42: 'FreeBSD',
  43: 'NetBSD',
  58: 'Windows 2000',
  65: 'OpenBSD',
  67: 'Windows XP',
  69: 'Windows Server 2003',
  70: 'Windows Server 2003 (64-bit)',
  71: 'Windows XP (64-bit)',
  73: 'Windows Vista',
  74: 'Windows Vista (64-bit)',
  76: 'Windows Server 2008',
  77: 'Windows Server 2008 (64-bit)',
  78: 'FreeBSD (64-bit)',
  79: 'Red Hat Enterprise Linux',
  80: 'Red Hat Enterprise Linux (64-bit)',
  81: 'Solaris (64-bit)',
  82: 'SUSE Linux',
  83: 'SUSE Linux (64-bit)',
  84: 'SUSE Linux Enterprise Server',
  85: 'SUSE Linux Enterprise Server (64-bit)',
  89: 'Mandriva Linux',
  90: 'Mandriva Linux (64-bit)',
  93: 'Ubuntu Linux',
  94: 'Ubuntu Linux (64-bit)',
  95: 'Debian GNU/Linux',
  96: 'Debian GNU/Linux (64-bit)',
  97: 'Linux 2.4.x',
  98: 'Linux 2.4.x (64-bit)',
  99: 'Linux 2.6.x',
  100: 'Linux 2.6.x (64-bit)',
  101: 'Linux (64-bit)',
  102: 'Other (64-bit)',
};

const VMDK_FORMAT = /^https?:\/\/www\.vmware\.com\/(?:interfaces\/)?specifications\/vmdk\.html#(.+)$/i;

// ---------------------------------------------------------------------------------------------
// The descriptor.

/**
 * Reads an OVF descriptor. `name` says what it is in messages ("x.ovf in OVA x.ova"). Refuses
 * (OneswapError 'data', one line naming the descriptor) what cannot describe one importable VM.
 */
export function parseOvf(xml: string, name: string): OvfPackage {
  const root = parseElementTree(xml, name);
  const rootNs = namespaceOf(root);
  if (root.name !== 'Envelope' || (rootNs !== '' && !/ovf/i.test(rootNs)))
    throw dataError(`${name} is not an OVF descriptor (root element <${root.qname}>${rootNs !== '' ? ` in ${rootNs}` : ''})`);
  const warnings: string[] = [];
  const version = root.attrs.get('version')?.trim() || (/envelope\/2/.test(rootNs) ? '2.0' : /vmware\.com\/schema\/ovf\/1\/envelope/.test(rootNs) ? '0.9' : '1.0');

  // References
  const files = new Map<string, OvfFile>();
  for (const f of childrenNamed(section(root, 'References') ?? emptyEl, 'File')) {
    const id = f.attrs.get('id') ?? '';
    const href = f.attrs.get('href') ?? '';
    if (id === '' || href === '') throw dataError(`${name}: a File in References has no ${id === '' ? 'ovf:id' : 'ovf:href'}`);
    if (files.has(id)) throw dataError(`${name}: File id "${id}" appears twice in References`);
    const size = f.attrs.get('size');
    const chunkSize = f.attrs.get('chunkSize');
    const compression = f.attrs.get('compression');
    files.set(id, {
      id,
      href,
      ...(size !== undefined ? { size: wholeNumber(size, `the size of file ${href}`, name) } : {}),
      ...(chunkSize !== undefined ? { chunkSize: wholeNumber(chunkSize, `the chunk size of file ${href}`, name) } : {}),
      ...(compression !== undefined && compression.trim() !== '' && compression.trim().toLowerCase() !== 'identity' ? { compression: compression.trim() } : {}),
    });
  }

  // DiskSection (OVF 0.9 wrote it as Section xsi:type="ovf:DiskSection_Type")
  const disks = new Map<string, OvfDisk>();
  for (const ds of sections(root, 'DiskSection')) {
    for (const d of ds.children.filter((c) => c.name === 'Disk')) {
      const diskId = d.attrs.get('diskId') ?? '';
      if (diskId === '') throw dataError(`${name}: a Disk in DiskSection has no ovf:diskId`);
      if (disks.has(diskId)) throw dataError(`${name}: disk id "${diskId}" appears twice in DiskSection`);
      const parentRef = d.attrs.get('parentRef')?.trim();
      if (parentRef)
        throw dataError(`${name}: disk ${diskId} is a delta of disk ${parentRef} (ovf:parentRef), which oneswap does not read`, 'export the VM again without delta disks');
      const fileRef = d.attrs.get('fileRef')?.trim() || undefined;
      if (fileRef !== undefined && !files.has(fileRef))
        throw dataError(`${name}: disk ${diskId} names file "${fileRef}", which References does not list`, 'the descriptor is damaged or was edited: export the VM again');
      const capacityBytes = scaled(d.attrs.get('capacity') ?? '', d.attrs.get('capacityAllocationUnits'), 'byte', `the capacity of disk ${diskId}`, name);
      if (capacityBytes <= 0) throw dataError(`${name}: disk ${diskId} has capacity 0`);
      const formatUrl = d.attrs.get('format')?.trim() || undefined;
      const subformat = formatUrl === undefined ? undefined : VMDK_FORMAT.exec(formatUrl)?.[1];
      const populated = d.attrs.get('populatedSize');
      disks.set(diskId, {
        diskId,
        ...(fileRef !== undefined ? { fileRef } : {}),
        capacityBytes,
        ...(formatUrl !== undefined ? { formatUrl } : {}),
        ...(subformat !== undefined ? { subformat } : {}),
        ...(populated !== undefined && /^\s*\d+\s*$/.test(populated) ? { populatedSize: Number(populated) } : {}),
      });
    }
  }

  const networks = childrenNamed(section(root, 'NetworkSection') ?? emptyEl, 'Network').map((n) => n.attrs.get('name') ?? '');

  // One VirtualSystem: directly under the Envelope, or alone in a collection.
  const collections = root.children.filter((c) => c.name === 'VirtualSystemCollection');
  const direct = root.children.filter((c) => c.name === 'VirtualSystem');
  const systems = [...direct, ...collections.flatMap((c) => allVirtualSystems(c))];
  if (systems.length === 0) throw dataError(`${name} describes no VirtualSystem (no VM)`);
  if (systems.length > 1) {
    const ids = systems.map((s) => s.attrs.get('id') ?? '?').join(', ');
    throw dataError(`${name} describes ${systems.length} VMs (a VirtualSystemCollection or vApp: ${ids}); oneswap imports one VM per package`, 'export each VM of the vApp as its own OVA and import each');
  }
  const vs = systems[0]!;
  const vmName = childText(vs, 'Name') || (vs.attrs.get('id') ?? '').trim() || name.replace(/\.ovf\b.*$/i, '');

  // DeploymentOptionSection: items tagged with ovf:configuration belong to one configuration only.
  const deployment = section(root, 'DeploymentOptionSection');
  let deploymentOption: string | undefined;
  if (deployment) {
    const configs = childrenNamed(deployment, 'Configuration');
    const chosen = configs.find((c) => (c.attrs.get('default') ?? '').trim().toLowerCase() === 'true') ?? configs[0];
    deploymentOption = chosen?.attrs.get('id');
    if (deploymentOption !== undefined && configs.length > 1) warnings.push(`${name} offers ${configs.length} deployment configurations; the hardware of "${deploymentOption}" is used`);
  }

  const hardware = readHardware(vs, name, disks, deploymentOption, warnings);
  for (const nic of hardware.nics)
    if (nic.network !== '' && networks.length > 0 && !networks.includes(nic.network)) warnings.push(`${name}: ${nic.label} is connected to "${nic.network}", which NetworkSection does not list`);
  for (const diskId of disks.keys())
    if (!hardware.attachments.some((a) => a.diskId === diskId)) warnings.push(`${name}: disk ${diskId} of DiskSection is attached to no controller and is not imported`);

  const os = section(vs, 'OperatingSystemSection');
  const cimText = os?.attrs.get('id')?.trim() ?? '';
  const osCimId = /^\d+$/.test(cimText) ? Number(cimText) : undefined;
  const guestId = (os?.attrs.get('osType') ?? '').trim();
  const guestFullName = (os && childText(os, 'Description')) || (os && childText(os, 'OSType')) || (osCimId !== undefined ? (CIM_OS_NAMES[osCimId] ?? '') : '');
  const annotationSection = section(vs, 'AnnotationSection');
  const annotation = annotationSection ? (child(annotationSection, 'Annotation')?.text ?? '') : '';

  return {
    descriptor: name,
    version,
    vmName,
    files,
    disks,
    networks,
    hardware,
    guestId,
    guestFullName,
    ...(osCimId !== undefined ? { osCimId } : {}),
    annotation,
    ...(deploymentOption !== undefined ? { deploymentOption } : {}),
    warnings,
  };
}

const emptyEl: El = { name: '', qname: '', attrs: new Map(), children: [], text: '', decls: new Map() };

/** The namespace URI of the root element (declared on itself, as it must be); "" when none. */
function namespaceOf(root: El): string {
  const prefix = root.qname.includes(':') ? root.qname.slice(0, root.qname.indexOf(':')) : '';
  return root.decls.get(prefix) ?? '';
}

function allVirtualSystems(collection: El): El[] {
  return collection.children.flatMap((c) => (c.name === 'VirtualSystem' ? [c] : c.name === 'VirtualSystemCollection' ? allVirtualSystems(c) : []));
}

interface RawItem {
  readonly el: El;
  readonly resourceType: number;
  readonly instanceId: string;
  readonly what: string;
}

function readHardware(vs: El, name: string, disks: ReadonlyMap<string, OvfDisk>, deploymentOption: string | undefined, warnings: string[]): OvfHardware {
  const sectionsFound = sections(vs, 'VirtualHardwareSection');
  if (sectionsFound.length === 0) throw dataError(`${name}: the VirtualSystem has no VirtualHardwareSection`);
  // ovftool can write one section per hardware family; prefer VMware's.
  const hw = sectionsFound.find((s) => /vmx/i.test(childText(child(s, 'System') ?? emptyEl, 'VirtualSystemType'))) ?? sectionsFound[0]!;
  const systemType = childText(child(hw, 'System') ?? emptyEl, 'VirtualSystemType');

  const items: RawItem[] = [];
  for (const el of hw.children) {
    if (el.name !== 'Item' && el.name !== 'StorageItem' && el.name !== 'EthernetPortItem') continue;
    const bound = (el.attrs.get('bound') ?? '').trim().toLowerCase();
    if (bound === 'min' || bound === 'max') continue;
    const configuration = el.attrs.get('configuration');
    if (configuration !== undefined && deploymentOption !== undefined && !configuration.trim().split(/\s+/).includes(deploymentOption)) continue;
    const instanceId = childText(el, 'InstanceID') || childText(el, 'InstanceId');
    const label = childText(el, 'ElementName') || childText(el, 'Caption');
    const what = `hardware item ${instanceId || '?'}${label ? ` (${label})` : ''}`;
    const typeText = childText(el, 'ResourceType');
    if (typeText === '') continue;
    items.push({ el, resourceType: wholeNumber(typeText, `the ResourceType of ${what}`, name), instanceId, what });
  }

  // CPU and memory: the first item of each kind.
  const cpu = items.find((i) => i.resourceType === 3);
  if (!cpu) throw dataError(`${name}: the VirtualHardwareSection has no CPU item (ResourceType 3)`);
  const cpus = wholeNumber(childText(cpu.el, 'VirtualQuantity'), `the CPU count (${cpu.what})`, name);
  if (cpus < 1 || cpus > MAX_CPUS) throw dataError(`${name}: the VM has ${cpus} CPUs, which cannot be right`);
  const coresText = childText(cpu.el, 'CoresPerSocket');
  const coresPerSocket = coresText === '' ? 1 : Math.max(1, wholeNumber(coresText, 'CoresPerSocket', name));

  const mem = items.find((i) => i.resourceType === 4);
  if (!mem) throw dataError(`${name}: the VirtualHardwareSection has no memory item (ResourceType 4)`);
  const memBytes = scaled(childText(mem.el, 'VirtualQuantity'), childText(mem.el, 'AllocationUnits'), 'byte * 2^20', `the memory size (${mem.what})`, name);
  const memoryMiB = Math.ceil(memBytes / 2 ** 20);
  if (memoryMiB < 1 || memoryMiB > MAX_MEMORY_MIB) throw dataError(`${name}: the VM has ${memBytes} bytes of memory, which cannot be right`);

  // Controllers first (disks may come before their controller in document order).
  const controllers: OvfController[] = [];
  const seenIds = new Set<string>();
  const perBus = new Map<DiskBus, number>();
  for (const item of items) {
    const subType = childText(item.el, 'ResourceSubType');
    const kind = controllerOf(item.resourceType, subType);
    if (!kind) continue;
    if (item.instanceId === '') throw dataError(`${name}: a disk controller item (ResourceType ${item.resourceType}) has no InstanceID`);
    if (seenIds.has(item.instanceId)) throw dataError(`${name}: InstanceID ${item.instanceId} is used by two controllers`);
    seenIds.add(item.instanceId);
    const ordinal = perBus.get(kind.bus) ?? 0;
    perBus.set(kind.bus, ordinal + 1);
    const address = childText(item.el, 'Address');
    const busNumber = /^\d+$/.test(address) ? Number(address) : ordinal;
    if (kind.model === subType.trim() && !/^virtio/i.test(subType.trim()))
      warnings.push(`${name}: ${item.what} is a controller of unknown subtype "${subType.trim()}"; it is taken for ${kind.bus.toUpperCase()}`);
    controllers.push({ instanceId: item.instanceId, resourceType: item.resourceType, subType, bus: kind.bus, model: kind.model, busNumber });
  }
  const controllerById = new Map(controllers.map((c) => [c.instanceId, c]));

  // Hard disks.
  const attachments: OvfDiskAttachment[] = [];
  const usedDisks = new Set<string>();
  const nextUnit = new Map<string, number>();
  for (const item of items.filter((i) => i.resourceType === 17)) {
    const hostResource = childText(item.el, 'HostResource');
    const diskId = diskIdOf(hostResource);
    if (diskId === undefined || !disks.has(diskId))
      throw dataError(
        hostResource === ''
          ? `${name}: ${item.what} is a hard disk with no HostResource`
          : `${name}: ${item.what} names HostResource "${hostResource}", which is not a disk of the DiskSection`,
        'the descriptor is damaged or was edited: export the VM again',
      );
    if (usedDisks.has(diskId)) throw dataError(`${name}: disk ${diskId} is attached twice`);
    usedDisks.add(diskId);
    const parent = childText(item.el, 'Parent');
    const controller = controllerById.get(parent);
    if (!controller) {
      const other = items.find((i) => i.instanceId === parent);
      throw dataError(
        parent === ''
          ? `${name}: ${item.what} (disk ${diskId}) names no controller (rasd:Parent)`
          : other
            ? `${name}: ${item.what} (disk ${diskId}) is attached to item ${parent}, which is not a disk controller oneswap knows (ResourceType ${other.resourceType})`
            : `${name}: ${item.what} (disk ${diskId}) is attached to controller ${parent}, which the VirtualHardwareSection does not have`,
      );
    }
    const unitText = childText(item.el, 'AddressOnParent');
    const fallback = nextUnit.get(parent) ?? 0;
    const unitNumber = unitText === '' ? fallback : wholeNumber(unitText, `the AddressOnParent of ${item.what}`, name);
    nextUnit.set(parent, Math.max(fallback, unitNumber + 1));
    attachments.push({ instanceId: item.instanceId, diskId, controllerId: parent, unitNumber, label: childText(item.el, 'ElementName') });
  }

  // NICs.
  const nics: OvfNic[] = items
    .filter((i) => i.resourceType === 10)
    .map((item) => {
      const subType = childText(item.el, 'ResourceSubType');
      return {
        instanceId: item.instanceId,
        label: childText(item.el, 'ElementName'),
        subType,
        adapter: nicAdapter(subType),
        network: childText(item.el, 'Connection'),
        mac: normalizeMac(childText(item.el, 'Address')),
        pciSlot: pciSlotOf(item.el),
      };
    });

  // Firmware: VMware's vmw:Config/ExtraConfig, or VirtualBox's own machine section.
  const settings = new Map<string, string>();
  for (const el of hw.children) {
    if (el.name !== 'Config' && el.name !== 'ExtraConfig') continue;
    const key = el.attrs.get('key');
    if (key !== undefined && !settings.has(key)) settings.set(key, (el.attrs.get('value') ?? '').trim());
  }
  const vboxFirmware = child(child(child(vs, 'Machine') ?? emptyEl, 'Hardware') ?? emptyEl, 'Firmware')?.attrs.get('type') ?? '';
  const firmwareValue = (settings.get('firmware') ?? '').toLowerCase();
  const firmware: Firmware = firmwareValue === 'efi' || /^efi/i.test(vboxFirmware) ? 'efi' : 'bios';
  const secureBoot = firmware === 'efi' && (settings.get('uefi.secureBoot.enabled') ?? '').toLowerCase() === 'true';

  return { systemType, cpus, coresPerSocket, memoryMiB, firmware, secureBoot, controllers, attachments, nics };
}

/** <vmw:Config vmw:key="slotInfo.pciSlotNumber" vmw:value="192"/> inside a device's Item. */
function pciSlotOf(el: El): number | undefined {
  const value = el.children.find((c) => c.name === 'Config' && c.attrs.get('key') === 'slotInfo.pciSlotNumber')?.attrs.get('value');
  return value !== undefined && /^\d{1,5}$/.test(value.trim()) ? Number(value) : undefined;
}

/** "ovf:/disk/vmdisk1", "ovf://disk/vmdisk1", "/disk/vmdisk1" → "vmdisk1". */
function diskIdOf(hostResource: string): string | undefined {
  const m = /^(?:ovf:\/\/?|\/)disk\/(.+)$/.exec(hostResource.trim());
  return m?.[1];
}

// ---------------------------------------------------------------------------------------------
// The neutral description.

// The vCenter input's rule (vcenter.ts): SCSI first, IDE last, then bus number, then unit.
const BUS_ORDER: Record<DiskBus, number> = { scsi: 0, sata: 1, nvme: 2, ide: 3 };

/**
 * The package's disks in boot/bus order, each with the file that holds it. Refuses disks that cannot
 * be read from the package: chunked or compressed files, and empty disks (no file).
 */
export function ovfDisks(pkg: OvfPackage): OvfDiskFile[] {
  const controllerById = new Map(pkg.hardware.controllers.map((c) => [c.instanceId, c]));
  const placed = pkg.hardware.attachments.map((a) => ({ a, c: controllerById.get(a.controllerId)!, d: pkg.disks.get(a.diskId)! }));
  placed.sort((x, y) => BUS_ORDER[x.c.bus] - BUS_ORDER[y.c.bus] || x.c.busNumber - y.c.busNumber || x.a.unitNumber - y.a.unitNumber);
  return placed.map(({ a, c, d }, index) => {
    // vSphere's own labels are kept ("Hard disk 3" stays the third disk vCenter showed); other
    // producers' names ("disk0", "disk1") give way to the same style, numbered in boot order.
    const label = /^hard disk \d+$/i.test(a.label) ? a.label : `Hard disk ${index + 1}`;
    if (d.fileRef === undefined)
      throw dataError(`${pkg.descriptor}: ${label} (disk ${d.diskId}) is an empty disk with no file, which oneswap does not create`, 'remove the empty disk before exporting, or add it in OpenNebula after the import');
    const file = pkg.files.get(d.fileRef)!;
    if (file.compression !== undefined)
      throw dataError(`${pkg.descriptor}: disk file ${file.href} is ${file.compression}-compressed (ovf:compression), which oneswap does not read`, 'export the VM again without compression');
    const description: DiskDescription = {
      index,
      label,
      capacityBytes: d.capacityBytes,
      bus: c.bus,
      controllerModel: c.model,
      busNumber: c.busNumber,
      unitNumber: a.unitNumber,
      sourceName: file.href,
      sourceKey: `ovf:${d.diskId}`,
    };
    const format = d.subformat ?? d.formatUrl;
    return { description, href: file.href, ...(format !== undefined ? { format } : {}), chunked: file.chunkSize !== undefined };
  });
}

/** The VM of a parsed descriptor as the neutral description; `source.path` is the OVA or folder. */
export function describeOvfVm(pkg: OvfPackage, source: { readonly path: string }, overrides: { readonly name?: string } = {}): VmDescription {
  const disks = ovfDisks(pkg);
  for (const d of disks)
    if (d.chunked)
      throw dataError(`${pkg.descriptor}: disk file ${d.href} is split into chunks (ovf:chunkSize), which oneswap does not read`, 'export the VM again without --chunkSize');
  const nics = pkg.hardware.nics.map(
    (n, index): NicDescription => ({
      index,
      label: /^network adapter \d+$/i.test(n.label) ? n.label : `Network adapter ${index + 1}`,
      mac: n.mac,
      network: n.network,
      adapter: n.adapter,
      ...(n.pciSlot === undefined ? {} : { pciSlot: n.pciSlot }),
    }),
  );
  return {
    name: overrides.name ?? pkg.vmName,
    source: { kind: 'file', path: source.path },
    cpus: pkg.hardware.cpus,
    coresPerSocket: pkg.hardware.coresPerSocket,
    memoryMiB: pkg.hardware.memoryMiB,
    firmware: pkg.hardware.firmware,
    secureBoot: pkg.hardware.secureBoot,
    guestId: pkg.guestId,
    guestFullName: pkg.guestFullName,
    annotation: pkg.annotation,
    disks: disks.map((d) => d.description),
    nics,
  };
}
