// End to end with a real guest: a Debian 12 disk built as a VMware guest (test/peers/guest) is
// imported from the vCenter simulator, converted in place by virt-v2v-in-place on the image files,
// and booted under qemu (TCG) from virtio-blk. The unconverted copy must not boot that way; a
// conversion that fails must leave the images byte-identical to the copy; `oneswap convert` must
// then finish the job without copying again. Slow (about 10 minutes without KVM): conversion and
// boots are emulated.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { applianceEnv } from '../../lib/convert/appliance.js';
import { vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { createTestVm, sha256File, type TestVm } from '../peers/vcsim/fixture.js';
import { guestSkip, testGuest, bootCheck } from '../peers/guest/index.js';
import type { Oned } from '../peers/one/index.js';
import type { TcpProxy } from '../peers/net/tcp-proxy.js';
import { oneswap } from '../peers/cli.js';
import { startMigrationPeers, type MigrationPeers } from '../peers/migration.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const skip = vcsimSkip() || guestSkip();

interface Event {
  type: string;
  phase?: string;
  state?: string;
  detail?: string;
  level?: string;
  message?: string;
  step?: string;
  ok?: boolean;
  imageIds?: number[];
  templateId?: number;
  logFile?: string;
}
const events = (stdout: string): Event[] => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Event);
const resultOf = (stdout: string): Event => events(stdout).find((e) => e.type === 'result')!;

describe('guest conversion in place on the image files', { skip, timeout: 40 * 60_000 }, () => {
  let peers: MigrationPeers;
  let sim: Vcsim;
  let oned: Oned;
  let proxy: TcpProxy;
  let env: Record<string, string>;
  let guest: string;
  let retried: TestVm;
  let contextDeb: string;

  /** The shared import arguments, converting (the peers' default is --no-convert). */
  const importArgs = (extra: string[]): string[] => [...peers.importArgs().filter((a) => a !== '--no-convert'), ...extra];

  before(async () => {
    guest = await testGuest();
    peers = await startMigrationPeers('convert');
    ({ sim, oned, proxy, env } = peers);
    oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 16 }] });
    const guestVm = (name: string, extraDisks: Array<{ sizeBytes: number; data: Array<{ offset: number; length: number }> }> = []) =>
      createTestVm(sim, {
        name,
        guestId: 'debian12_64Guest',
        firmware: 'bios',
        numCPUs: 2,
        memoryMB: 1024,
        disks: [{ sizeBytes: 3 * GiB, fromRaw: guest, controller: 'pvscsi' }, ...extraDisks],
        nics: [{ network: 'VM Network', adapter: 'vmxnet3' }],
      });
    retried = await guestVm('deb-retry', [{ sizeBytes: 64 * MiB, data: [{ offset: 8 * MiB, length: MiB }] }]);
    // A real (tiny) package standing in for one-context.
    const pkg = join(peers.work, 'ctx-pkg');
    await mkdir(join(pkg, 'DEBIAN'), { recursive: true });
    await mkdir(join(pkg, 'usr', 'share', 'oneswap-test'), { recursive: true });
    await writeFile(join(pkg, 'DEBIAN', 'control'), 'Package: oneswap-test-context\nVersion: 1.0\nArchitecture: all\nMaintainer: oneswap tests <tests@oneswap.invalid>\nDescription: stands in for one-context\n');
    await writeFile(join(pkg, 'usr', 'share', 'oneswap-test', 'marker'), 'installed\n');
    contextDeb = join(peers.work, 'oneswap-test-context_1.0_all.deb');
    await execa('dpkg-deb', ['--build', '--root-owner-group', pkg, contextDeb]);
  });
  after(async () => {
    await peers?.stop();
  });

  // One real conversion and one boot of it carry every claim of this file: a conversion costs
  // minutes under TCG, so the failed import, `oneswap convert` and the resumed import share it.
  // (A fresh import converting in the same run: from vCenter through a plan run on Ceph in
  // datastores.test.ts, through the marketplace driver in market-driver.test.ts, from an OVA with
  // the guest network in guest-network.test.ts.)
  test('a conversion that fails leaves the images as copied; `oneswap convert` then converts in place, only the changes written, with the additions, and the result boots on virtio; the import resumed builds the template from the guest facts', async () => {
    // The libvirt backend needs a libvirtd this machine does not run: the appliance cannot start.
    const failed = await oneswap(importArgs(['deb-retry']), { ...env, LIBGUESTFS_BACKEND: 'libvirt' }, 20 * 60_000);
    assert.equal(failed.exitCode, 10, failed.stderr);
    const line = failed.stderr.trim().split('\n').at(-1)!;
    assert.match(line, /^oneswap: guest conversion failed: the libguestfs appliance did not start: .*; full log: (\S+)/);
    assert.match(line, /libguestfs-test-tool/, 'the error says what to do');
    const convLog = /full log: (\S+?);?\s/.exec(line)![1]!;
    assert.ok((await stat(convLog)).size > 0, 'the conversion log exists');
    const [bootId, dataId] = resultOf(failed.stdout).imageIds!;
    assert.ok(bootId !== undefined && dataId !== undefined, 'the images of a failed conversion are kept');
    const image = oned.image(bootId)!;
    assert.equal(image.template.get('ONESWAP_STATE'), 'COPIED');
    assert.equal(await sha256File(image.source), retried.disks[0]!.sha256, 'the image is byte-identical to the source disk');
    assert.equal(await sha256File(oned.image(dataId)!.source), retried.disks[1]!.sha256);
    assert.equal(peers.templateIds().length, 0, 'no template for an unconverted guest');

    // The proof the conversion matters: the copy as it is does not boot from virtio-blk.
    const before = await bootCheck(image.source, { format: 'raw', bus: 'virtio', workDir: peers.work });
    assert.equal(before.outcome, 'initramfs-shell', `unconverted guest on virtio: ${before.console.slice(-500)}`);

    proxy.reset();
    const converted = await oneswap(
      ['convert', '--image', `${bootId},${dataId}`, '--context-package', contextDeb, '--guest-agent', '--endpoint', oned.endpoint, '--progress', 'json'],
      env,
      20 * 60_000,
    );
    assert.equal(converted.exitCode, 0, converted.stderr);
    assert.equal(proxy.counters.down, 0, 'oneswap convert reads nothing from vCenter');
    const ev = events(converted.stdout);
    const phases = ev.filter((e) => e.type === 'phase' && e.phase === 'convert');
    assert.deepEqual(phases.map((e) => e.state), ['start', 'done']);
    assert.match(phases[1]!.detail!, /Debian GNU\/Linux 12.*virtio-blk, virtio-net/);
    assert.ok(ev.some((e) => e.type === 'conversion' && e.state === 'step' && /^Converting .* to run on KVM$/.test(e.step ?? '')), 'virt-v2v steps reach the progress stream');
    // In place: the conversion wrote a small part of the 3 GiB disk, and the data disk not at all.
    const written = /(\d+) bytes written into the images/.exec(phases[1]!.detail!)!;
    assert.ok(Number(written[1]) < 512 * MiB, `conversion wrote ${written[1]} bytes`);
    const after = oned.image(bootId)!;
    assert.ok((await stat(after.source)).blocks * 512 < 2 * GiB, 'the image stays sparse');
    assert.equal(await sha256File(oned.image(dataId)!.source), retried.disks[1]!.sha256, 'the data disk is untouched');
    assert.equal(after.template.get('ONESWAP_STATE'), 'CONVERTED');
    assert.equal(after.template.get('ONESWAP_GUEST_VIRTIO_BLK'), 'YES');
    assert.equal(after.template.get('ONESWAP_GUEST_DISTRO'), 'debian');
    assert.equal(after.template.get('ONESWAP_GUEST_FIRMWARE'), 'bios', 'no EFI system partition on an MBR/grub guest');
    assert.equal(after.template.get('DEV_PREFIX'), 'vd');
    assert.notEqual(await sha256File(after.source), retried.disks[0]!.sha256, 'the conversion was committed into the image');
    // The additions wait in the guest for its first boot.
    const look = await execa('guestfish', ['--ro', '--format=raw', '-a', after.source, '-i'], {
      input: 'is-file /var/lib/oneswap/oneswap-test-context_1.0_all.deb\nglob-expand /usr/lib/virt-sysprep/scripts/*\n',
      env: await applianceEnv(),
    });
    const [isFile, ...scripts] = look.stdout.trim().split('\n');
    assert.equal(isFile, 'true', 'the context package is in the guest');
    assert.ok(scripts.some((f) => /oneswap-test-context|dpkg/.test(f)) && scripts.some((f) => /qemu-guest-agent/.test(f)), `first-boot scripts: ${scripts.join(', ')}`);

    const boot = await bootCheck(after.source, { format: 'raw', bus: 'virtio', workDir: peers.work });
    assert.equal(boot.outcome, 'login', `converted guest on virtio: ${boot.console.slice(-500)}`);

    // The same import again resumes: nothing copied, nothing converted, the template follows the guest.
    proxy.reset();
    const resumed = await oneswap(importArgs(['--guest-agent', 'deb-retry']), env, 10 * 60_000);
    assert.equal(resumed.exitCode, 0, resumed.stderr);
    assert.ok(proxy.counters.down < MiB, `${proxy.counters.down} bytes read on resume`);
    const rev = events(resumed.stdout);
    const conv = rev.find((e) => e.type === 'phase' && e.phase === 'convert' && e.state === 'done')!;
    assert.match(conv.detail!, /already converted/);
    const result = resultOf(resumed.stdout);
    assert.deepEqual(result.imageIds, [bootId, dataId]);
    const tpl = oned.template(result.templateId!)!.template;
    assert.deepEqual(tpl.vectors('DISK').map((d) => [d.get('IMAGE_ID'), d.get('DEV_PREFIX')]), [[String(bootId), 'vd'], [String(dataId), 'vd']]);
    assert.equal(tpl.vectors('NIC')[0]!.get('MODEL'), 'virtio');
    assert.equal(tpl.vectors('OS')[0]!.get('SD_DISK_BUS'), undefined);
    assert.equal(tpl.get('LOGO'), 'images/logos/debian.png');
    assert.match(tpl.get('DESCRIPTION')!, /Debian GNU\/Linux 12/);
    assert.equal(tpl.get('ONESWAP_GUEST_OSINFO'), 'debian12');
    assert.equal(tpl.vectors('FEATURES')[0]!.get('GUEST_AGENT'), 'YES');
    // The run log of this VM and run is kept.
    const runLog = await readFile(rev.find((e) => e.type === 'run')!.logFile!, 'utf8');
    assert.match(runLog, /deb-retry: convert done/);
  });

  test('a data-only VM is not converted, with a notice, and still imported', async () => {
    await createTestVm(sim, { name: 'data-only', guestId: 'otherGuest', disks: [{ sizeBytes: 64 * MiB, data: [{ offset: 0, length: 4 * MiB }] }] });
    const r = await oneswap(importArgs(['data-only']), env, 10 * 60_000);
    assert.equal(r.exitCode, 0, r.stderr);
    const ev = events(r.stdout);
    const conv = ev.find((e) => e.type === 'phase' && e.phase === 'convert' && e.state !== 'start')!;
    assert.match(conv.detail!, /no operating system found/);
    assert.ok(ev.some((e) => e.type === 'log' && e.level === 'warn' && /data-only VM, not converted/.test(e.message ?? '')));
    const tpl = oned.template(resultOf(r.stdout).templateId!)!.template;
    assert.equal(tpl.vectors('DISK')[0]!.get('DEV_PREFIX'), 'sd');
  });
});
