// End to end: `oneswap import --ova/--vmdk` as the real command, from OVAs the fixture builds
// (test/peers/ova) into the OpenNebula simulator and into a directory; bad input of every kind
// the issue names; damaged OVAs (truncations, bit flips) through the whole import.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildOva, ovaToolsSkip, type BuiltOva } from '../peers/ova/index.js';
import { IMAGE_STATE, startOned, type Oned } from '../peers/one/index.js';
import { oneswap, spawnOneswap } from '../peers/cli.js';
import { readTarIndex } from '../../lib/input/tar-index.js';
import { OneswapError } from '../../lib/errors/index.js';
import { openOva } from '../../lib/input/index.js';
import { OneClient, parseTemplateText, type Template } from '../../lib/one/index.js';
import { fileImportVm } from '../../lib/supervisor/index.js';
import { bootCheck, guestSkip, testGuest } from '../peers/guest/index.js';
import { demoOva } from '../peers/guest/demo-ova.js';
import { applianceEnv } from '../../lib/convert/appliance.js';

const MiB = 1024 * 1024;
const skip = ovaToolsSkip();

/** sha256 of a disk or image file, which must be exactly as long as its disk (not mkfs's MiB-rounded SIZE). */
async function digestOf(path: string, size: number): Promise<string> {
  const data = await readFile(path);
  assert.equal(data.length, size, `${path} holds ${data.length} bytes, its disk ${size}`);
  return createHash('sha256').update(data).digest('hex');
}

/** A raw disk of `size` bytes with random data in the given islands, holes elsewhere. */
async function rawDisk(path: string, size: number, islands: Array<[number, number]>): Promise<void> {
  const h = await open(path, 'w');
  try {
    await h.truncate(size);
    for (const [offset, length] of islands) await h.write(randomBytes(length), 0, length, offset);
  } finally {
    await h.close();
  }
}

/** A ustar archive written by hand, so member names GNU tar would sanitize can be made. */
function tarOf(members: Array<{ name: string; data: Buffer }>): Buffer {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const h = Buffer.alloc(512);
    h.write(m.name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(m.data.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    const sum = h.reduce((s, b) => s + b, 0);
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, m.data, Buffer.alloc((512 - (m.data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

async function membersOf(ova: string): Promise<Array<{ name: string; data: Buffer }>> {
  const bytes = await readFile(ova);
  return (await readTarIndex(ova)).filter((m) => m.type === 'file').map((m) => ({ name: m.name, data: bytes.subarray(m.offset, m.offset + m.size) }));
}

interface Event {
  type: string;
  phase?: string;
  state?: string;
  ok?: boolean;
  imageIds?: number[];
  templateId?: number;
  vmId?: number;
  templateFile?: string;
  level?: string;
  message?: string;
  durationMs?: number;
  steps?: Array<{ step: string; ms: number }>;
}
const events = (stdout: string): Event[] => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Event);
const resultOf = (stdout: string): Event => events(stdout).find((e) => e.type === 'result')!;

/** The fixture disk an image was made from (the OVF orders disks by bus, not as the package lists them). */
function sourceDisk(ova: BuiltOva, source: string | undefined): BuiltOva['disks'][number] {
  const d = ova.disks.find((x) => x.member === source);
  assert.ok(d, `no disk ${source} in ${ova.ova}`);
  return d;
}

/** The words of a command line as a POSIX shell splits them (single quotes, and '\\'' inside them). */
function shellWords(line: string): string[] {
  return (line.match(/(?:'[^']*'|\\'|[^\s'\\])+/g) ?? []).map((w) => w.replace(/'([^']*)'|\\(')/g, '$1$2'));
}

/** A one-line error on stderr, `oneswap: ...`, and nothing else. */
function oneLineError(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one error line, got:\n${stderr}`);
  assert.match(lines[0]!, /^oneswap: /);
  return lines[0]!;
}

describe('oneswap import --ova / --vmdk', { skip, timeout: 15 * 60_000 }, () => {
  let work: string;
  let oned: Oned;
  let dsId: number;
  let env: Record<string, string>;
  let multi: BuiltOva;
  let sha256: BuiltOva;
  let vmdkDir: string;

  const oneArgs = (extra: string[]): string[] => ['import', '--datastore', String(dsId), '--endpoint', oned.endpoint, '--progress', 'json', ...extra];
  const dirArgs = (extra: string[]): string[] => ['import', '--progress', 'json', ...extra];
  const imageIds = (): number[] => [...Array(200).keys()].filter((id) => oned.image(id) !== undefined);
  /** The image ids once the datastore's rm actions (asynchronous, as in oned) have run, or after 10 s. */
  const settledImageIds = async (expected: readonly number[]): Promise<number[]> => {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      if (imageIds().join() === expected.join()) break;
    }
    return imageIds();
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-ova-'));
    oned = await startOned({ asyncDelayMs: 20 });
    // The directory target's images are created from their PATH: the datastore must allow the folder.
    dsId = await oned.createDatastore({ name: 'images', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', template: { SAFE_DIRS: `/var/tmp ${work}` } });
    oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 16 }] });
    oned.createNetwork({ name: 'backend', bridge: 'br1', ars: [{ type: 'ETHER', mac: '02:00:00:00:20:00', size: 16 }] });
    const auth = join(work, 'one_auth');
    await writeFile(auth, `${oned.adminSession}\n`, { mode: 0o600 });
    env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ONE_AUTH: auth, ONESWAP_STATE_DIR: join(work, 'state') };

    const raws = join(work, 'raw');
    await mkdir(raws);
    // Sizes that are not multiples of a grain (64 KiB), data islands at odd offsets, holes between.
    await rawDisk(join(raws, 'a.raw'), 48 * MiB + 4608, [[0, MiB], [7 * MiB + 4096, 3 * MiB], [30 * MiB + 512, 70000], [48 * MiB + 4608 - 8192, 8192]]);
    await rawDisk(join(raws, 'b.raw'), 16 * MiB, [[0, 65536], [16 * MiB - 65536, 65536]]);
    await rawDisk(join(raws, 'c.raw'), 5 * MiB, [[2 * MiB, 1536]]);
    multi = await buildOva(
      {
        name: 'multi',
        cpus: 4,
        coresPerSocket: 2,
        memoryMiB: 3072,
        firmware: 'efi',
        guestId: 'debian12_64Guest',
        nics: [{ network: 'VM Network', adapter: 'vmxnet3', mac: '00:50:56:01:02:03' }, { network: 'backend', adapter: 'e1000e', mac: '02:00:00:00:20:05' }],
        disks: [
          { raw: join(raws, 'a.raw'), bus: 'scsi', subformat: 'streamOptimized' },
          { raw: join(raws, 'b.raw'), bus: 'sata', subformat: 'monolithicSparse' },
          { raw: join(raws, 'c.raw'), bus: 'scsi', subformat: 'monolithicFlat' },
        ],
        manifest: 'sha1',
      },
      join(work, 'multi.ova'),
    );
    sha256 = await buildOva(
      { name: 'small', cpus: 1, memoryMiB: 512, disks: [{ raw: join(raws, 'c.raw') }], manifest: 'sha256', tarFormat: 'pax', ovfVersion: '2.0' },
      join(work, 'small.ova'),
    );
    vmdkDir = join(work, 'vmdk');
    await mkdir(vmdkDir);
    const { execa } = await import('execa');
    await execa('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse,adapter_type=ide', join(raws, 'a.raw'), join(vmdkDir, 'boot.vmdk')]);
    await execa('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', join(raws, 'b.raw'), join(vmdkDir, 'data.vmdk')]);
  });

  after(async () => {
    await oned?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('a multi-disk OVA (streamOptimized, monolithicSparse, monolithicFlat; SHA1 manifest) into OpenNebula', async () => {
    const r = await oneswap(oneArgs(['--ova', multi.ova, '--no-convert', '--instantiate']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    const result = resultOf(r.stdout);
    assert.equal(result.ok, true);
    assert.ok(result.vmId !== undefined && oned.vm(result.vmId) !== undefined, 'the VM exists');
    assert.equal(result.imageIds!.length, 3);
    for (const id of result.imageIds!) {
      const img = oned.image(id)!;
      assert.equal(img.state, IMAGE_STATE.USED_PERS, 'persistent and in use by the VM');
      assert.equal(img.template.get('ONESWAP_STATE'), 'DONE');
      const src = sourceDisk(multi, img.template.get('ONESWAP_SOURCE_DISK'));
      assert.equal(await digestOf(img.source, src.capacityBytes), src.rawSha256, `image ${id}`);
      assert.equal(img.template.get('ONESWAP_SOURCE_VM'), multi.ova);
    }
    // Boot disk first, then by bus: the SCSI disks (units 0, 1) before the SATA one.
    assert.deepEqual(
      result.imageIds!.map((id) => oned.image(id)!.template.get('ONESWAP_SOURCE_DISK')),
      [multi.disks[0]!.member, multi.disks[2]!.member, multi.disks[1]!.member],
    );
    // Only data was written: the first image allocates about its islands, not its 48 MiB.
    const allocated = (await stat(oned.image(result.imageIds![0]!)!.source)).blocks * 512;
    assert.ok(allocated < 6 * MiB, `image 0 allocates ${allocated} bytes`);
    const t = oned.template(result.templateId!)!.template;
    assert.equal(t.get('CPU'), '4');
    assert.equal(t.get('MEMORY'), '3072');
    assert.equal(t.vectors('OS')[0]!.get('FIRMWARE'), 'UEFI');
    assert.deepEqual(t.vectors('DISK').map((d) => d.get('IMAGE_ID')), result.imageIds!.map(String));
    const nics = t.vectors('NIC');
    assert.equal(nics.length, 2);
    assert.equal(nics[1]!.get('MAC'), '02:00:00:00:20:05', 'the MAC inside an address range is kept');
  });

  test('an OVF folder with a SHA256 manifest into a directory; the template and image files are what OpenNebula accepts', async () => {
    const out = join(work, 'out-small');
    const r = await oneswap(dirArgs(['--ova', sha256.unpackedDir, '--output-dir', out, '--no-convert', '--network-map', 'x=y']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(resultOf(r.stdout).templateFile, join(out, 'small.template'));
    assert.deepEqual((await readdir(out)).sort(), ['small-disk0.image', 'small-disk0.raw', 'small.README.txt', 'small.template']);
    assert.equal(await digestOf(join(out, 'small-disk0.raw'), sha256.disks[0]!.capacityBytes), sha256.disks[0]!.rawSha256);
    assert.match(await readFile(join(out, 'small.README.txt'), 'utf8'), /oneimage create -d <image datastore> .*small-disk0\.image/);
    // What the README says to do, against the simulator: the image from its template, then the VM
    // template, then a VM from it.
    const imageTemplate = await readFile(join(out, 'small-disk0.image'), 'utf8');
    const client = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession });
    try {
      const imageId = await client.imageAllocate(parseTemplateText(imageTemplate), dsId, false);
      const img = await client.waitForImage(imageId, { timeoutMs: 60_000, signal: AbortSignal.timeout(60_000) });
      assert.equal(await digestOf(img.source, sha256.disks[0]!.capacityBytes), sha256.disks[0]!.rawSha256);
      const templateId = await client.templateAllocate(parseTemplateText(await readFile(join(out, 'small.template'), 'utf8')));
      assert.ok(templateId >= 0);
    } finally {
      client.close();
    }
  });

  test('--output-format qcow2: the disks written as qcow2 in the same single pass, check clean, exact bytes, only data clusters; image templates say FORMAT qcow2', async () => {
    const out = join(work, 'out-qcow2');
    const bad = await oneswap(dirArgs(['--ova', multi.ova, '--output-dir', out, '--output-format', 'vmdk', '--no-convert']), env);
    assert.equal(bad.exitCode, 2);
    assert.match(bad.stderr, /--output-format vmdk: say raw or qcow2/);
    const r = await oneswap(dirArgs(['--ova', multi.ova, '--output-dir', out, '--output-format', 'qcow2', '--no-convert', '--network-map', 'VM Network=1', '--network-map', 'backend=1']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    const { execa } = await import('execa');
    for (let i = 0; i < multi.disks.length; i++) {
      const imageTemplate = await readFile(join(out, `multi-disk${i}.image`), 'utf8');
      const d = sourceDisk(multi, /ONESWAP_SOURCE_DISK\s*=\s*"([^"]+)"/.exec(imageTemplate)![1]);
      const file = join(out, `multi-disk${i}.qcow2`);
      const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', file])).stdout) as { format: string; 'virtual-size': number };
      assert.equal(info.format, 'qcow2');
      assert.equal(info['virtual-size'], d.capacityBytes);
      await execa('qemu-img', ['check', '-q', file]);
      const raw = join(work, `qcow2-back-${i}.raw`);
      await execa('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, raw]);
      assert.equal(await digestOf(raw, d.capacityBytes), d.rawSha256, `disk ${i}`);
      await rm(raw);
      // Clusters of 64 KiB: no more than the data's clusters are allocated.
      const map = JSON.parse((await execa('qemu-img', ['map', '--output=json', '-f', 'qcow2', file])).stdout) as Array<{ start: number; length: number; data: boolean }>;
      const src = await readFile(d.rawPath);
      const want = new Set<number>();
      for (let off = 0; off < src.length; off += 4096) if (src.subarray(off, off + 4096).some((b) => b !== 0)) want.add(Math.floor(off / 65536));
      const allocated = map.filter((e) => e.data).reduce((sum, e) => sum + e.length, 0);
      const expected = [...want].reduce((sum, c) => sum + Math.min(65536, d.capacityBytes - c * 65536), 0);
      assert.equal(allocated, expected, `disk ${i} allocates only the clusters holding data`);
      assert.match(imageTemplate, /FORMAT\s*=\s*"qcow2"/);
    }
  });

  test('--compressed: qcow2 clusters compressed in the same single pass; exact bytes, check clean, every data cluster compressed that zlib shrinks; only with --output-format qcow2', async () => {
    const out = join(work, 'out-compressed');
    const refused: Array<[string[], RegExp]> = [
      [['--output-dir', out, '--compressed'], /^oneswap: --compressed needs --output-format qcow2/],
      [['--output-dir', out, '--output-format', 'raw', '--compressed'], /^oneswap: --compressed needs --output-format qcow2/],
      [['--compressed'], /^oneswap: --compressed is for --output-dir with --output-format qcow2/],
    ];
    for (const [args, error] of refused) {
      const bad = await oneswap(dirArgs(['--ova', multi.ova, ...args, '--no-convert']), env);
      assert.equal(bad.exitCode, 2, args.join(' '));
      assert.match(oneLineError(bad.stderr), error);
    }
    const r = await oneswap(dirArgs(['--ova', multi.ova, '--output-dir', out, '--output-format', 'qcow2', '--compressed', '--no-convert', '--network-map', 'VM Network=1', '--network-map', 'backend=1']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    const { execa } = await import('execa');
    const { deflateRawSync } = await import('node:zlib');
    const C = 65536;
    let compressed = 0;
    for (let i = 0; i < multi.disks.length; i++) {
      const imageTemplate = await readFile(join(out, `multi-disk${i}.image`), 'utf8');
      assert.match(imageTemplate, /FORMAT\s*=\s*"qcow2"/);
      const d = sourceDisk(multi, /ONESWAP_SOURCE_DISK\s*=\s*"([^"]+)"/.exec(imageTemplate)![1]);
      const file = join(out, `multi-disk${i}.qcow2`);
      const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', file])).stdout) as { format: string; 'virtual-size': number };
      assert.deepEqual([info.format, info['virtual-size']], ['qcow2', d.capacityBytes]);
      const raw = join(work, `compressed-back-${i}.raw`);
      await execa('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, raw]);
      assert.equal(await digestOf(raw, d.capacityBytes), d.rawSha256, `disk ${i}`);
      await rm(raw);
      // The clusters holding data are allocated; qemu stores a cluster compressed when zlib
      // (raw deflate, 4 KiB window, as qemu calls it) makes it smaller than a cluster, else as it is.
      const src = await readFile(d.rawPath);
      let data = 0;
      let shrinks = 0;
      for (let off = 0; off < src.length; off += C) {
        const cluster = Buffer.concat([src.subarray(off, off + C)], C);
        if (cluster.every((b) => b === 0)) continue;
        data++;
        const deflated = deflateRawSync(cluster, { windowBits: 12, memLevel: 9 }).length;
        assert.ok(Math.abs(deflated - (C - 1)) > 64, `disk ${i}: the cluster at ${off} deflates to ${deflated} bytes, too near a cluster for a clear answer`);
        if (deflated < C - 1) shrinks++;
      }
      const check = JSON.parse((await execa('qemu-img', ['check', '--output=json', file])).stdout) as Record<string, number>;
      // qemu leaves out a count of 0.
      assert.deepEqual([check['check-errors'], check['allocated-clusters'], check['compressed-clusters'] ?? 0], [0, data, shrinks], `disk ${i}`);
      compressed += shrinks;
    }
    assert.ok(compressed > 0, 'compressed clusters were written');
  });

  test("--output-dir keeps the source MACs: the summary's commands, run as it says, give the VM exactly those MACs", async () => {
    const netIds = new Map([
      ['lan a', oned.createNetwork({ name: 'lan a', bridge: 'br2', ars: [{ type: 'ETHER', mac: '02:00:00:00:30:00', size: 8 }] })],
      ['lan-b', oned.createNetwork({ name: 'lan-b', bridge: 'br3', ars: [{ type: 'ETHER', mac: '02:00:00:00:31:00', size: 8 }] })],
    ]);
    const ova = await buildOva(
      {
        name: 'macs',
        cpus: 1,
        memoryMiB: 512,
        nics: [{ network: 'lan a', mac: '00:50:56:0A:0B:01' }, { network: 'lan-b', adapter: 'e1000e', mac: '00:50:56:0a:0b:02' }, { network: 'lan-b' }],
        disks: [{ raw: join(work, 'raw', 'c.raw') }],
      },
      join(work, 'macs.ova'),
    );
    const out = join(work, 'out-macs');
    const r = await oneswap(dirArgs(['--ova', ova.ova, '--output-dir', out, '--no-convert']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual((await readdir(out)).sort(), ['macs-disk0.image', 'macs-disk0.raw', 'macs-nic0.ar', 'macs-nic1.ar', 'macs.README.txt', 'macs.template']);
    assert.deepEqual(
      parseTemplateText(await readFile(join(out, 'macs.template'), 'utf8')).vectors('NIC').map((n) => [n.get('NETWORK'), n.get('MAC')]),
      [['lan a', '00:50:56:0a:0b:01'], ['lan-b', '00:50:56:0a:0b:02'], ['lan-b', undefined]],
      'the template asks for each source MAC; the NIC without one asks for none',
    );
    assert.deepEqual(
      [...parseTemplateText(await readFile(join(out, 'macs-nic1.ar'), 'utf8')).vectors('AR')[0]!],
      [['TYPE', 'ETHER'], ['MAC', '00:50:56:0a:0b:02'], ['SIZE', '1']],
    );

    // The commands exactly as the summary writes them, run against the simulator as oneadmin.
    const summary = await readFile(join(out, 'macs.README.txt'), 'utf8');
    const commands = [...summary.matchAll(/^ {5}(one(?:image|vnet|template) .*)$/gm)].map((m) => shellWords(m[1]!.replace('<image datastore>', String(dsId))));
    assert.deepEqual(
      commands.map((c) => c.slice(0, 2).join(' ')),
      ['oneimage create', 'onevnet addar', 'onevnet addar', 'onetemplate create'],
      'images, one address range per kept MAC, then the template',
    );
    assert.match(summary, /as oneadmin/);
    const admin = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession });
    oned.createUser('macuser', 'pw');
    const user = await OneClient.connect({ endpoint: oned.endpoint, secret: 'macuser:pw' });
    try {
      const run = async (c: string[], client: OneClient): Promise<number> => {
        const file = async (path: string | undefined): Promise<Template> => parseTemplateText(await readFile(path!, 'utf8'));
        if (c[0] === 'oneimage') {
          assert.deepEqual(c.slice(0, 3), ['oneimage', 'create', '-d']);
          const id = await client.imageAllocate(await file(c[4]), Number(c[3]));
          await client.waitForImage(id, { timeoutMs: 60_000, signal: AbortSignal.timeout(60_000) });
          return id;
        }
        if (c[0] === 'onevnet') {
          const vnet = (await client.vnets()).find((v) => v.name === c[2]);
          assert.ok(vnet, `no network named ${c[2]}`);
          await client.vnetAddAr(vnet.id, await file(c[3]));
          return vnet.id;
        }
        return client.templateAllocate(await file(c[2]));
      };
      const templateCommand = commands.find((c) => c[0] === 'onetemplate')!;
      await assert.rejects(run(templateCommand, user), /VM Template includes a restricted attribute NIC\/MAC/, 'a user outside oneadmin may not create it');
      for (const c of commands.filter((x) => x[0] === 'oneimage')) await run(c, admin);
      const templateId = await run(templateCommand, admin);
      // Without the ranges OpenNebula has no lease for the source MACs.
      await assert.rejects(admin.templateInstantiate(templateId, { name: 'macs-no-ranges', hold: true }), new RegExp(`Cannot get IP/MAC lease from virtual network ${netIds.get('lan a')}`));
      for (const c of commands.filter((x) => x[0] === 'onevnet')) await run(c, admin);
      const vmId = await admin.templateInstantiate(templateId, { name: 'macs', hold: true });
      assert.deepEqual(
        oned.vm(vmId)!.template.vectors('NIC').map((n) => [n.get('NETWORK'), n.get('MAC')]),
        [['lan a', '00:50:56:0a:0b:01'], ['lan-b', '00:50:56:0a:0b:02'], ['lan-b', '02:00:00:00:31:00']],
        'the VM has the source MACs; the NIC without one gets the network\'s first free lease',
      );
    } finally {
      admin.close();
      user.close();
    }

    // --no-keep-mac: no MAC asked for, no range to add.
    const loose = join(work, 'out-macs-loose');
    const l = await oneswap(dirArgs(['--ova', ova.ova, '--output-dir', loose, '--no-convert', '--no-keep-mac']), env);
    assert.equal(l.exitCode, 0, l.stderr);
    assert.deepEqual((await readdir(loose)).sort(), ['macs-disk0.image', 'macs-disk0.raw', 'macs.README.txt', 'macs.template']);
    assert.deepEqual(parseTemplateText(await readFile(join(loose, 'macs.template'), 'utf8')).vectors('NIC').map((n) => n.get('MAC')), [undefined, undefined, undefined]);
    assert.match(await readFile(join(loose, 'macs.README.txt'), 'utf8'), /The NICs ask for no MAC \(--no-keep-mac\): OpenNebula picks them\./);
  });

  test('the other way round: the multi-disk OVA into a directory, the SHA256 OVA into OpenNebula', async () => {
    const out = join(work, 'out-multi');
    const d = await oneswap(dirArgs(['--ova', multi.ova, '--output-dir', out, '--no-convert']), env);
    assert.equal(d.exitCode, 0, d.stderr);
    // Disk files in boot order: SCSI 0:0, SCSI 0:1, then SATA.
    for (const [i, src] of [multi.disks[0]!, multi.disks[2]!, multi.disks[1]!].entries()) {
      assert.equal(await digestOf(join(out, `multi-disk${i}.raw`), src.capacityBytes), src.rawSha256, `disk ${i}`);
      assert.match(await readFile(join(out, `multi-disk${i}.image`), 'utf8'), new RegExp(`ONESWAP_SOURCE_DISK = "${src.member}"`));
    }
    assert.ok(!(await readdir(out)).some((f) => f.endsWith('.part') || f.endsWith('.json')), 'no unfinished or state files left');

    const r = await oneswap(oneArgs(['--ova', sha256.ova, '--no-convert', '--name-prefix', 'sha256-']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    const img = oned.image(resultOf(r.stdout).imageIds![0]!)!;
    assert.equal(img.state, IMAGE_STATE.READY);
    assert.equal(await digestOf(img.source, sha256.disks[0]!.capacityBytes), sha256.disks[0]!.rawSha256);
  });

  test('bare VMDKs (twoGbMaxExtentSparse on IDE, monolithicFlat) into a directory, hardware from the options', async () => {
    const out = join(work, 'out-vmdk');
    const r = await oneswap(
      dirArgs(['--vmdk', join(vmdkDir, 'boot.vmdk'), join(vmdkDir, 'data.vmdk'), '--name', 'bare', '--cpus', '2', '--memory', '4G', '--firmware', 'efi', '--output-dir', out, '--no-convert']),
      env,
    );
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(await digestOf(join(out, 'bare-disk0.raw'), multi.disks[0]!.capacityBytes), multi.disks[0]!.rawSha256);
    assert.equal(await digestOf(join(out, 'bare-disk1.raw'), multi.disks[1]!.capacityBytes), multi.disks[1]!.rawSha256);
    const t = await readFile(join(out, 'bare.template'), 'utf8');
    assert.match(t, /CPU = "2"/);
    assert.match(t, /MEMORY = "4096"/);
    assert.match(t, /FIRMWARE = "UEFI"/);
    assert.match(await readFile(join(out, 'bare-disk0.image'), 'utf8'), /ONESWAP_DISK_BUS = "ide"/);
  });

  test('a manifest mismatch fails the import and leaves no image and no finished file', async () => {
    const members = await membersOf(multi.ova);
    const disk = members.find((m) => m.name === multi.disks[1]!.member)!;
    // A byte inside the grain data of the monolithicSparse disk: the VMDK still decodes.
    const data = Buffer.from(disk.data);
    data[data.length - 100] = data[data.length - 100]! ^ 0x55;
    const bad = join(work, 'mismatch.ova');
    await writeFile(bad, tarOf(members.map((m) => (m === disk ? { name: m.name, data } : m))));
    const before = imageIds();
    const r = await oneswap(oneArgs(['--ova', bad, '--no-convert', '--name-prefix', 'mismatch-']), env);
    assert.equal(r.exitCode, 9, r.stderr);
    assert.match(oneLineError(r.stderr), /checksum mismatch for multi-disk2\.vmdk/);
    assert.deepEqual(await settledImageIds(before), before, 'the images of the failed import are removed');

    const out = join(work, 'out-mismatch');
    const d = await oneswap(dirArgs(['--ova', bad, '--output-dir', out, '--no-convert']), env);
    assert.equal(d.exitCode, 9);
    oneLineError(d.stderr);
    assert.deepEqual(await readdir(out), [], 'nothing is left in the directory');
  });

  test('bad input: one-line errors, non-zero exit, nothing written', async () => {
    const members = await membersOf(sha256.ova);
    const ovf = members.find((m) => m.name.endsWith('.ovf'))!;
    const vmdk = members.find((m) => m.name.endsWith('.vmdk'))!;
    const noManifest = members.filter((m) => !m.name.endsWith('.mf'));
    const corruptGrain = Buffer.from(vmdk.data);
    // The first grain marker is where the header's overhead (sectors, u64 at byte 64) ends; its
    // deflate stream starts after the 12-byte marker and the 2-byte zlib header.
    const grainStart = Number(vmdk.data.readBigUInt64LE(64)) * 512 + 12 + 2;
    for (let i = grainStart; i < grainStart + 64; i++) corruptGrain[i] = corruptGrain[i]! ^ 0xff;
    const cowd = Buffer.concat([Buffer.from('COWD'), Buffer.alloc(2044)]);
    const outsideDescriptor = Buffer.from('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "../secret-flat.vmdk" 0\n');
    const cases: Array<{ what: string; file: Buffer | string; error: RegExp; args?: string[] }> = [
      { what: 'a truncated OVA', file: (await readFile(sha256.ova)).subarray(0, 512 + ovf.data.length + 4096), error: /truncated/ },
      { what: 'a member named with ..', file: tarOf([ovf, { name: '../evil.vmdk', data: vmdk.data }]), error: /unsafe|\.\./ },
      { what: 'an absolute member name', file: tarOf([ovf, { name: '/etc/evil.vmdk', data: vmdk.data }]), error: /unsafe|absolute/ },
      { what: 'a missing disk member', file: tarOf(noManifest.filter((m) => m !== vmdk)), error: /has no file/ },
      { what: 'a corrupt compressed grain', file: tarOf(noManifest.map((m) => (m === vmdk ? { name: m.name, data: corruptGrain } : m))), error: /corrupt|compressed|grain/i },
      { what: 'an unknown VMDK subformat', file: tarOf(noManifest.map((m) => (m === vmdk ? { name: m.name, data: cowd } : m))), error: /vmfsSparse|COWD|not supported|unsupported/i },
      {
        what: 'a descriptor of an unknown subformat',
        file: tarOf(noManifest.map((m) => (m === vmdk ? { name: m.name, data: Buffer.from('# Disk DescriptorFile\nversion=1\ncreateType="hyperSparseV9"\nRW 2048 SPARSE "x.vmdk"\n') } : m))),
        error: /unknown VMDK subformat "hyperSparseV9"/,
      },
      { what: 'a descriptor pointing outside its folder', file: tarOf(noManifest.map((m) => (m === vmdk ? { name: m.name, data: outsideDescriptor } : m))), error: /outside|not a file of the package/ },
      { what: 'XML that is not OVF', file: tarOf([{ name: 'x.ovf', data: Buffer.from('<?xml version="1.0"?><html><body/></html>') }, vmdk]), error: /not an OVF descriptor/ },
      { what: 'not a tar at all', file: randomBytes(4096), error: /tar|OVA/i },
    ];
    for (const c of cases) {
      const root = await mkdtemp(join(work, 'bad-'));
      const ova = join(root, 'in.ova');
      await writeFile(ova, c.file);
      await writeFile(join(root, 'secret-flat.vmdk'), Buffer.alloc(2048 * 512, 1));
      const out = join(root, 'out');
      const before = (await readdir(root)).sort();
      const r = await oneswap(dirArgs(['--ova', ova, '--output-dir', out, '--no-convert']), env, 60_000);
      assert.notEqual(r.exitCode, 0, `${c.what}: exit 0`);
      assert.ok(r.exitCode > 1, `${c.what}: exit ${r.exitCode} is not a typed error (${r.stderr})`);
      assert.match(oneLineError(r.stderr), c.error, c.what);
      assert.deepEqual((await readdir(root)).filter((f) => f !== 'out').sort(), before, `${c.what}: nothing written beside the target`);
      assert.deepEqual(await readdir(out).catch(() => []), [], `${c.what}: nothing left in the target`);
    }
    // A bare VMDK whose descriptor points outside its folder.
    const root = await mkdtemp(join(work, 'bad-vmdk-'));
    await writeFile(join(root, 'd.vmdk'), outsideDescriptor);
    const r = await oneswap(dirArgs(['--vmdk', join(root, 'd.vmdk'), '--output-dir', join(root, 'out'), '--no-convert']), env, 60_000);
    assert.equal(r.exitCode, 9);
    assert.match(oneLineError(r.stderr), /outside|not a file/);
  });

  test('usage errors name the option', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--ova', sha256.ova, '--vmdk', 'x.vmdk', '--output-dir', work], /do not go together/],
      [['--ova', sha256.ova], /needs --datastore ID .* or --output-dir/],
      [['--ova', sha256.ova, '--output-dir', work, '--instantiate'], /need OpenNebula/],
      [['--ova', sha256.ova, '--output-dir', work, '--cpus', '2'], /--cpus is for --vmdk/],
      [['--ova', sha256.ova, '--output-dir', work, 'web01'], /VM names/],
      [['--ova', join(work, 'nope.ova'), '--output-dir', work], /cannot read/],
    ];
    for (const [args, error] of cases) {
      const r = await oneswap(dirArgs(args), env, 60_000);
      assert.ok(r.exitCode === 2 || r.exitCode === 5, `${args.join(' ')}: exit ${r.exitCode}`);
      assert.match(oneLineError(r.stderr), error);
    }
  });

  test('a re-run after kill -9 in the copy resumes and ends with the exact bytes', async () => {
    const ids = imageIds();
    const child = spawnOneswap(oneArgs(['--ova', multi.ova, '--no-convert', '--name', 'resumed']), env);
    let killed = false;
    child.stdout!.on('data', (b: Buffer) => {
      if (!killed && /"type":"disk"/.test(b.toString())) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    await child;
    assert.ok(killed, 'the import was killed during the copy');
    const left = imageIds().filter((id) => !ids.includes(id));
    assert.ok(left.length > 0, 'placeholders exist after the kill');
    for (const id of left) assert.notEqual(oned.image(id)!.template.get('ONESWAP_STATE'), 'DONE');
    const r = await oneswap(oneArgs(['--ova', multi.ova, '--no-convert', '--name', 'resumed']), env);
    assert.equal(r.exitCode, 0, r.stderr);
    const result = resultOf(r.stdout);
    assert.deepEqual([...result.imageIds!].sort(), [...left].sort(), 'the same images are used again');
    for (const id of result.imageIds!) {
      const img = oned.image(id)!;
      const src = sourceDisk(multi, img.template.get('ONESWAP_SOURCE_DISK'));
      assert.equal(await digestOf(img.source, src.capacityBytes), src.rawSha256, `image ${id}`);
    }
  });

  test('damaged OVAs (truncations and bit flips at many offsets): a clean error or the exact bytes, never a crash or a hang', async () => {
    const original = await readFile(sha256.ova);
    const size = original.length;
    const offsets = new Set<number>();
    for (let i = 0; i < 24; i++) offsets.add(Math.floor((size * i) / 24));
    for (const m of await readTarIndex(sha256.ova)) for (const d of [-512, -1, 0, 1, 100, 600, m.size - 1]) offsets.add(Math.max(0, Math.min(size - 1, m.offset + d)));
    const cases: Array<{ what: string; bytes: Buffer }> = [];
    for (const o of [...offsets].sort((a, b) => a - b)) {
      cases.push({ what: `truncated at ${o}`, bytes: original.subarray(0, o) });
      const flipped = Buffer.from(original);
      flipped[o] = flipped[o]! ^ (1 << (o % 8));
      cases.push({ what: `bit flip at ${o}`, bytes: flipped });
    }
    let errors = 0;
    for (const c of cases) {
      const root = await mkdtemp(join(work, 'fuzz-'));
      const ova = join(root, 'in.ova');
      await writeFile(ova, c.bytes);
      const out = join(root, 'out');
      const signal = AbortSignal.timeout(30_000);
      let outcome: 'ok' | 'error';
      try {
        const vm = await openOva(ova);
        const r = await fileImportVm({ emit: () => undefined, signal }, vm, {
          target: { kind: 'dir', dir: out, format: 'raw' },
          convert: false,
          networkMap: new Map(),
          keepMac: true,
          keepIp: false,
          instantiate: false,
          keepOnFailure: false,
          namePrefix: '',
          streams: 4,
          stateDir: join(root, 'state'),
          logDir: join(root, 'logs'),
          runId: 'fuzz',
          additions: {},
        });
        if (!r.ok) throw r.error;
        outcome = 'ok';
      } catch (err) {
        assert.ok(err instanceof OneswapError, `${c.what}: ${String(err)}`);
        assert.notEqual(err.kind, 'internal', c.what);
        assert.ok(!signal.aborted, `${c.what}: hung`);
        outcome = 'error';
      }
      if (outcome === 'ok') {
        assert.equal(await digestOf(join(out, 'small-disk0.raw'), sha256.disks[0]!.capacityBytes), sha256.disks[0]!.rawSha256, `${c.what}: imported, so the bytes must be exact`);
      } else {
        errors++;
        const left = await readdir(out).catch(() => [] as string[]);
        assert.ok(!left.some((f) => f.endsWith('.raw') || f.endsWith('.template')), `${c.what}: finished-looking files left: ${left.join(', ')}`);
      }
      await rm(root, { recursive: true, force: true });
    }
    assert.ok(errors > cases.length / 2, `${errors} of ${cases.length} damaged OVAs were refused`);
  });
});

describe('the demo OVA (the Debian test guest) converted and booted, on the network by its MAC', { skip: skip || guestSkip(), timeout: 30 * 60_000 }, () => {
  let work: string;
  let ova: string;
  let guestRaw: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-ova-guest-'));
    guestRaw = await testGuest();
    ova = await demoOva();
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test("the README's command: into a directory, converted; the disk boots on virtio-blk", async () => {
    const out = join(work, 'demo');
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ONESWAP_STATE_DIR: join(work, 'state') };
    const r = await oneswap(['import', '--ova', ova, '--output-dir', out, '--progress', 'json'], env, 20 * 60_000);
    assert.equal(r.exitCode, 0, r.stderr);
    const convert = events(r.stdout).find((e) => e.type === 'phase' && e.phase === 'convert' && e.state === 'done');
    assert.ok(convert, 'the guest was converted');
    const disk = join(out, 'oneswap-demo-disk0.raw');
    const template = await readFile(join(out, 'oneswap-demo.template'), 'utf8');
    assert.match(template, /DEV_PREFIX = "vd"/);
    assert.match(template, /MODEL = "virtio"/);
    assert.doesNotMatch(template, /SD_DISK_BUS/);
    assert.match(await readFile(join(out, 'oneswap-demo-disk0.image'), 'utf8'), /ONESWAP_STATE = "CONVERTED"/);
    const summary = await readFile(join(out, 'oneswap-demo.README.txt'), 'utf8');
    assert.match(summary, /Debian GNU\/Linux 12.*converted for KVM/);
    assert.match(summary, /ens192 \(dhcp\) -> NIC 0 "VM Network", MAC 00:50:56:8a:00:01/, 'the summary says what oneswap did to the guest\'s network');
    // virt-v2v's one warning on this guest, said once, explained from its boot files: grub.cfg
    // finds / by UUID, and virt-v2v renamed fstab's /dev/sda1 to /dev/vda1.
    const grub = events(r.stdout).filter((e) => e.type === 'log' && /could not determine a way to update the configuration of Grub2/.test(e.message ?? ''));
    assert.equal(grub.length, 1, 'said once');
    assert.equal(grub[0]!.level, 'info', 'harmless, so not a warning');
    assert.match(
      grub[0]!.message!,
      /^convert: virt-v2v warned "could not determine a way to update the configuration of Grub2": the guest has neither grubby nor Perl Bootloader::Tools, .*\. Harmless for this guest: GRUB starts vmlinuz-[\d.]+-\d+-amd64 by default, the kernel whose initramfs virt-v2v rebuilt with the virtio drivers; \/boot\/grub\/grub\.cfg passes root=UUID=[0-9a-f-]{36}; \/etc\/fstab mounts \/ from \/dev\/vda1 \(its name on virtio-blk\): the guest boots\.$/,
    );
    assert.ok(summary.includes(`Notes:\n  - ${grub[0]!.message!.replace(/^convert: /, '')}`), "the summary's notes say it too");
    // The conversion is announced and timed; its time is kept for the next one.
    const conversion = events(r.stdout).filter((e) => e.type === 'conversion');
    assert.deepEqual([conversion[0]!.state, conversion.at(-1)!.state, conversion.at(-1)!.ok], ['start', 'end', true]);
    assert.ok(conversion.at(-1)!.steps!.some((x) => /^Converting .* to run on KVM$/.test(x.step)), 'virt-v2v\'s steps are timed');
    const times = JSON.parse(await readFile(join(work, 'state', 'conversion-times.json'), 'utf8')) as { vms: Record<string, { ms: number }> };
    assert.equal(times.vms[ova]!.ms, conversion.at(-1)!.durationMs);
    // The template asks for the source MAC the guest is bound to; the summary says how to get it.
    assert.match(template, /MAC = "00:50:56:8a:00:01"/);
    assert.match(summary, new RegExp(`onevnet addar 'VM Network' ${join(out, 'oneswap-demo-nic0.ar').replace(/[.]/g, '\\.')}`));
    // Sparse: the disk holds about the guest's data, not its 3 GiB.
    const s = await stat(disk);
    assert.ok(s.blocks * 512 < (await stat(guestRaw)).blocks * 512 * 1.2, 'the converted disk stays sparse');
    // With the source MAC, as the template asks.
    const boot = await bootCheck(disk, { format: 'raw', bus: 'virtio', workDir: work, nic: { mac: '00:50:56:8a:00:01' } });
    assert.equal(boot.outcome, 'login', `booted to ${boot.outcome} after ${boot.seconds} s:\n${boot.console.slice(-1500)}`);
    assert.deepEqual(boot.network?.links, ['ens192'], boot.console.slice(-800));
    assert.equal(boot.network?.ipv4.get('ens192'), '10.0.2.15/24', `the guest came up on the network: ${boot.console.slice(-800)}`);
    // A DHCP guest leaves its network to OpenNebula's contextualization.
    assert.match(template, /CONTEXT = \[[^\]]*NETWORK = "YES"/);

    // The control: the same converted disk without the udev rules oneswap's network step wrote (on
    // an overlay) boots with the NIC under another name and no address: the step is what matters.
    const overlay = join(work, 'without-network-step.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', disk, overlay]);
    await execa('guestfish', ['--format=qcow2', '-a', overlay, '-i', 'rm', '/etc/udev/rules.d/70-oneswap-net.rules'], { env: await applianceEnv() });
    const control = await bootCheck(overlay, { format: 'qcow2', bus: 'virtio', workDir: work, nic: { mac: '00:50:56:8a:00:01' } });
    assert.equal(control.outcome, 'login');
    assert.ok(!control.network?.links.includes('ens192'), `the NIC is not ens192 without the step: ${control.network?.links.join(' ')}`);
    assert.equal(control.network?.ipv4.size, 0, 'and the guest has no address');
  });
});
