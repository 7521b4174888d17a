// Acceptance test of the vCenter test peer vcsim-cbt (test/peers/vcsim):
// the scenario of /work/shared/reference/vsphere-simulator.md section 7.8,
// plus CBT reset, QueryChangedDiskAreas paging and faults, TLS identity.
// Run: node --import tsx --test test/integration/vcsim-acceptance.test.ts

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { open, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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
  powerOn,
  pseudoRandom,
  ref,
  setCbt,
  sha256File,
  simStats,
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

/** QueryChangedDiskAreas; snap undefined = against the current disk (powered-off VMs only). */
async function qcda(c: VimClient, vm: MoRef, snap: MoRef | undefined, key: number, start: number, changeId: string): Promise<{ startOffset: number; length: number; areas: Area[] }> {
  const r = await c.call(
    'QueryChangedDiskAreas',
    `${ref(vm)}${snap ? ref(snap, 'snapshot') : ''}<deviceKey>${key}</deviceKey><startOffset>${start}</startOffset><changeId>${xmlEscape(changeId)}</changeId>`,
  );
  return {
    startOffset: num(child(r, 'startOffset')),
    length: num(child(r, 'length')),
    areas: children(r, 'changedArea').map((a) => ({ start: num(child(a, 'start')), length: num(child(a, 'length')) })),
  };
}

/** The client loop of the vSphere contract: page until the capacity is reached. */
async function allAreas(c: VimClient, vm: MoRef, snap: MoRef | undefined, key: number, changeId: string, capacity: number): Promise<{ areas: Area[]; calls: number }> {
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

function folderUrl(sim: Vcsim, localFile: string, dsName = 'LocalDS_0'): string {
  const ds = sim.datastores[dsName] ?? '';
  return `/folder/${relative(ds, localFile).split('/').map(encodeURIComponent).join('/')}?dcPath=DC0&dsName=${dsName}`;
}

/** GET /nfc-disk/<op> (the VDDK stand-in's data path). */
function nfcDisk(c: VimClient, op: 'info' | 'extents' | 'read', q: { vm: MoRef; file: string; snapshot?: MoRef }, opts: { range?: string; cookie?: string } = {}) {
  const params = new URLSearchParams({ vm: q.vm.value, file: q.file, ...(q.snapshot ? { snapshot: q.snapshot.value } : {}) });
  return c.http('GET', `/nfc-disk/${op}?${params}`, { ...(opts.range ? { headers: { range: opts.range } } : {}), ...(opts.cookie !== undefined ? { cookie: opts.cookie } : {}) });
}

/** Copies areas of a snapshot's disk into a local file through /nfc-disk/read Range GETs. */
async function copyAreas(c: VimClient, q: { vm: MoRef; file: string; snapshot?: MoRef }, areas: Area[], target: string, capacity = DISK): Promise<void> {
  const fh = await open(target, 'r+');
  try {
    for (const a of areas) {
      const r = await nfcDisk(c, 'read', q, { range: `bytes=${a.start}-${a.start + a.length - 1}` });
      assert.equal(r.status, 206, `Range GET ${a.start}+${a.length}`);
      assert.equal(r.headers['content-range'], `bytes ${a.start}-${a.start + a.length - 1}/${capacity}`);
      assert.equal(r.body.length, a.length);
      await fh.write(r.body, 0, a.length, a.start);
    }
  } finally {
    await fh.close();
  }
}

/** Polls an export lease until it leaves `initializing`; returns its state. */
async function leaseSettled(c: VimClient, lease: MoRef): Promise<string> {
  for (let i = 0; i < 400; i++) {
    const state = text((await c.props(lease, ['state']))['state']);
    if (state !== 'initializing') return state;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`lease ${lease.value} stays initializing`);
}

/** The download path of a lease's disk N, its '*' host replaced. */
async function leaseDiskPath(c: VimClient, sim: Vcsim, lease: MoRef, n = 0): Promise<{ path: string; dev: Xml; info: Xml }> {
  const info = (await c.props(lease, ['info']))['info'];
  const dev = children(info, 'deviceUrl')[n];
  assert.ok(dev, `deviceUrl ${n}`);
  const url = text(child(dev, 'url'));
  assert.match(url, new RegExp(`^https://\\*/nfc/${lease.value}/disk-${n}\\.vmdk$`));
  return { path: new URL(url.replace('*', `${sim.host}:${sim.port}`)).pathname, dev, info };
}

/** Converts a downloaded streamOptimized VMDK to raw and returns its sha256. */
async function rawSha256(vmdkBytes: Buffer, dir: string): Promise<string> {
  const vmdk = join(dir, `dl-${process.hrtime.bigint()}.vmdk`);
  const raw = `${vmdk}.raw`;
  await writeFile(vmdk, vmdkBytes);
  await execFileP('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', vmdk, raw]);
  const sum = await sha256File(raw);
  await rm(vmdk, { force: true });
  await rm(raw, { force: true });
  return sum;
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
  let fileName: string;
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
    assert.deepEqual(Object.keys(sim.datastores), ['LocalDS_0'], 'one datastore by default');
    assert.equal(sim.vsanDatastore, undefined);
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
    fileName = text(child(child(disk, 'backing'), 'fileName'));
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

  it('4-5: changeId "*" gives the three written regions; copying them (NFC, snapshot) reproduces the disk', async () => {
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
    await copyAreas(c, { vm, file: fileName, snapshot: snap1 }, areas, copy);
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
    await copyAreas(c, { vm, file: fileName, snapshot: snap2 }, areas, copy);
    assert.equal(await sha256File(copy), await sha256File(flat), 'incremental copy equals the source');
  });

  it('8: /folder needs the session cookie (Basic is not accepted); a running VM\'s extent is locked, its descriptor is not', async () => {
    const anon = await c.http('GET', url, { cookie: '' });
    assert.equal(anon.status, 401);
    assert.match(String(anon.headers['www-authenticate']), /^Basic/);
    const basic = Buffer.from(`${sim.username}:${sim.password}`).toString('base64');
    assert.equal((await c.http('GET', url, { cookie: '', headers: { authorization: `Basic ${basic}` } })).status, 401);
    const before = await simStats(sim);
    const rel = relative(sim.datastores['LocalDS_0'] ?? '', flat);
    const locked = await c.http('GET', url, { headers: { range: 'bytes=0-511' } });
    assert.equal(locked.status, 500);
    assert.equal(locked.body.toString(), `Cannot open file "[LocalDS_0] ${rel}": it is locked by a running virtual machine (DC0_H0_VM0)`);
    assert.equal((await c.http('HEAD', url)).status, 500);
    const desc = await c.http('GET', folderUrl(sim, localPath(sim, fileName)));
    assert.equal(desc.status, 200);
    assert.match(desc.body.toString(), /createType="monolithicFlat"/);
    const after = await simStats(sim);
    assert.equal(after.folderRefusals - before.folderRefusals, 2);
    assert.equal(after.folderBytes - before.folderBytes, desc.body.length);
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

  it('9: ExportVm refuses a running VM, then serves a streamOptimized VMDK (cookie required, no Range)', async () => {
    await removeSnapshot(c, snap2);
    assert.deepEqual(await listSnapshots(sim, vm), []);
    await expectFault(c.call('ExportVm', ref(vm)), 'InvalidPowerState');
    await powerOff(sim, vm);
    const lease = moref(await c.call('ExportVm', ref(vm)));
    assert.equal(lease.type, 'HttpNfcLease');
    assert.equal(await leaseSettled(c, lease), 'ready');
    const { path, dev, info } = await leaseDiskPath(c, sim, lease);
    assert.equal(num(child(info, 'totalDiskCapacityInKB')), DISK / 1024);
    assert.equal(num(child(info, 'leaseTimeout')), 300, 'default -lease-timeout 5m');
    assert.equal(text(child(dev, 'sslThumbprint')), sim.thumbprint);
    assert.equal(text(child(dev, 'disk')), 'true');
    assert.equal(text(child(dev, 'targetId')), 'disk-0.vmdk');
    assert.ok(text(child(dev, 'key')));
    assert.equal((await c.http('GET', path, { cookie: '' })).status, 401, 'the session cookie is required');

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
    assert.equal(part.status, 200, 'Range is ignored, as by ESXi NFC');
    assert.equal(part.headers['content-range'], undefined);
    assert.deepEqual(part.body, got.body);

    await c.call('HttpNfcLeaseComplete', ref(lease));
    assert.equal(text((await c.props(lease, ['state']))['state']), 'done');
    assert.equal((await c.http('GET', path)).status, 404);
    const st = (await simStats(sim)).leases.find((l) => l.id === lease.value);
    assert.deepEqual(st, { id: lease.value, vm: vm.value, snapshot: '', state: 'done', end: 'complete', bytes: 2 * got.body.length });
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

  it('reports a raw device mapping as vSphere does, and refuses the calls that would lay its disks out again', async () => {
    const naa = '600a098038303053453f463045727a51';
    const t = await createTestVm(sim, {
      name: 'acc-rdm',
      disks: [{ sizeBytes: MiB }, { sizeBytes: 4 * MiB, rdm: 'physical', lun: naa }, { sizeBytes: 2 * MiB, rdm: 'virtual', lun: naa.replace(/1$/, '2') }],
    });
    const devs = await devices(sim, t.moref);
    const backing = (i: number): Record<string, string> => {
      const b = child(diskOf(devs, t.disks[i]!.key), 'backing') as Record<string, unknown>;
      return Object.fromEntries(Object.keys(b).filter((k) => k !== 'datastore').map((k) => [k, k === '@_type' ? xsiType(b) : text(b[k])]));
    };
    assert.deepEqual(backing(1), {
      fileName: '[LocalDS_0] acc-rdm/acc-rdm_1.vmdk',
      lunUuid: `0200000000${naa}564d77617265`,
      deviceName: `/vmfs/devices/disks/naa.${naa}`,
      compatibilityMode: 'physicalMode',
      diskMode: 'independent_persistent',
      sharing: 'sharingNone',
      '@_type': 'VirtualDiskRawDiskMappingVer1BackingInfo',
    });
    assert.equal(backing(2).compatibilityMode, 'virtualMode');
    assert.equal(backing(2).diskMode, 'persistent');
    assert.equal(backing(0)['@_type'], 'VirtualDiskFlatVer2BackingInfo');
    assert.equal(num(child(diskOf(devs, t.disks[1]!.key), 'capacityInBytes')), 4 * MiB);
    const descriptor = await readFile(localPath(sim, t.disks[1]!.fileName), 'utf8');
    assert.match(descriptor, /createType="vmfsPassthroughRawDeviceMap"\n[^]*RW 8192 VMFSRDM "acc-rdm_1-rdmp.vmdk"\n/);
    assert.equal(t.disks[1]!.flatPath, localPath(sim, '[LocalDS_0] acc-rdm/acc-rdm_1-rdmp.vmdk'));

    const refused = await expectFault(c.task('ReconfigVM_Task', ref(t.moref) + '<spec><memoryMB>256</memoryMB></spec>'), 'NotSupported');
    assert.match(refused.message, /does not simulate ReconfigVM_Task on VM vm-\d+, which has a raw device mapping/);
    await expectFault(c.task('Destroy_Task', ref(t.moref)), 'NotSupported');
    const post = async (q: string): Promise<number> => (await c.http('POST', `/sim/rdm?${q}`, { cookie: '' })).status;
    const at = `vm=${t.moref.value}&disk=${t.disks[0]!.key}`;
    assert.equal(await post(`${at}&mode=rawMode&naa=${naa}`), 400);
    assert.equal(await post(`${at}&mode=physicalMode&naa=naa.${naa}`), 400);
    assert.equal(await post(`vm=vm-0&disk=1&mode=physicalMode&naa=${naa}`), 404);
    assert.equal(await post(`vm=${t.moref.value}&disk=${t.disks[1]!.key}&mode=physicalMode&naa=${naa}`), 409, 'already an RDM');
  });

  it('the simulator logged no panic or data race', () => {
    assert.doesNotMatch(sim.stderr(), /panic|DATA RACE/);
  });
});

describe('vcsim-cbt paging, -folder-auth=false, -folder-lock=false', { skip }, () => {
  let sim: Vcsim;
  before(async () => {
    if (missing) assert.fail(`ONESWAP_REQUIRE_PEERS=1 but ${missing}`);
    sim = await startVcsim({ cbtWindow: MiB, folderAuth: false, folderLock: false });
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
    // -folder-auth=false: stock behaviour, no cookie needed; -folder-lock=false: a running VM's extent is served.
    await powerOn(sim, t.moref);
    const r = await c.http('GET', folderUrl(sim, d.flatPath), { cookie: '', headers: { range: 'bytes=0-15' } });
    assert.equal(r.status, 206);
    assert.equal((await simStats(sim)).folderRefusals, 0);
    assert.doesNotMatch(sim.stderr(), /panic|DATA RACE/);
  });

  it('QueryChangedDiskAreas without a snapshot: powered-off VMs only, against the current bytes, paged, no new epoch', async () => {
    const c = await VimClient.login(sim);
    const t = await createTestVm(sim, {
      name: 'current',
      disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: 64 * KiB }, { offset: 2 * MiB + 100, length: 1000 }] }],
      cbt: true,
      powerOn: true,
    });
    const d = t.disks[0];
    assert.ok(d);
    const f = await expectFault(qcda(c, t.moref, undefined, d.key, 0, '*'), 'FileFault');
    assert.match(f.message, /poweredOn/);
    const s1 = await snapshot(c, t.moref, 'c1');
    const changeId1 = changeIdOf(diskOf(await devices(sim, s1), d.key));
    await removeSnapshot(c, s1);
    await powerOff(sim, t.moref);
    await writeDiskData(d.flatPath, MiB + 4096, 100, 21); // the guest wrote before it stopped
    await writeDiskData(d.flatPath, 3 * MiB - 10, 20, 22); // across the blocks at 3 MiB - 64 KiB and 3 MiB

    const all = await allAreas(c, t.moref, undefined, d.key, '*', 4 * MiB);
    assert.equal(all.calls, 4, '-cbt-window 1 MiB pages a 4 MiB disk in 4 answers');
    assert.deepEqual(all.areas, [
      { start: 0, length: 65536 },
      { start: 1048576, length: 65536 },
      { start: 2097152, length: 65536 },
      { start: 3080192, length: 131072 },
    ]);
    const since = await allAreas(c, t.moref, undefined, d.key, changeId1, 4 * MiB);
    assert.deepEqual(since.areas, [
      { start: 1048576, length: 65536 },
      { start: 3080192, length: 131072 },
    ]);
    await expectFault(qcda(c, t.moref, undefined, d.key, 4 * MiB, '*'), 'InvalidArgument');
    await expectFault(qcda(c, t.moref, undefined, 999999, 0, '*'), 'NotFound');
    await expectFault(qcda(c, t.moref, undefined, d.key, 0, '52 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00/1'), 'FileFault');
    assert.equal(changeIdOf(diskOf(await devices(sim, t.moref), d.key)), changeId1, 'no new changeId');
    const s2 = await snapshot(c, t.moref, 'c2');
    assert.equal(changeIdOf(diskOf(await devices(sim, s2), d.key)), changeId1.replace(/\/1$/, '/2'), 'no epoch was made');
    await removeSnapshot(c, s2);
  });
});

// --- strictness: the /folder lock ----------------------------------------------

describe('vcsim-cbt /folder lock', { skip }, () => {
  let sim: Vcsim;
  let c: VimClient;
  before(async () => {
    if (missing) assert.fail(`ONESWAP_REQUIRE_PEERS=1 but ${missing}`);
    sim = await startVcsim();
    c = await VimClient.login(sim);
  });
  after(async () => {
    await sim?.stop();
  });

  it('refuses GET/HEAD of every extent of a running, snapshotted or suspended VM with a one-line 500, serves it powered off', async () => {
    const t = await createTestVm(sim, {
      name: 'web1',
      disks: [
        { sizeBytes: 4 * MiB, data: [{ offset: 0, length: 64 * KiB, seed: 5 }] },
        { sizeBytes: 2 * MiB, controller: 'sata', data: [{ offset: MiB, length: 4096, seed: 6 }] },
      ],
      cbt: true,
      powerOn: true,
    });
    const [d0, d1] = t.disks;
    assert.ok(d0 && d1);
    const message = (file: string): string => `Cannot open file "[LocalDS_0] web1/${file}": it is locked by a running virtual machine (web1)`;
    const expectLocked = async (): Promise<void> => {
      for (const [d, file] of [
        [d0, 'web1-flat.vmdk'],
        [d1, 'web1_1-flat.vmdk'],
      ] as const) {
        const r = await c.http('GET', folderUrl(sim, d.flatPath), { headers: { range: 'bytes=0-511' } });
        assert.equal(r.status, 500);
        assert.equal(r.body.toString(), message(file));
        assert.equal((await c.http('HEAD', folderUrl(sim, d.flatPath))).status, 500);
      }
    };
    const s0 = await simStats(sim);
    await expectLocked();
    // Descriptors stay readable.
    const desc = await c.http('GET', folderUrl(sim, localPath(sim, d0.fileName)));
    assert.equal(desc.status, 200);
    assert.match(desc.body.toString(), /FLAT "web1-flat.vmdk"/);
    // A snapshot does not unlock the base extents.
    const snap = await snapshot(c, t.moref, 's');
    await expectLocked();
    await c.task('SuspendVM_Task', ref(t.moref));
    assert.equal(text((await c.props(t.moref, ['runtime.powerState']))['runtime.powerState']), 'suspended');
    await expectLocked();
    const s1 = await simStats(sim);
    assert.equal(s1.folderRefusals - s0.folderRefusals, 12);
    assert.equal(s1.folderBytes - s0.folderBytes, desc.body.length);

    await powerOff(sim, t.moref);
    const r = await c.http('GET', folderUrl(sim, d0.flatPath), { headers: { range: 'bytes=0-65535' } });
    assert.equal(r.status, 206);
    assert.deepEqual(r.body, pseudoRandom(5, 65536));
    const s2 = await simStats(sim);
    assert.equal(s2.folderRefusals, s1.folderRefusals);
    assert.equal(s2.folderBytes - s1.folderBytes, 65536);
    await removeSnapshot(c, snap);
  });

  it('stock placeholders lock their -flat file; a raw (non-descriptor) backing file is itself the extent', async () => {
    const vm = (await c.findByInventoryPath('DC0/vm/DC0_H0_VM1')) as MoRef;
    assert.equal(text((await c.props(vm, ['runtime.powerState']))['runtime.powerState']), 'poweredOn');
    const disk = (await devices(sim, vm)).find((d) => xsiType(d) === 'VirtualDisk');
    const fileName = text(child(child(disk, 'backing'), 'fileName'));
    const file = localPath(sim, fileName);
    // vcsim's empty <disk>.vmdk + <disk>-flat.vmdk stand for a descriptor and its extent.
    assert.equal((await c.http('GET', folderUrl(sim, file))).status, 200);
    assert.equal((await c.http('GET', folderUrl(sim, flatPathOf(file)))).status, 500);
    await writeFile(file, pseudoRandom(9, 128 * KiB));
    const r = await c.http('GET', folderUrl(sim, file));
    assert.equal(r.status, 500);
    assert.equal(r.body.toString(), `Cannot open file "${fileName}": it is locked by a running virtual machine (DC0_H0_VM1)`);
    assert.doesNotMatch(sim.stderr(), /panic|DATA RACE/);
  });
});

// --- export leases -------------------------------------------------------------

/** Downloads path, recording how and when the body ended. */
function streamDownload(sim: Vcsim, c: VimClient, path: string): Promise<{ status: number; bytes: number; complete: boolean; endedAt: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: sim.host, port: sim.port, path, headers: { cookie: c.cookie }, ca: sim.certPem, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (b: Buffer) => {
        bytes += b.length;
      });
      res.on('error', () => undefined); // 'aborted' is reported through complete=false
      res.on('close', () => resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete, endedAt: Date.now() }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('vcsim-cbt export leases (-lease-timeout 1s, -nfc-rate 1 MiB/s)', { skip }, () => {
  let sim: Vcsim;
  let c: VimClient;
  let work: string;
  before(async () => {
    if (missing) assert.fail(`ONESWAP_REQUIRE_PEERS=1 but ${missing}`);
    sim = await startVcsim({ leaseTimeout: '1s', nfcRate: MiB });
    c = await VimClient.login(sim);
    work = await mkdtemp(join(tmpdir(), 'oneswap-vcsim-lease-'));
  });
  after(async () => {
    await sim?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('ExportSnapshot of a running VM: initializing in the background, then ready; the snapshot config\'s disks; kept alive by progress; Complete', async () => {
    const t = await createTestVm(sim, {
      name: 'exp1',
      disks: [
        { sizeBytes: 16 * MiB, data: [{ offset: 0, length: 8 * MiB, seed: 31 }] },
        { sizeBytes: 2 * MiB, data: [{ offset: 64 * KiB, length: 4096, seed: 32 }] },
      ],
      powerOn: true,
    });
    const snap = await snapshot(c, t.moref, 'export');
    const lease = moref(await c.call('ExportSnapshot', ref(snap)));
    assert.equal(lease.type, 'HttpNfcLease');
    const early = await c.props(lease, ['state']);
    assert.equal(text(early['state']), 'initializing', 'the SOAP call returns before the VMDKs are made');
    assert.equal(await leaseSettled(c, lease), 'ready');
    const p = await c.props(lease, ['initializeProgress', 'transferProgress']);
    assert.equal(num(p['initializeProgress']), 100);
    const { info } = await leaseDiskPath(c, sim, lease, 0);
    assert.equal(num(child(info, 'totalDiskCapacityInKB')), (18 * MiB) / 1024);
    assert.equal(num(child(info, 'leaseTimeout')), 1);
    assert.equal(children(info, 'deviceUrl').length, 2);
    for (const [i, dev] of children(info, 'deviceUrl').entries()) {
      assert.equal(text(child(dev, 'sslThumbprint')), sim.thumbprint);
      assert.equal(text(child(dev, 'disk')), 'true');
      assert.equal(text(child(dev, 'targetId')), `disk-${i}.vmdk`);
      assert.ok(text(child(dev, 'key')));
    }
    const { path: path1 } = await leaseDiskPath(c, sim, lease, 1);
    // Keep the lease alive past its timeout with HttpNfcLeaseProgress.
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 300));
      await c.call('HttpNfcLeaseProgress', `${ref(lease)}<percent>${10 * i}</percent>`);
    }
    assert.equal(text((await c.props(lease, ['state']))['state']), 'ready');
    assert.equal(num((await c.props(lease, ['transferProgress']))['transferProgress']), 50);
    const got = await c.http('GET', path1);
    assert.equal(got.status, 200);
    assert.equal(await rawSha256(got.body, work), t.disks[1]?.sha256);
    await c.call('HttpNfcLeaseComplete', ref(lease));
    assert.equal(text((await c.props(lease, ['state']))['state']), 'done');
    assert.equal((await c.http('GET', path1)).status, 404);
    await expectFault(c.call('HttpNfcLeaseProgress', `${ref(lease)}<percent>100</percent>`), 'InvalidState');
    const st = (await simStats(sim)).leases.find((l) => l.id === lease.value);
    assert.deepEqual(st, { id: lease.value, vm: t.moref.value, snapshot: snap.value, state: 'done', end: 'complete', bytes: got.body.length });
    await removeSnapshot(c, snap);
  });

  it('a lease without progress expires: downloads cut at once, files deleted, state error (Timedout), calls fault', async () => {
    const t = await createTestVm(sim, { name: 'exp2', disks: [{ sizeBytes: 16 * MiB, data: [{ offset: 0, length: 8 * MiB, seed: 33 }] }], powerOn: true });
    const snap = await snapshot(c, t.moref, 'expire');
    const t0 = Date.now();
    const lease = moref(await c.call('ExportSnapshot', ref(snap)));
    const t1 = Date.now();
    assert.equal(await leaseSettled(c, lease), 'ready');
    const { path, dev } = await leaseDiskPath(c, sim, lease);
    const size = num(child(dev, 'fileSize'));
    assert.ok(size > 4 * MiB, 'the download takes seconds at 1 MiB/s');
    const dl = await streamDownload(sim, c, path);
    assert.equal(dl.status, 200);
    assert.equal(dl.complete, false, 'the body was cut');
    assert.ok(dl.bytes < size);
    assert.ok(dl.endedAt - t0 >= 1000, `cut after the timeout (${dl.endedAt - t0} ms)`);
    assert.ok(dl.endedAt - t1 <= 1100, `cut promptly (${dl.endedAt - t1} ms after creation)`);
    const p = await c.props(lease, ['state', 'error']);
    assert.equal(text(p['state']), 'error');
    assert.equal(xsiType(child(p['error'], 'fault')), 'Timedout');
    assert.equal((await c.http('GET', path)).status, 404);
    await expectFault(c.call('HttpNfcLeaseProgress', `${ref(lease)}<percent>10</percent>`), 'Timedout');
    await expectFault(c.call('HttpNfcLeaseComplete', ref(lease)), 'Timedout');
    const st = (await simStats(sim)).leases.find((l) => l.id === lease.value);
    assert.equal(st?.state, 'error');
    assert.equal(st?.end, 'expired');
    assert.ok((st?.bytes ?? 0) >= dl.bytes);
    await removeSnapshot(c, snap);
  });

  it('HttpNfcLeaseAbort ends the lease in error; ExportVm still wants a powered-off VM', async () => {
    const t = await createTestVm(sim, { name: 'exp3', disks: [{ sizeBytes: MiB, data: [{ offset: 0, length: 4096 }] }], powerOn: true });
    await expectFault(c.call('ExportVm', ref(t.moref)), 'InvalidPowerState');
    await powerOff(sim, t.moref);
    const lease = moref(await c.call('ExportVm', ref(t.moref)));
    assert.equal(await leaseSettled(c, lease), 'ready');
    const { path } = await leaseDiskPath(c, sim, lease);
    await c.call('HttpNfcLeaseAbort', ref(lease));
    assert.equal(text((await c.props(lease, ['state']))['state']), 'error');
    assert.equal((await c.http('GET', path)).status, 404);
    await expectFault(c.call('HttpNfcLeaseComplete', ref(lease)), 'InvalidState');
    const st = (await simStats(sim)).leases.find((l) => l.id === lease.value);
    assert.deepEqual(st, { id: lease.value, vm: t.moref.value, snapshot: '', state: 'error', end: 'abort', bytes: 0 });
    assert.doesNotMatch(sim.stderr(), /panic|DATA RACE/);
  });
});

describe('vcsim-cbt -delay (a slow vCenter)', { skip }, () => {
  let sim: Vcsim;
  before(async () => {
    if (missing) assert.fail(`ONESWAP_REQUIRE_PEERS=1 but ${missing}`);
    sim = await startVcsim({ leaseTimeout: '1s', delay: { HttpNfcLeaseProgress: '1500ms' } });
  });
  after(async () => {
    await sim?.stop();
  });

  it('a delayed HttpNfcLeaseProgress is processed after the delay, too late to keep the lease', async () => {
    const c = await VimClient.login(sim);
    const t = await createTestVm(sim, { name: 'slow', disks: [{ sizeBytes: MiB, data: [{ offset: 0, length: 4096 }] }] });
    const lease = moref(await c.call('ExportVm', ref(t.moref)));
    assert.equal(await leaseSettled(c, lease), 'ready');
    const start = Date.now();
    await expectFault(c.call('HttpNfcLeaseProgress', `${ref(lease)}<percent>1</percent>`), 'Timedout');
    assert.ok(Date.now() - start >= 1500, 'answered after the delay');
    assert.equal(text((await c.props(lease, ['state']))['state']), 'error');
  });
});

// --- NFC disk endpoint (VDDK stand-in) -----------------------------------------

describe('vcsim-cbt /nfc-disk', { skip }, () => {
  let sim: Vcsim;
  let c: VimClient;
  before(async () => {
    if (missing) assert.fail(`ONESWAP_REQUIRE_PEERS=1 but ${missing}`);
    sim = await startVcsim();
    c = await VimClient.login(sim);
  });
  after(async () => {
    await sim?.stop();
  });

  it('serves a snapshot\'s disk of a running VM: info, extents, exact ranges; checks vm, snapshot, file and the lock', async () => {
    const t = await createTestVm(sim, {
      name: 'nfc1',
      disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: 64 * KiB, seed: 41 }, { offset: 2 * MiB, length: 128 * KiB, seed: 42 }] }],
      powerOn: true,
    });
    const d = t.disks[0];
    assert.ok(d);
    const snap = await snapshot(c, t.moref, 'nfc');
    const q = { vm: t.moref, file: d.fileName, snapshot: snap };
    const s0 = await simStats(sim);

    const info = await nfcDisk(c, 'info', q);
    assert.equal(info.status, 200);
    assert.deepEqual(JSON.parse(info.body.toString()), { capacity: 4 * MiB });
    const ext = await nfcDisk(c, 'extents', q);
    assert.deepEqual(JSON.parse(ext.body.toString()), [
      [0, 65536],
      [2097152, 131072],
    ]);
    const a = await nfcDisk(c, 'read', q, { range: 'bytes=0-65535' });
    assert.equal(a.status, 206);
    assert.equal(a.headers['content-range'], `bytes 0-65535/${4 * MiB}`);
    assert.deepEqual(a.body, pseudoRandom(41, 65536));
    const edge = 2 * MiB + 128 * KiB;
    const b = await nfcDisk(c, 'read', q, { range: `bytes=${edge - 100}-${edge + 99}` });
    assert.equal(b.status, 206);
    assert.deepEqual(b.body, Buffer.concat([pseudoRandom(42, 128 * KiB).subarray(-100), Buffer.alloc(100)]));
    const end = await nfcDisk(c, 'read', q, { range: `bytes=${4 * MiB - 10}-${4 * MiB + 100}` });
    assert.equal(end.status, 206);
    assert.equal(end.body.length, 10, 'clipped to the capacity');
    assert.equal((await simStats(sim)).nfcDiskBytes - s0.nfcDiskBytes, 65536 + 200 + 10);

    assert.equal((await nfcDisk(c, 'read', q)).status, 400, 'Range is required');
    assert.equal((await nfcDisk(c, 'info', q, { cookie: '' })).status, 401);
    const fault = async (r: Promise<{ status: number; body: Buffer }>, status: number, name: string): Promise<void> => {
      const res = await r;
      assert.equal(res.status, status);
      const j = JSON.parse(res.body.toString()) as { fault: string; message: string };
      assert.equal(j.fault, name);
      assert.ok(j.message);
    };
    await fault(nfcDisk(c, 'info', { ...q, vm: { type: 'VirtualMachine', value: 'vm-999999' } }), 404, 'ManagedObjectNotFound');
    const other = (await c.findByInventoryPath('DC0/vm/DC0_H0_VM0')) as MoRef;
    const otherSnap = await snapshot(c, other, 'other');
    await fault(nfcDisk(c, 'info', { ...q, snapshot: otherSnap }), 404, 'ManagedObjectNotFound');
    await fault(nfcDisk(c, 'info', { ...q, file: '[LocalDS_0] nfc1/other.vmdk' }), 404, 'FileNotFound');
    await fault(nfcDisk(c, 'read', { vm: t.moref, file: d.fileName }, { range: 'bytes=0-1' }), 500, 'FileLocked');
    await removeSnapshot(c, snap);
    await fault(nfcDisk(c, 'info', q), 404, 'ManagedObjectNotFound');
    await removeSnapshot(c, otherSnap);

    // A powered-off VM's disk opens without a snapshot.
    await powerOff(sim, t.moref);
    const off = await nfcDisk(c, 'read', { vm: t.moref, file: d.fileName }, { range: 'bytes=65530-65545' });
    assert.equal(off.status, 206);
    assert.deepEqual(off.body, Buffer.concat([pseudoRandom(41, 65536).subarray(-6), Buffer.alloc(10)]));
    assert.doesNotMatch(sim.stderr(), /panic|DATA RACE/);
  });
});

// --- vSAN ----------------------------------------------------------------------

describe('vcsim-cbt vSAN datastore', { skip }, () => {
  let sim: Vcsim;
  let c: VimClient;
  let work: string;
  before(async () => {
    if (missing) assert.fail(`ONESWAP_REQUIRE_PEERS=1 but ${missing}`);
    sim = await startVcsim({ vsan: true });
    c = await VimClient.login(sim);
    work = await mkdtemp(join(tmpdir(), 'oneswap-vcsim-vsan-'));
  });
  after(async () => {
    await sim?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('LocalDS_1 is vSAN: summary.type, descriptor with a vsan:// object, no /folder access to objects; CBT, NFC and exports read the object', async () => {
    assert.deepEqual(Object.keys(sim.datastores).sort(), ['LocalDS_0', 'LocalDS_1']);
    assert.equal(sim.vsanDatastore, 'LocalDS_1');
    for (const [name, type] of [
      ['LocalDS_1', 'vsan'],
      ['LocalDS_0', 'OTHER'],
    ] as const) {
      const ds = (await c.findByInventoryPath(`DC0/datastore/${name}`)) as MoRef;
      assert.ok(ds, name);
      assert.equal(text(child((await c.props(ds, ['summary']))['summary'], 'type')), type);
    }

    const t = await createTestVm(sim, {
      name: 'vs1',
      datastore: 'LocalDS_1',
      disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: 64 * KiB, seed: 51 }, { offset: 3 * MiB, length: 4096, seed: 52 }] }],
      cbt: true,
    });
    const d = t.disks[0];
    assert.ok(d?.vsanObject);
    assert.equal(d.flatPath, join(sim.datastores['LocalDS_1'] ?? '', '.vsan-objects', d.vsanObject));
    assert.match(d.fileName, /^\[LocalDS_1\] vs1\/vs1\.vmdk$/);

    const desc = await c.http('GET', folderUrl(sim, localPath(sim, d.fileName), 'LocalDS_1'));
    assert.equal(desc.status, 200);
    assert.match(desc.body.toString(), new RegExp(`\\nRW 8192 VSANSPARSE "vsan://${d.vsanObject}"\\n`));
    assert.equal((await c.http('GET', folderUrl(sim, d.flatPath, 'LocalDS_1'))).status, 404, 'objects are not files');
    assert.equal((await c.http('HEAD', folderUrl(sim, d.flatPath, 'LocalDS_1'))).status, 404);

    const snap = await snapshot(c, t.moref, 'vsan');
    const { areas } = await allAreas(c, t.moref, snap, d.key, '*', 4 * MiB);
    assert.deepEqual(areas, [
      { start: 0, length: 65536 },
      { start: 3145728, length: 65536 },
    ]);
    const q = { vm: t.moref, file: d.fileName, snapshot: snap };
    assert.deepEqual(JSON.parse((await nfcDisk(c, 'extents', q)).body.toString()), [
      [0, 65536],
      [3145728, 4096],
    ]);
    const r = await nfcDisk(c, 'read', q, { range: `bytes=${3 * MiB}-${3 * MiB + 4095}` });
    assert.deepEqual(r.body, pseudoRandom(52, 4096));
    await removeSnapshot(c, snap);

    const lease = moref(await c.call('ExportVm', ref(t.moref)));
    assert.equal(await leaseSettled(c, lease), 'ready');
    const { path } = await leaseDiskPath(c, sim, lease);
    const got = await c.http('GET', path);
    assert.equal(await rawSha256(got.body, work), d.sha256);
    await c.call('HttpNfcLeaseComplete', ref(lease));

    // Running: the descriptor stays readable, the object stays unreachable.
    await powerOn(sim, t.moref);
    assert.equal((await c.http('GET', folderUrl(sim, localPath(sim, d.fileName), 'LocalDS_1'))).status, 200);
    assert.equal((await c.http('GET', folderUrl(sim, d.flatPath, 'LocalDS_1'))).status, 404);
    assert.doesNotMatch(sim.stderr(), /panic|DATA RACE/);
  });
});
