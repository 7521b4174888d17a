// The guest network step's pure parts: each family's files read into interfaces, interfaces bound
// to NICs, and the udev rules that keep their names on KVM.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RULES_FILE, bindInterfaces, readGuestNetwork, replaceMac, udevRules, type GuestNic } from '../../lib/convert/guest-network.js';
import { bindGuestNetwork, type NicUse } from '../../lib/convert/network-step.js';
import type { GuestFs } from '../../lib/convert/inspect.js';
import { formatGuestNetwork, parseGuestNetwork } from '../../lib/output/index.js';

const nic = (index: number, sourceMac: string, pciSlot?: number): GuestNic => ({ index, label: `Network adapter ${index + 1}`, sourceMac, ...(pciSlot === undefined ? {} : { pciSlot }) });

test('ifupdown: dhcp and static stanzas, netmask to prefix, gateway, DNS, hwaddress; lo and inet6 left out', () => {
  const c = readGuestNetwork([
    {
      path: '/etc/network/interfaces',
      text: `# The loopback network interface
auto lo
iface lo inet loopback

allow-hotplug ens192
iface ens192 inet dhcp
iface ens192 inet6 auto

source /etc/network/interfaces.d/*
`,
    },
    {
      path: '/etc/network/interfaces.d/ens224',
      text: `auto ens224
iface ens224 inet static
    address 192.168.10.5
    netmask 255.255.255.0
    gateway 192.168.10.1   # the router
    dns-nameservers 192.168.10.2 192.168.10.3
    hwaddress ether 00:50:56:AA:BB:CC
`,
    },
  ]);
  assert.deepEqual(
    c.interfaces.map((i) => [i.name, i.mode, i.addresses, i.gateway, i.dns, i.mac, i.family]),
    [
      ['ens192', 'dhcp', [], undefined, [], undefined, 'ifupdown'],
      ['ens224', 'static', ['192.168.10.5/24'], '192.168.10.1', ['192.168.10.2', '192.168.10.3'], '00:50:56:aa:bb:cc', 'ifupdown'],
    ],
  );
});

test('netplan: ethernets by id, by match (name, macaddress) with set-name, static with routes; bridges noted', () => {
  const c = readGuestNetwork([
    {
      path: '/etc/netplan/50-cloud-init.yaml',
      text: `network:
  version: 2
  ethernets:
    ens192:
      dhcp4: true
    lan:
      match:
        macaddress: "00:50:56:01:02:03"
      set-name: ens224
      addresses: [10.1.0.7/16]
      routes:
        - to: default
          via: 10.1.0.1
      nameservers:
        addresses: [10.1.0.2]
    other:
      match: { macaddress: "00:50:56:09:09:09" }
      dhcp4: yes
  bridges:
    br0:
      interfaces: [ens256]
`,
    },
  ]);
  assert.deepEqual(
    c.interfaces.map((i) => [i.name, i.mode, i.addresses, i.gateway, i.dns, i.mac]),
    [
      ['ens192', 'dhcp', [], undefined, [], undefined],
      ['ens224', 'static', ['10.1.0.7/16'], '10.1.0.1', ['10.1.0.2'], '00:50:56:01:02:03'],
      [undefined, 'dhcp', [], undefined, [], '00:50:56:09:09:09'],
    ],
  );
  assert.match(c.notes.join('\n'), /bridges \(br0\)/);
});

test('NetworkManager keyfiles: interface-name and mac-address, manual with address1 and gateway after the comma; not ethernet left out', () => {
  const c = readGuestNetwork([
    {
      path: '/etc/NetworkManager/system-connections/Wired.nmconnection',
      text: `[connection]
id=Wired
type=ethernet
interface-name=ens192

[ethernet]
mac-address=00:50:56:8A:00:01

[ipv4]
method=manual
address1=172.16.0.9/24,172.16.0.1
dns=172.16.0.2;172.16.0.3;
`,
    },
    { path: '/etc/NetworkManager/system-connections/wifi.nmconnection', text: '[connection]\ntype=wifi\ninterface-name=wlan0\n' },
    { path: '/etc/NetworkManager/system-connections/dhcp.nmconnection', text: '[connection]\ntype=802-3-ethernet\n[802-3-ethernet]\nmac-address=00:50:56:8a:00:02\n[ipv4]\nmethod=auto\n' },
  ]);
  assert.deepEqual(
    c.interfaces.map((i) => [i.name, i.mode, i.addresses, i.gateway, i.dns, i.mac]),
    [
      ['ens192', 'static', ['172.16.0.9/24'], '172.16.0.1', ['172.16.0.2', '172.16.0.3'], '00:50:56:8a:00:01'],
      [undefined, 'dhcp', [], undefined, [], '00:50:56:8a:00:02'],
    ],
  );
});

test('ifcfg (RHEL) and wicked (SUSE): DEVICE or the file name, HWADDR/LLADDR, PREFIX or NETMASK, IPADDR with a prefix; backups and lo left out', () => {
  const c = readGuestNetwork([
    { path: '/etc/sysconfig/network-scripts/ifcfg-ens192', text: 'TYPE=Ethernet\nBOOTPROTO=none\nDEVICE=ens192\nONBOOT=yes\nHWADDR="00:50:56:8A:11:22"\nIPADDR=10.0.0.5\nPREFIX=24\nGATEWAY=10.0.0.1\nDNS1=10.0.0.2\n' },
    { path: '/etc/sysconfig/network-scripts/ifcfg-ens224', text: "BOOTPROTO='dhcp'\nNETMASK=255.255.0.0\n" },
    { path: '/etc/sysconfig/network-scripts/ifcfg-ens192.bak', text: 'DEVICE=ens192\nBOOTPROTO=dhcp\n' },
    { path: '/etc/sysconfig/network-scripts/ifcfg-lo', text: 'DEVICE=lo\nIPADDR=127.0.0.1\n' },
    { path: '/etc/sysconfig/network/ifcfg-eth0', text: "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='192.168.5.5/24'\nLLADDR='00:50:56:33:44:55'\n" },
  ]);
  assert.deepEqual(
    c.interfaces.map((i) => [i.family, i.name, i.mode, i.addresses, i.gateway, i.dns, i.mac]),
    [
      ['ifcfg', 'ens192', 'static', ['10.0.0.5/24'], '10.0.0.1', ['10.0.0.2'], '00:50:56:8a:11:22'],
      ['ifcfg', 'ens224', 'dhcp', [], undefined, [], undefined],
      ['wicked', 'eth0', 'static', ['192.168.5.5/24'], undefined, [], '00:50:56:33:44:55'],
    ],
  );
});

test('systemd-networkd, udev rules naming MACs, lease files; patterns and unreadable files', () => {
  const c = readGuestNetwork([
    { path: '/etc/systemd/network/10-lan.network', text: '[Match]\nName=ens192\n\n[Network]\nAddress=10.9.0.4/24\nGateway=10.9.0.1\nDNS=10.9.0.2\n' },
    { path: '/etc/systemd/network/99-all.network', text: '[Match]\nName=en*\n[Network]\nDHCP=yes\n' },
    { path: '/etc/udev/rules.d/70-persistent-net.rules', text: '# old\nSUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="00:50:56:AB:CD:EF", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"\n' },
    { path: '/var/lib/dhcp/dhclient.ens224.leases', text: 'lease {\n  fixed-address 10.0.2.10;\n}\nlease {\n  fixed-address 10.0.2.15;\n}\n' },
    { path: '/var/lib/NetworkManager/internal-0b8e2f2a-1111-2222-3333-444455556666-ens256.lease', text: 'ADDRESS=10.0.3.7\nNETMASK=255.255.255.0\n' },
    { path: '/etc/netplan/01.yaml', text: 'network: [unclosed' },
    { path: '/etc/udev/rules.d/70-oneswap-net.rules', text: 'SUBSYSTEM=="net", ATTR{address}=="00:00:00:00:00:01", NAME="old"\n' },
  ]);
  assert.deepEqual(c.interfaces.map((i) => [i.family, i.name, i.mode, i.addresses]), [['networkd', 'ens192', 'static', ['10.9.0.4/24']]]);
  assert.deepEqual([...c.namedMacs], [['00:50:56:ab:cd:ef', 'eth0']], 'oneswap\'s own rules from an earlier conversion are not read as the guest\'s');
  assert.deepEqual([...c.leases], [['ens224', '10.0.2.15'], ['ens256', '10.0.3.7']]);
  assert.match(c.notes.join('\n'), /\/etc\/netplan\/01\.yaml: not understood/);
});

test('binding: by the MAC a configuration names, by PCI slot, by VMware slot order, by ethN order, the only NIC; the rest unbound', () => {
  const config = readGuestNetwork([
    { path: '/etc/network/interfaces', text: 'iface ens192 inet dhcp\niface ens161 inet static\n address 10.0.0.9/24\niface eth1 inet dhcp\niface ens999 inet dhcp\n' },
    { path: '/etc/NetworkManager/system-connections/x.nmconnection', text: '[connection]\ntype=ethernet\ninterface-name=lan0\n[ethernet]\nmac-address=00:50:56:00:00:04\n[ipv4]\nmethod=auto\n' },
    { path: '/var/lib/dhcp/dhclient.ens192.leases', text: 'lease { fixed-address 10.0.2.15; }' },
  ]);
  const nics = [nic(0, '00:50:56:00:00:01'), nic(1, '00:50:56:00:00:02', 161), nic(2, '00:50:56:00:00:03'), nic(3, '00:50:56:00:00:04')];
  const { bindings, unbound } = bindInterfaces(config, nics);
  assert.deepEqual(
    bindings.map((b) => [b.name, b.nic, b.by, b.mode, b.address]).sort(),
    [
      ['ens161', 1, 'slot', 'static', '10.0.0.9'],
      ['ens192', 0, 'vmware-order', 'dhcp', '10.0.2.15'],
      ['lan0', 3, 'mac', 'dhcp', undefined],
    ].sort(),
  );
  // eth1 is the second NIC by kernel order, which ens161 already is: not bound twice.
  assert.deepEqual(unbound, ['eth1 (/etc/network/interfaces)', 'ens999 (/etc/network/interfaces)']);
  const eth = bindInterfaces(readGuestNetwork([{ path: '/etc/network/interfaces', text: 'iface eth0 inet dhcp\niface eth1 inet dhcp\n' }]), [nic(0, ''), nic(1, '')]);
  assert.deepEqual(eth.bindings.map((b) => [b.name, b.nic, b.by]), [['eth0', 0, 'eth-order'], ['eth1', 1, 'eth-order']]);
});

test('binding: the only interface of a one-NIC VM, whatever its name; a MAC from an old persistent-net rule', () => {
  const only = bindInterfaces(readGuestNetwork([{ path: '/etc/network/interfaces', text: 'iface enp0s3 inet dhcp\n' }]), [nic(0, '')]);
  assert.deepEqual(only.bindings.map((b) => [b.name, b.by]), [['enp0s3', 'only-nic']]);
  const two = bindInterfaces(readGuestNetwork([{ path: '/etc/network/interfaces', text: 'iface enp0s3 inet dhcp\n' }]), [nic(0, ''), nic(1, '')]);
  assert.deepEqual(two.bindings, [], 'with two NICs a name that says nothing binds nothing');
  const rule = bindInterfaces(
    readGuestNetwork([
      { path: '/etc/sysconfig/network-scripts/ifcfg-eth0', text: 'DEVICE=eth0\nBOOTPROTO=dhcp\n' },
      { path: '/etc/udev/rules.d/70-persistent-net.rules', text: 'SUBSYSTEM=="net", ATTR{address}=="00:50:56:00:00:02", NAME="eth0"\n' },
    ]),
    [nic(0, '00:50:56:00:00:01'), nic(1, '00:50:56:00:00:02')],
  );
  assert.deepEqual(rule.bindings.map((b) => [b.name, b.nic, b.by]), [['eth0', 1, 'mac']]);
});

test('udev rules: by the KVM MAC; any Ethernet device for a one-NIC VM whose MAC is not known; nothing when nothing can be bound', () => {
  const config = readGuestNetwork([{ path: '/etc/network/interfaces', text: 'iface ens192 inet dhcp\niface ens224 inet dhcp\n' }]);
  const { bindings } = bindInterfaces(config, [nic(0, '00:50:56:00:00:01'), nic(1, '00:50:56:00:00:02')]);
  const rules = udevRules(bindings, new Map([[0, '02:00:0A:00:00:05'], [1, undefined]]), 2)!;
  assert.match(rules, /^# Written by oneswap/);
  assert.deepEqual(
    rules.split('\n').filter((l) => l.startsWith('SUBSYSTEM')),
    ['SUBSYSTEM=="net", ACTION=="add", ATTR{type}=="1", ATTR{address}=="02:00:0a:00:00:05", NAME="ens192"'],
  );
  const one = bindInterfaces(readGuestNetwork([{ path: '/etc/network/interfaces', text: 'iface ens192 inet dhcp\n' }]), [nic(0, '')]);
  assert.deepEqual(
    udevRules(one.bindings, new Map([[0, undefined]]), 1)!.split('\n').filter((l) => l.startsWith('SUBSYSTEM')),
    ['SUBSYSTEM=="net", ACTION=="add", ATTR{type}=="1", DEVPATH!="*/virtual/*", NAME="ens192"'],
  );
  assert.equal(udevRules([], new Map(), 2), undefined);
});

test('the guest network record survives the image attribute', () => {
  const net = [
    { nic: 0, name: 'ens192', mode: 'dhcp' as const, address: '10.0.2.15', mac: '00:50:56:8a:00:01' },
    { nic: 1, name: 'ens224', mode: 'static' as const, address: '192.168.1.5' },
    { nic: 2, name: 'ens256', mode: 'manual' as const },
  ];
  const text = formatGuestNetwork(net);
  assert.equal(text, '0 ens192 dhcp addr=10.0.2.15 mac=00:50:56:8a:00:01; 1 ens224 static addr=192.168.1.5; 2 ens256 manual');
  assert.deepEqual(parseGuestNetwork(text), net);
  assert.deepEqual(parseGuestNetwork('garbage; 0 ens192 bogus; x y z'), []);
});

test('a MAC in a configuration, in any spelling, becomes the KVM MAC; other hex runs stay', () => {
  const text = 'HWADDR="00:50:56:8A:11:22"\nMACADDR=00-50-56-8a-11-22\nUUID=00:50:56:8a:11:22:33\n# 00:50:56:8a:11:2\n';
  assert.equal(replaceMac(text, '00:50:56:8a:11:22', '02:00:0A:00:02:32'), 'HWADDR="02:00:0a:00:02:32"\nMACADDR=02:00:0a:00:02:32\nUUID=00:50:56:8a:11:22:33\n# 00:50:56:8a:11:2\n');
});

/** A guest's files in memory, for the step that reads and writes them in the appliance. */
function memoryFs(files: Record<string, string>): GuestFs & { files: Record<string, string> } {
  const glob = (pattern: string): RegExp => new RegExp(`^${pattern.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
  return {
    files,
    glob: async (p) => Object.keys(files).filter((f) => glob(p).test(f)).sort(),
    read: async (p) => files[p],
    write: async (p, text) => {
      files[p] = text;
    },
  };
}

test('the step: RHEL ifcfg tied to the source MAC follows a NIC that gets another MAC; the rule names the KVM MAC', async () => {
  const fs = memoryFs({
    '/etc/sysconfig/network-scripts/ifcfg-ens192': 'TYPE=Ethernet\nDEVICE=ens192\nHWADDR=00:50:56:8A:00:07\nBOOTPROTO=none\nIPADDR=10.0.2.50\nPREFIX=24\n',
  });
  let asked: readonly NicUse[] = [];
  const r = await bindGuestNetwork(fs, {
    nics: [nic(0, '00:50:56:8a:00:07', 192)],
    assign: async (uses) => {
      asked = uses;
      return new Map([[0, '02:00:0a:00:02:32']]);
    },
  });
  assert.deepEqual(asked, [{ nic: 0, name: 'ens192', mode: 'static', address: '10.0.2.50' }], 'the target is told what the guest uses');
  assert.match(fs.files['/etc/sysconfig/network-scripts/ifcfg-ens192']!, /^HWADDR=02:00:0a:00:02:32$/m);
  assert.match(fs.files[RULES_FILE]!, /ATTR\{address\}=="02:00:0a:00:02:32", NAME="ens192"/);
  assert.deepEqual(r.interfaces, [{ nic: 0, name: 'ens192', mode: 'static', address: '10.0.2.50', mac: '02:00:0a:00:02:32', how: 'mac' }]);
  assert.ok(r.changes.some((c) => /ifcfg-ens192: MAC 00:50:56:8a:00:07 replaced by 02:00:0a:00:02:32/.test(c)), r.changes.join('\n'));
  assert.deepEqual(r.warnings, []);
});

test('the step: a configuration that follows its MAC needs no rule; unknown MACs of a two-NIC VM are warned about; unknown NICs bind a single interface', async () => {
  const nm = '[connection]\ntype=ethernet\n[ethernet]\nmac-address=00:50:56:8a:00:01\n[ipv4]\nmethod=auto\n';
  const follows = memoryFs({ '/etc/NetworkManager/system-connections/w.nmconnection': nm, '/etc/network/interfaces': 'iface ens224 inet dhcp\n' });
  const r = await bindGuestNetwork(follows, { nics: [nic(0, '00:50:56:8a:00:01', 192), nic(1, '00:50:56:8a:00:02', 224)], assign: async () => new Map([[0, '00:50:56:8a:00:01'], [1, undefined]]) });
  assert.deepEqual(r.interfaces.map((i) => [i.nic, i.name, i.mode, i.mac]), [[1, 'ens224', 'dhcp', undefined], [0, undefined, 'dhcp', '00:50:56:8a:00:01']]);
  assert.equal(follows.files[RULES_FILE], undefined, 'nothing to name: one follows its MAC, the other has no MAC yet');
  assert.equal(follows.files['/etc/NetworkManager/system-connections/w.nmconnection'], nm, 'the MAC is kept, so the file is not touched');
  assert.match(r.warnings.join('\n'), /ens224 .* its MAC on KVM is not known yet/);

  const unknown = memoryFs({ '/etc/network/interfaces': 'auto lo\niface lo inet loopback\nallow-hotplug ens192\niface ens192 inet dhcp\n' });
  const u = await bindGuestNetwork(unknown, { nics: undefined, assign: async () => new Map() });
  assert.match(unknown.files[RULES_FILE]!, /DEVPATH!="\*\/virtual\/\*", NAME="ens192"/);
  assert.deepEqual(u.warnings, []);

  const none = await bindGuestNetwork(memoryFs({}), { nics: [nic(0, '00:50:56:8a:00:01')], assign: async () => new Map([[0, '00:50:56:8a:00:01']]) });
  assert.deepEqual(none.interfaces, []);
  assert.match(none.changes.join('\n'), /no network configuration found in the guest/);
});
