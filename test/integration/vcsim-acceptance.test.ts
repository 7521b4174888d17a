// Acceptance test of the vCenter test peer vcsim-cbt (test/peers/vcsim):
// the scenario of /work/shared/reference/vsphere-simulator.md section 7.8,
// plus CBT reset, QueryChangedDiskAreas paging and faults, TLS identity.
// Run: node --import tsx --test test/integration/vcsim-acceptance.test.ts

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { open, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { promisify } from 'node:util';
import { startVcsim, vcsimAvailable, VCSIM_BUILD_HINT, type Vcsim } from '../peers/vcsim/index.js';
import {
  child,
  children,
  createTestVm,
  devices,
  flatPathOf,
  listSnapshots,
  localPath,
  moref,
  num,
  powerOff,
  ref,
  setCbt,
  sha256File,
  text,
  VimClient,
  VimFault,
  writeDiskData,
  xmlEscape,
  xsiType,
  type MoRef,
  type Xml,
} from '../peers/vcsim/fixture.js';

const execFileP = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
const DISK = 16 * MiB;

async function hasQemuImg(): Promise<boolean> {
  try {
    await execFileP('qemu-img', ['--version']);
    return true;
  } catch {
    return false;
  }
}

// Without the peer the suite skips loudly, so a green run without the
// simulator is never mistaken for a full run; ONESWAP_REQUIRE_PEERS=1 fails.
const missing = !vcsimAvailable() ? `vcsim-cbt is not built (run ${VCSIM_BUILD_HINT})` : !(await hasQemuImg()) ? 'qemu-img is missing (apt-get install qemu-utils)' : '';
const required = process.env.ONESWAP_REQUIRE_PEERS === '1';
const skip = missing !== '' && !required;
if (skip) {
  process.stderr.write(`\n*** SKIPPING vcsim-cbt acceptance tests: ${missing} ***\n\n`);
  test('vcsim-cbt acceptance', { skip: missing }, () => undefined);
}

// --- helpers -----------------------------------------------------------------

interface Area {
  start: number;
  length: number;
}

async function snapshot(c: VimClient, vm: MoRef, name: string): Promise<MoRef> {
  const inner = `${ref(vm)}<name>${xmlEscape(name)}</name><description>acceptance</description><memory>false</memory><quiesce>false</quiesce>`;
  return moref(await c.task('CreateSnapshot_Task', inner));
}

async function removeSnapshot(c: VimClient, snap: MoRef): Promise<void> {
  await c.task('RemoveSnapshot_Task', `${ref(snap)}<removeChildren>false</removeChildren>`);
}

function diskOf(devs: Xml[], key: number): Xml {
  const d = devs.find((x) => xsiType(x) === 'VirtualDisk' && num(child(x, 'key')) === key);
  assert.ok(d, `disk ${key} present`);
  return d;
}

const changeIdOf = (disk: Xml): string => text(child(child(disk, 'backing'), 'changeId'));

async function qcda(c: VimClient, vm: MoRef, snap: MoRef, key: number, start: number, changeId: string): Promise<{ startOffset: number; length: number; areas: Area[] }> {
  const r = await c.call(
    'QueryChangedDiskAreas',
    `${ref(vm)}${ref(snap, 'snapshot')}<deviceKey>${key}</deviceKey><startOffset>${start}</startOffset><changeId>${xmlEscape(changeId)}</changeId>`,
  );
  return {
    startOffset: num(child(r, 'startOffset')),
    length: num(child(r, 'length')),
    areas: children(r, 'changedArea').map((a) => ({ start: num(child(a, 'start')), length: num(child(a, 'length')) })),
  };
}

/** The client loop of the vSphere contract: page until the capacity is reached. */
async function allAreas(c: VimClient, vm: MoRef, snap: MoRef, key: number, changeId: string, capacity: number): Promise<{ areas: Area[]; calls: number }> {
  const areas: Area[] = [];
  let calls = 0;
  for (let off = 0; off < capacity; ) {
    const r = await qcda(c, vm, snap, key, off, changeId);
    calls++;
    assert.equal(r.startOffset, off);
    assert.ok(r.length > 0);
    for (const a of r.areas) {
      const last = areas[areas.length - 1];
      if (last && last.start + last.length === a.start) last.length += a.length;
      else areas.push({ ...a });
    }
    off = r.startOffset + r.length;
  }
  return { areas, calls };
}

function folderUrl(sim: Vcsim, flatPath: string): string {
  const ds = sim.datastores['LocalDS_0'] ?? '';
  return `/folder/${relative(ds, flatPath).split('/').map(encodeURIComponent).join('/')}?dcPath=DC0&dsName=LocalDS_0`;
}

/** Copies areas of a datastore file into a local file with /folder Range GETs. */
async function copyAreas(c: VimClient, url: string, areas: Area[], target: string): Promise<void> {
  const fh = await open(target, 'r+');
  try {
    for (const a of areas) {
      const r = await c.http('GET', url, { headers: { range: `bytes=${a.start}-${a.start + a.length - 1}` } });
      assert.equal(r.status, 206, `Range GET ${a.start}+${a.length}`);
      assert.equal(r.headers['content-range'], `bytes ${a.start}-${a.start + a.length - 1}/${DISK}`);
      assert.equal(r.body.length, a.length);
      await fh.write(r.body, 0, a.length, a.start);
    }
  } finally {
    await fh.close();
  }
}

async function expectFault(p: Promise<unknown>, type: string): Promise<VimFault> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof VimFault, `expected a VimFault, got ${String(e)}`);
    assert.equal(e.faultType, type, e.message);
    return e;
  }
  assert.fail(`expected fault ${type}`);
}

// --- the scenario ------------------------------------------------------------

describe('vcsim-cbt acceptance (reference 7.8)', { skip }, () => {
  let sim: Vcsim;
  let c: VimClient;
  let work: string;
  let vm: MoRef;
  let key: number;
  let flat: string;
  let url: string;
  let snap1: MoRef;
  let changeId1: string;

  before(async () => {
    if (missing) assert.fail(`ONESWAP_REQUIRE_PEERS=1 but ${missing}`);
    sim = await startVcsim();
    c = await VimClient.login(sim);
    work = await mkdtemp(join(tmpdir(), 'oneswap-vcsim-acc-'));
  });

  after(async () => {
    await sim?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('announces a fresh certificate whose thumbprints match, and verifies TLS with it', async () => {
    const cert = new X509Certificate(sim.certPem);
    assert.equal(sim.thumbprint, cert.fingerprint);
    assert.equal(sim.thumbprintSha256, cert.fingerprint256);
    assert.notEqual(sim.thumbprint, '2C:11:ED:D7:13:87:7D:B5:74:18:B8:1C:42:C2:56:1F:0D:B9:5B:B9', 'not the Go test certificate');
    assert.ok(cert.checkIP('127.0.0.1'));
    // Without the certificate as CA the connection must fail verification.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const req = request({ host: sim.host, port: sim.port, path: '/about', agent: false }, resolve);
        req.on('error', reject);
        req.end();
      }),
      /self.signed|certificate/i,
    );
    assert.ok(sim.datastores['LocalDS_0']);
  });

  it('refuses a wrong password', async () => {
    await expectFault(VimClient.login(sim, sim.username, 'wrong'), 'InvalidLogin');
  });

  it('1-2: replaces a model VM disk with a 16 MiB flat VMDK, CBT on, capacity 16 MiB', async () => {
    vm = (await c.findByInventoryPath('DC0/vm/DC0_H0_VM0')) as MoRef;
    assert.ok(vm);
    const disk = (await devices(sim, vm)).find((d) => xsiType(d) === 'VirtualDisk');
    assert.ok(disk);
    key = num(child(disk, 'key'));
    assert.equal(num(child(disk, 'capacityInBytes')), num(child(disk, 'capacityInKB')) * 1024, 'capacityInBytes at start-up');
    const fileName = text(child(child(disk, 'backing'), 'fileName'));
    const descriptor = localPath(sim, fileName);
    flat = flatPathOf(descriptor);
    await rm(descriptor, { force: true });
    await rm(flat, { force: true });
    await execFileP('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', descriptor, '16M']);
    await writeDiskData(flat, 0, 64 * KiB, 1);
    await writeDiskData(flat, 1 * MiB, 256 * KiB, 2);
    await writeDiskData(flat, DISK - 64 * KiB, 64 * KiB, 3);
    url = folderUrl(sim, flat);

    const edit =
      `<deviceChange><operation>edit</operation><device xsi:type="VirtualDisk"><key>${key}</key>` +
      `<deviceInfo><label>${xmlEscape(text(child(child(disk, 'deviceInfo'), 'label')))}</label><summary></summary></deviceInfo>` +
      `<backing xsi:type="VirtualDiskFlatVer2BackingInfo"><fileName>${xmlEscape(fileName)}</fileName><diskMode>persistent</diskMode></backing>` +
      `<controllerKey>${text(child(disk, 'controllerKey'))}</controllerKey><unitNumber>${text(child(disk, 'unitNumber'))}</unitNumber>` +
      `<capacityInKB>${DISK / 1024}</capacityInKB></device></deviceChange>`;
    await c.task('ReconfigVM_Task', `${ref(vm)}<spec>${edit}<changeTrackingEnabled>true</changeTrackingEnabled></spec>`);
    const props = await c.props(vm, ['config.changeTrackingEnabled']);
    assert.equal(text(props['config.changeTrackingEnabled']), 'true');
    const after = diskOf(await devices(sim, vm), key);
    assert.equal(num(child(after, 'capacityInKB')), DISK / 1024);
    assert.equal(num(child(after, 'capacityInBytes')), DISK, 'capacityInBytes follows an edit of capacityInKB');
  });

  it('3: snapshot 1 carries changeId .../1 in its own config and on the VM', async () => {
    snap1 = await snapshot(c, vm, 'cycle-1');
    const disk = diskOf(await devices(sim, snap1), key);
    changeId1 = changeIdOf(disk);
    assert.match(changeId1, /^52( [0-9a-f]{2}){7}-[0-9a-f]{2}( [0-9a-f]{2}){7}\/1$/);
    assert.equal(num(child(disk, 'capacityInBytes')), DISK);
    assert.equal(changeIdOf(diskOf(await devices(sim, vm), key)), changeId1);
  });

  it('4-5: changeId "*" gives the three written regions; copying them reproduces the disk', async () => {
    const { areas, calls } = await allAreas(c, vm, snap1, key, '*', DISK);
    assert.equal(calls, 1);
    assert.deepEqual(areas, [
      { start: 0, length: 65536 },
      { start: 1048576, length: 262144 },
      { start: 16711680, length: 65536 },
    ]);
    const copy = join(work, 'copy.raw');
    await writeFile(copy, '');
    const fh = await open(copy, 'r+');
    await fh.truncate(DISK); // unreported areas are zeros
    await fh.close();
    await copyAreas(c, url, areas, copy);
    await removeSnapshot(c, snap1);
    assert.equal(await sha256File(copy), await sha256File(flat));
  });

  let snap2: MoRef;
  it('6-7: after guest writes, snapshot 2 (/2) reports exactly the changed blocks since /1', async () => {
    await writeDiskData(flat, 1000, 3000, 11); // inside the first block
    await writeDiskData(flat, 5 * MiB + 4096, 2048, 12); // inside the block at 5 MiB
    await writeDiskData(flat, 8 * MiB + 64 * KiB - 1000, 2000, 13); // across the two blocks at 8 MiB
    snap2 = await snapshot(c, vm, 'cycle-2');
    const changeId2 = changeIdOf(diskOf(await devices(sim, snap2), key));
    assert.equal(changeId2, changeId1.replace(/\/1$/, '/2'), 'same UUID part, next epoch');

    const { areas } = await allAreas(c, vm, snap2, key, changeId1, DISK);
    assert.deepEqual(areas, [
      { start: 0, length: 65536 },
      { start: 5242880, length: 65536 },
      { start: 8388608, length: 131072 },
    ]);
    const copy = join(work, 'copy.raw');
    await copyAreas(c, url, areas, copy);
    assert.equal(await sha256File(copy), await sha256File(flat), 'incremental copy equals the source');
  });

  it('8: /folder needs the session cookie (Basic is not accepted)', async () => {
    const anon = await c.http('GET', url, { cookie: '' });
    assert.equal(anon.status, 401);
    assert.match(String(anon.headers['www-authenticate']), /^Basic/);
    const basic = Buffer.from(`${sim.username}:${sim.password}`).toString('base64');
    assert.equal((await c.http('GET', url, { cookie: '', headers: { authorization: `Basic ${basic}` } })).status, 401);
    assert.equal((await c.http('HEAD', url)).status, 200);
  });

  it('7.3 faults of QueryChangedDiskAreas', async () => {
    const other = (await c.findByInventoryPath('DC0/vm/DC0_H0_VM1')) as MoRef;
    const otherSnap = await snapshot(c, other, 'other');
    await expectFault(qcda(c, vm, otherSnap, key, 0, '*'), 'ManagedObjectNotFound'); // snapshot of another VM
    await expectFault(qcda(c, vm, snap1, key, 0, '*'), 'ManagedObjectNotFound'); // removed snapshot
    await expectFault(qcda(c, vm, snap2, 999999, 0, '*'), 'NotFound'); // not a disk of that VM
    await expectFault(qcda(c, vm, snap2, key, DISK, '*'), 'InvalidArgument'); // past the end
    await expectFault(qcda(c, vm, snap2, key, 0, '52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1'), 'FileFault'); // never issued
    // CBT not enabled on the other VM.
    const otherKey = num(child((await devices(sim, other)).find((d) => xsiType(d) === 'VirtualDisk'), 'key'));
    await expectFault(qcda(c, other, otherSnap, otherKey, 0, '*'), 'FileFault');
    // A changeId of another disk.
    await setCbt(sim, other, true);
    const otherSnap2 = await snapshot(c, other, 'other-cbt');
    const otherChangeId = changeIdOf(diskOf(await devices(sim, otherSnap2), otherKey));
    assert.match(otherChangeId, /\/1$/);
    assert.notEqual(otherChangeId.split('/')[0], changeId1.split('/')[0]);
    await expectFault(qcda(c, vm, snap2, key, 0, otherChangeId), 'FileFault');
    // No session.
    const res = await c.raw(
      'QueryChangedDiskAreas',
      `${ref(vm)}${ref(snap2, 'snapshot')}<deviceKey>${key}</deviceKey><startOffset>0</startOffset><changeId>*</changeId>`,
      '',
    );
    assert.equal(res.status, 500);
    assert.match(res.body.toString(), /NotAuthenticated/);
    for (const s of [otherSnap, otherSnap2]) await removeSnapshot(c, s);
    assert.deepEqual(await listSnapshots(sim, other), []);
  });

  it('9: ExportVm refuses a running VM, then serves a streamOptimized VMDK with Range support', async () => {
    await removeSnapshot(c, snap2);
    assert.deepEqual(await listSnapshots(sim, vm), []);
    await expectFault(c.call('ExportVm', ref(vm)), 'InvalidPowerState');
    await powerOff(sim, vm);
    const lease = moref(await c.call('ExportVm', ref(vm)));
    assert.equal(lease.type, 'HttpNfcLease');
    const props = await c.props(lease, ['state', 'info']);
    assert.equal(text(props['state']), 'ready');
    const info = props['info'];
    assert.equal(num(child(info, 'totalDiskCapacityInKB')), DISK / 1024);
    const dev = child(info, 'deviceUrl');
    assert.equal(text(child(dev, 'sslThumbprint')), sim.thumbprint);
    const devUrl = text(child(dev, 'url'));
    assert.match(devUrl, /^https:\/\/\*\/nfc\/[^/]+\/disk-0\.vmdk$/);
    const path = new URL(devUrl.replace('*', `${sim.host}:${sim.port}`)).pathname;

    const got = await c.http('GET', path);
    assert.equal(got.status, 200);
    assert.equal(got.body.length, num(child(dev, 'fileSize')));
    assert.equal(got.body.subarray(0, 4).toString('latin1'), 'KDMV');
    assert.match(got.body.subarray(512, 2048).toString('latin1'), /createType="streamOptimized"/);
    const vmdk = join(work, 'export.vmdk');
    const raw = join(work, 'export.raw');
    await writeFile(vmdk, got.body);
    await execFileP('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', vmdk, raw]);
    assert.equal(await sha256File(raw), await sha256File(flat), 'exported disk equals the source');

    const part = await c.http('GET', path, { headers: { range: 'bytes=0-511' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 0-511/${got.body.length}`);
    assert.deepEqual(part.body, got.body.subarray(0, 512));

    await c.call('HttpNfcLeaseComplete', ref(lease));
    assert.equal((await c.http('GET', path)).status, 404);
  });

  it('CBT reset: switching change tracking off and on starts a new UUID part at /1', async () => {
    await setCbt(sim, vm, false);
    await setCbt(sim, vm, true);
    const s = await snapshot(c, vm, 'after-reset');
    const id = changeIdOf(diskOf(await devices(sim, s), key));
    assert.match(id, /^52 .*\/1$/);
    assert.notEqual(id.split('/')[0], changeId1.split('/')[0], 'new UUID part');
    await expectFault(qcda(c, vm, s, key, 0, changeId1.replace(/\/1$/, '/2')), 'FileFault'); // pre-reset changeId
    const { areas } = await allAreas(c, vm, s, key, '*', DISK);
    assert.ok(areas.length > 0);
    await removeSnapshot(c, s);
  });

  it('a fixture VM: CreateVM_Task with chosen hardware and real disk data', async () => {
    const t = await createTestVm(sim, {
      name: 'acc-fixture',
      firmware: 'efi',
      guestId: 'ubuntu64Guest',
      numCPUs: 2,
      coresPerSocket: 2,
      memoryMB: 2048,
      disks: [
        { sizeBytes: 4 * MiB, data: [{ offset: 0, length: 4096 }] },
        { sizeBytes: 2 * MiB, controller: 'sata', data: [{ offset: MiB, length: 100_000, seed: 7 }] },
      ],
      nics: [{ mac: '00:50:56:3f:00:01' }, { adapter: 'e1000e' }],
      cbt: true,
      powerOn: true,
      annotation: 'fixture',
    });
    assert.equal(t.disks.length, 2);
    const devs = await devices(sim, t.moref);
    for (const d of t.disks) {
      const dev = diskOf(devs, d.key);
      assert.equal(num(child(dev, 'capacityInBytes')), d.sizeBytes);
      assert.equal(await sha256File(d.flatPath), d.sha256);
    }
    const p = await c.props(t.moref, ['config.firmware', 'config.changeTrackingEnabled', 'runtime.powerState', 'config.hardware.numCPU']);
    assert.equal(text(p['config.firmware']), 'efi');
    assert.equal(text(p['config.changeTrackingEnabled']), 'true');
    assert.equal(text(p['runtime.powerState']), 'poweredOn');
    assert.ok(devs.some((d) => xsiType(d) === 'VirtualVmxnet3' && text(child(d, 'macAddress')) === '00:50:56:3f:00:01'));
    assert.ok(devs.some((d) => xsiType(d) === 'VirtualAHCIController'));
    const s = await snapshot(c, t.moref, 'fx');
    const d1 = t.disks[1];
    assert.ok(d1);
    const { areas } = await allAreas(c, t.moref, s, d1.key, '*', d1.sizeBytes);
    assert.deepEqual(areas, [{ start: MiB, length: 2 * 65536 }]);
    await removeSnapshot(c, s);
  });

  it('the simulator logged no panic or data race', () => {
    assert.doesNotMatch(sim.stderr(), /panic|DATA RACE/);
  });
});

describe('vcsim-cbt paging and -folder-auth=false', { skip }, () => {
  let sim: Vcsim;
  before(async () => {
    if (missing) assert.fail(`ONESWAP_REQUIRE_PEERS=1 but ${missing}`);
    sim = await startVcsim({ cbtWindow: MiB, folderAuth: false });
  });
  after(async () => {
    await sim?.stop();
  });

  it('10: with -cbt-window 1048576 the same areas come back over 16 calls', async () => {
    const c = await VimClient.login(sim);
    const t = await createTestVm(sim, {
      name: 'paging',
      disks: [{ sizeBytes: DISK, data: [{ offset: 0, length: 64 * KiB }, { offset: MiB, length: 256 * KiB }, { offset: DISK - 64 * KiB, length: 64 * KiB }] }],
      cbt: true,
    });
    const d = t.disks[0];
    assert.ok(d);
    const s = await snapshot(c, t.moref, 'paging');
    const first = await qcda(c, t.moref, s, d.key, 0, '*');
    assert.equal(first.length, MiB);
    assert.deepEqual(first.areas, [{ start: 0, length: 65536 }]);
    const { areas, calls } = await allAreas(c, t.moref, s, d.key, '*', DISK);
    assert.equal(calls, 16);
    assert.deepEqual(areas, [
      { start: 0, length: 65536 },
      { start: 1048576, length: 262144 },
      { start: 16711680, length: 65536 },
    ]);
    // -folder-auth=false: stock behaviour, no cookie needed.
    const r = await c.http('GET', folderUrl(sim, d.flatPath), { cookie: '', headers: { range: 'bytes=0-15' } });
    assert.equal(r.status, 206);
    assert.doesNotMatch(sim.stderr(), /panic|DATA RACE/);
  });
});
