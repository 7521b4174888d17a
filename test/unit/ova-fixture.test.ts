import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describeOvfVm, ovfDisks, parseOvf } from '../../lib/input/ovf.js';
import { buildOva, ovaToolsSkip, type BuiltOva, type OvaSpec } from '../peers/ova/index.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const skip = ovaToolsSkip();
if (skip) process.stderr.write(`\n*** SKIPPED OVA fixture tests: ${skip} ***\n\n`);

let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'oneswap-ova-fixture-'));
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** A sparse raw file of `size` bytes with random data at the given offsets (holes elsewhere). */
async function rawFile(path: string, size: number, islands: Array<[offset: number, length: number]>): Promise<void> {
  const h = await open(path, 'w');
  try {
    await h.truncate(size);
    for (const [offset, length] of islands) await h.write(randomBytes(length), 0, length, offset);
  } finally {
    await h.close();
  }
}

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function toRaw(vmdk: string, out: string): Promise<string> {
  await run('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', vmdk, out]);
  return sha256Of(out);
}

function spec(raws: string[], extra: Partial<OvaSpec> = {}): OvaSpec {
  return {
    name: 'web01',
    cpus: 4,
    coresPerSocket: 2,
    memoryMiB: 3072,
    firmware: 'efi',
    secureBoot: true,
    guestId: 'debian12_64Guest',
    guestFullName: 'Debian GNU/Linux 12 (64-bit)',
    annotation: 'built by a test & kept <short>',
    nics: [
      { network: 'VM Network', adapter: 'vmxnet3', mac: '00:50:56:01:02:03' },
      { network: 'backup', adapter: 'e1000e' },
    ],
    disks: [{ raw: raws[0]! }, { raw: raws[1]!, bus: 'sata' }],
    ...extra,
  };
}

async function tarList(ova: string): Promise<string[]> {
  const { stdout } = await run('tar', ['-tvf', ova]);
  return stdout
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).slice(5).join(' '));
}

test('a 2-disk OVA: members in VMware order, VMDKs equal their raw source, digests, round trip through parseOvf', { skip }, async () => {
  const a = join(work, 'a.raw');
  const b = join(work, 'b.raw');
  // a: 4 MiB with data at the start, in the middle and at the very end, holes between.
  await rawFile(a, 4 * MiB, [[0, 64 * 1024], [MiB + 4096, 300 * 1024], [4 * MiB - 8192, 8192]]);
  // b: not a multiple of 64 KiB (but of 512, as qemu-img rounds capacity up to sectors).
  const bSize = 3 * MiB + 12 * 512;
  await rawFile(b, bSize, [[512, 1000], [2 * MiB, 70000], [bSize - 512, 512]]);
  const out = join(work, 'web01.ova');
  const built: BuiltOva = await buildOva(spec([a, b]), out);

  assert.deepEqual(built.members, ['web01.ovf', 'web01.mf', 'web01-disk1.vmdk', 'web01-disk2.vmdk']);
  assert.deepEqual(await tarList(out), built.members);
  assert.deepEqual((await readdir(built.unpackedDir)).sort(), [...built.members].sort());

  // Every member in the tar is byte-identical to the unpacked file.
  const x = join(work, 'extract');
  await run('mkdir', ['-p', x]);
  await run('tar', ['-xf', out, '-C', x]);
  for (const m of built.members) assert.equal(await sha256Of(join(x, m)), await sha256Of(join(built.unpackedDir, m)), m);

  // The VMDKs are streamOptimized and give the raw data back.
  for (const [i, d] of built.disks.entries()) {
    const { stdout } = await run('qemu-img', ['info', '--output=json', join(built.unpackedDir, d.member)]);
    const info = JSON.parse(stdout) as { format: string; 'virtual-size': number; 'format-specific'?: { data?: { 'create-type'?: string } } };
    assert.equal(info.format, 'vmdk');
    assert.equal(info['format-specific']?.data?.['create-type'], 'streamOptimized');
    assert.equal(info['virtual-size'], d.capacityBytes);
    assert.equal(await toRaw(join(built.unpackedDir, d.member), join(work, `back${i}.raw`)), d.rawSha256);
  }
  assert.equal(built.disks[0]!.capacityBytes, 4 * MiB);
  assert.equal(built.disks[1]!.capacityBytes, bSize);
  assert.equal(built.disks[0]!.rawSha256, await sha256Of(a));
  assert.equal(built.disks[1]!.rawSha256, await sha256Of(b));

  // The manifest: VMware's syntax, right digests, the .ovf first.
  const mf = (await readFile(join(built.unpackedDir, 'web01.mf'), 'utf8')).trim().split('\n');
  assert.equal(mf.length, 3);
  for (const line of mf) {
    const m = /^SHA256\(([^)]+)\)= ([0-9a-f]{64})$/.exec(line);
    assert.ok(m, line);
    assert.equal(m[2], await sha256Of(join(built.unpackedDir, m[1]!)));
    assert.equal(built.digests.get(m[1]!), m[2]);
  }
  assert.match(mf[0]!, /^SHA256\(web01\.ovf\)/);

  // parseOvf + describeOvfVm give the spec back.
  const pkg = parseOvf(await readFile(built.ovfPath, 'utf8'), 'web01.ovf');
  assert.deepEqual(pkg.warnings, []);
  const vm = describeOvfVm(pkg, { path: out });
  assert.deepEqual(vm, {
    name: 'web01',
    source: { kind: 'file', path: out },
    cpus: 4,
    coresPerSocket: 2,
    memoryMiB: 3072,
    firmware: 'efi',
    secureBoot: true,
    guestId: 'debian12_64Guest',
    guestFullName: 'Debian GNU/Linux 12 (64-bit)',
    annotation: 'built by a test & kept <short>',
    disks: [
      { index: 0, label: 'Hard disk 1', capacityBytes: 4 * MiB, bus: 'scsi', controllerModel: 'VirtualLsiLogicController', busNumber: 0, unitNumber: 0, sourceName: 'web01-disk1.vmdk', sourceKey: 'ovf:vmdisk1' },
      { index: 1, label: 'Hard disk 2', capacityBytes: bSize, bus: 'sata', controllerModel: 'VirtualAHCIController', busNumber: 0, unitNumber: 0, sourceName: 'web01-disk2.vmdk', sourceKey: 'ovf:vmdisk2' },
    ],
    nics: [
      { index: 0, label: 'Network adapter 1', mac: '00:50:56:01:02:03', network: 'VM Network', adapter: 'vmxnet3', pciSlot: 192 },
      { index: 1, label: 'Network adapter 2', mac: '', network: 'backup', adapter: 'e1000e', pciSlot: 224 },
    ],
  });
  assert.deepEqual(
    ovfDisks(pkg).map((d) => [d.href, d.format, d.chunked]),
    [
      ['web01-disk1.vmdk', 'streamOptimized', false],
      ['web01-disk2.vmdk', 'streamOptimized', false],
    ],
  );
  assert.equal(pkg.files.get('file1')!.size, (await stat(join(built.unpackedDir, 'web01-disk1.vmdk'))).size);
});

test('options: SHA-1 manifest last, GNU and pax tar, OVF 2.0 with StorageItems, flat and sparse VMDKs, PVSCSI', { skip }, async () => {
  const a = join(work, 'c.raw');
  const b = join(work, 'd.raw');
  await rawFile(a, 2 * MiB, [[0, 4096], [MiB, 65536]]);
  await rawFile(b, MiB + 512, [[MiB, 512]]);
  for (const tarFormat of ['gnu', 'pax'] as const) {
    const dir = join(work, `opt-${tarFormat}`);
    await run('mkdir', ['-p', dir]);
    const out = join(dir, 'db 01.ova');
    const built = await buildOva(
      spec([a, b], {
        name: 'db 01',
        firmware: 'bios',
        secureBoot: false,
        nics: [],
        scsiModel: 'VirtualSCSI',
        manifest: 'sha1',
        manifestLast: true,
        tarFormat,
        ovfVersion: '2.0',
        disks: [{ raw: a, subformat: 'monolithicFlat' }, { raw: b, bus: 'ide', subformat: 'monolithicSparse' }],
      }),
      out,
    );
    assert.deepEqual(built.members, ['db_01.ovf', 'db_01-disk1.vmdk', 'db_01-disk1-flat.vmdk', 'db_01-disk2.vmdk', 'db_01.mf']);
    assert.deepEqual(await tarList(out), built.members);
    assert.deepEqual(built.disks[0]!.files, ['db_01-disk1.vmdk', 'db_01-disk1-flat.vmdk']);
    const { stdout: kind } = await run('file', ['-b', out]).catch(() => ({ stdout: '' }));
    if (kind) assert.match(kind, /tar archive/i);

    const mf = (await readFile(join(built.unpackedDir, 'db_01.mf'), 'utf8')).trim().split('\n');
    assert.equal(mf.length, 4);
    for (const line of mf) {
      const m = /^SHA1\(([^)]+)\)= ([0-9a-f]{40})$/.exec(line);
      assert.ok(m, line);
      assert.equal(m[2], createHash('sha1').update(await readFile(join(built.unpackedDir, m[1]!))).digest('hex'));
    }
    for (const [i, d] of built.disks.entries()) assert.equal(await toRaw(join(built.unpackedDir, d.member), join(work, `opt${i}.raw`)), d.rawSha256);

    const xml = await readFile(built.ovfPath, 'utf8');
    assert.match(xml, /<StorageItem>/);
    assert.match(xml, /xmlns="http:\/\/schemas\.dmtf\.org\/ovf\/envelope\/2"/);
    const pkg = parseOvf(xml, 'db_01.ovf');
    assert.equal(pkg.version, '2.0');
    const vm = describeOvfVm(pkg, { path: out });
    assert.equal(vm.name, 'db 01');
    assert.equal(vm.firmware, 'bios');
    assert.deepEqual(vm.nics, []);
    assert.deepEqual(
      vm.disks.map((d) => [d.bus, d.controllerModel, d.busNumber, d.unitNumber, d.capacityBytes, d.sourceName]),
      [
        ['scsi', 'ParaVirtualSCSIController', 0, 0, 2 * MiB, 'db_01-disk1.vmdk'],
        ['ide', 'VirtualIDEController', 0, 0, MiB + 512, 'db_01-disk2.vmdk'],
      ],
    );
    assert.deepEqual(ovfDisks(pkg).map((d) => d.format), ['monolithicFlat', 'monolithicSparse']);
  }
});

test('no manifest, and an unpacked folder that is not empty is refused', { skip }, async () => {
  const a = join(work, 'e.raw');
  await rawFile(a, MiB, [[0, 4096]]);
  const dir = join(work, 'nomf');
  await run('mkdir', ['-p', dir]);
  const built = await buildOva(spec([a, a], { manifest: 'none', disks: [{ raw: a }] }), join(dir, 'x.ova'));
  assert.equal(built.manifestName, undefined);
  assert.equal(built.digests.size, 0);
  assert.deepEqual(await tarList(built.ova), ['web01.ovf', 'web01-disk1.vmdk']);
  await assert.rejects(buildOva(spec([a, a], { disks: [{ raw: a }], unpackedDir: built.unpackedDir }), join(dir, 'y.ova')), /is not empty/);
});
