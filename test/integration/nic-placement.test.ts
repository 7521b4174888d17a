// Where NICs land in OpenNebula (lib/output/nic-placement.ts) against the OpenNebula simulator:
// source MACs kept, guest IPs kept (--keep-ip), address ranges added only when needed, the same
// answer on a second call, and a VM instantiated from the result gets exactly the MACs and IPs
// the guest's configuration was bound to.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startOned, type Oned } from '../peers/one/index.js';
import { OneClient } from '../../lib/one/index.js';
import { buildVmTemplate, macOnKvm, placeNics, type AddedAddressRange, type NicMapping } from '../../lib/output/index.js';
import type { NicDescription, VmDescription } from '../../lib/input/index.js';

const nic = (index: number, mac: string): NicDescription => ({ index, label: `Network adapter ${index + 1}`, mac, network: 'VM Network', adapter: 'vmxnet3' });

const vm = (nics: NicDescription[]): VmDescription => ({
  name: 'placed',
  source: { kind: 'file', path: '/x.ova' },
  cpus: 1,
  coresPerSocket: 1,
  memoryMiB: 512,
  firmware: 'bios',
  secureBoot: false,
  guestId: '',
  guestFullName: '',
  annotation: '',
  disks: [],
  nics,
});

describe('NIC placement: MACs and guest IPs kept in OpenNebula', () => {
  let oned: Oned;
  let admin: OneClient;
  let user: OneClient;
  let net: number;

  before(async () => {
    oned = await startOned();
    // 10.0.0.0/24 with MACs 02:00:0a:00:00:xx, and a MAC-only range.
    net = oned.createNetwork({ name: 'VM Network', ars: [{ type: 'IP4', ip: '10.0.0.1', size: 200 }, { type: 'ETHER', mac: '00:50:56:00:10:00', size: 16 }] });
    admin = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession });
    oned.createUser('alice', 'secret');
    user = await OneClient.connect({ endpoint: oned.endpoint, secret: 'alice:secret' });
  });

  after(async () => {
    admin?.close();
    user?.close();
    await oned?.stop();
  });

  const place = async (one: OneClient, nics: NicDescription[], o: { keepMac: boolean; keepIp: boolean; ips?: Array<[number, string]> }) => {
    const journal = { addressRanges: [] as AddedAddressRange[] };
    const lines: string[] = [];
    const mappings: NicMapping[] = nics.map((n) => ({ nic: n, networkId: net, networkName: 'VM Network', rule: 'name' }));
    const placed = await placeNics(one, mappings, { keepMac: o.keepMac, keepIp: o.keepIp, guestAddresses: new Map(o.ips ?? []), journal, log: (m, l) => lines.push(`${l ?? 'info'}: ${m}`) });
    return { placed, journal, lines };
  };

  test('--keep-ip: an IP in a free lease of a range is asked for, with that range\'s MAC for it; the VM gets both', async () => {
    const nics = [nic(0, '00:50:56:8a:00:01')];
    const r = await place(admin, nics, { keepMac: true, keepIp: true, ips: [[0, '10.0.0.15']] });
    assert.deepEqual(r.placed.map((p) => ('ip' in p ? [p.ip, p.ipMac, p.mac] : [])), [['10.0.0.15', '02:00:0a:00:00:0f', undefined]]);
    assert.equal(macOnKvm(r.placed[0]!), '02:00:0a:00:00:0f');
    assert.deepEqual(r.journal.addressRanges, [], 'no range added');
    const template = buildVmTemplate({ name: 'placed-1', vm: vm(nics), disks: [], nics: r.placed, guest: undefined, oneMajorVersion: 7, importedAt: new Date() });
    const t = template.vectors('NIC')[0]!;
    assert.equal(t.get('IP'), '10.0.0.15');
    assert.equal(t.get('MAC'), undefined, 'a NIC asks for an IP or a MAC, never both');
    const tid = await admin.templateAllocate(template);
    const vmId = await admin.templateInstantiate(tid, { name: 'placed-1', hold: true, persistent: false });
    const got = oned.vm(vmId)!.template.vectors('NIC')[0]!;
    assert.deepEqual([got.get('IP'), got.get('MAC')], ['10.0.0.15', '02:00:0a:00:00:0f'], 'the MAC the guest was bound to is the one the VM gets');
  });

  test('--keep-ip: a leased IP falls back to keeping the MAC; an IP in no range gets a one-address range with IP and MAC', async () => {
    const leased = await place(admin, [nic(0, '00:50:56:00:10:03')], { keepMac: true, keepIp: true, ips: [[0, '10.0.0.15']] });
    assert.match(leased.lines.join('\n'), /IP 10\.0\.0\.15 is already leased to VM \d+/);
    assert.deepEqual(leased.placed.map((p) => ('mac' in p ? p.mac : undefined)), ['00:50:56:00:10:03'], 'the MAC of the ETHER range is kept instead');

    const nics = [nic(0, '00:50:56:8a:00:02')];
    const outside = await place(admin, nics, { keepMac: true, keepIp: true, ips: [[0, '192.168.7.9']] });
    assert.equal(outside.journal.addressRanges.length, 1, 'one range added and recorded');
    assert.deepEqual(outside.placed.map((p) => ('networkId' in p ? [p.mac, p.ip] : [])), [['00:50:56:8a:00:02', undefined]], 'asks for the MAC: the lease carries the IP');
    const ar = oned.network(net)!.ars.find((a) => a.arId === outside.journal.addressRanges[0]!.arId)!;
    assert.deepEqual([ar.type, ar.size], ['IP4', 1]);
    const tid = await admin.templateAllocate(buildVmTemplate({ name: 'placed-2', vm: vm(nics), disks: [], nics: outside.placed, guest: undefined, oneMajorVersion: 7, importedAt: new Date() }));
    const vmId = await admin.templateInstantiate(tid, { name: 'placed-2', hold: true, persistent: false });
    const got = oned.vm(vmId)!.template.vectors('NIC')[0]!;
    assert.deepEqual([got.get('IP'), got.get('MAC')], ['192.168.7.9', '00:50:56:8a:00:02']);

    // Placed again (a resumed run, the build after the conversion): same MAC, same IP, no new range.
    const again = await place(admin, [nic(0, '00:50:56:8a:00:03')], { keepMac: true, keepIp: true, ips: [[0, '192.168.7.20']] });
    const twice = await place(admin, [nic(0, '00:50:56:8a:00:03')], { keepMac: true, keepIp: true, ips: [[0, '192.168.7.20']] });
    assert.equal(again.journal.addressRanges.length, 1);
    assert.equal(twice.journal.addressRanges.length, 0, 'the second call finds the range the first added');
    assert.equal(macOnKvm(twice.placed[0]!), macOnKvm(again.placed[0]!));
  });

  test('--keep-ip without a source MAC: the range added holds the IP, and its MAC is known before the VM exists', async () => {
    const r = await place(admin, [nic(0, '')], { keepMac: true, keepIp: true, ips: [[0, '172.20.0.5']] });
    const p = r.placed[0]!;
    assert.ok('ip' in p && p.ip === '172.20.0.5');
    assert.match(macOnKvm(p) ?? '', /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  });

  test('MACs: in a range, added in a range of their own, not for a user, not without a source MAC, not without --keep-ip for IPs', async () => {
    const inRange = await place(admin, [nic(0, '00:50:56:00:10:05')], { keepMac: true, keepIp: false, ips: [[0, '10.0.0.99']] });
    assert.deepEqual([macOnKvm(inRange.placed[0]!), inRange.journal.addressRanges.length], ['00:50:56:00:10:05', 0], 'the guest IP is not asked for without --keep-ip');
    const added = await place(admin, [nic(0, '00:50:56:8a:00:99')], { keepMac: true, keepIp: false });
    assert.deepEqual([macOnKvm(added.placed[0]!), added.journal.addressRanges.length], ['00:50:56:8a:00:99', 1]);
    const none = await place(admin, [nic(0, '')], { keepMac: true, keepIp: false });
    assert.equal(macOnKvm(none.placed[0]!), undefined);
    assert.match(none.lines.join('\n'), /the source gives no MAC; OpenNebula picks one/);
    const asUser = await place(user, [nic(0, '00:50:56:8a:00:98')], { keepMac: true, keepIp: true, ips: [[0, '192.168.99.1']] });
    assert.equal(macOnKvm(asUser.placed[0]!), undefined);
    assert.match(asUser.lines.join('\n'), /only OpenNebula administrators may add one/);
    assert.match(asUser.lines.join('\n'), /only OpenNebula administrators may choose a NIC's MAC/);
    const userInRange = await place(user, [nic(0, '00:50:56:8a:00:97')], { keepMac: true, keepIp: true, ips: [[0, '10.0.0.120']] });
    assert.equal(macOnKvm(userInRange.placed[0]!), '02:00:0a:00:00:78', 'asking for an IP of a range is not restricted');
    const off = await place(admin, [nic(0, '00:50:56:8a:00:96')], { keepMac: false, keepIp: false });
    assert.equal(macOnKvm(off.placed[0]!), undefined);
    const noAddress = await place(admin, [nic(0, '00:50:56:8a:00:95')], { keepMac: true, keepIp: true });
    assert.match(noAddress.lines.join('\n'), /--keep-ip: the guest records no address for it/);
    assert.equal(macOnKvm(noAddress.placed[0]!), '00:50:56:8a:00:95', 'the MAC is still kept');
  });
});
