// The vSphere client against the real simulator (govmomi vcsim + the project's vcsim-cbt
// extension): TLS, login, inventory of the default model, findVm, snapshots, CBT with real disk
// bytes, /folder range reads with the session cookie, and re-login after an idle timeout.
// Skipped (loudly) when the simulator is not built, except in CI or with ONESWAP_REQUIRE_PEERS=1.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import type { Extent, VSphereClient, VmDisk } from '../../lib/vsphere/index.js';
import { startVcsim, vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { client as fixtureClient, createTestVm, moref, ref as xmlRef, writeDiskData, type TestVm } from '../peers/vcsim/fixture.js';
import { refusal } from '../support/refusal.js';
import { connectTo } from '../support/vcsim-client.js';

const skip = vcsimSkip();

const KiB = 1024;
const MiB = 1024 * KiB;


/** Copies `extents` of a disk through /folder range reads into `target`. */
async function copyExtents(client: VSphereClient, url: string, extents: readonly Extent[], target: Buffer): Promise<void> {
  for (const e of extents) {
    let at = e.start;
    for await (const chunk of await client.openRange(url, e.start, e.start + e.length)) {
      (chunk as Buffer).copy(target, at);
      at += (chunk as Buffer).length;
    }
    assert.equal(at, e.start + e.length);
  }
}

/** The -flat extent URL of a disk, found by reading its descriptor over /folder. */
async function flatExtentUrl(client: VSphereClient, dcPath: string, disk: VmDisk): Promise<string> {
  const descriptor = await client.getText(client.datastoreUrl(dcPath, disk.datastoreName, disk.datastorePath));
  const extent = /^RW \d+ FLAT "([^"]+)" 0$/m.exec(descriptor)?.[1];
  assert.ok(extent, `no FLAT extent in descriptor:\n${descriptor}`);
  const dir = disk.datastorePath.includes('/') ? disk.datastorePath.slice(0, disk.datastorePath.lastIndexOf('/') + 1) : '';
  return client.datastoreUrl(dcPath, disk.datastoreName, dir + extent);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('vSphere client against vcsim', { skip }, () => {
  let sim: Vcsim;
  let client: VSphereClient;

  before(async () => {
    sim = await startVcsim();
    client = await connectTo(sim);
  });

  after(async () => {
    await client?.logout();
    await sim?.stop();
  });

  describe('login and TLS', () => {
    it('logs in, verifying the certificate against its CA', () => {
      assert.equal(client.apiVersion, '6.5');
      assert.equal(client.apiType, 'VirtualCenter');
      assert.equal(client.host, '127.0.0.1');
    });

    it('refuses a wrong password with an auth error that does not contain the password', async () => {
      const password = `wrong-${sim.password}`;
      const err = await refusal(connectTo(sim, { credentials: { user: sim.username, password } }));
      assert.equal(err.kind, 'auth');
      assert.equal(err.message, `vCenter 127.0.0.1 refused the login for user ${sim.username}: wrong user name or password`);
      assert.ok(!`${err.message} ${err.hint ?? ''} ${String(err.cause ?? '')}`.includes(password));
    });

    it('refuses an untrusted certificate and prints its SHA-256 thumbprint to pin', async () => {
      const err = await refusal(connectTo(sim, { tls: { kind: 'verify' } }));
      assert.equal(err.kind, 'connection');
      assert.ok(err.message.includes(sim.thumbprintSha256), err.message);
      assert.ok(err.message.includes(`--thumbprint ${sim.thumbprintSha256}`));
      assert.match(err.message, /--ca/);
    });

    it('accepts a pinned SHA-256 or SHA-1 thumbprint', async () => {
      for (const thumbprint of [sim.thumbprintSha256, sim.thumbprint.replace(/:/g, '').toLowerCase()]) {
        const c = await connectTo(sim, { tls: { kind: 'thumbprint', thumbprint } });
        await c.logout();
      }
    });

    it('refuses a wrong pin', async () => {
      const wrong = sim.thumbprintSha256.replace(/^../, (h) => (h === 'AA' ? 'BB' : 'AA'));
      const err = await refusal(connectTo(sim, { tls: { kind: 'thumbprint', thumbprint: wrong } }));
      assert.equal(err.kind, 'connection');
      assert.match(err.message, /not the pinned/);
    });
  });

  describe('inventory of the default model', () => {
    it('lists datacenters, clusters, hosts, datastores and networks', async () => {
      assert.deepEqual((await client.datacenters()).map((d) => [d.name, d.path]), [['DC0', '/DC0']]);
      assert.deepEqual((await client.clusters()).map((c) => [c.name, c.datacenter, c.hosts]), [['DC0_C0', 'DC0', 3]]);
      const hosts = await client.hosts();
      assert.equal(hosts.length, 4);
      assert.deepEqual(hosts.filter((h) => h.cluster === undefined).map((h) => h.name), ['DC0_H0']);
      assert.ok(hosts.every((h) => h.datacenter === 'DC0' && h.connectionState === 'connected'));
      const [ds, ...moreDs] = await client.datastores();
      assert.equal(moreDs.length, 0);
      assert.equal(ds?.name, 'LocalDS_0');
      assert.ok((ds?.capacityBytes ?? 0) > 0 && (ds?.freeBytes ?? -1) >= 0);
      assert.equal(ds?.url, sim.datastores['LocalDS_0']);
      const networks = await client.networks();
      assert.ok(networks.some((n) => n.name === 'VM Network' && n.kind === 'Network'));
      assert.ok(networks.some((n) => n.name === 'DC0_DVPG0' && n.kind === 'DistributedVirtualPortgroup'));
    });

    it('lists the 4 VMs with their hardware in a fixed number of round trips', async () => {
      const debug: string[] = [];
      const counted = await connectTo(sim, { logger: { warn: () => {}, debug: (m) => debug.push(m) } });
      try {
        debug.length = 0;
        const vms = await counted.vms();
        assert.deepEqual(vms.map((v) => v.name), ['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1', 'DC0_H0_VM0', 'DC0_H0_VM1']);
        // CreateContainerView, RetrievePropertiesEx (index), RetrievePropertiesEx (details), DestroyView.
        assert.equal(debug.filter((m) => m.startsWith('SOAP ')).length, 4, debug.join('\n'));
        for (const vm of vms) {
          assert.equal(vm.path, `/DC0/vm/${vm.name}`);
          assert.equal(vm.datacenter, 'DC0');
          assert.equal(vm.powerState, 'poweredOn');
          assert.equal(vm.firmware, 'bios');
          assert.equal(vm.guestId, 'otherGuest');
          assert.equal(vm.disks.length, 1);
          const [disk] = vm.disks;
          assert.equal(disk?.controller.kind, 'scsi');
          assert.equal(disk?.controller.model, 'ParaVirtualSCSIController');
          assert.equal(disk?.capacityBytes, MiB);
          assert.equal(disk?.fileName, `[LocalDS_0] ${vm.name}/disk1.vmdk`);
          assert.equal(disk?.datastoreName, 'LocalDS_0');
          assert.equal(disk?.thinProvisioned, true);
          assert.deepEqual(vm.nics.map((n) => [n.adapterType, n.network]), [['VirtualE1000', 'DC0_DVPG0']]);
          assert.match(vm.nics[0]?.macAddress ?? '', /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
          assert.match(vm.uuid, /^[0-9a-f-]{36}$/);
        }
        assert.deepEqual(vms.filter((v) => v.cluster === 'DC0_C0').map((v) => v.name), ['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1']);
        assert.deepEqual(vms.filter((v) => v.host === 'DC0_H0').map((v) => v.name), ['DC0_H0_VM0', 'DC0_H0_VM1']);
      } finally {
        await counted.logout();
      }
    });

    it('filters by name glob, datacenter, cluster and power state', async () => {
      assert.deepEqual((await client.vms({ name: 'DC0_H0_*' })).map((v) => v.name), ['DC0_H0_VM0', 'DC0_H0_VM1']);
      assert.deepEqual((await client.vms({ name: 'DC0_H0_VM1' })).map((v) => v.name), ['DC0_H0_VM1']);
      assert.equal((await client.vms({ datacenter: 'DC0' })).length, 4);
      assert.equal((await client.vms({ datacenter: 'DC9' })).length, 0);
      assert.deepEqual((await client.vms({ cluster: 'DC0_C0' })).map((v) => v.name), ['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1']);
      assert.equal((await client.vms({ powerState: 'poweredOff' })).length, 0);
    });

    it('finds a VM by name, inventory path and UUIDs; reads it by reference', async () => {
      const byName = await client.findVm('DC0_H0_VM0');
      assert.equal(byName.path, '/DC0/vm/DC0_H0_VM0');
      assert.deepEqual((await client.findVm('/DC0/vm/DC0_H0_VM0')).ref, byName.ref);
      assert.deepEqual((await client.findVm(byName.uuid)).ref, byName.ref);
      assert.deepEqual((await client.findVm(byName.instanceUuid.toUpperCase())).ref, byName.ref);
      assert.deepEqual((await client.findVm('DC0_H0_VM0', { datacenter: 'DC0' })).ref, byName.ref);
      assert.equal((await client.vm(byName.ref)).name, 'DC0_H0_VM0');
    });

    it('says how to list VMs when one is unknown', async () => {
      const err = await refusal(client.findVm('no-such-vm'));
      assert.equal(err.kind, 'not-found');
      assert.match(err.message, /no VM "no-such-vm"/);
      assert.match(err.message, /oneswap list/);
      const gone = await refusal(client.vm({ type: 'VirtualMachine', value: 'vm-999999' }));
      assert.equal(gone.kind, 'not-found');
    });
  });

  describe('snapshots and power', () => {
    it('creates, lists and removes a snapshot; reads its disks from its own config', async () => {
      const vm = await client.findVm('DC0_H0_VM1');
      assert.equal(vm.hasSnapshots, false);
      const snap = await client.createSnapshot(vm.ref, { name: 'oneswap-test', description: 'a & <b>' });
      assert.equal(snap.ref.type, 'VirtualMachineSnapshot');
      assert.equal(snap.name, 'oneswap-test');
      assert.equal(snap.description, 'a & <b>');
      assert.ok(snap.createTime !== '');
      assert.deepEqual(snap.disks?.map((d) => d.key), vm.disks.map((d) => d.key));

      const listed = await client.snapshots(vm.ref);
      assert.deepEqual(listed.map((s) => [s.ref.value, s.name, s.description]), [[snap.ref.value, 'oneswap-test', 'a & <b>']]);
      assert.deepEqual((await client.snapshotDisks(snap.ref)).map((d) => d.fileName), vm.disks.map((d) => d.fileName));
      assert.equal((await client.vm(vm.ref)).hasSnapshots, true);

      await client.removeSnapshot(snap.ref);
      assert.deepEqual(await client.snapshots(vm.ref), []);
      const err = await refusal(client.snapshotDisks(snap.ref));
      assert.equal(err.kind, 'not-found');
    });

    it('powers off, on, and shuts the guest down', async () => {
      const vm = await client.findVm('DC0_C0_RP0_VM1');
      await client.powerOff(vm.ref);
      assert.equal(await client.powerState(vm.ref), 'poweredOff');
      await client.powerOff(vm.ref); // already off: no-op
      await client.powerOn(vm.ref);
      assert.equal(await client.powerState(vm.ref), 'poweredOn');
      await client.shutdownGuest(vm.ref, 30_000);
      assert.equal(await client.powerState(vm.ref), 'poweredOff');
      await client.powerOn(vm.ref);
    });

    it('switches change tracking on and off', async () => {
      const vm = await client.findVm('DC0_H0_VM0');
      await client.setChangeTracking(vm.ref, true);
      assert.equal((await client.vm(vm.ref)).changeTrackingEnabled, true);
      await client.setChangeTracking(vm.ref, false);
      assert.equal((await client.vm(vm.ref)).changeTrackingEnabled, false);
    });
  });

  describe('/folder', () => {
    it('refuses a request without the session cookie (the client always sends it)', async () => {
      const vm = await client.findVm('DC0_H0_VM0');
      const url = new URL(client.datastoreUrl('/DC0', 'LocalDS_0', vm.disks[0]?.datastorePath ?? ''));
      const status = await new Promise<number>((resolve, reject) => {
        https
          .request({ host: sim.host, port: sim.port, path: url.pathname + url.search, method: 'HEAD', ca: sim.certPem, agent: false }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          })
          .on('error', reject)
          .end();
      });
      assert.equal(status, 401);
      assert.deepEqual(await client.head(url.toString()), { size: 0 });
    });

    it('names the file on 404', async () => {
      const err = await refusal(client.head(client.datastoreUrl('/DC0', 'LocalDS_0', 'nope/none.vmdk')));
      assert.equal(err.kind, 'not-found');
      assert.match(err.message, /\[LocalDS_0\] nope\/none\.vmdk/);
    });
  });

  describe('ambiguous names', () => {
    it('reports two VMs of the same name with their paths', async () => {
      const raw = await fixtureClient(sim);
      const folder = await raw.findByInventoryPath('DC0/vm');
      assert.ok(folder);
      const subRef = moref(await raw.call('CreateFolder', xmlRef(folder) + '<name>twins</name>'));
      const vm1 = (await client.findVm('DC0_C0_RP0_VM0')).ref;
      await raw.task('MoveIntoFolder_Task', xmlRef(subRef) + xmlRef(vm1, 'list'));
      await raw.task('Rename_Task', xmlRef(vm1) + '<newName>DC0_H0_VM0</newName>');
      try {
        const err = await refusal(client.findVm('DC0_H0_VM0'));
        assert.equal(err.kind, 'conflict');
        assert.match(err.message, /matches 2 VMs/);
        assert.ok(err.message.includes('/DC0/vm/DC0_H0_VM0'));
        assert.ok(err.message.includes('/DC0/vm/twins/DC0_H0_VM0'));
        assert.match(err.message, /inventory path or the UUID/);
        assert.deepEqual((await client.findVm('/DC0/vm/twins/DC0_H0_VM0')).ref, vm1);
      } finally {
        await raw.task('Rename_Task', xmlRef(vm1) + '<newName>DC0_C0_RP0_VM0</newName>');
        await raw.task('MoveIntoFolder_Task', xmlRef(folder) + xmlRef(vm1, 'list'));
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
// CBT with real disk bytes (vcsim-cbt extension + fixture)

const CAPACITY = 16 * MiB;
const REGIONS = [
  { offset: 0, length: 64 * KiB },
  { offset: 1 * MiB, length: 256 * KiB },
  { offset: CAPACITY - 64 * KiB, length: 64 * KiB },
];
const FULL_AREAS: Extent[] = [
  { start: 0, length: 65536 },
  { start: 1048576, length: 262144 },
  { start: 16711680, length: 65536 },
];
// Guest writes between the two snapshots: inside block 0, inside the block at 5 MiB, across the
// blocks at 8 MiB and 8 MiB + 64 KiB.
const WRITES = [
  { offset: 1000, length: 100, seed: 71 },
  { offset: 5 * MiB + 4096, length: 100, seed: 72 },
  { offset: 8 * MiB + 64 * KiB - 50, length: 100, seed: 73 },
];
const DELTA_AREAS: Extent[] = [
  { start: 0, length: 65536 },
  { start: 5242880, length: 65536 },
  { start: 8388608, length: 131072 },
];

async function cbtCycle(sim: Vcsim, client: VSphereClient, name: string): Promise<void> {
  // Powered off: the cycle reads the disk through /folder, which (as on ESXi) refuses the extents
  // of a running VM. Snapshots and CBT work the same either way.
  const testVm: TestVm = await createTestVm(sim, { name, disks: [{ sizeBytes: CAPACITY, data: REGIONS }], cbt: true });
  const [testDisk] = testVm.disks;
  assert.ok(testDisk);
  const vm = await client.findVm(name);
  assert.equal(vm.changeTrackingEnabled, true);
  const dcPath = (await client.datacenters())[0]?.path ?? '/DC0';

  // Round 0: snapshot, "*" areas, full copy.
  const snap1 = await client.createSnapshot(vm.ref, { name: 'oneswap-0' });
  const disk1 = snap1.disks?.[0];
  assert.ok(disk1);
  assert.equal(disk1.capacityBytes, CAPACITY);
  assert.match(disk1.changeId ?? '', /^52( [0-9a-f]{2}){7}-[0-9a-f]{2}( [0-9a-f]{2}){7}\/1$/);
  const full = await client.queryChangedDiskAreas(vm.ref, snap1.ref, disk1.key, '*', disk1.capacityBytes);
  assert.deepEqual(full, FULL_AREAS);
  const url = await flatExtentUrl(client, dcPath, disk1);
  const copy = Buffer.alloc(CAPACITY);
  await copyExtents(client, url, full, copy);
  assert.equal(sha256(copy), testDisk.sha256);

  // Round 1: record the changeId, remove the old snapshot, the guest writes, new snapshot, delta.
  const previousChangeId = disk1.changeId ?? '';
  await client.removeSnapshot(snap1.ref);
  for (const w of WRITES) await writeDiskData(testDisk.flatPath, w.offset, w.length, w.seed);
  const snap2 = await client.createSnapshot(vm.ref, { name: 'oneswap-1' });
  const disk2 = (await client.snapshotDisks(snap2.ref)).find((d) => d.key === disk1.key);
  assert.ok(disk2);
  assert.equal(disk2.changeId?.split('/')[0], previousChangeId.split('/')[0]);
  assert.match(disk2.changeId ?? '', /\/2$/);
  const delta = await client.queryChangedDiskAreas(vm.ref, snap2.ref, disk2.key, previousChangeId, disk2.capacityBytes);
  assert.deepEqual(delta, DELTA_AREAS);
  await copyExtents(client, url, delta, copy);
  assert.equal(sha256(copy), sha256(await readFile(testDisk.flatPath)));
  await client.removeSnapshot(snap2.ref);
}

describe('CBT against vcsim-cbt', { skip }, () => {
  it('full copy from "*" areas, then a delta since the previous changeId, byte-exact', async () => {
    const sim = await startVcsim();
    const client = await connectTo(sim);
    try {
      await cbtCycle(sim, client, 'cbt-vm');
    } finally {
      await client.logout();
      await sim.stop();
    }
  });

  it('pages QueryChangedDiskAreas when the server answers 1 MiB windows', async () => {
    const sim = await startVcsim({ cbtWindow: MiB });
    const debug: string[] = [];
    const client = await connectTo(sim, { logger: { warn: () => {}, debug: (m) => debug.push(m) } });
    try {
      await cbtCycle(sim, client, 'cbt-paged');
      // Two queries (full and delta), 16 windows each.
      assert.equal(debug.filter((m) => m.startsWith('SOAP QueryChangedDiskAreas ')).length, 32);
    } finally {
      await client.logout();
      await sim.stop();
    }
  });

  it('reports a QueryChangedDiskAreas fault as an error naming the call', async () => {
    const sim = await startVcsim();
    const client = await connectTo(sim);
    try {
      const vm = await client.findVm('DC0_H0_VM0');
      const snap = await client.createSnapshot(vm.ref, { name: 'no-cbt' });
      const disk = snap.disks?.[0];
      assert.ok(disk);
      const err = await refusal(client.queryChangedDiskAreas(vm.ref, snap.ref, disk.key, '*', disk.capacityBytes));
      assert.match(err.message, /QueryChangedDiskAreas/);
      await client.removeSnapshot(snap.ref);
    } finally {
      await client.logout();
      await sim.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Session expiry

describe('session idle timeout', { skip }, () => {
  let sim: Vcsim;
  before(async () => {
    sim = await startVcsim({ sessionIdleTimeout: '2s' });
  });
  after(async () => {
    await sim?.stop();
  });

  it('logs in again after the server expired the session, for SOAP and for /folder', async () => {
    const debug: string[] = [];
    const client = await connectTo(sim, { logger: { warn: () => {}, debug: (m) => debug.push(m) } });
    try {
      const vm = await client.findVm('DC0_H0_VM0');
      const url = client.datastoreUrl('/DC0', 'LocalDS_0', vm.disks[0]?.datastorePath ?? '');
      // vcsim checks for idle sessions every 2 s and expires those idle for more than 2 s.
      await sleep(5000);
      assert.equal((await client.vms()).length, 4);
      assert.ok(debug.some((m) => /session expired/.test(m)), 'the first call after expiry re-logged in');
      debug.length = 0;
      await sleep(5000);
      assert.deepEqual(await client.head(url), { size: 0 });
      assert.ok(debug.some((m) => m.startsWith('SOAP Login')), '/folder answered 401 and the client logged in again');
    } finally {
      await client.logout();
    }
  });

  it('keeps the session alive with the keep-alive call', async () => {
    const debug: string[] = [];
    const client = await connectTo(sim, { keepAliveMs: 500, logger: { warn: () => {}, debug: (m) => debug.push(m) } });
    try {
      await sleep(5000);
      assert.equal((await client.datacenters()).length, 1);
      assert.ok(debug.some((m) => m.startsWith('SOAP CurrentTime')));
      assert.ok(!debug.some((m) => /session expired/.test(m)), debug.join('\n'));
    } finally {
      await client.logout();
    }
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

