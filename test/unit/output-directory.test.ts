// The directory target's files for the NICs: the template asks for each kept source MAC, and a
// one-address range per NIC holds it (with the guest's static address, where it has one). Its
// state file, which keeps a resume to the disk files' kind.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { directoryLayout, finishDirectory, prepareDirectory, saveState, type ConvertedGuest } from '../../lib/output/index.js';
import { OneswapError } from '../../lib/errors/index.js';
import { parseTemplateText } from '../../lib/one/index.js';
import type { VmDescription } from '../../lib/input/index.js';

const vm: VmDescription = {
  name: 'web01',
  source: { kind: 'file', path: '/srv/web01.ova' },
  cpus: 1,
  coresPerSocket: 1,
  memoryMiB: 1024,
  firmware: 'bios',
  secureBoot: false,
  guestId: 'debian12_64Guest',
  guestFullName: '',
  annotation: '',
  disks: [{ index: 0, label: 'Hard disk 1', capacityBytes: 1 << 20, bus: 'scsi', controllerModel: 'ParaVirtualSCSIController', busNumber: 0, unitNumber: 0, sourceName: 'web01-disk1.vmdk', sourceKey: 'web01-disk1.vmdk' }],
  nics: [
    { index: 0, label: 'Network adapter 1', mac: '00:50:56:AA:BB:CC', network: 'VM Network', adapter: 'vmxnet3' },
    { index: 1, label: 'Network adapter 2', mac: '00:50:56:aa:bb:cd', network: 'DMZ', adapter: 'e1000e' },
  ],
};

const guest: ConvertedGuest = {
  productName: 'Debian GNU/Linux 12 (bookworm)',
  distro: 'debian',
  osinfo: 'debian12',
  arch: 'x86_64',
  virtioBlock: true,
  virtioNet: true,
  firmware: 'bios',
  network: [
    { nic: 0, name: 'ens192', mode: 'dhcp', address: '10.0.2.15', mac: '00:50:56:aa:bb:cc' },
    { nic: 1, name: 'ens224', mode: 'static', address: '192.168.7.9', mac: '00:50:56:aa:bb:cd' },
  ],
};

test('a directory import keeps the source MACs: ETHER range for DHCP, IP4 range with the static address', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-dir-'));
  try {
    const layout = directoryLayout(dir, vm);
    const r = await finishDirectory(layout, vm, guest, new Map([['DMZ', 'dmz-net']]), { source: 'OVA /srv/web01.ova', notes: [], importedAt: new Date('2026-12-06T00:00:00Z'), guestAgent: false, keepMac: true, noOs: false });
    assert.deepEqual(r.addressRanges, [join(dir, 'web01-nic0.ar'), join(dir, 'web01-nic1.ar')]);
    const ar = async (i: number): Promise<string[][]> => [...parseTemplateText(await readFile(join(dir, `web01-nic${i}.ar`), 'utf8')).vectors('AR')[0]!];
    assert.deepEqual(await ar(0), [['TYPE', 'ETHER'], ['MAC', '00:50:56:aa:bb:cc'], ['SIZE', '1']]);
    assert.deepEqual(await ar(1), [['TYPE', 'IP4'], ['IP', '192.168.7.9'], ['MAC', '00:50:56:aa:bb:cd'], ['SIZE', '1']]);
    const nics = parseTemplateText(await readFile(r.templateFile, 'utf8')).vectors('NIC').map((n) => [n.get('NETWORK'), n.get('MAC'), n.get('IP')]);
    assert.deepEqual(nics, [['VM Network', '00:50:56:aa:bb:cc', undefined], ['dmz-net', '00:50:56:aa:bb:cd', undefined]], 'asking for the MAC gets the static address with it');
    const summary = await readFile(r.summaryFile, 'utf8');
    assert.ok(summary.includes(`     onevnet addar 'VM Network' ${join(dir, 'web01-nic0.ar')}\n     onevnet addar dmz-net ${join(dir, 'web01-nic1.ar')}\n`), summary);
    assert.match(summary, /Create it\nas oneadmin, then give it and its images to their user: onetemplate chown <template id> <user>,/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--no-keep-mac: no MAC asked for, no range written', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-dir-'));
  try {
    const r = await finishDirectory(directoryLayout(dir, vm), vm, guest, new Map(), { source: 'OVA /srv/web01.ova', notes: [], importedAt: new Date(), guestAgent: false, keepMac: false, noOs: false });
    assert.deepEqual(r.addressRanges, []);
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.ar')), []);
    assert.deepEqual(parseTemplateText(await readFile(r.templateFile, 'utf8')).vectors('NIC').map((n) => n.get('MAC')), [undefined, undefined]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the image files say what the conversion did: CONVERTED, NOT_CONVERTED (no operating system), COPIED (--no-convert)', async () => {
  for (const [g, noOs, state, line] of [
    [guest, false, 'CONVERTED', 'Guest:     Debian GNU/Linux 12 (bookworm) converted for KVM (virtio-blk, virtio-net)'],
    [undefined, true, 'NOT_CONVERTED', 'Guest:     no operating system found (data disks only): not converted (the template keeps SATA disks and the source NIC models)'],
    [undefined, false, 'COPIED', 'Guest:     not converted (the template keeps SATA disks and the source NIC models)'],
  ] as const) {
    const dir = await mkdtemp(join(tmpdir(), 'oneswap-dir-'));
    try {
      const layout = directoryLayout(dir, vm);
      const r = await finishDirectory(layout, vm, g, new Map(), { source: 'OVA /srv/web01.ova', notes: [], importedAt: new Date(), guestAgent: false, keepMac: true, noOs });
      assert.equal(parseTemplateText(await readFile(r.imageTemplates[0]!, 'utf8')).get('ONESWAP_STATE'), state);
      assert.ok((await readFile(r.summaryFile, 'utf8')).split('\n').includes(line));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
});

test('the state file records compressed qcow2 files; a resume refuses to mix them with plain ones (and the other way round); the summary says which', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-dir-'));
  try {
    const compressed = directoryLayout(dir, vm, '', 'qcow2', true);
    assert.equal(compressed.disk(0).part, join(dir, 'web01-disk0.qcow2.part'));
    const first = await prepareDirectory(compressed, vm, 0);
    assert.deepEqual([first.resumed, first.state.format, first.state.compressed], [false, 'qcow2', true]);
    await saveState(compressed, first.state);
    assert.equal(JSON.parse(await readFile(compressed.stateFile, 'utf8')).compressed, true);
    await assert.rejects(prepareDirectory(directoryLayout(dir, vm, '', 'qcow2'), vm, 0), (err) => {
      assert.ok(err instanceof OneswapError && err.kind === 'conflict', String(err));
      assert.equal(err.message, `${dir} holds an unfinished import of web01 in compressed qcow2 files`);
      assert.equal(err.hint, 'run it again with --compressed to resume, or remove its files');
      return true;
    });
    const again = await prepareDirectory(directoryLayout(dir, vm, '', 'qcow2', true), vm, 0);
    assert.deepEqual([again.resumed, again.state.compressed], [true, true]);

    const plainDir = join(dir, 'plain');
    const plain = directoryLayout(plainDir, vm, '', 'qcow2');
    await saveState(plain, (await prepareDirectory(plain, vm, 0)).state);
    assert.equal(JSON.parse(await readFile(plain.stateFile, 'utf8')).compressed, undefined, 'not written when not compressed (as before)');
    await assert.rejects(prepareDirectory(directoryLayout(plainDir, vm, '', 'qcow2', true), vm, 0), (err) => {
      assert.ok(err instanceof OneswapError && err.kind === 'conflict', String(err));
      assert.equal(err.hint, 'run it again without --compressed to resume, or remove its files');
      return true;
    });
    assert.throws(() => directoryLayout(dir, vm, '', 'raw', true), /compressed disk files are qcow2 files/);

    const r = await finishDirectory(compressed, vm, undefined, new Map(), { source: 'OVA /srv/web01.ova', notes: [], importedAt: new Date(), guestAgent: false, keepMac: true, noOs: false });
    assert.ok((await readFile(r.summaryFile, 'utf8')).split('\n').includes('Disks (qcow2, data clusters only, compressed; boot disk first):'));
    assert.equal(parseTemplateText(await readFile(r.imageTemplates[0]!, 'utf8')).get('FORMAT'), 'qcow2');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
