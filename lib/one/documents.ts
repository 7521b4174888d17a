// Typed readers of oned's info documents (reference §4). Every field oned may leave out reads as ''
// or 0, so documents of older versions still load; ID and NAME are required. Text fields accept
// CDATA and escaped text alike (see xml.ts); numbers are converted only where a field is numeric.

import { OneswapError } from '../errors/index.js';
import { Template, templateFromXml, type TemplateVector } from './template.js';
import { escapeXmlText, parseXml, type XmlElement } from './xml.js';

export const ImageState = {
  INIT: 0,
  READY: 1,
  USED: 2,
  DISABLED: 3,
  LOCKED: 4,
  ERROR: 5,
  CLONE: 6,
  DELETE: 7,
  USED_PERS: 8,
  LOCKED_USED: 9,
  LOCKED_USED_PERS: 10,
} as const;
export type ImageStateName = keyof typeof ImageState;

export const ImageType = ['OS', 'CDROM', 'DATABLOCK', 'KERNEL', 'RAMDISK', 'CONTEXT', 'BACKUP', 'FILESYSTEM'] as const;
export type ImageTypeName = (typeof ImageType)[number];

export const DatastoreType = ['IMAGE_DS', 'SYSTEM_DS', 'FILE_DS', 'BACKUP_DS'] as const;
export type DatastoreTypeName = (typeof DatastoreType)[number];

export const VmState = [
  'INIT', 'PENDING', 'HOLD', 'ACTIVE', 'STOPPED', 'SUSPENDED', 'DONE', '', 'POWEROFF', 'UNDEPLOYED', 'CLONING',
  'CLONING_FAILURE',
] as const;

interface Owned {
  readonly id: number;
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly uname: string;
  readonly gname: string;
}

export interface OneImage extends Owned {
  readonly state: number;
  /** The state's name; `UNKNOWN_<n>` for a value this client does not know. */
  readonly stateName: ImageStateName | `UNKNOWN_${number}`;
  readonly type: ImageTypeName | `UNKNOWN_${number}`;
  readonly diskType: number;
  readonly persistent: boolean;
  readonly source: string;
  readonly path: string;
  readonly format: string;
  readonly fs: string;
  readonly sizeMb: number;
  readonly datastoreId: number;
  readonly datastore: string;
  readonly runningVms: number;
  readonly vms: readonly number[];
  readonly template: Template;
}

export interface OneDatastore extends Owned {
  readonly type: DatastoreTypeName | `UNKNOWN_${number}`;
  readonly dsMad: string;
  readonly tmMad: string;
  /** DATASTORE_LOCATION/<id> as oned writes it: expect a `//`. */
  readonly basePath: string;
  readonly diskType: number;
  readonly state: 'READY' | 'DISABLED' | `UNKNOWN_${number}`;
  readonly totalMb: number;
  readonly freeMb: number;
  readonly usedMb: number;
  readonly clusters: readonly number[];
  readonly images: readonly number[];
  readonly template: Template;
}

export interface OneLease {
  readonly ip: string;
  readonly ip6: string;
  readonly mac: string;
  /** The VM holding the lease; undefined for leases held otherwise (hold, vrouter). */
  readonly vm: number | undefined;
}

export interface OneAddressRange {
  readonly id: number;
  readonly type: string;
  readonly ip: string;
  readonly mac: string;
  readonly size: number;
  readonly usedLeases: number;
  /** Only `one.vn.info` lists leases; pool listings leave this empty. */
  readonly leases: readonly OneLease[];
  /** All fields of the AR as oned wrote them (GLOBAL_PREFIX, ULA_PREFIX, custom ones …). */
  readonly attributes: TemplateVector;
}

export interface OneVnet extends Owned {
  readonly bridge: string;
  readonly vnMad: string;
  readonly vlanId: string;
  readonly clusters: readonly number[];
  /** User attributes, e.g. VCENTER_NETWORK_MATCH. */
  readonly template: Template;
  readonly addressRanges: readonly OneAddressRange[];
}

export interface OneTemplate extends Owned {
  readonly regtime: number;
  readonly template: Template;
}

export interface OneVmDisk {
  readonly diskId: number | undefined;
  readonly imageId: number | undefined;
  readonly source: string;
  readonly driver: string;
  readonly target: string;
  readonly attributes: TemplateVector;
}

export interface OneVmNic {
  readonly nicId: number | undefined;
  readonly networkId: number | undefined;
  readonly mac: string;
  readonly ip: string;
  readonly attributes: TemplateVector;
}

export interface OneVm extends Owned {
  readonly state: number;
  readonly stateName: string;
  /** LCM_STATE; meaningful when state is ACTIVE (3 = RUNNING). */
  readonly lcmState: number;
  readonly disks: readonly OneVmDisk[];
  readonly nics: readonly OneVmNic[];
  readonly template: Template;
  readonly userTemplate: Template;
}

/** A marketplace: `one.market.info`, and the `<MARKETPLACE>` of a driver message (monitor, cp from an app). */
export interface OneMarketplace {
  readonly id: number;
  readonly name: string;
  readonly marketMad: string;
  readonly state: 'ENABLED' | 'DISABLED' | `UNKNOWN_${number}`;
  /** The apps it lists now (MARKETPLACEAPPS). */
  readonly appIds: readonly number[];
  readonly template: Template;
}

/**
 * What oned sends a datastore driver (DS_DRIVER_ACTION_DATA) or a marketplace driver
 * (MARKET_DRIVER_ACTION_DATA): the image (whole, or only PATH and SIZE for stat), the datastore,
 * and the marketplace when the image comes from a marketplace app.
 */
export interface DriverActionData {
  /** Undefined when the message has no IMAGE (monitor). */
  readonly image: { readonly path: string; readonly sizeMb: number; readonly full: OneImage | undefined } | undefined;
  readonly datastore: OneDatastore | undefined;
  readonly marketplace: OneMarketplace | undefined;
}

export interface OneUser {
  readonly id: number;
  readonly name: string;
  readonly gid: number;
  readonly gname: string;
  readonly groups: readonly number[];
  /** UID 0 or a member of group 0 (oneadmin): may set restricted attributes. */
  readonly isAdmin: boolean;
  readonly sshPublicKey: string;
  readonly template: Template;
}

export function parseImage(xml: string): OneImage {
  return image(root(xml, 'IMAGE'));
}
export function parseImagePool(xml: string): OneImage[] {
  return root(xml, 'IMAGE_POOL').all('IMAGE').map(image);
}
export function parseDatastore(xml: string): OneDatastore {
  return datastore(root(xml, 'DATASTORE'));
}
export function parseDatastorePool(xml: string): OneDatastore[] {
  return root(xml, 'DATASTORE_POOL').all('DATASTORE').map(datastore);
}
export function parseVnet(xml: string): OneVnet {
  return vnet(root(xml, 'VNET'));
}
export function parseVnetPool(xml: string): OneVnet[] {
  return root(xml, 'VNET_POOL').all('VNET').map(vnet);
}
export function parseVmTemplate(xml: string): OneTemplate {
  return vmTemplate(root(xml, 'VMTEMPLATE'));
}
export function parseVmTemplatePool(xml: string): OneTemplate[] {
  return root(xml, 'VMTEMPLATE_POOL').all('VMTEMPLATE').map(vmTemplate);
}
export function parseVm(xml: string): OneVm {
  return vm(root(xml, 'VM'));
}
export function parseVmPool(xml: string): OneVm[] {
  return root(xml, 'VM_POOL').all('VM').map(vm);
}
export function parseUser(xml: string): OneUser {
  return user(root(xml, 'USER'));
}
export function parseDriverActionData(xml: string): DriverActionData {
  let top: XmlElement;
  try {
    top = parseXml(xml, 'the driver message from oned');
  } catch (err) {
    throw new OneswapError('data', (err as Error).message, { cause: err });
  }
  const img = top.first('IMAGE');
  const ds = top.first('DATASTORE');
  const market = top.first('MARKETPLACE');
  return {
    // stat gets <IMAGE><PATH/><SIZE/></IMAGE> only: no ID, no NAME.
    image: img && { path: img.textOf('PATH'), sizeMb: int(img, 'SIZE'), full: img.first('ID') && img.first('NAME') ? image(img) : undefined },
    datastore: ds && datastore(ds),
    marketplace: market && marketplace(market),
  };
}

/**
 * A datastore driver message with the image's SOURCE set: for a stock driver action on an image
 * whose SOURCE oned learns only from cp's answer (removing what a failed cp made). IMAGE comes
 * first in oned's message, and SOURCE is the first of its children to carry that name.
 */
export function withImageSource(xml: string, source: string): string {
  const image = xml.indexOf('<IMAGE>');
  const found = image < 0 ? null : /<SOURCE\s*\/>|<SOURCE>[\s\S]*?<\/SOURCE>/.exec(xml.slice(image));
  if (!found) throw new OneswapError('data', 'the driver message from oned has no IMAGE/SOURCE');
  const at = image + found.index;
  return `${xml.slice(0, at)}<SOURCE>${escapeXmlText(source)}</SOURCE>${xml.slice(at + found[0].length)}`;
}

export function parseMarketplace(xml: string): OneMarketplace {
  return marketplace(root(xml, 'MARKETPLACE'));
}

/** oned.conf as `one.system.config` returns it: a template (DS_MAD_CONF vectors, DATASTORE_LOCATION …). */
export function parseSystemConfig(xml: string): Template {
  return templateFromXml(root(xml, 'OPENNEBULA_CONFIGURATION'));
}

function root(xml: string, name: string): XmlElement {
  let element: XmlElement;
  try {
    element = parseXml(xml, `OpenNebula's <${name}> document`);
  } catch (err) {
    throw new OneswapError('remote', (err as Error).message, { cause: err });
  }
  if (element.name !== name) throw new OneswapError('remote', `OpenNebula sent <${element.name}> where <${name}> was expected`);
  return element;
}

function owned(e: XmlElement): Owned {
  const name = e.first('NAME');
  if (name === undefined) throw new OneswapError('remote', `OpenNebula sent a <${e.name}> without NAME`);
  return {
    id: requiredInt(e, 'ID'),
    name: name.text,
    uid: int(e, 'UID'),
    gid: int(e, 'GID'),
    uname: e.textOf('UNAME'),
    gname: e.textOf('GNAME'),
  };
}

function image(e: XmlElement): OneImage {
  const state = int(e, 'STATE');
  const type = int(e, 'TYPE');
  return {
    ...owned(e),
    state,
    stateName: nameOf(Object.keys(ImageState) as ImageStateName[], state),
    type: nameOf(ImageType, type),
    diskType: int(e, 'DISK_TYPE'),
    persistent: int(e, 'PERSISTENT') === 1,
    source: e.textOf('SOURCE'),
    path: e.textOf('PATH'),
    format: e.textOf('FORMAT'),
    fs: e.textOf('FS'),
    sizeMb: int(e, 'SIZE'),
    datastoreId: int(e, 'DATASTORE_ID', -1),
    datastore: e.textOf('DATASTORE'),
    runningVms: int(e, 'RUNNING_VMS'),
    vms: ids(e, 'VMS'),
    template: template(e, 'TEMPLATE'),
  };
}

function datastore(e: XmlElement): OneDatastore {
  const state = int(e, 'STATE');
  return {
    ...owned(e),
    type: nameOf(DatastoreType, int(e, 'TYPE')),
    dsMad: e.textOf('DS_MAD'),
    tmMad: e.textOf('TM_MAD'),
    basePath: e.textOf('BASE_PATH'),
    diskType: int(e, 'DISK_TYPE'),
    state: nameOf(['READY', 'DISABLED'] as const, state),
    totalMb: int(e, 'TOTAL_MB'),
    freeMb: int(e, 'FREE_MB'),
    usedMb: int(e, 'USED_MB'),
    clusters: ids(e, 'CLUSTERS'),
    images: ids(e, 'IMAGES'),
    template: template(e, 'TEMPLATE'),
  };
}

function marketplace(e: XmlElement): OneMarketplace {
  return {
    id: requiredInt(e, 'ID'),
    name: e.textOf('NAME'),
    marketMad: e.textOf('MARKET_MAD'),
    state: nameOf(['ENABLED', 'DISABLED'] as const, int(e, 'STATE')),
    appIds: ids(e, 'MARKETPLACEAPPS'),
    template: template(e, 'TEMPLATE'),
  };
}

function vnet(e: XmlElement): OneVnet {
  return {
    ...owned(e),
    bridge: e.textOf('BRIDGE'),
    vnMad: e.textOf('VN_MAD'),
    vlanId: e.textOf('VLAN_ID'),
    clusters: ids(e, 'CLUSTERS'),
    template: template(e, 'TEMPLATE'),
    addressRanges: (e.first('AR_POOL')?.all('AR') ?? []).map(addressRange),
  };
}

function addressRange(e: XmlElement): OneAddressRange {
  const attributes = new Map<string, string>();
  for (const c of e.children) if (c.children.length === 0) attributes.set(c.name, c.text);
  return {
    id: requiredInt(e, 'AR_ID'),
    type: e.textOf('TYPE'),
    ip: e.textOf('IP'),
    mac: e.textOf('MAC'),
    size: int(e, 'SIZE'),
    usedLeases: int(e, 'USED_LEASES'),
    leases: (e.first('LEASES')?.all('LEASE') ?? []).map((l) => ({
      ip: l.textOf('IP'),
      ip6: l.textOf('IP6'),
      mac: l.textOf('MAC'),
      vm: optionalInt(l, 'VM'),
    })),
    attributes,
  };
}

function vmTemplate(e: XmlElement): OneTemplate {
  return { ...owned(e), regtime: int(e, 'REGTIME'), template: template(e, 'TEMPLATE') };
}

function vm(e: XmlElement): OneVm {
  const state = int(e, 'STATE');
  const body = template(e, 'TEMPLATE');
  return {
    ...owned(e),
    state,
    stateName: VmState[state] || `UNKNOWN_${state}`,
    lcmState: int(e, 'LCM_STATE'),
    disks: body.vectors('DISK').map((d) => ({
      diskId: vectorInt(d, 'DISK_ID'),
      imageId: vectorInt(d, 'IMAGE_ID'),
      source: d.get('SOURCE') ?? '',
      driver: d.get('DRIVER') ?? '',
      target: d.get('TARGET') ?? '',
      attributes: d,
    })),
    nics: body.vectors('NIC').map((n) => ({
      nicId: vectorInt(n, 'NIC_ID'),
      networkId: vectorInt(n, 'NETWORK_ID'),
      mac: n.get('MAC') ?? '',
      ip: n.get('IP') ?? '',
      attributes: n,
    })),
    template: body,
    userTemplate: template(e, 'USER_TEMPLATE'),
  };
}

function user(e: XmlElement): OneUser {
  const id = requiredInt(e, 'ID');
  const gid = int(e, 'GID');
  const groups = ids(e, 'GROUPS');
  const body = template(e, 'TEMPLATE');
  return {
    id,
    name: e.textOf('NAME'),
    gid,
    gname: e.textOf('GNAME'),
    groups,
    isAdmin: id === 0 || gid === 0 || groups.includes(0),
    sshPublicKey: body.get('SSH_PUBLIC_KEY') ?? '',
    template: body,
  };
}

function template(e: XmlElement, name: string): Template {
  const t = e.first(name);
  return t === undefined ? new Template() : templateFromXml(t);
}

function ids(e: XmlElement, container: string): number[] {
  return (e.first(container)?.all('ID') ?? []).map((id) => toInt(id.text, `${e.name}/${container}/ID`));
}

function requiredInt(e: XmlElement, name: string): number {
  if (e.first(name) === undefined) throw new OneswapError('remote', `OpenNebula sent a <${e.name}> without ${name}`);
  return int(e, name);
}

/** A numeric field; `fallback` when absent or empty. */
function int(e: XmlElement, name: string, fallback = 0): number {
  const text = e.textOf(name).trim();
  return text === '' ? fallback : toInt(text, `${e.name}/${name}`);
}

function optionalInt(e: XmlElement, name: string): number | undefined {
  const text = e.textOf(name).trim();
  return text === '' ? undefined : toInt(text, `${e.name}/${name}`);
}

function vectorInt(v: TemplateVector, name: string): number | undefined {
  const text = v.get(name)?.trim() ?? '';
  return text === '' ? undefined : toInt(text, name);
}

function toInt(text: string, where: string): number {
  const t = text.trim();
  if (!/^[+-]?\d+$/.test(t)) throw new OneswapError('remote', `OpenNebula sent ${where} = "${text}", not an integer`);
  return Number(t);
}

function nameOf<T extends string>(names: readonly T[], value: number): T | `UNKNOWN_${number}` {
  return names[value] ?? `UNKNOWN_${value}`;
}
