/**
 * The simulator's in-memory object pools (the records behind the XML documents of §4).
 */
import { Template } from './template-syntax.js';

export interface Perms {
  ownerU: number; ownerM: number; ownerA: number;
  groupU: number; groupM: number; groupA: number;
  otherU: number; otherM: number; otherA: number;
}

/** Default umask 177: owner use+manage, nothing else. */
export const defaultPerms = (): Perms => ({ ownerU: 1, ownerM: 1, ownerA: 0, groupU: 0, groupM: 0, groupA: 0, otherU: 0, otherM: 0, otherA: 0 });

export interface Owned {
  id: number;
  uid: number;
  gid: number;
  name: string;
  perms: Perms;
}

export interface UserRec {
  id: number;
  name: string;
  password: string;
  gid: number;
  groups: number[];
  authDriver: string;
  enabled: boolean;
  template: Template;
  tokens: Map<string, { expires: number; egid: number }>;
}

export interface GroupRec {
  id: number;
  name: string;
  users: number[];
  template: Template;
}

export const DS_TYPES = { IMAGE_DS: 0, SYSTEM_DS: 1, FILE_DS: 2, BACKUP_DS: 3 } as const;
export type DsTypeName = keyof typeof DS_TYPES;

export interface DatastoreRec extends Owned {
  dsMad: string;
  tmMad: string;
  basePath: string;
  type: number;
  diskType: number;
  state: number;
  clusters: number[];
  totalMb: number;
  freeMb: number;
  usedMb: number;
  /** capacity given by the test: monitor runs but does not overwrite it */
  pinnedCapacity: boolean;
  images: number[];
  template: Template;
}

export const IMAGE_STATE = {
  INIT: 0, READY: 1, USED: 2, DISABLED: 3, LOCKED: 4, ERROR: 5, CLONE: 6, DELETE: 7, USED_PERS: 8, LOCKED_USED: 9, LOCKED_USED_PERS: 10,
} as const;

export const IMAGE_TYPES = ['OS', 'CDROM', 'DATABLOCK', 'KERNEL', 'RAMDISK', 'CONTEXT', 'BACKUP', 'FILESYSTEM'] as const;

export interface ImageRec extends Owned {
  lock?: { locked: number; owner: number; time: number; reqId: number };
  type: number;
  diskType: number;
  persistent: boolean;
  regtime: number;
  source: string;
  path: string;
  format: string;
  fs: string;
  size: number;
  state: number;
  prevState: number;
  runningVms: number;
  cloningOps: number;
  cloningId: number;
  targetSnapshot: number;
  dsId: number;
  dsName: string;
  vms: number[];
  clones: number[];
  appClones: number[];
  template: Template;
}

export interface VmTemplateRec extends Owned {
  lock?: { locked: number; owner: number; time: number; reqId: number };
  regtime: number;
  template: Template;
}

export const VM_STATE = { INIT: 0, PENDING: 1, HOLD: 2, ACTIVE: 3, STOPPED: 4, SUSPENDED: 5, DONE: 6, POWEROFF: 8, UNDEPLOYED: 9 } as const;

export interface VmRec extends Owned {
  lastPoll: number;
  state: number;
  lcmState: number;
  prevState: number;
  prevLcmState: number;
  resched: number;
  stime: number;
  etime: number;
  deployId: string;
  template: Template;
  userTemplate: Template;
}

export interface LeaseRec {
  index: number;
  vm: number;
}

export interface ArRec {
  arId: number;
  type: 'ETHER' | 'IP4' | 'IP6' | 'IP4_6';
  /** first MAC as a 48-bit number */
  mac: number;
  /** first IPv4 as a 32-bit number (IP4 / IP4_6) */
  ip?: number;
  size: number;
  leases: Map<number, LeaseRec>;
  extra: Map<string, string>;
}

export interface VnetRec extends Owned {
  bridge: string;
  bridgeType: string;
  vnMad: string;
  state: number;
  template: Template;
  ars: ArRec[];
  nextArId: number;
}

// ---------------------------------------------------------------- marketplaces (§7)

/** MarketPlace::MarketPlaceState */
export const MARKET_STATE = { ENABLED: 0, DISABLED: 1 } as const;
/** MarketPlaceApp::State */
export const MARKETAPP_STATE = { INIT: 0, READY: 1, LOCKED: 2, ERROR: 3, DISABLED: 4 } as const;
/** MarketPlaceApp::Type */
export const MARKETAPP_TYPE = { UNKNOWN: 0, IMAGE: 1, VMTEMPLATE: 2, SERVICE_TEMPLATE: 3 } as const;

export interface MarketRec extends Owned {
  state: number;
  marketMad: string;
  zoneId: number;
  totalMb: number;
  freeMb: number;
  usedMb: number;
  /** MARKETPLACEAPPS (an ObjectCollection: a set, emitted sorted) */
  apps: Set<number>;
  template: Template;
}

export interface MarketAppRec extends Owned {
  lock?: { locked: number; owner: number; time: number; reqId: number };
  regtime: number;
  zoneId: number;
  originId: number;
  source: string;
  md5: string;
  /** MiB */
  size: number;
  description: string;
  version: string;
  format: string;
  apptemplate64: string;
  marketId: number;
  marketName: string;
  state: number;
  type: number;
  template: Template;
}

export class Pools {
  users = new Map<number, UserRec>();
  groups = new Map<number, GroupRec>();
  datastores = new Map<number, DatastoreRec>();
  images = new Map<number, ImageRec>();
  templates = new Map<number, VmTemplateRec>();
  vms = new Map<number, VmRec>();
  vnets = new Map<number, VnetRec>();
  markets = new Map<number, MarketRec>();
  marketApps = new Map<number, MarketAppRec>();
  /** MarketPlaceAppPool::map_check: how many monitors in a row an app was missing from */
  marketAppMissing = new Map<number, number>();

  next = { user: 0, group: 0, datastore: 0, image: 0, template: 0, vm: 0, vnet: 0, market: 0, marketApp: 0 };

  /** oned starts user-created datastores, groups and marketplaces at 100 (fresh install). */
  constructor() {
    this.next.datastore = 100;
    this.next.group = 100;
    this.next.market = 100;
  }

  userName(uid: number): string {
    return this.users.get(uid)?.name ?? '';
  }
  groupName(gid: number): string {
    return this.groups.get(gid)?.name ?? '';
  }
}

// ---------------------------------------------------------------- MAC / IP helpers

export function macToNum(mac: string): number | undefined {
  const m = /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})$/.exec(mac.trim());
  if (!m) return undefined;
  return parseInt(m.slice(1).join(''), 16);
}

export function numToMac(n: number): string {
  const h = n.toString(16).padStart(12, '0');
  return (h.match(/../g) ?? []).join(':');
}

export function ipToNum(ip: string): number | undefined {
  const parts = ip.trim().split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function numToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}
