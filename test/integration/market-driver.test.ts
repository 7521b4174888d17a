// Sunstone's Import button, end to end: a marketplace with oneswap's driver lists the vCenter
// simulator's VMs as apps; the stock export (what Sunstone and `onemarketapp export` run) of a VM
// app creates images on oneswap's datastore and a template; the datastore driver copies each disk
// from vCenter, converts the real Debian guest in place once all its disks are there, and
// rewrites the template. The guest goes into a qcow2 datastore (DS_MAD oneswap, TM_MAD qcow2):
// the conversion works on the qcow2 images, and the result boots on virtio. (A VM whose disks hold
// no operating system, imported into Ceph: datastore-driver-kinds.test.ts.)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { vcsimSkip, startVcsim, type Vcsim } from '../peers/vcsim/index.js';
import { createTestVm, sha256File, type TestVm } from '../peers/vcsim/fixture.js';
import { guestSkip, testGuest, bootCheck } from '../peers/guest/index.js';
import { exportMarketApp, IMAGE_STATE, type Oned } from '../peers/one/index.js';
import { startOnedWithDrivers, type DriverPeers } from '../peers/one-drivers.js';
import { oneswap } from '../peers/cli.js';
import { OneClient, Template, parseTemplateText } from '../../lib/one/index.js';
import { parseXml } from '../../lib/one/xml.js';
import { templateFromXml } from '../../lib/one/template.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { qcow2Bytes } from '../support/image-contents.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const skip = vcsimSkip() || guestSkip();

interface App {
  id: number;
  name: string;
  type: string;
  size: number;
  source: string;
  description: string;
  appTemplate64: string;
  template: Template;
}

describe('marketplace driver: vCenter VMs as apps, imported by the stock export', { skip, timeout: 30 * 60_000 }, () => {
  let sim: Vcsim;
  let peers: DriverPeers;
  let oned: Oned;
  let one: OneClient;
  let marketId: number;
  let qcowDs: number;
  let debian: TestVm;
  let dataVm: TestVm;
  let work: string;
  /** The copied disk of the import whose other disk failed: left for `oneswap convert`. */
  let leftUnconverted: number | undefined;

  const apps = async (): Promise<App[]> => {
    const pool = parseXml(String(await one.call('one.marketapppool.info', [-2, -1, -1])), 'MARKETPLACEAPP_POOL');
    return pool.all('MARKETPLACEAPP').map((a) => ({
      id: Number(a.textOf('ID')),
      name: a.textOf('NAME'),
      type: a.textOf('TYPE'),
      size: Number(a.textOf('SIZE')),
      source: a.textOf('SOURCE'),
      description: a.textOf('DESCRIPTION'),
      appTemplate64: a.textOf('APPTEMPLATE64') || (a.first('TEMPLATE')?.textOf('APPTEMPLATE64') ?? ''),
      template: templateFromXml(a.first('TEMPLATE')!),
    }));
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-market-'));
    const guest = await testGuest();
    sim = await startVcsim();
    debian = await createTestVm(sim, {
      name: 'mkt-debian',
      guestId: 'debian12_64Guest',
      numCPUs: 2,
      memoryMB: 1024,
      cbt: true,
      disks: [
        { sizeBytes: 3 * GiB, fromRaw: guest, controller: 'pvscsi' },
        { sizeBytes: 32 * MiB, data: [{ offset: 3 * MiB, length: MiB }] },
      ],
      nics: [{ network: 'VM Network', adapter: 'vmxnet3' }],
    });
    dataVm = await createTestVm(sim, {
      name: 'mkt-data',
      disks: [
        { sizeBytes: 8 * MiB, data: [{ offset: 0, length: MiB }] },
        { sizeBytes: 4 * MiB, data: [{ offset: MiB, length: 4096 }] },
      ],
    });
    peers = await startOnedWithDrivers(sim, { market: true });
    oned = peers.oned;
    one = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession });
    qcowDs = await oned.createDatastore({ name: 'vcenter-qcow2', type: 'IMAGE_DS', dsMad: 'oneswap', tmMad: 'qcow2', template: { ONESWAP_CREDENTIALS: peers.credentials } });
    // As docs/DRIVERS.md sets it up: created disabled, then enabled, which oned monitors at once.
    const market = Template.of({ NAME: 'vcenter', MARKET_MAD: 'oneswap', VCENTER_HOST: `127.0.0.1:${sim.port}`, ONESWAP_CREDENTIALS: peers.credentials, STATE: 'DISABLED' });
    marketId = Number(await one.call('one.market.allocate', [market.toXml()]));
    await one.marketplaceEnable(marketId, true);
    const until = Date.now() + 30_000;
    while ((await one.marketplace(marketId)).appIds.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
  });

  after(async () => {
    one?.close();
    await oned?.stop();
    await sim?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('monitor lists every VM as a VM app and each disk as an image app', async () => {
    const monitor = oned.log.find((e) => e.action === 'monitor' && e.kind === 'market' && e.argv[1] === String(marketId));
    assert.ok(monitor, 'the market monitor ran');
    assert.equal(monitor!.exitCode, 0, monitor!.stderr);
    const all = await apps();
    const vmApp = all.find((a) => a.name === 'mkt-debian (127.0.0.1)')!;
    assert.ok(vmApp, `apps: ${all.map((a) => a.name).join(', ')}`);
    assert.equal(vmApp.type, '2'); // VMTEMPLATE
    assert.match(vmApp.description, /VMware VM \/DC0\/vm\/mkt-debian; .*2 vCPU, 1024 MiB, 2 disk\(s\)/);
    const vmTemplate = parseTemplateText(Buffer.from(vmApp.appTemplate64, 'base64').toString('utf8'));
    assert.equal(vmTemplate.get('CPU'), '2');
    assert.equal(vmTemplate.get('MEMORY'), '1024');
    const disks = vmApp.template.vectors('DISK');
    assert.deepEqual(disks.map((d) => d.get('APP')), ['mkt-debian (127.0.0.1) disk0', 'mkt-debian (127.0.0.1) disk1']);
    const disk0 = all.find((a) => a.name === 'mkt-debian (127.0.0.1) disk0')!;
    assert.equal(disk0.type, '1'); // IMAGE
    assert.equal(disk0.size, 3072);
    assert.match(disk0.source, new RegExp(`^vcenter://127\\.0\\.0\\.1:${sim.port}/DC0/mkt-debian\\?uuid=[0-9a-f-]{36}&disk=0$`));
    assert.ok(all.some((a) => a.name === 'mkt-data (127.0.0.1) disk1'));
  });

  test('a marketplace without its attributes is refused; one with unreadable credentials fails its monitor with one line', async () => {
    await assert.rejects(one.call('one.market.allocate', [Template.of({ NAME: 'no-host', MARKET_MAD: 'oneswap', ONESWAP_CREDENTIALS: peers.credentials }).toXml()]), /VCENTER_HOST/);
    const bad = Number(
      await one.call('one.market.allocate', [Template.of({ NAME: 'bad-creds', MARKET_MAD: 'oneswap', VCENTER_HOST: `127.0.0.1:${sim.port}`, ONESWAP_CREDENTIALS: '/nonexistent/vc.yaml' }).toXml()]),
    );
    const run = (await oned.monitorMarket(bad))!;
    assert.notEqual(run.exitCode, 0);
    assert.equal(run.stderr.trim().split('\n').filter((l) => !/^(INFO|WARN|ERROR|DEBUG):/.test(l)).length, 1);
    assert.match(run.stderr, /cannot read the vCenter credentials file \/nonexistent\/vc\.yaml: ENOENT/);
    assert.ok(!(await apps()).some((a) => oned.marketApp(a.id)?.marketId === bad), 'no apps from a failed monitor');
  });

  test('importing a VM app into a qcow2 datastore: qcow2 images with the right bytes, the guest converted, the template rewritten; it boots on virtio', async () => {
    const vmApp = (await apps()).find((a) => a.name === 'mkt-debian (127.0.0.1)')!;
    const started = Date.now();
    const result = await exportMarketApp({ endpoint: oned.endpoint, session: oned.adminSession, appId: vmApp.id, name: 'debian-imported', datastoreId: qcowDs });
    assert.equal(result.image.length, 2);
    assert.equal(result.vmtemplate.length, 1);
    const cps = () => oned.log.filter((e) => e.action === 'cp' && result.image.map(String).includes(e.argv[0]!));
    for (const id of result.image) {
      const img = await oned.waitImage(id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR], 20 * 60_000);
      assert.equal(img.state, IMAGE_STATE.READY, `image ${id}: ${img.template.get('ERROR')} ${cps().map((c) => c.stderr).join(' | ')}`);
    }
    const seconds = (Date.now() - started) / 1000;
    assert.ok(!oned.log.some((e) => e.action === 'stat' && e.payload.includes('mkt-debian')), 'the export sends no stat');
    assert.ok(cps().every((c) => c.payload.includes('<MARKETPLACE>')), 'cp got the marketplace');
    const [boot, data] = await Promise.all(result.image.map((id) => one.image(id)));
    for (const img of [boot!, data!]) assert.equal(cps().find((c) => c.argv[0] === String(img.id))!.stdout, `${img.source} qcow2\n`);
    assert.equal(createHash('sha256').update(await qcow2Bytes(data!.source, work)).digest('hex'), debian.disks[1]!.sha256, 'the data disk holds the source bytes');
    for (const img of [boot!, data!]) {
      assert.equal(img.format, 'qcow2');
      await execa('qemu-img', ['check', '-q', img.source]);
      assert.equal(img.template.get('ONESWAP_STATE'), 'CONVERTED');
      assert.equal(img.template.get('DEV_PREFIX'), 'vd');
      assert.match(img.template.get('ONESWAP_GUEST_OS') ?? '', /Debian GNU\/Linux 12/);
    }
    const tpl = await one.template(result.vmtemplate[0]!);
    assert.equal(tpl.name, 'debian-imported');
    assert.deepEqual(tpl.template.vectors('DISK').map((d) => [d.get('IMAGE_ID'), d.get('DEV_PREFIX')]), result.image.map((id) => [String(id), 'vd']));
    assert.equal(tpl.template.get('LOGO'), 'images/logos/debian.png');
    assert.match(tpl.template.get('ONESWAP_GUEST_OS') ?? '', /Debian/);
    assert.equal(tpl.template.get('ONESWAP_ERROR'), undefined);
    assert.equal(tpl.template.vector('OS')?.get('SD_DISK_BUS'), undefined, 'no SATA fallback for a converted guest');
    const boots = await bootCheck(boot!.source, { format: 'qcow2', bus: 'virtio', workDir: work });
    assert.equal(boots.outcome, 'login', boots.console.slice(-500));
    process.stderr.write(`# marketplace import of a 3 GiB guest + data disk, converted: ${seconds.toFixed(0)} s; boot ${boots.seconds.toFixed(0)} s\n`);
  });

  test('a disk that fails to copy: its image in ERROR, the others READY, the template says why', async () => {
    const vmApp = (await apps()).find((a) => a.name === 'mkt-data (127.0.0.1)')!;
    oned.setDriverAction('cp', (c) => (c.payload.includes('mkt-data?') && c.payload.includes('disk=1') ? { exitCode: 1, stderr: 'simulated copy failure\n' } : undefined));
    try {
      const result = await exportMarketApp({ endpoint: oned.endpoint, session: oned.adminSession, appId: vmApp.id, name: 'data-imported', datastoreId: peers.dsId });
      const [first, second] = await Promise.all(result.image.map((id) => oned.waitImage(id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR], 120_000)));
      assert.equal(second!.state, IMAGE_STATE.ERROR);
      assert.equal(first!.state, IMAGE_STATE.READY);
      assert.equal((await one.image(result.image[0]!)).template.get('ONESWAP_STATE'), 'COPIED');
      leftUnconverted = result.image[0];
      assert.equal(await sha256File((await one.image(result.image[0]!)).source), dataVm.disks[0]!.sha256);
      const tpl = await one.template(result.vmtemplate[0]!);
      assert.match(tpl.template.get('ONESWAP_ERROR') ?? '', new RegExp(`not converted: image ${result.image[1]} \\(disk 1\\): .*simulated copy failure`));
    } finally {
      oned.setDriverAction('cp', null);
    }
  });

  test('oneswap convert on the copied disk of the failed import finds no operating system: the image says NOT_CONVERTED', async () => {
    assert.ok(leftUnconverted !== undefined, 'the failed import left a copied disk');
    await writeFile(join(work, 'one_auth'), `${oned.adminSession}\n`, { mode: 0o600 });
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ONE_AUTH: join(work, 'one_auth'), ONESWAP_STATE_DIR: join(work, 'state') };
    const r = await oneswap(['convert', '--image', String(leftUnconverted), '--endpoint', oned.endpoint, '--progress', 'plain'], env, 10 * 60_000);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout + r.stderr, new RegExp(`no operating system found on images ${leftUnconverted}: nothing converted`));
    const img = await one.image(leftUnconverted!);
    assert.equal(img.template.get('ONESWAP_STATE'), 'NOT_CONVERTED');
    assert.equal(await sha256File(img.source), dataVm.disks[0]!.sha256);
  });
});

