// The guest's own network configuration, made to follow its NICs from VMware to KVM.
//
// virt-v2v 2.2 leaves the network alone, and on KVM a virtio NIC gets another name than the
// vmxnet3 one had (ens192 becomes ens3): every configuration written for the old name applies to
// nothing and the guest boots without network. Rewriting each tool's files for a new name cannot
// work (the new name is only known at boot), so oneswap keeps the old name instead: a udev rule
// gives the NIC with the MAC the VM will have on KVM the name its configuration uses. Every tool
// (ifupdown, netplan, NetworkManager, ifcfg/wicked, systemd-networkd) then finds its interface as
// before, with its static addresses, routes and DNS untouched.
//
// Pure: the files come in as text (read from the guest by the caller), the rule file goes out as
// text, and every decision is reported.

import { parse as parseYaml } from 'yaml';
import { normalizeMac } from '../input/index.js';

export type NetFamily = 'ifupdown' | 'netplan' | 'networkmanager' | 'ifcfg' | 'wicked' | 'networkd';
export type NetMode = 'dhcp' | 'static' | 'manual';

/** One interface as a guest's configuration describes it. */
export interface GuestInterface {
  /** The interface name the configuration applies to; undefined when it matches by MAC only. */
  readonly name: string | undefined;
  /** A MAC the configuration itself names (hwaddress, HWADDR, mac-address, match: macaddress). */
  readonly mac: string | undefined;
  readonly family: NetFamily;
  readonly file: string;
  readonly mode: NetMode;
  /** IPv4 addresses with their prefix, e.g. "192.168.1.5/24". */
  readonly addresses: readonly string[];
  readonly gateway: string | undefined;
  readonly dns: readonly string[];
}

/** What the guest's files say about its network, before it moves. */
export interface GuestNetworkConfig {
  readonly interfaces: readonly GuestInterface[];
  /** MAC → name from existing udev rules (70-persistent-net.rules and the like). */
  readonly namedMacs: ReadonlyMap<string, string>;
  /** The last DHCP address per interface name, from lease files. */
  readonly leases: ReadonlyMap<string, string>;
  /** Things found and not understood, one line each (bonds, bridges, unreadable files). */
  readonly notes: readonly string[];
}

/** A file of the guest, as read by the caller. */
export interface GuestFile {
  readonly path: string;
  readonly text: string;
}

/** Where each family keeps its files (glob patterns for the caller). */
export const NETWORK_FILE_GLOBS: readonly string[] = [
  '/etc/network/interfaces',
  '/etc/network/interfaces.d/*',
  '/etc/netplan/*.yaml',
  '/etc/netplan/*.yml',
  '/etc/NetworkManager/system-connections/*',
  '/etc/sysconfig/network-scripts/ifcfg-*',
  '/etc/sysconfig/network/ifcfg-*',
  '/etc/systemd/network/*.network',
  '/etc/udev/rules.d/*net*.rules',
  '/var/lib/dhcp/*.leases',
  '/var/lib/dhcp/*.lease',
  '/var/lib/dhclient/*.leases',
  '/var/lib/dhclient/*.lease',
  '/var/lib/NetworkManager/*.lease',
];

/** The file oneswap writes into the guest. */
export const RULES_FILE = '/etc/udev/rules.d/70-oneswap-net.rules';

export function readGuestNetwork(files: readonly GuestFile[]): GuestNetworkConfig {
  const interfaces: GuestInterface[] = [];
  const namedMacs = new Map<string, string>();
  const leases = new Map<string, string>();
  const notes: string[] = [];
  for (const f of files) {
    const p = f.path;
    try {
      if (p === RULES_FILE) continue; // our own, from an earlier conversion
      if (p === '/etc/network/interfaces' || p.startsWith('/etc/network/interfaces.d/')) interfaces.push(...ifupdown(f, notes));
      else if (p.startsWith('/etc/netplan/')) interfaces.push(...netplan(f, notes));
      else if (p.startsWith('/etc/NetworkManager/system-connections/')) interfaces.push(...networkManager(f));
      else if (p.startsWith('/etc/sysconfig/network-scripts/ifcfg-')) interfaces.push(...ifcfg(f, 'ifcfg'));
      else if (p.startsWith('/etc/sysconfig/network/ifcfg-')) interfaces.push(...ifcfg(f, 'wicked'));
      else if (p.startsWith('/etc/systemd/network/')) interfaces.push(...networkd(f));
      else if (p.startsWith('/etc/udev/rules.d/')) for (const [mac, name] of udevNames(f.text)) namedMacs.set(mac, name);
      else {
        const lease = leaseOf(f);
        if (lease) leases.set(lease.name, lease.address);
      }
    } catch (err) {
      notes.push(`${p}: not understood (${(err as Error).message.split('\n')[0]}); left as it is`);
    }
  }
  return { interfaces, namedMacs, leases, notes };
}

// ---- the families ----

function ifupdown(f: GuestFile, notes: string[]): GuestInterface[] {
  const out: GuestInterface[] = [];
  let cur: { name: string; method: string; opts: Map<string, string> } | undefined;
  const flush = (): void => {
    if (cur === undefined || cur.name === 'lo' || cur.method === 'loopback') return;
    const o = cur.opts;
    const address = o.get('address');
    const prefix = o.get('netmask') ? prefixOf(o.get('netmask')!) : undefined;
    const addresses = address ? [address.includes('/') || prefix === undefined ? address : `${address}/${prefix}`] : [];
    const hw = /^(?:ether\s+)?([0-9a-f:]{17})$/i.exec(o.get('hwaddress') ?? '')?.[1];
    out.push({
      name: cur.name,
      mac: hw ? normalizeMac(hw) || undefined : undefined,
      family: 'ifupdown',
      file: f.path,
      mode: cur.method === 'dhcp' ? 'dhcp' : cur.method === 'static' ? 'static' : 'manual',
      addresses,
      gateway: o.get('gateway'),
      dns: (o.get('dns-nameservers') ?? '').split(/\s+/).filter(Boolean),
    });
    if (o.has('bridge_ports') || o.has('bond-slaves')) notes.push(`${f.path}: ${cur.name} is a bridge or bond; its member interfaces keep their names`);
  };
  for (const raw of f.text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    const [word, ...rest] = line.split(/\s+/);
    if (word === 'iface') {
      flush();
      const [name, fam, method] = rest;
      // IPv6 stanzas configure the same interface; the IPv4 one says what matters here.
      cur = fam === 'inet' && name !== undefined ? { name, method: method ?? 'manual', opts: new Map() } : undefined;
    } else if (['auto', 'allow-hotplug', 'allow-auto', 'mapping', 'source', 'source-directory', 'rename'].includes(word!)) {
      flush();
      cur = undefined;
    } else if (cur !== undefined) cur.opts.set(word!, rest.join(' '));
  }
  flush();
  return out;
}

interface NetplanEthernet {
  match?: { macaddress?: string; name?: string };
  'set-name'?: string;
  dhcp4?: boolean | string;
  addresses?: unknown[];
  gateway4?: string;
  routes?: Array<{ to?: string; via?: string }>;
  nameservers?: { addresses?: string[] };
}

function netplan(f: GuestFile, notes: string[]): GuestInterface[] {
  const doc = parseYaml(f.text) as { network?: { ethernets?: Record<string, NetplanEthernet>; bridges?: object; bonds?: object; vlans?: object } } | null;
  const net = doc?.network;
  if (!net) return [];
  for (const kind of ['bridges', 'bonds', 'vlans'] as const) {
    if (net[kind] && Object.keys(net[kind]).length > 0) notes.push(`${f.path}: ${kind} (${Object.keys(net[kind]).join(', ')}) are kept as they are; their member interfaces are bound below`);
  }
  return Object.entries(net.ethernets ?? {}).map(([id, e]) => {
    const addresses = (e.addresses ?? []).map(String).filter((a) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a));
    const dhcp = e.dhcp4 === true || e.dhcp4 === 'true' || e.dhcp4 === 'yes';
    const gateway = e.gateway4 ?? e.routes?.find((r) => r.to === 'default' || r.to === '0.0.0.0/0')?.via;
    return {
      // With a match, the id is only a label; the name is set-name, or the matched name.
      name: e['set-name'] ?? e.match?.name ?? (e.match === undefined ? id : undefined),
      mac: normalizeMac(e.match?.macaddress ?? '') || undefined,
      family: 'netplan' as const,
      file: f.path,
      mode: dhcp ? ('dhcp' as const) : addresses.length > 0 ? ('static' as const) : ('manual' as const),
      addresses,
      gateway,
      dns: e.nameservers?.addresses?.map(String) ?? [],
    };
  });
}

function networkManager(f: GuestFile): GuestInterface[] {
  const ini = parseIni(f.text);
  const c = ini.get('connection');
  const type = c?.get('type');
  if (type !== 'ethernet' && type !== '802-3-ethernet') return [];
  const eth = ini.get('ethernet') ?? ini.get('802-3-ethernet');
  const v4 = ini.get('ipv4');
  const addresses: string[] = [];
  let gateway = v4?.get('gateway');
  for (const [k, v] of v4 ?? []) {
    if (!/^address(es)?\d*$/.test(k)) continue;
    // address1=192.168.1.5/24,192.168.1.1 (the gateway after the comma)
    const [addr, gw] = v.split(',');
    if (addr) addresses.push(addr.includes('/') ? addr : `${addr}/32`);
    gateway ??= gw;
  }
  const method = v4?.get('method') ?? 'auto';
  const mac = eth?.get('mac-address');
  return [
    {
      name: c?.get('interface-name'),
      mac: normalizeMac(mac ?? '') || undefined,
      family: 'networkmanager',
      file: f.path,
      mode: method === 'auto' ? 'dhcp' : method === 'manual' ? 'static' : 'manual',
      addresses,
      gateway,
      dns: (v4?.get('dns') ?? '').split(/[;,]/).map((s) => s.trim()).filter(Boolean),
    },
  ];
}

function ifcfg(f: GuestFile, family: 'ifcfg' | 'wicked'): GuestInterface[] {
  const base = f.path.slice(f.path.lastIndexOf('/') + 1);
  if (/\.(bak|orig|rpmsave|rpmnew|old)$|~$/.test(base)) return [];
  const v = parseShellVars(f.text);
  const name = v.get('DEVICE') ?? base.replace(/^ifcfg-/, '');
  if (name === 'lo' || (v.get('TYPE') !== undefined && !/^ethernet$/i.test(v.get('TYPE')!))) return [];
  const proto = (v.get('BOOTPROTO') ?? 'none').toLowerCase().replace(/^'|'$/g, '');
  const addresses: string[] = [];
  for (const [k, val] of v) {
    const m = /^IPADDR(_?\w*)$/.exec(k);
    if (!m || val === '') continue;
    const prefix = v.get(`PREFIX${m[1]}`) ?? (v.get(`NETMASK${m[1]}`) ? String(prefixOf(v.get(`NETMASK${m[1]}`)!)) : undefined);
    addresses.push(val.includes('/') ? val : `${val}/${prefix ?? 32}`);
  }
  const mac = v.get('HWADDR') ?? v.get('LLADDR') ?? v.get('MACADDR');
  return [
    {
      name,
      mac: normalizeMac(mac ?? '') || undefined,
      family,
      file: f.path,
      mode: proto.startsWith('dhcp') ? 'dhcp' : addresses.length > 0 ? 'static' : 'manual',
      addresses,
      gateway: v.get('GATEWAY'),
      dns: [...v].filter(([k]) => /^DNS\d+$/.test(k)).map(([, x]) => x),
    },
  ];
}

function networkd(f: GuestFile): GuestInterface[] {
  const ini = parseIni(f.text, true);
  const match = ini.get('match');
  const net = ini.get('network');
  const name = match?.get('name');
  const mac = match?.get('macaddress');
  if (!name && !mac) return [];
  if (name && /[*?[]/.test(name)) return []; // a pattern (e.g. "en*") follows any name already
  const dhcp = /^(yes|true|ipv4|both)$/i.test(net?.get('dhcp') ?? '');
  const addresses = (net?.getAll('address') ?? []).filter((a) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(a));
  return [
    {
      name,
      mac: normalizeMac(mac ?? '') || undefined,
      family: 'networkd',
      file: f.path,
      mode: dhcp ? 'dhcp' : addresses.length > 0 ? 'static' : 'manual',
      addresses,
      gateway: net?.get('gateway'),
      dns: net?.getAll('dns') ?? [],
    },
  ];
}

/** `ATTR{address}=="mac" … NAME="name"` lines of udev rules. */
function udevNames(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of text.split('\n')) {
    if (line.trim().startsWith('#')) continue;
    const mac = /ATTRS?\{address\}=="([0-9a-fA-F:]{17})"/.exec(line)?.[1];
    const name = /\bNAME:?="([^"]+)"/.exec(line)?.[1];
    if (mac && name && normalizeMac(mac)) out.push([normalizeMac(mac), name]);
  }
  return out;
}

/** A dhclient lease file (the last fixed-address) or a NetworkManager internal one (ADDRESS=). */
function leaseOf(f: GuestFile): { name: string; address: string } | undefined {
  const base = f.path.slice(f.path.lastIndexOf('/') + 1);
  // dhclient.ens192.leases, dhclient-<uuid>-ens192.lease, internal-<uuid>-ens192.lease
  const name = /^dhclient\.(.+)\.leases?$/.exec(base)?.[1] ?? /^(?:dhclient|internal)-[0-9a-f-]{36}-(.+)\.leases?$/.exec(base)?.[1];
  if (!name) return undefined;
  const fixed = [...f.text.matchAll(/fixed-address\s+(\d+\.\d+\.\d+\.\d+);/g)].at(-1)?.[1] ?? /^ADDRESS=(\d+\.\d+\.\d+\.\d+)/m.exec(f.text)?.[1];
  return fixed ? { name, address: fixed } : undefined;
}

// ---- binding interfaces to NICs ----

/** A NIC of the source VM, as the guest knew it, and the MAC it will have on KVM. */
export interface GuestNic {
  readonly index: number;
  readonly label: string;
  /** The MAC on VMware ("" when the source did not say, as OVAs often do not). */
  readonly sourceMac: string;
  /** vSphere's PCI slot number: the guest named it ens<slot> (systemd's predictable names). */
  readonly pciSlot?: number | undefined;
}

export type BindReason = 'mac' | 'slot' | 'vmware-order' | 'eth-order' | 'only-nic';

export interface Binding {
  readonly nic: number;
  /** The interface name the configuration uses; undefined when it follows a MAC, whatever the name. */
  readonly name: string | undefined;
  readonly by: BindReason;
  readonly mode: NetMode;
  /** The IPv4 address the guest used on it: its static address, or its last DHCP lease. */
  readonly address: string | undefined;
  readonly files: readonly string[];
  /** MACs the configuration itself names (HWADDR, mac-address, match: macaddress, hwaddress). */
  readonly macs: readonly string[];
}

/** First NICs of a VMware VM get PCI slots 192, 224, 256 (hardware version 7 and later). */
const VMWARE_SLOTS = [192, 224, 256];

/**
 * Which configured interface belongs to which NIC: the MAC the configuration names, then the
 * name systemd derived from the NIC's PCI slot, then the names VMware's first slots give, then
 * ethN by NIC order, then the only interface of a VM with one NIC. An interface that matches no
 * NIC is left out (and named in `unbound`).
 */
export function bindInterfaces(config: GuestNetworkConfig, nics: readonly GuestNic[]): { bindings: Binding[]; unbound: string[] } {
  // Interfaces by name; configurations matching by MAC only get the name udev rules gave that MAC.
  const byName = new Map<string, GuestInterface[]>();
  const macOnly: GuestInterface[] = [];
  for (const i of config.interfaces) {
    const name = i.name ?? (i.mac ? config.namedMacs.get(i.mac) : undefined);
    if (name === undefined) {
      macOnly.push(i);
      continue;
    }
    byName.set(name, [...(byName.get(name) ?? []), i]);
  }
  const bindings: Binding[] = [];
  const taken = new Set<number>();
  const binding = (name: string | undefined, confs: readonly GuestInterface[], nic: GuestNic, by: BindReason): Binding => {
    const mode: NetMode = confs.some((c) => c.mode === 'static') ? 'static' : confs.some((c) => c.mode === 'dhcp') ? 'dhcp' : 'manual';
    const address = confs.flatMap((c) => c.addresses)[0]?.replace(/\/\d+$/, '') ?? (mode === 'dhcp' && name ? config.leases.get(name) : undefined);
    const macs = [...new Set(confs.flatMap((c) => (c.mac ? [c.mac] : [])))];
    return { nic: nic.index, name, by, mode, address, files: [...new Set(confs.map((c) => c.file))], macs };
  };
  const bind = (name: string, nic: GuestNic, by: BindReason): void => {
    bindings.push(binding(name, byName.get(name)!, nic, by));
    taken.add(nic.index);
    byName.delete(name);
  };
  const macOf = (name: string): string | undefined =>
    byName.get(name)!.find((c) => c.mac)?.mac ?? [...config.namedMacs].find(([, n]) => n === name)?.[0];
  const rules: Array<{ by: BindReason; nicFor: (name: string) => GuestNic | undefined }> = [
    { by: 'mac', nicFor: (name) => nics.find((n) => n.sourceMac !== '' && normalizeMac(n.sourceMac) === macOf(name)) },
    { by: 'slot', nicFor: (name) => nics.find((n) => n.pciSlot !== undefined && name === `ens${n.pciSlot}`) },
    { by: 'vmware-order', nicFor: (name) => nics.find((n, k) => n.pciSlot === undefined && k < VMWARE_SLOTS.length && name === `ens${VMWARE_SLOTS[k]}`) },
    { by: 'eth-order', nicFor: (name) => nics.find((_, k) => name === `eth${k}`) },
  ];
  for (const r of rules) {
    for (const name of [...byName.keys()]) {
      const nic = r.nicFor(name);
      if (nic !== undefined && !taken.has(nic.index)) bind(name, nic, r.by);
    }
  }
  if (nics.length === 1 && !taken.has(nics[0]!.index) && byName.size === 1) bind([...byName.keys()][0]!, nics[0]!, 'only-nic');
  const unbound = [...byName.keys()].map((n) => `${n} (${byName.get(n)!.map((c) => c.file).join(', ')})`);
  // Configurations that follow a MAC whatever the interface is called: bound to the NIC with that MAC.
  for (const i of macOnly) {
    const nic = nics.find((n) => n.sourceMac !== '' && normalizeMac(n.sourceMac) === i.mac);
    if (nic !== undefined && !taken.has(nic.index)) {
      bindings.push(binding(undefined, [i], nic, 'mac'));
      taken.add(nic.index);
    } else unbound.push(`a configuration for MAC ${i.mac ?? '?'} (${i.file})`);
  }
  return { bindings, unbound };
}

/**
 * A file with every spelling of the MAC `from` (either case, ':' or '-') turned into `to`:
 * configurations tied to the source MAC (HWADDR, mac-address, match: macaddress, hwaddress)
 * then name the MAC the NIC has on KVM.
 */
export function replaceMac(text: string, from: string, to: string): string {
  const pattern = normalizeMac(from)
    .split(':')
    .map((octet) => octet.replace(/[a-f]/g, (c) => `[${c}${c.toUpperCase()}]`))
    .join('[:-]');
  return text.replace(new RegExp(`(?<![0-9A-Fa-f:-])${pattern}(?![0-9A-Fa-f:-])`, 'g'), normalizeMac(to));
}

/**
 * The udev rules: each bound interface's name for the NIC with its KVM MAC. A VM with one NIC
 * whose KVM MAC is not known yet (OpenNebula picks it) gets a rule for its only Ethernet device.
 */
export function udevRules(bindings: readonly Binding[], macs: ReadonlyMap<number, string | undefined>, nicCount: number): string | undefined {
  const lines: string[] = [];
  for (const b of bindings) {
    if (b.name === undefined) continue; // follows its MAC already
    const mac = macs.get(b.nic);
    if (mac) lines.push(`SUBSYSTEM=="net", ACTION=="add", ATTR{type}=="1", ATTR{address}=="${normalizeMac(mac)}", NAME="${b.name}"`);
    else if (nicCount === 1) lines.push(`SUBSYSTEM=="net", ACTION=="add", ATTR{type}=="1", DEVPATH!="*/virtual/*", NAME="${b.name}"`);
  }
  if (lines.length === 0) return undefined;
  return [
    '# Written by oneswap when this guest moved from VMware to KVM. KVM names its NICs differently;',
    '# these rules give each NIC the name its network configuration uses, so that configuration',
    '# applies as before. Remove this file to go back to the names KVM gives.',
    ...lines,
    '',
  ].join('\n');
}

// ---- small parsers ----

/** 255.255.255.0 → 24; a bare number is taken as a prefix already. */
function prefixOf(netmask: string): number {
  if (/^\d+$/.test(netmask)) return Number(netmask);
  return netmask.split('.').reduce((bits, octet) => bits + (Number(octet) >>> 0).toString(2).replace(/0/g, '').length, 0);
}

interface IniSection {
  get(key: string): string | undefined;
  getAll(key: string): string[];
  [Symbol.iterator](): Iterator<[string, string]>;
}

/** INI sections (lower-cased names); `lowerKeys` for systemd units, whose keys are case-insensitive here. */
function parseIni(text: string, lowerKeys = false): Map<string, IniSection> {
  const raw = new Map<string, Array<[string, string]>>();
  let section = '';
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (l === '' || l.startsWith('#') || l.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(l);
    if (s) {
      section = s[1]!.toLowerCase();
      if (!raw.has(section)) raw.set(section, []);
      continue;
    }
    const eq = l.indexOf('=');
    if (eq <= 0) continue;
    const key = l.slice(0, eq).trim();
    raw.get(section)?.push([lowerKeys ? key.toLowerCase() : key, l.slice(eq + 1).trim()]);
  }
  const out = new Map<string, IniSection>();
  for (const [name, entries] of raw) {
    out.set(name, {
      get: (k) => entries.filter(([x]) => x === k).at(-1)?.[1],
      getAll: (k) => entries.filter(([x]) => x === k).flatMap(([, v]) => v.split(/\s+/).filter(Boolean)),
      [Symbol.iterator]: () => entries[Symbol.iterator](),
    });
  }
  return out;
}

/** KEY=value lines of sysconfig files, quotes removed. */
function parseShellVars(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if (/^".*"$|^'.*'$/.test(v)) v = v.slice(1, -1);
    else v = v.replace(/\s+#.*$/, '');
    out.set(m[1]!, v);
  }
  return out;
}
