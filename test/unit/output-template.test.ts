import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildVmTemplate, logoFor, mapNics, parseNetworkMap, macInRange } from '../../lib/output/index.js';
import type { VmDescription } from '../../lib/input/index.js';

const vm: VmDescription = {
  name: 'web01',
  source: { kind: 'vcenter', host: 'vc.example', moref: 'vm-42', uuid: 'u-1', instanceUuid: 'iu-1', path: '/DC0/vm/web01' },
  cpus: 4,
  coresPerSocket: 2,
  memoryMiB: 4096,
  firmware: 'efi',
  secureBoot: true,
  guestId: 'debian12_64Guest',
  guestFullName: 'Debian GNU/Linux 12 (64-bit)',
  annotation: 'web <front> & "cache"',
  disks: [
    { index: 0, label: 'Hard disk 1', capacityBytes: 1 << 30, bus: 'scsi', controllerModel: 'ParaVirtualSCSIController', busNumber: 0, unitNumber: 0, sourceName: '[ds] web01/web01.vmdk', sourceKey: '2000' },
    { index: 1, label: 'Hard disk 2', capacityBytes: 1 << 20, bus: 'scsi', controllerModel: 'ParaVirtualSCSIController', busNumber: 0, unitNumber: 1, sourceName: '[ds] web01/web01_1.vmdk', sourceKey: '2001' },
  ],
  nics: [
    { index: 0, label: 'Network adapter 1', mac: '00:50:56:aa:bb:cc', network: 'VM Network', adapter: 'vmxnet3' },
    { index: 1, label: 'Network adapter 2', mac: '00:50:56:aa:bb:cd', network: 'DMZ', adapter: 'e1000e' },
  ],
};

test('VM template carries CPU, topology, memory, disks in order, NICs, firmware, VNC, context', () => {
  const t = buildVmTemplate({
    name: 'web01',
    vm,
    disks: [
      { disk: vm.disks[1]!, imageId: 11 },
      { disk: vm.disks[0]!, imageId: 10 },
    ],
    nics: [
      { nic: vm.nics[0]!, networkId: 3, mac: '00:50:56:aa:bb:cc' },
      { nic: vm.nics[1]!, networkId: 5 },
    ],
    guest: undefined,
    oneMajorVersion: 7,
    importedAt: new Date('2026-11-23T00:00:00Z'),
  });
  assert.equal(t.get('CPU'), '4');
  assert.equal(t.get('VCPU'), '4');
  assert.equal(t.get('MEMORY'), '4096');
  assert.deepEqual(Object.fromEntries(t.vector('TOPOLOGY')!), { SOCKETS: '2', CORES: '2', THREADS: '1' });
  assert.deepEqual(t.vectors('DISK').map((d) => d.get('IMAGE_ID')), ['10', '11']);
  assert.deepEqual(t.vectors('DISK').map((d) => d.get('DEV_PREFIX')), ['sd', 'sd']);
  const nics = t.vectors('NIC');
  assert.equal(nics[0]!.get('NETWORK_ID'), '3');
  assert.equal(nics[0]!.get('MAC'), '00:50:56:aa:bb:cc');
  assert.equal(nics[0]!.get('MODEL'), 'vmxnet3');
  assert.equal(nics[1]!.get('MAC'), undefined);
  assert.equal(nics[1]!.get('MODEL'), 'e1000e');
  const os = t.vector('OS')!;
  assert.equal(os.get('FIRMWARE'), 'UEFI');
  assert.equal(os.get('FIRMWARE_SECURE'), 'YES');
  assert.equal(os.get('MACHINE'), 'q35');
  assert.equal(os.get('SD_DISK_BUS'), 'sata');
  assert.equal(t.vector('GRAPHICS')!.get('TYPE'), 'VNC');
  assert.equal(t.vector('CONTEXT')!.get('NETWORK'), 'YES');
  assert.equal(t.vector('CONTEXT')!.get('SSH_PUBLIC_KEY'), '$USER[SSH_PUBLIC_KEY]');
  assert.equal(t.get('LOGO'), 'images/logos/debian.png');
  assert.match(t.get('DESCRIPTION')!, /web <front> & "cache"/);
  // Free text goes out as XML with escaping.
  assert.match(t.toXml(), /web &lt;front&gt; &amp; "cache"/);
});

const debian = { productName: 'Debian GNU/Linux 12 (bookworm)', distro: 'debian', osinfo: 'debian12', arch: 'x86_64', virtioBlock: true, virtioNet: true, firmware: 'bios' as const };

test('converted guests get virtio; BIOS on 7.x; UEFI path on 6.x', () => {
  const base = { name: 'x', disks: [{ disk: vm.disks[0]!, imageId: 1 }], nics: [{ nic: vm.nics[0]!, networkId: 1 }], importedAt: new Date() };
  const v = buildVmTemplate({ ...base, vm: { ...vm, guestId: 'otherLinux64Guest', guestFullName: 'Other Linux' }, guest: debian, oneMajorVersion: 7 });
  assert.equal(v.vectors('DISK')[0]!.get('DEV_PREFIX'), 'vd');
  assert.equal(v.vectors('NIC')[0]!.get('MODEL'), 'virtio');
  assert.equal(v.vector('OS')!.get('SD_DISK_BUS'), undefined);
  // The OS the conversion found names the template, whatever vCenter was told.
  assert.match(v.get('DESCRIPTION')!, /\(Debian GNU\/Linux 12 \(bookworm\)\)/);
  assert.equal(v.get('LOGO'), 'images/logos/debian.png');
  assert.equal(v.get('ONESWAP_GUEST_OSINFO'), 'debian12');
  const bios = buildVmTemplate({ ...base, vm: { ...vm, firmware: 'bios', secureBoot: false }, guest: debian, oneMajorVersion: 7 });
  assert.equal(bios.vector('OS')!.get('FIRMWARE'), 'BIOS');
  assert.equal(bios.vector('OS')!.get('MACHINE'), undefined);
  const six = buildVmTemplate({ ...base, vm: { ...vm, secureBoot: false }, guest: debian, oneMajorVersion: 6 });
  assert.equal(six.vector('OS')!.get('FIRMWARE'), '/usr/share/OVMF/OVMF_CODE.fd');
});

test('a converted guest with virtio disk drivers but no virtio-net driver gets e1000 NICs', () => {
  const t = buildVmTemplate({
    name: 'x',
    vm,
    disks: [{ disk: vm.disks[0]!, imageId: 1 }],
    nics: [{ nic: vm.nics[0]!, networkId: 1 }],
    guest: { ...debian, virtioNet: false },
    oneMajorVersion: 7,
    importedAt: new Date(),
  });
  assert.equal(t.vectors('DISK')[0]!.get('DEV_PREFIX'), 'vd');
  assert.equal(t.vectors('NIC')[0]!.get('MODEL'), 'e1000');
  assert.equal(t.vector('FEATURES')!.get('GUEST_AGENT'), undefined);
});

test('a guest given qemu-guest-agent gets the agent channel', () => {
  const t = buildVmTemplate({ name: 'x', vm, disks: [{ disk: vm.disks[0]!, imageId: 1 }], nics: [], guest: debian, guestAgent: true, oneMajorVersion: 7, importedAt: new Date() });
  assert.equal(t.vector('FEATURES')!.get('GUEST_AGENT'), 'YES');
  assert.equal(t.vector('FEATURES')!.get('ACPI'), 'YES');
});

test('logos from guest ids', () => {
  assert.equal(logoFor('ubuntu64Guest'), 'ubuntu');
  assert.equal(logoFor('windows2019srv_64Guest'), 'windows8');
  assert.equal(logoFor('winXPProGuest'), 'windowsxp');
  assert.equal(logoFor('rhel9_64Guest'), 'redhat');
  assert.equal(logoFor('otherGuest'), undefined);
});

test('network mapping: explicit map, then VCENTER_NETWORK_MATCH, then name; unmapped is an error naming it', () => {
  const nets = [
    { id: 0, name: 'VM Network' },
    { id: 1, name: 'public', vcenterMatch: 'DMZ' },
    { id: 2, name: 'backend' },
  ];
  const byRule = mapNics('web01', vm.nics, nets, new Map());
  assert.deepEqual(byRule.map((m) => [m.networkId, m.rule]), [[0, 'name'], [1, 'match']]);
  const explicit = mapNics('web01', vm.nics, nets, parseNetworkMap(['VM Network=backend', 'DMZ=0']));
  assert.deepEqual(explicit.map((m) => [m.networkId, m.rule]), [[2, 'map'], [0, 'map']]);
  assert.throws(() => mapNics('web01', vm.nics, [nets[0]!], new Map()), (e: Error & { kind?: string }) => e.kind === 'not-found' && /"DMZ"/.test(e.message) && /web01/.test(e.message));
  assert.throws(() => mapNics('web01', vm.nics, nets, parseNetworkMap(['DMZ=99'])), /no network with id 99/);
  assert.throws(() => parseNetworkMap(['novalue']), /not of the form/);
  assert.deepEqual([...parseNetworkMap(['a=b=3'])], [['a=b', '3']]);
});

test('MAC ranges', () => {
  assert.ok(macInRange('02:00:00:00:00:05', '02:00:00:00:00:00', 10));
  assert.ok(!macInRange('02:00:00:00:00:0a', '02:00:00:00:00:00', 10));
  assert.throws(() => macInRange('zz', '02:00:00:00:00:00', 1), /not a MAC/);
});
