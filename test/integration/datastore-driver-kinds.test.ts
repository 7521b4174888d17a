// oneswap's datastore driver on the image datastores clouds run besides raw files, as oned 7.4 runs
// it (the simulator runs driver/datastore/oneswap): DS_MAD oneswap with TM_MAD ceph (RBD images in
// a real Ceph pool; the stock-like ceph driver does everything but the vcenter:// cp, with rbd on a
// BRIDGE_LIST host over ssh) and with TM_MAD qcow2 (qcow2 files; the stock fs driver does the
// rest), and file datastores with a BRIDGE_LIST the drivers' frontend does not mount (the cp
// makes and writes the file on the bridge host). A vcenter:// cp writes the disk's data once into the image, the conversion after a
// marketplace import opens the RBD images where they are, and a failed cp leaves nothing behind.
// One Ceph, one bridge host, one vCenter and one OpenNebula for the whole file.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { vcsimSkip, startVcsim, type Vcsim } from '../peers/vcsim/index.js';
import { createTestVm, type TestVm } from '../peers/vcsim/fixture.js';
import { cephSkip, startCeph, type Ceph } from '../peers/ceph/index.js';
import { bridgeSkip, startBridge, type Bridge } from '../peers/bridge/index.js';
import { guestSkip } from '../peers/guest/index.js';
import { exportMarketApp, IMAGE_STATE, type Oned } from '../peers/one/index.js';
import { startOnedWithDrivers, type DriverPeers } from '../peers/one-drivers.js';
import { OneClient, Template } from '../../lib/one/index.js';
import { parseXml } from '../../lib/one/xml.js';
import { cephIdentityOnBridge } from '../support/ceph-identity.js';
import { ISLAND_DISKS, QCOW2_CLUSTER, RBD_OBJECT, qcow2Bytes, imageDataBytes, rbdBytes as readRbd, rbdUsage, unitsTouched } from '../support/image-contents.js';

const MiB = 1024 * 1024;
const BLOCK = 4096; // the file system's block: what a sparse raw file allocates in
const skip = vcsimSkip() || cephSkip({ mgr: true }) || bridgeSkip();

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('datastore driver on Ceph and qcow2 image datastores', { skip, timeout: 20 * 60_000 }, () => {
  let ceph: Ceph;
  let bridge: Bridge;
  let sim: Vcsim;
  let peers: DriverPeers;
  let oned: Oned;
  let one: OneClient;
  let cephDs: number;
  let qcowDs: number;
  /** CEPH_KEY and CEPH_CONF of the Ceph datastores. */
  let identity: { keyFile: string; confFile: string };
  let work: string;
  const islands = ISLAND_DISKS.map((d) => d.data);
  const sizes = ISLAND_DISKS.map((d) => d.sizeBytes);
  let vms = 0;
  const newVm = (name: string): Promise<TestVm> =>
    createTestVm(sim, { name: `${name}-${vms++}`, cbt: true, disks: ISLAND_DISKS.map((d) => ({ sizeBytes: d.sizeBytes, data: [...d.data] })) });
  const allocate = (ds: number, t: Record<string, string | number>): Promise<number> => one.imageAllocate(Template.of(t), ds);
  const cpOf = (id: number) => oned.log.find((e) => e.action === 'cp' && e.argv[0] === String(id))!;
  const rbdImages = async (): Promise<string[]> => (await ceph.rbd(['ls', ceph.pool])).split('\n').filter(Boolean).sort();
  const rbdBytes = (source: string): Promise<Buffer> => readRbd(ceph, source, work);
  const files = async (ds: number): Promise<string[]> => (await readdir((await one.datastore(ds)).basePath).catch(() => [] as string[])).sort();

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-dsdrv-kinds-'));
    [ceph, bridge] = await Promise.all([startCeph({ mgr: true }), startBridge({ hosts: ['bridge1'], deniedHosts: ['bridge-denied'] })]);
    // 2 MiB/s per range request: the small disks copy in a few seconds, a 60 MiB one slowly
    // enough to be deleted mid-copy.
    sim = await startVcsim({ folderRate: 2 * MiB });
    peers = await startOnedWithDrivers(sim, { market: true, driverEnv: { PATH: bridge.env().PATH ?? '' } });
    oned = peers.oned;
    one = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession });
    identity = await cephIdentityOnBridge(ceph, bridge);
    // As docs/DRIVERS.md sets them up: oneswap's DS_MAD, the storage's TM_MAD.
    cephDs = await oned.createDatastore({
      name: 'vcenter-ceph',
      type: 'IMAGE_DS',
      dsMad: 'oneswap',
      tmMad: 'ceph',
      template: { ONESWAP_CREDENTIALS: peers.credentials, DISK_TYPE: 'RBD', BRIDGE_LIST: 'bridge1', POOL_NAME: ceph.pool, CEPH_USER: ceph.user, CEPH_CONF: identity.confFile, CEPH_KEY: identity.keyFile },
    });
    qcowDs = await oned.createDatastore({
      name: 'vcenter-qcow2',
      type: 'IMAGE_DS',
      dsMad: 'oneswap',
      tmMad: 'qcow2',
      template: { ONESWAP_CREDENTIALS: peers.credentials, RESTRICTED_DIRS: '/', SAFE_DIRS: `/var/tmp ${work}` },
    });
  });

  after(async () => {
    one?.close();
    await oned?.stop();
    await sim?.stop();
    await Promise.all([ceph?.stop(), bridge?.stop()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('cp into a Ceph datastore: the RBD image pool/one-<id> the stock mkfs makes, exactly the disk, only the objects holding data', async () => {
    const vm = await newVm('ceph');
    const ids = [await allocate(cephDs, { NAME: 'ceph-disk0', TYPE: 'OS', PATH: peers.url(vm.name, 0), PERSISTENT: 'YES' }), await allocate(cephDs, { NAME: 'ceph-disk1', PATH: peers.url(vm.name, 1) })];
    for (const [i, id] of ids.entries()) {
      const img = await oned.waitImage(id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
      assert.equal(img.state, IMAGE_STATE.READY, `${img.template.get('ERROR')} ${cpOf(id).stderr}`);
      const info = await one.image(id);
      assert.equal(info.source, `${ceph.pool}/one-${id}`);
      assert.equal(info.format, 'raw');
      assert.equal(cpOf(id).stdout, `${ceph.pool}/one-${id} raw\n`);
      const bytes = await rbdBytes(info.source);
      assert.equal(bytes.length, sizes[i], `image ${id} is exactly the disk's size`);
      assert.equal(sha(bytes), vm.disks[i]!.sha256, `image ${id} holds the disk's bytes`);
      assert.deepEqual(await rbdUsage(ceph, info.source), { provisioned: sizes[i], used: unitsTouched(islands[i]!, sizes[i]!, RBD_OBJECT) }, `image ${id} allocates only the objects holding data`);
      assert.equal(info.template.get('ONESWAP_STATE'), 'COPIED');
    }
    // The image was made by the stock driver, on the bridge, as its mkfs makes one.
    const scripts = (await bridge.sessions()).map((s) => s.script ?? '');
    assert.ok(scripts.some((s) => s.includes(`create --image-format 2 ${ceph.pool}/one-${ids[0]} --size 256`)), scripts.join('\n---\n'));
  });

  test('the other actions on the Ceph datastore are the stock ceph driver\'s: monitor, mkfs, rm', async () => {
    await oned.monitorDatastore(cephDs);
    const ds = await one.datastore(cephDs);
    const monitor = oned.log.filter((e) => e.action === 'monitor' && e.argv[0] === String(cephDs)).at(-1)!;
    assert.equal(monitor.exitCode, 0, monitor.stderr);
    assert.match(monitor.stdout, /^USED_MB=\d+\nTOTAL_MB=\d+\nFREE_MB=\d+\n$/);
    assert.ok(ds.totalMb > 0 && ds.freeMb > 0, `ceph df filled the capacity: ${ds.totalMb}/${ds.freeMb}`);
    const blank = await allocate(cephDs, { NAME: 'ceph-blank', TYPE: 'DATABLOCK', SIZE: 5, FORMAT: 'raw' });
    assert.equal((await oned.waitImage(blank)).state, IMAGE_STATE.READY);
    const source = (await one.image(blank)).source;
    assert.equal(source, `${ceph.pool}/one-${blank}`);
    assert.equal((await rbdUsage(ceph, source)).provisioned, 5 * MiB);
    await one.imageDelete(blank);
    await oned.idle();
    assert.ok(!(await rbdImages()).includes(`one-${blank}`), 'rm removed the RBD image');
  });

  test('cp into a qcow2 datastore: a qcow2 file under BASE_PATH of the disk\'s virtual size, check clean, only the clusters holding data', async () => {
    const vm = await newVm('qcow2');
    const ids = [await allocate(qcowDs, { NAME: 'qcow2-disk0', TYPE: 'OS', PATH: peers.url(vm.name, 0), PERSISTENT: 'YES' }), await allocate(qcowDs, { NAME: 'qcow2-disk1', PATH: peers.url(vm.name, 1) })];
    const base = (await one.datastore(qcowDs)).basePath;
    for (const [i, id] of ids.entries()) {
      const img = await oned.waitImage(id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
      assert.equal(img.state, IMAGE_STATE.READY, `${img.template.get('ERROR')} ${cpOf(id).stderr}`);
      const info = await one.image(id);
      assert.equal(info.format, 'qcow2');
      assert.match(info.source, new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/[0-9a-f]{32}$`));
      assert.equal(cpOf(id).stdout, `${info.source} qcow2\n`);
      const q = JSON.parse((await execa('qemu-img', ['info', '--output=json', info.source])).stdout) as { format: string; 'virtual-size': number };
      assert.deepEqual([q.format, q['virtual-size']], ['qcow2', sizes[i]]);
      await execa('qemu-img', ['check', '-q', info.source]);
      assert.equal(sha(await qcow2Bytes(info.source, work)), vm.disks[i]!.sha256, `image ${id} holds the disk's bytes`);
      assert.equal(await imageDataBytes(info.source), unitsTouched(islands[i]!, sizes[i]!, QCOW2_CLUSTER), `image ${id} allocates only the clusters holding data`);
    }
    // A plain path on the same datastore is the stock fs cp's: converted to qcow2 as it converts.
    const raw = join(work, 'plain.raw');
    await writeFile(raw, Buffer.alloc(2 * MiB, 5));
    const plain = await allocate(qcowDs, { NAME: 'qcow2-plain', PATH: raw });
    assert.equal((await oned.waitImage(plain)).state, IMAGE_STATE.READY);
    const info = await one.image(plain);
    assert.equal(info.format, 'qcow2');
    assert.equal(sha(await qcow2Bytes(info.source, work)), sha(Buffer.alloc(2 * MiB, 5)));
  });

  test('failed cps leave no RBD image and no qcow2 file, and never remove an RBD image they did not make', async () => {
    const imagesBefore = await rbdImages();
    const filesBefore = await files(qcowDs);
    // Deleted mid-copy: 124 MiB of data at 2 MiB/s per request takes about 16 s; the cp finds the
    // image gone at its next progress update (5 s).
    const slow = await createTestVm(sim, { name: 'slow', cbt: true, disks: [{ sizeBytes: 128 * MiB, data: [0, 1, 2, 3].map((i) => ({ offset: i * 32 * MiB, length: 31 * MiB })) }] });
    const ids = [await allocate(cephDs, { NAME: 'slow-ceph', PATH: peers.url(slow.name, 0) }), await allocate(qcowDs, { NAME: 'slow-qcow2', PATH: peers.url(slow.name, 0) })];
    await Promise.all(
      ids.map(async (id) => {
        while (!(oned.image(id)?.template.get('ONESWAP_PROGRESS') ?? '').startsWith('copying ')) await new Promise((r) => setTimeout(r, 100));
        await one.imageDelete(id, true);
      }),
    );
    await oned.idle();
    for (const id of ids) {
      assert.notEqual(cpOf(id).exitCode, 0);
      assert.match(cpOf(id).stderr, /image \d+ was deleted while its disk was being copied; copy stopped/);
    }
    assert.deepEqual(await rbdImages(), imagesBefore, 'the RBD image of the stopped copy is gone');
    assert.deepEqual(await files(qcowDs), filesBefore, 'the qcow2 file of the stopped copy is gone');

    // A key this host cannot read: refused before anything is made.
    const noKey = await oned.createDatastore({
      name: 'vcenter-ceph-nokey',
      type: 'IMAGE_DS',
      dsMad: 'oneswap',
      tmMad: 'ceph',
      template: { ONESWAP_CREDENTIALS: peers.credentials, DISK_TYPE: 'RBD', BRIDGE_LIST: 'bridge1', POOL_NAME: ceph.pool, CEPH_USER: ceph.user, CEPH_CONF: identity.confFile, CEPH_KEY: '/nonexistent/ceph.key' },
      totalMb: 100_000,
      freeMb: 100_000,
    });
    const vm = await newVm('faults');
    const id1 = await allocate(noKey, { NAME: 'nokey-disk1', PATH: peers.url(vm.name, 1) });
    assert.equal((await oned.waitImage(id1)).state, IMAGE_STATE.ERROR);
    assert.match(
      (await one.image(id1)).template.get('ERROR') ?? '',
      new RegExp(`Error copying image in the datastore: datastore ${noKey} \\(vcenter-ceph-nokey\\): CEPH_KEY /nonexistent/ceph\\.key is not readable on this host \\(ENOENT\\)`),
    );
    assert.deepEqual(await rbdImages(), imagesBefore);

    // An RBD image already named as this image's would be: the stock mkfs refuses, and it stays.
    const next = oned.sim.pools.next.image;
    await ceph.rbd(['create', '--size', '1', `${ceph.pool}/one-${next}`]);
    const id2 = await allocate(cephDs, { NAME: 'taken-disk1', PATH: peers.url(vm.name, 1) });
    assert.equal(id2, next);
    assert.equal((await oned.waitImage(id2)).state, IMAGE_STATE.ERROR);
    const error = (await one.image(id2)).template.get('ERROR') ?? '';
    assert.match(error, new RegExp(`cannot create the RBD image of image ${id2} in datastore ${cephDs} \\(vcenter-ceph\\): the ceph driver's mkfs failed .*already exists`));
    assert.equal((await rbdUsage(ceph, `${ceph.pool}/one-${id2}`)).provisioned, MiB, 'the RBD image that was there is untouched');
    await ceph.rbd(['rm', `${ceph.pool}/one-${id2}`]);
    assert.deepEqual(await rbdImages(), imagesBefore);
  });

  test('cp into BRIDGE_LIST file datastores (raw, qcow2) the frontend does not mount: the files made and written on the bridge host, exactly the disks, sparse', async () => {
    const bases: string[] = [];
    const bridged = async (name: string, tmMad: string, hosts: string): Promise<number> => {
      const id = await oned.createDatastore({
        name,
        type: 'IMAGE_DS',
        dsMad: 'oneswap',
        tmMad,
        template: { ONESWAP_CREDENTIALS: peers.credentials, BRIDGE_LIST: hosts, STAGING_DIR: bridge.stagingDir, RESTRICTED_DIRS: '/', SAFE_DIRS: '/var/tmp' },
        totalMb: 100_000,
        freeMb: 100_000,
      });
      const base = oned.datastore(id)!.basePath.replace(/\/+$/, '');
      await execa('mkdir', ['-p', base]);
      await bridge.grant(base, 'rw');
      bases.push(base);
      return id;
    };
    const rawDs = await bridged('vcenter-bridged', 'shared', 'bridge1');
    const qcowBridged = await bridged('vcenter-bridged-qcow2', 'qcow2', 'bridge1');
    const deniedDs = await bridged('vcenter-bridged-denied', 'shared', 'bridge-denied');
    // Ceph as many frontends have it: its CEPH_CONF and CEPH_KEY only on the BRIDGE_LIST hosts.
    const cephBridged = await oned.createDatastore({
      name: 'vcenter-ceph-bridged',
      type: 'IMAGE_DS',
      dsMad: 'oneswap',
      tmMad: 'ceph',
      template: { ONESWAP_CREDENTIALS: peers.credentials, DISK_TYPE: 'RBD', BRIDGE_LIST: 'bridge1', POOL_NAME: ceph.pool, CEPH_USER: ceph.user, CEPH_CONF: identity.confFile, CEPH_KEY: identity.keyFile },
      totalMb: 100_000,
      freeMb: 100_000,
    });
    // The drivers run as on a frontend without these directories: only the bridge host reaches them.
    oned.hideFromDrivers([...bases, dirname(identity.confFile)]);
    try {
      const vm = await newVm('bridged');
      const seen = (await bridge.sessions()).length;
      const ids = [await allocate(rawDs, { NAME: 'bridged-disk0', TYPE: 'OS', PATH: peers.url(vm.name, 0) }), await allocate(qcowBridged, { NAME: 'bridged-disk1', PATH: peers.url(vm.name, 1) })];
      for (const [i, id] of ids.entries()) {
        const img = await oned.waitImage(id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
        assert.equal(img.state, IMAGE_STATE.READY, `${img.template.get('ERROR')} ${cpOf(id).stderr}`);
        const info = await one.image(id);
        const format = i === 0 ? 'raw' : 'qcow2';
        assert.equal(info.format, format);
        assert.match(info.source, new RegExp(`^${bases[i]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/[0-9a-f]{32}$`));
        assert.equal(cpOf(id).stdout, `${info.source} ${format}\n`);
        assert.equal((await stat(info.source)).uid, bridge.uid, "the file is the bridge user's: made there, not from here");
        if (format === 'raw') {
          assert.equal((await stat(info.source)).size, sizes[i], "exactly the disk's size");
          assert.equal(sha(await readFile(info.source)), vm.disks[i]!.sha256, `image ${id} holds the disk's bytes`);
          assert.equal(await imageDataBytes(info.source, 'raw'), unitsTouched(islands[i]!, sizes[i]!, BLOCK), `image ${id} allocates only the blocks holding data`);
        } else {
          const q = JSON.parse((await execa('qemu-img', ['info', '--output=json', info.source])).stdout) as { 'virtual-size': number };
          assert.equal(q['virtual-size'], sizes[i]);
          await execa('qemu-img', ['check', '-q', info.source]);
          assert.equal(sha(await qcow2Bytes(info.source, work)), vm.disks[i]!.sha256, `image ${id} holds the disk's bytes`);
          assert.equal(await imageDataBytes(info.source), unitsTouched(islands[i]!, sizes[i]!, QCOW2_CLUSTER), `image ${id} allocates only the clusters holding data`);
        }
        const sessions = (await bridge.sessions()).slice(seen);
        assert.ok(sessions.some((x) => x.host === 'bridge1' && x.command.includes('qemu-nbd') && x.command.includes(info.source)), `qemu-nbd served image ${id} on bridge1`);
      }
      // The Ceph datastore: the pool reached from the bridge host, the image the stock mkfs made.
      const rbdId = await allocate(cephBridged, { NAME: 'bridged-ceph-disk1', PATH: peers.url(vm.name, 1) });
      const rbdImg = await oned.waitImage(rbdId, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
      assert.equal(rbdImg.state, IMAGE_STATE.READY, `${rbdImg.template.get('ERROR')} ${cpOf(rbdId).stderr}`);
      assert.equal(cpOf(rbdId).stdout, `${ceph.pool}/one-${rbdId} raw\n`);
      assert.match(cpOf(rbdId).stderr, new RegExp(`INFO: datastore ${cephBridged} \\(vcenter-ceph-bridged\\): CEPH_CONF \\S+ is not readable here: writing the Ceph pool ${ceph.pool} from the BRIDGE_LIST host bridge1`));
      const rbd = await rbdBytes(`${ceph.pool}/one-${rbdId}`);
      assert.equal(sha(rbd), vm.disks[1]!.sha256, 'the RBD image holds the disk');
      assert.deepEqual(await rbdUsage(ceph, `${ceph.pool}/one-${rbdId}`), { provisioned: sizes[1], used: unitsTouched(islands[1]!, sizes[1]!, RBD_OBJECT) });

      // The stock fs driver's rm removes it on the bridge.
      await one.imageDelete(ids[0]!);
      await oned.idle();
      assert.deepEqual(await readdir(bases[0]!), [], 'rm removed the file on the bridge');

      // A bridge host that refuses the key: one line naming the datastore and the host, no file.
      const denied = await allocate(deniedDs, { NAME: 'denied-disk1', PATH: peers.url(vm.name, 1) });
      assert.equal((await oned.waitImage(denied)).state, IMAGE_STATE.ERROR);
      assert.match(
        (await one.image(denied)).template.get('ERROR') ?? '',
        new RegExp(`Error copying image in the datastore: datastore ${deniedDs} \\(vcenter-bridged-denied\\): cannot reach the bridge host bridge-denied over ssh: .*Permission denied`),
      );
      assert.deepEqual(await readdir(bases[2]!), []);
    } finally {
      oned.hideFromDrivers([]);
    }
  });

  test('a marketplace import into the Ceph datastore: the disks copied into RBD images, the conversion opens them there (no OS: NOT_CONVERTED)', { skip: guestSkip() }, async () => {
    const vm = await createTestVm(sim, {
      name: 'mkt-data',
      disks: [
        { sizeBytes: 8 * MiB, data: [{ offset: 0, length: MiB }] },
        { sizeBytes: 4 * MiB, data: [{ offset: MiB, length: 4096 }] },
      ],
    });
    // As docs/DRIVERS.md sets the marketplace up: created disabled, then enabled (monitored at once).
    const market = Number(
      await one.call('one.market.allocate', [
        Template.of({ NAME: 'vcenter', MARKET_MAD: 'oneswap', VCENTER_HOST: `127.0.0.1:${sim.port}`, ONESWAP_CREDENTIALS: peers.credentials, STATE: 'DISABLED' }).toXml(),
      ]),
    );
    await one.marketplaceEnable(market, true);
    const appId = async (): Promise<number | undefined> => {
      const pool = parseXml(String(await one.call('one.marketapppool.info', [-2, -1, -1])), 'MARKETPLACEAPP_POOL');
      const app = pool.all('MARKETPLACEAPP').find((a) => a.textOf('NAME') === 'mkt-data (127.0.0.1)');
      return app && Number(app.textOf('ID'));
    };
    const until = Date.now() + 30_000;
    while ((await appId()) === undefined && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    const started = Date.now();
    const result = await exportMarketApp({ endpoint: oned.endpoint, session: oned.adminSession, appId: (await appId())!, name: 'data-ceph', datastoreId: cephDs });
    assert.equal(result.image.length, 2);
    const images = await Promise.all(result.image.map((id) => oned.waitImage(id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR], 10 * 60_000)));
    assert.deepEqual(images.map((i) => i.state), [IMAGE_STATE.READY, IMAGE_STATE.READY], result.image.map((id) => cpOf(id).stderr).join(' | '));
    for (const [n, id] of result.image.entries()) {
      assert.equal(cpOf(id).stdout, `${ceph.pool}/one-${id} raw\n`);
      const img = await one.image(id);
      assert.deepEqual(
        [img.template.get('ONESWAP_STATE'), img.template.get('ONESWAP_PROGRESS'), img.template.get('ONESWAP_CONVERT_ERROR')],
        ['NOT_CONVERTED', 'no operating system found (data disks only): not converted', undefined],
      );
      assert.equal(sha(await rbdBytes(img.source)), vm.disks[n]!.sha256, `disk ${n} holds the source bytes`);
    }
    const tpl = await one.template(result.vmtemplate[0]!);
    assert.equal(tpl.template.get('ONESWAP_ERROR'), undefined);
    process.stderr.write(`# marketplace import into Ceph of a VM without an OS (2 small disks): ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  });
});
