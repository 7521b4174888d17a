// End to end: `oneswap import` against the vCenter simulator (real flat VMDKs, CBT) and the
// OpenNebula simulator (real datastore driver scripts), run as the real command.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, stat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { createTestVm, listSnapshots, powerOn, setReportedAddress, simStats, type TestVm } from '../peers/vcsim/fixture.js';
import { IMAGE_STATE, type Oned } from '../peers/one/index.js';
import { ipToNum, macToNum } from '../peers/one/state.js';
import type { TcpProxy } from '../peers/net/tcp-proxy.js';
import { oneswap } from '../peers/cli.js';
import { readCopyRates } from '../../lib/supervisor/index.js';
import { startMigrationPeers, type MigrationPeers } from '../peers/migration.js';

const MiB = 1024 * 1024;
const skip = vcsimSkip();

/** sha256 of an image file, which must be exactly as long as its disk (not mkfs's MiB-rounded SIZE). */
async function imageDigest(path: string, size: number): Promise<string> {
  const data = await readFile(path);
  assert.equal(data.length, size, `${path} holds ${data.length} bytes, its disk ${size}`);
  return createHash('sha256').update(data).digest('hex');
}

describe('oneswap import (cold) from vCenter into OpenNebula', { skip }, () => {
  let peers: MigrationPeers;
  let sim: Vcsim;
  let oned: Oned;
  let proxy: TcpProxy;
  let env: Record<string, string>;
  let cbtVm: TestVm;
  let plainVm: TestVm;
  let netId: number;
  let dmzId: number;

  const args = (extra: string[]): string[] => [...peers.importArgs(), ...extra];

  before(async () => {
    // A second datastore presented as vSAN: its disks are objects, never files /folder could serve.
    peers = await startMigrationPeers('cold', { vcsim: { vsan: true } });
    ({ sim, oned, proxy, env } = peers);
    netId = oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 10 }] });
    dmzId = oned.createNetwork({ name: 'public', bridge: 'br1', template: { VCENTER_NETWORK_MATCH: 'DC0_DVPG0' }, ars: [{ type: 'ETHER', mac: '02:00:00:00:10:00', size: 16 }] });
    // One disk >= 256 MiB with data islands and holes, one small; CBT on.
    cbtVm = await createTestVm(sim, {
      name: 'mig-cbt',
      firmware: 'efi',
      guestId: 'debian12_64Guest',
      numCPUs: 4,
      coresPerSocket: 2,
      memoryMB: 2048,
      cbt: true,
      disks: [
        { sizeBytes: 256 * MiB, data: [{ offset: 0, length: MiB }, { offset: 37 * MiB + 4096, length: 5 * MiB }, { offset: 200 * MiB, length: 3 * MiB }, { offset: 256 * MiB - 65536, length: 65536 }] },
        // Not a whole MiB, as vCenter allows (KiB granularity): the image must not grow to 9 MiB.
        { sizeBytes: 8 * MiB + 64 * 1024, data: [{ offset: 4 * MiB, length: 12288 }, { offset: 8 * MiB, length: 64 * 1024 }] },
      ],
      nics: [{ network: 'VM Network', adapter: 'vmxnet3' }, { network: 'DC0_DVPG0', adapter: 'e1000e', mac: '02:00:00:00:10:05' }],
    });
    plainVm = await createTestVm(sim, {
      name: 'mig-plain',
      cbt: false,
      disks: [{ sizeBytes: 64 * MiB + 1024, data: [{ offset: 10 * MiB, length: 2 * MiB }, { offset: 64 * MiB, length: 1024 }] }],
      nics: [{ network: 'VM Network', adapter: 'e1000' }],
    });
  });

  after(async () => {
    await peers?.stop();
  });

  test('imports a 2-disk CBT VM: bytes equal, sparse images, template and VM as asked, no snapshot left', async () => {
    proxy.reset();
    const r = await oneswap(args(['--instantiate', 'mig-cbt']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const result = events.find((e) => e.type === 'result') as { ok: boolean; imageIds: number[]; templateId: number; vmId: number };
    assert.equal(result.ok, true);
    assert.equal(result.imageIds.length, 2);

    for (const [i, disk] of cbtVm.disks.entries()) {
      const img = oned.image(result.imageIds[i]!)!;
      assert.equal(img.name, `mig-cbt-disk${i}`);
      assert.equal(img.type, i === 0 ? 0 : 2, 'OS for the boot disk, DATABLOCK for the others');
      assert.equal(img.format, 'raw');
      assert.equal(img.persistent, true);
      assert.equal(img.size, Math.ceil(disk.sizeBytes / MiB));
      assert.equal(await imageDigest(img.source, disk.sizeBytes), disk.sha256, `disk ${i} bytes`);
      const allocated = (await stat(img.source)).blocks * 512;
      assert.ok(allocated <= disk.dataBytes + MiB, `image ${i} allocates ${allocated} bytes for ${disk.dataBytes} bytes of data`);
      assert.equal(img.template.get('ONESWAP_STATE'), 'DONE');
    }
    // Only the data travelled (CBT "*"): well under the 264 MiB of capacity.
    const data = cbtVm.disks.reduce((s, d) => s + d.dataBytes, 0);
    assert.ok(proxy.counters.down < data * 1.05 + 2 * MiB, `${proxy.counters.down} bytes over the network for ${data} bytes of data`);

    const tpl = oned.template(result.templateId)!.template;
    assert.equal(tpl.get('CPU'), '4');
    assert.equal(tpl.get('VCPU'), '4');
    assert.equal(tpl.get('MEMORY'), '2048');
    assert.deepEqual(Object.fromEntries(tpl.vectors('TOPOLOGY')[0]!), { SOCKETS: '2', CORES: '2', THREADS: '1' });
    assert.deepEqual(tpl.vectors('DISK').map((d) => d.get('IMAGE_ID')), result.imageIds.map(String), 'disks in boot/bus order');
    const nics = tpl.vectors('NIC');
    assert.deepEqual(nics.map((n) => n.get('NETWORK_ID')), [String(netId), String(dmzId)], 'NICs mapped by name and by VCENTER_NETWORK_MATCH');
    assert.deepEqual(nics.map((n) => n.get('MAC')), cbtVm.nics.map((n) => n.mac), 'source MACs kept');
    assert.deepEqual(nics.map((n) => n.get('MODEL')), ['vmxnet3', 'e1000e']);
    const os = tpl.vectors('OS')[0]!;
    assert.equal(os.get('FIRMWARE'), 'UEFI');
    assert.equal(tpl.vectors('GRAPHICS')[0]!.get('TYPE'), 'VNC');
    assert.equal(tpl.vectors('CONTEXT')[0]!.get('NETWORK'), 'YES');
    assert.equal(tpl.vectors('CONTEXT')[0]!.get('SSH_PUBLIC_KEY'), '$USER[SSH_PUBLIC_KEY]');
    // The MAC of the first NIC lay outside every address range: oneswap added one holding it.
    assert.ok(oned.network(netId)!.ars.length >= 2);

    const vm = oned.vm(result.vmId)!;
    assert.ok(vm, 'VM created');
    assert.deepEqual(vm.template.vectors('DISK').map((d) => d.get('IMAGE_ID')), result.imageIds.map(String), 'the VM uses the same images');
    for (const id of result.imageIds) assert.equal(oned.image(id)!.state, IMAGE_STATE.USED_PERS);

    assert.deepEqual(await listSnapshots(sim, cbtVm.moref), [], 'oneswap left a snapshot behind');
    const journals = await readdir(join(env.ONESWAP_STATE_DIR!, 'journal')).catch(() => []);
    assert.deepEqual(journals, []);
    // Both disks' copies refined the rates `plan estimate` expects of this host and datastore: the
    // CBT areas read (64 KiB blocks), in the time of each copy. The two disks were read at once, so
    // the rate of one disk alone is one sample (the later, whether it was the floor the shared
    // reads set or a read alone for most of its time), and the host and the machine each have both.
    const stored = await readCopyRates(env.ONESWAP_STATE_DIR!);
    const perDisk = events.filter((e) => e.type === 'disk' && e.state === 'done').map((e) => e.bytesDone as number);
    assert.equal(perDisk.reduce((a, b) => a + b, 0), 9 * MiB + 256 * 1024);
    const rates = Object.values(stored.rates);
    assert.deepEqual(rates.map((x) => [x.host, x.datastore, x.reader, x.how, x.count]), [['DC0_H0', 'LocalDS_0', 'folder', 'run', 1]]);
    assert.ok(perDisk.includes(rates[0]!.bytes), `${rates[0]!.bytes} is not one disk's bytes (${perDisk.join(', ')})`);
    const samples = (byLevel: Record<string, { count: number }> | undefined): number => Object.values(byLevel ?? {}).reduce((n, t) => n + t.count, 0);
    assert.deepEqual([samples(stored.hosts?.['DC0_H0']), samples(stored.total), Object.keys(stored.hosts ?? {})], [2, 2, ['DC0_H0']]);
    // A log file per run, named in the first event, holding every phase.
    const start = events.find((e) => e.type === 'run') as { logFile: string };
    const log = await readFile(start.logFile, 'utf8');
    for (const phase of ['precheck', 'placeholders', 'copy', 'convert skipped', 'build', 'cleanup']) assert.match(log, new RegExp(`mig-cbt: ${phase}`));
    assert.equal((await stat(start.logFile)).mode & 0o777, 0o600);
  });

  test('without CBT the whole disk is read and zeros still become holes', async () => {
    proxy.reset();
    const r = await oneswap(args(['mig-plain']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    const result = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; imageIds: number[] }).find((e) => e.type === 'result')!;
    const img = oned.image(result.imageIds[0]!)!;
    assert.equal(await imageDigest(img.source, plainVm.disks[0]!.sizeBytes), plainVm.disks[0]!.sha256);
    assert.ok((await stat(img.source)).blocks * 512 <= plainVm.disks[0]!.dataBytes + MiB);
    assert.ok(proxy.counters.down >= 64 * MiB);
  });

  test('--shutdown --keep-ip: the address VMware Tools reported while the VM ran is kept, after the shutdown too', async () => {
    const running = await createTestVm(sim, {
      name: 'mig-tools',
      cbt: true,
      disks: [{ sizeBytes: 8 * MiB, data: [{ offset: 0, length: 4096 }] }],
      nics: [{ network: 'VM Network', adapter: 'vmxnet3', mac: '00:50:56:01:02:03' }],
    });
    await powerOn(sim, running.moref);
    await setReportedAddress(sim, running.moref, '10.0.7.42');
    // Not converted: the guest's files say nothing, so only Tools' report can name the address.
    const r = await oneswap(args(['--shutdown', '--keep-ip', '--no-convert', 'mig-tools']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /10\.0\.7\.42 is the address VMware Tools reported/);
    const result = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; templateId: number }).find((e) => e.type === 'result')!;
    const [nic] = oned.template(result.templateId)!.template.vectors('NIC');
    assert.equal(nic!.get('MAC'), '00:50:56:01:02:03');
    // The address lay in no range: oneswap added a one-address IP4 range holding it and the MAC.
    const ar = oned.network(netId)!.ars.find((a) => a.ip === ipToNum('10.0.7.42'));
    assert.ok(ar, 'an address range holds the reported IP');
    assert.equal(ar.mac, macToNum('00:50:56:01:02:03'));
  });

  test('--keep-ip on a VM that is off and not converted: nothing names an address, the run says so and OpenNebula picks it', async () => {
    await createTestVm(sim, {
      name: 'mig-no-tools',
      disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: 4096 }] }],
      nics: [{ network: 'VM Network', adapter: 'vmxnet3' }],
    });
    const r = await oneswap(args(['--keep-ip', '--no-convert', 'mig-no-tools']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /--keep-ip: the guest's addresses are read during the conversion, this VM was not converted \(or is not Linux\), and VMware Tools reported none while it ran: OpenNebula picks the IPs/);
    assert.doesNotMatch(r.stdout, /is the address VMware Tools reported/);
    const result = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; templateId: number }).find((e) => e.type === 'result')!;
    const [nic] = oned.template(result.templateId)!.template.vectors('NIC');
    assert.equal(nic!.get('IP'), undefined, 'no IP asked for');
  });

  test('several VMs in one run, each isolated: one failing VM does not stop the others', async () => {
    const a = await createTestVm(sim, { name: 'multi-a', disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: MiB }] }], nics: [{ network: 'VM Network' }] });
    const b = await createTestVm(sim, { name: 'multi-b', disks: [{ sizeBytes: 4 * MiB, data: [{ offset: MiB, length: MiB }] }] });
    const r = await oneswap(args(['--parallel', '2', 'multi-a', 'no-such-vm', 'multi-b']), env);
    assert.equal(r.exitCode, 5, 'the exit code of the first failure');
    assert.match(r.stderr.trim().split('\n').pop()!, /^oneswap: 1 of 3 VMs failed: no-such-vm: /);
    const results = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; vm: string; ok: boolean; imageIds: number[] }).filter((e) => e.type === 'result');
    assert.deepEqual(results.map((x) => [x.vm, x.ok]).sort(), [['multi-a', true], ['multi-b', true], ['no-such-vm', false]]);
    for (const [vm, res] of [[a, results.find((x) => x.vm === 'multi-a')!], [b, results.find((x) => x.vm === 'multi-b')!]] as const) {
      assert.equal(await imageDigest(oned.image(res.imageIds[0]!)!.source, vm.disks[0]!.sizeBytes), vm.disks[0]!.sha256);
    }
  });

  const readersOf = (stdout: string): string[] =>
    stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; reader?: string }).filter((e) => e.type === 'reader').map((e) => e.reader!);
  const resultOf = (stdout: string): { imageIds: number[] } =>
    stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; imageIds: number[] }).find((e) => e.type === 'result')!;

  test('with VDDK (the stand-in): a powered-off VM and a --shutdown import read over NBD, only the allocated data travels', async () => {
    const vddk = ['--vddk-libdir', peers.vddk.libdir];
    // CBT off: block status still knows what is allocated.
    const off = await createTestVm(sim, { name: 'vddk-off', cbt: false, disks: [{ sizeBytes: 48 * MiB + 4096, data: [{ offset: 0, length: MiB }, { offset: 40 * MiB, length: 2 * MiB }] }], nics: [{ network: 'VM Network' }] });
    proxy.reset();
    const r = await oneswap(args([...vddk, 'vddk-off']), peers.vddkEnv);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(readersOf(r.stdout), ['vddk']);
    assert.match(r.stdout, /allocated areas \(NBD block status\)/);
    assert.equal(await imageDigest(oned.image(resultOf(r.stdout).imageIds[0]!)!.source, off.disks[0]!.sizeBytes), off.disks[0]!.sha256);
    assert.ok(proxy.counters.down < 3 * MiB + MiB, `${proxy.counters.down} bytes over the network for 3 MiB of data`);

    const before = await simStats(sim);
    const on = await createTestVm(sim, { name: 'vddk-on', cbt: true, powerOn: true, disks: [{ sizeBytes: 16 * MiB, data: [{ offset: 4 * MiB, length: 4 * MiB }] }], nics: [{ network: 'VM Network' }] });
    const s = await oneswap(args([...vddk, '--shutdown', 'vddk-on']), peers.vddkEnv);
    assert.equal(s.exitCode, 0, s.stderr);
    assert.deepEqual(readersOf(s.stdout), ['vddk']);
    assert.equal(await imageDigest(oned.image(resultOf(s.stdout).imageIds[0]!)!.source, on.disks[0]!.sizeBytes), on.disks[0]!.sha256);
    assert.deepEqual(await listSnapshots(sim, on.moref), []);
    assert.equal((await simStats(sim)).folderRefusals, before.folderRefusals);

    // nbdkit's open nfc plugin (the stand-in answers to that name too): chosen by auto when there
    // is no VDDK, and asked for by name; without it, --transport nfc is a usage error.
    const nfc = await createTestVm(sim, { name: 'nfc-off', cbt: true, disks: [{ sizeBytes: 8 * MiB, data: [{ offset: MiB, length: MiB }] }], nics: [{ network: 'VM Network' }] });
    const n = await oneswap(args(['nfc-off']), peers.vddkEnv);
    assert.equal(n.exitCode, 0, n.stderr);
    assert.deepEqual(readersOf(n.stdout), ['nfc']);
    assert.equal(await imageDigest(oned.image(resultOf(n.stdout).imageIds[0]!)!.source, nfc.disks[0]!.sizeBytes), nfc.disks[0]!.sha256);
    const missing = await oneswap(args(['--transport', 'nfc', '--name-prefix', 'x-', 'nfc-off']), env);
    assert.equal(missing.exitCode, 2, missing.stderr);
    assert.match(missing.stderr.trim(), /^oneswap: this nbdkit has no nfc plugin/m);
  });

  test('without VDDK a --shutdown import reads the powered-off disks through /folder; --transport folder on a running VM is refused up front', async () => {
    const on = await createTestVm(sim, { name: 'folder-on', cbt: true, powerOn: true, disks: [{ sizeBytes: 16 * MiB, data: [{ offset: 0, length: 2 * MiB }] }], nics: [{ network: 'VM Network' }] });
    const before = await simStats(sim);
    const r = await oneswap(args(['--shutdown', 'folder-on']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(readersOf(r.stdout), ['folder']);
    assert.equal(await imageDigest(oned.image(resultOf(r.stdout).imageIds[0]!)!.source, on.disks[0]!.sizeBytes), on.disks[0]!.sha256);
    assert.equal((await simStats(sim)).folderRefusals, before.folderRefusals, 'nothing was read before the guest was off');

    const warmVm = await createTestVm(sim, { name: 'folder-warm', cbt: true, powerOn: true, disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: 4096 }] }], nics: [{ network: 'VM Network' }] });
    const images = peers.imageIds().length;
    const w = await oneswap([...args(['--warm', '--transport', 'folder']), warmVm.name], env);
    assert.equal(w.exitCode, 2, w.stderr);
    assert.match(w.stderr.trim(), /^oneswap: --transport folder cannot read \[LocalDS_0\] folder-warm\/folder-warm\.vmdk: the VM runs, and ESXi refuses a file download of a running VM.s disks/m);
    assert.equal(peers.imageIds().length, images, 'nothing created');
  });

  test('a VM on vSAN: no flat file to download, so an export lease streams it (cold); --transport folder says why not', async () => {
    const vsan = sim.vsanDatastore!;
    const vm = await createTestVm(sim, {
      name: 'vsan-cold',
      datastore: vsan,
      cbt: true,
      disks: [{ sizeBytes: 24 * MiB + 1024, data: [{ offset: 0, length: 3 * MiB }, { offset: 24 * MiB - 64 * 1024, length: 64 * 1024 + 1024 }] }],
      nics: [{ network: 'VM Network' }],
    });
    const refused = await oneswap(args(['--transport', 'folder', 'vsan-cold']), env);
    assert.equal(refused.exitCode, 2, refused.stderr);
    assert.match(refused.stderr, new RegExp(`datastore ${vsan} is vsan, which keeps disks as objects, not files`));
    const before = await simStats(sim);
    proxy.reset();
    const r = await oneswap(args(['vsan-cold']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual(readersOf(r.stdout), ['lease']);
    assert.equal(await imageDigest(oned.image(resultOf(r.stdout).imageIds[0]!)!.source, vm.disks[0]!.sizeBytes), vm.disks[0]!.sha256);
    const after = await simStats(sim);
    assert.deepEqual(after.leases.slice(before.leases.length).map((l) => [l.state, l.end]), [['done', 'complete']]);
    assert.equal(after.folderRefusals, before.folderRefusals);
    // Random data does not compress: the stream is the allocated data plus the VMDK's own bytes.
    assert.ok(proxy.counters.down < vm.disks[0]!.dataBytes * 1.05 + MiB, `${proxy.counters.down} bytes over the network for ${vm.disks[0]!.dataBytes} bytes of data`);
  });
});
