import { test } from 'node:test';
import assert from 'node:assert/strict';
import { XMLParser } from 'fast-xml-parser';
import { domainXml } from '../../lib/convert/index.js';
import { driveLetters } from '../../lib/convert/domain-xml.js';
import { classifyFailure } from '../../lib/convert/virt-v2v.js';
import { applianceEnv, checkAppliance, probeKvm } from '../../lib/convert/appliance.js';
import { lastErrorLine } from '../../lib/convert/tools.js';
import { OneswapError } from '../../lib/errors/index.js';
import { mkdtemp, writeFile, chmod, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const parse = (xml: string): any => new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' }).parse(xml);

test('domain XML: disks in guest order with their buses and absolute overlay paths, NICs with MACs', () => {
  const xml = domainXml({
    name: 'web <01> & "x"',
    memoryMiB: 2048,
    cpus: 2,
    firmware: 'bios',
    disks: [
      { path: '/var/lib/one/datastores/1/abc.overlay.qcow2', format: 'qcow2', bus: 'scsi' },
      { path: '/d/second', format: 'qcow2', bus: 'sata' },
      { path: '/d/third', format: 'raw', bus: 'ide' },
      { path: '/d/fourth', format: 'raw', bus: 'nvme' },
    ],
    nics: [{ mac: '00:50:56:AA:BB:CC', network: 'VM Network', adapter: 'vmxnet3' }, { mac: '00:50:56:aa:bb:cd', network: '', adapter: 'pcnet32' }],
  });
  const d = parse(xml).domain;
  assert.equal(d['@type'], 'vmware');
  assert.equal(d.name, 'web <01> & "x"');
  assert.equal(d.memory['#text'], 2048);
  assert.equal(d.memory['@unit'], 'MiB');
  assert.equal(d.vcpu, 2);
  assert.equal(d.os['@firmware'], undefined);
  const disks = d.devices.disk;
  assert.deepEqual(
    disks.map((x: any) => [x.source['@file'], x.driver['@type'], x.target['@dev'], x.target['@bus']]),
    [
      ['/var/lib/one/datastores/1/abc.overlay.qcow2', 'qcow2', 'sda', 'scsi'],
      ['/d/second', 'qcow2', 'sdb', 'sata'],
      ['/d/third', 'raw', 'hda', 'ide'],
      ['/d/fourth', 'raw', 'sdc', 'scsi'],
    ],
  );
  const nics = d.devices.interface;
  assert.deepEqual(
    nics.map((n: any) => [n.mac['@address'], n.model['@type'], n.source['@bridge']]),
    [
      ['00:50:56:aa:bb:cc', 'vmxnet3', 'VM Network'],
      ['00:50:56:aa:bb:cd', 'pcnet', 'unattached'],
    ],
  );
});

test('domain XML: UEFI firmware is declared on <os>', () => {
  const d = parse(domainXml({ name: 'u', memoryMiB: 1, cpus: 1, firmware: 'efi', disks: [{ path: '/a', format: 'qcow2', bus: 'scsi' }], nics: [] })).domain;
  assert.equal(d.os['@firmware'], 'efi');
  assert.equal(d.os.type['#text'], 'hvm');
});

test('domain XML: a domain without disks is refused', () => {
  assert.throws(() => domainXml({ name: 'u', memoryMiB: 1, cpus: 1, firmware: 'bios', disks: [], nics: [] }));
});

test('drive letters follow the kernel: a..z, aa..', () => {
  assert.deepEqual([0, 1, 25, 26, 27, 51, 52, 701, 702].map(driveLetters), ['a', 'b', 'z', 'aa', 'ab', 'az', 'ba', 'zz', 'aaa']);
});

test('conversion failures: no OS is a notice, an appliance failure names the fix, anything else the log', () => {
  assert.deepEqual(classifyFailure('inspection could not detect the source guest (or physical machine).  Assuming that you are running virt-v2v on a source which is supported, then this should not happen. No root device found in this operating system image.', [], '/l'), {
    kind: 'no-os',
    reason: 'inspection could not detect the source guest (or physical machine).',
  });
  assert.throws(
    () => classifyFailure('libguestfs error: guestfs_launch failed.', ['libguestfs: error: could not create appliance through libvirt.'], '/var/log/x.log'),
    (e: unknown) => e instanceof OneswapError && e.kind === 'conversion' && /appliance did not start/.test(e.message) && /x\.log/.test(e.message) && /libguestfs-test-tool/.test(e.hint ?? ''),
  );
  assert.throws(
    () => classifyFailure('no installed kernel packages were found.\n\nThis probably indicates …', [], '/var/log/y.log'),
    (e: unknown) => e instanceof OneswapError && e.kind === 'conversion' && e.message === 'guest conversion failed: no installed kernel packages were found. This probably indicates …; full log: /var/log/y.log',
  );
});

test('appliance: the direct backend unless the user chose one', async () => {
  assert.equal((await applianceEnv({})).LIBGUESTFS_BACKEND, 'direct');
  assert.equal((await applianceEnv({ LIBGUESTFS_BACKEND: 'libvirt' })).LIBGUESTFS_BACKEND, 'libvirt');
  assert.equal((await applianceEnv({ LIBGUESTFS_BACKEND_SETTINGS: 'force_kvm' })).LIBGUESTFS_BACKEND_SETTINGS, 'force_kvm', 'settings the user chose are kept');
});

test('appliance: a /dev/kvm that qemu cannot start a guest on is found (then the appliance runs emulated)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-kvm-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const device = join(dir, 'kvm');
  await writeFile(device, '');
  // Stand-ins for qemu: what it printed in a nested VM here, and one that starts and quits.
  const broken = join(dir, 'qemu-broken');
  await writeFile(broken, `#!/bin/sh\necho 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2\necho "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed." >&2\nkill -ABRT $$\n`, { mode: 0o755 });
  const working = join(dir, 'qemu-ok');
  await writeFile(working, '#!/bin/sh\ngrep -q quit && exit 0\nexit 1\n', { mode: 0o755 });
  assert.equal(await probeKvm(broken, device), `qemu cannot start a guest on ${device} (failed to set MSR 0x10a to 0x69)`);
  assert.equal(await probeKvm(working, device), undefined, 'qemu started (it got the monitor\'s quit)');
  assert.equal(await probeKvm(broken, join(dir, 'no-kvm')), undefined, 'no /dev/kvm: libguestfs emulates by itself');
  assert.equal(await probeKvm(join(dir, 'no-qemu'), device), undefined, 'no qemu: libguestfs says so itself');
});

test('appliance: a missing or unreadable kernel is reported before anything starts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-boot-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await assert.rejects(checkAppliance(dir), /needs a Linux kernel/);
  await writeFile(join(dir, 'vmlinuz-6.1.0-test'), 'k');
  await checkAppliance(dir);
  if (process.getuid?.() !== 0) {
    await chmod(join(dir, 'vmlinuz-6.1.0-test'), 0o600 & 0o000);
    await assert.rejects(checkAppliance(dir), /chmod 0644/);
  }
});

test('tool errors: the last error line, else the last line', () => {
  assert.equal(lastErrorLine('a\nqemu-img: error: could not open x\nb\n'), 'qemu-img: error: could not open x');
  assert.equal(lastErrorLine('one\ntwo\n'), 'two');
  assert.equal(lastErrorLine(''), '');
});

test('guest additions: only .deb/.rpm files that exist; nothing asked, nothing checked', async (t) => {
  const { checkAdditions } = await import('../../lib/convert/index.js');
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-add-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await checkAdditions(undefined);
  await checkAdditions({ guestAgent: true });
  await assert.rejects(checkAdditions({ contextPackage: join(dir, 'one-context.tar.gz') }), /not a \.deb or \.rpm/);
  await assert.rejects(checkAdditions({ contextPackage: join(dir, 'missing.deb') }), /cannot be read \(ENOENT\)/);
  await writeFile(join(dir, 'one-context_6.10.0-1.deb'), 'x');
  await checkAdditions({ contextPackage: join(dir, 'one-context_6.10.0-1.deb') });
});

test('guest additions are refused for a guest that is not Linux, before anything runs', async () => {
  const { applyAdditions } = await import('../../lib/convert/additions.js');
  await assert.rejects(applyAdditions([{ path: '/nonexistent', format: 'qcow2' }], 'windows', { guestAgent: true }), (e: unknown) => e instanceof OneswapError && e.kind === 'conversion' && /Linux guests; this guest is windows/.test(e.message));
});

test('a missing program names its Debian package; a failing one gives its error line', async () => {
  const { runTool } = await import('../../lib/convert/tools.js');
  await assert.rejects(runTool('oneswap-no-such-program', []), (e: unknown) => e instanceof OneswapError && e.kind === 'usage' && /oneswap-no-such-program is not installed/.test(e.message));
  const { missingProgram } = await import('../../lib/convert/tools.js');
  assert.match(missingProgram('virt-v2v-in-place').hint ?? '', /Debian package virt-v2v/);
  await assert.rejects(
    runTool('sh', ['-c', 'echo noise >&2; echo "qemu-img: error: Could not open x" >&2; echo tail >&2; exit 3']),
    (e: unknown) => e instanceof OneswapError && e.kind === 'conversion' && e.message === 'sh -c failed: qemu-img: error: Could not open x',
  );
});
