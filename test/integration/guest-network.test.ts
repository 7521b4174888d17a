// The migrated guest comes up on the network with the identity it had, when that identity is a
// static address: a variant of the Debian test guest with ens192 on a fixed address is imported
// from an OVA with --keep-ip into the OpenNebula simulator and converted for real; the converted
// image is booted under qemu with a virtio NIC carrying the MAC its OpenNebula VM got, on qemu's
// user-mode network, and the guest's own report on the serial console (test/peers/guest/build.sh)
// must show ens192 with its static address. The DHCP case (the demo OVA itself, and the control
// without oneswap's network step) is ova-import.test.ts's converted demo OVA: one conversion of
// that guest serves both.
// The guest goes into a qcow2 datastore whose files live on a BRIDGE_LIST host (the bridge peer),
// out of oneswap's local reach: its copy and its conversion go through qemu-nbd on that host, and
// its boot proves a guest converted in place on a qcow2 image.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { applianceEnv } from '../../lib/convert/appliance.js';
import { buildOva, ovaToolsSkip } from '../peers/ova/index.js';
import { startOned, type Oned } from '../peers/one/index.js';
import { oneswap } from '../peers/cli.js';
import { bridgeSkip, startBridge, type Bridge } from '../peers/bridge/index.js';
import { bootCheck, guestSkip, testGuest } from '../peers/guest/index.js';

interface Event {
  type: string;
  level?: string;
  message?: string;
  imageIds?: number[];
  templateId?: number;
  vmId?: number;
}
const events = (stdout: string): Event[] => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Event);
const guestfish = async (args: string[]) => execa('guestfish', args, { env: await applianceEnv() });

const STATIC_INTERFACES = `auto lo
iface lo inet loopback

allow-hotplug ens192
iface ens192 inet static
    address 10.0.2.50
    netmask 255.255.255.0
    gateway 10.0.2.2
    dns-nameservers 10.0.2.3
`;

describe('the migrated guest comes up on the network', { skip: ovaToolsSkip() || guestSkip(), timeout: 40 * 60_000 }, () => {
  let work: string;
  let oned: Oned;
  let env: Record<string, string>;
  let dsId: number;
  let qcowDs: number;
  let qcowBase: string | undefined;
  let bridge: Bridge | undefined;
  let staticNet: number;
  let staticOva: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-guest-net-'));
    const guest = await testGuest();
    // The static variant: the same guest with ens192 on a fixed address of qemu's user network.
    const raw = join(work, 'static.raw');
    await execa('cp', ['--sparse=always', guest, raw]);
    await guestfish(['--format=raw', '-a', raw, '-i', 'write', '/etc/network/interfaces', STATIC_INTERFACES]);
    staticOva = (
      await buildOva(
        {
          name: 'static-guest',
          cpus: 1,
          memoryMiB: 1024,
          guestId: 'debian12_64Guest',
          scsiModel: 'VirtualSCSI',
          nics: [{ network: 'Static Net', adapter: 'vmxnet3', mac: '00:50:56:8a:00:02' }],
          disks: [{ raw }],
        },
        join(work, 'static.ova'),
      )
    ).ova;
    await rm(raw);

    // The static guest goes into a qcow2 datastore whose files live on a BRIDGE_LIST host: its
    // conversion runs over qemu-nbd there (and a boot proves the qcow2 image), at no extra cost.
    bridge = bridgeSkip() ? undefined : await startBridge({ hosts: ['bridge1'] });
    oned = await startOned({ asyncDelayMs: 20, ...(bridge ? { driverEnv: { PATH: bridge.env().PATH ?? '' } } : {}) });
    dsId = await oned.createDatastore({ name: 'images', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared' });
    qcowDs = await oned.createDatastore({ name: 'qcow2', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'qcow2', ...(bridge ? { template: { BRIDGE_LIST: 'bridge1', STAGING_DIR: bridge.stagingDir }, noMonitor: true } : {}) });
    if (bridge) {
      qcowBase = oned.datastore(qcowDs)!.basePath.replace(/\/+$/, '');
      await mkdir(qcowBase, { recursive: true });
      await bridge.grant(qcowBase, 'rw');
      await oned.monitorDatastore(qcowDs);
    }
    // The static guest's address lies in this range: --keep-ip asks for it, and the NIC gets the range's MAC for it.
    staticNet = oned.createNetwork({ name: 'Static Net', bridge: 'br1', ars: [{ type: 'IP4', ip: '10.0.2.10', size: 100 }] });
    const auth = join(work, 'one_auth');
    await writeFile(auth, `${oned.adminSession}\n`, { mode: 0o600 });
    env = { PATH: `${bridge ? `${bridge.pathDir}:` : ''}${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: work, ONE_AUTH: auth, ONESWAP_STATE_DIR: join(work, 'state') };
  });

  after(async () => {
    await oned?.stop();
    await bridge?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const importOva = async (ova: string, extra: string[], ds = dsId): Promise<{ result: Event; logs: Event[] }> => {
    // The bridged datastore's files are out of oneswap's reach here: only the bridge host has them.
    const hide = ds === qcowDs && qcowBase ? { hide: [qcowBase] } : {};
    const r = await oneswap(['import', '--ova', ova, '--datastore', String(ds), '--endpoint', oned.endpoint, '--instantiate', '--progress', 'json', ...extra], env, 20 * 60_000, hide);
    assert.equal(r.exitCode, 0, r.stderr);
    const all = events(r.stdout);
    return { result: all.find((e) => e.type === 'result')!, logs: all.filter((e) => e.type === 'log') };
  };

  test('static, --keep-ip, into a qcow2 datastore on a bridge host: OpenNebula leases the guest its own address, the guest is bound to the MAC that lease has, and ens192 has the address on KVM', async () => {
    const { result, logs } = await importOva(staticOva, ['--keep-ip'], qcowDs);
    const img = oned.image(result.imageIds![0]!)!;
    assert.equal(img.format, 'qcow2');
    await execa('qemu-img', ['check', '-q', '-f', 'qcow2', img.source]);
    if (bridge) assert.ok((await bridge.sessions()).some((s) => s.command.includes('qemu-nbd') && s.command.includes(img.source)), 'the bridge host served the image');
    assert.equal(img.template.get('ONESWAP_GUEST_NETWORK'), '0 ens192 static addr=10.0.2.50 mac=02:00:0a:00:02:32');
    const t = oned.template(result.templateId!)!.template;
    const nic = t.vectors('NIC')[0]!;
    assert.deepEqual([nic.get('NETWORK_ID'), nic.get('IP'), nic.get('MAC')], [String(staticNet), '10.0.2.50', undefined], 'the NIC asks for the IP (OpenNebula allows an IP or a MAC)');
    assert.equal(t.vectors('CONTEXT')[0]!.get('NETWORK'), undefined, "contextualization does not rewrite the guest's static configuration");
    assert.match(logs.map((e) => e.message ?? '').join('\n'), /keeps IP 10\.0\.2\.50 from address range 0 of network Static Net \(with that range's MAC 02:00:0a:00:02:32\)/);

    const vmNic = oned.vm(result.vmId!)!.template.vectors('NIC')[0]!;
    assert.deepEqual([vmNic.get('IP'), vmNic.get('MAC')], ['10.0.2.50', '02:00:0a:00:02:32']);
    const boot = await bootCheck(img.source, { format: 'qcow2', bus: 'virtio', workDir: work, nic: { mac: vmNic.get('MAC')! } });
    assert.equal(boot.outcome, 'login', `booted to ${boot.outcome} after ${boot.seconds} s:\n${boot.console.slice(-1500)}`);
    assert.deepEqual(boot.network?.links, ['ens192'], boot.console.slice(-800));
    assert.equal(boot.network?.ipv4.get('ens192'), '10.0.2.50/24', boot.console.slice(-800));
  });
});
