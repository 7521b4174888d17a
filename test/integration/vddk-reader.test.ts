// The vddk and nfc readers against the simulator, through the VDDK stand-in (test/peers/vddk):
// nbdkit runs with the vddk plugin's parameters, the stand-in in the plugin's place logs in over
// SOAP, checks the thumbprint and reads the disk through the simulator's NFC disk endpoint.
// Skipped (loudly) when the simulator or nbdkit's python plugin is missing, except in CI.

import assert from 'node:assert/strict';
import { readFile, rm, truncate, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyToFile } from '../support/copy-to-file.js';
import { OneswapError } from '../../lib/errors/index.js';
import type { NbdkitDisk } from '../../lib/input/nbdkit.js';
import { openNbdkitDisk, type NbdkitReading } from '../../lib/input/reader-nbdkit.js';
import { startVcsim, vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { client, createTestVm, moref, ref, sha256File, simStats, type TestVm } from '../peers/vcsim/fixture.js';
import { vddkStandin, vddkStandinSkip, type VddkStandin } from '../peers/vddk/index.js';

const skip = vcsimSkip() || vddkStandinSkip();
const MiB = 1024 * 1024;

describe('vddk reader through the VDDK stand-in', { skip }, () => {
  let sim: Vcsim;
  let standin: VddkStandin;
  let vm: TestVm;
  let snapshot: string;
  let dir: string;
  const savedPath = process.env.PATH;

  before(async () => {
    sim = await startVcsim();
    standin = await vddkStandin();
    // The product finds `nbdkit` in PATH: the stand-in's wrapper comes first.
    process.env.PATH = standin.env().PATH;
    dir = await mkdtemp(join(tmpdir(), 'oneswap-vddk-test-'));
    vm = await createTestVm(sim, {
      name: 'vddk-src',
      disks: [{ sizeBytes: 40 * MiB, data: [{ offset: 0, length: MiB }, { offset: 8 * MiB, length: 3 * MiB }, { offset: 36 * MiB, length: 4 * MiB }] }],
      powerOn: true,
    });
    const c = await client(sim);
    snapshot = moref(await c.task('CreateSnapshot_Task', `${ref(vm.moref)}<name>oneswap</name><memory>false</memory><quiesce>false</quiesce>`)).value;
  });

  after(async () => {
    process.env.PATH = savedPath;
    await sim?.stop();
    await standin?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const diskOf = (over: Partial<NbdkitDisk> = {}): NbdkitDisk => ({
    plugin: 'vddk',
    libdir: standin.libdir,
    server: sim.host,
    port: sim.port,
    user: sim.username,
    password: sim.password,
    thumbprint: sim.thumbprint,
    vm: vm.moref.value,
    file: vm.disks[0]!.fileName,
    snapshot,
    transports: ['nbdssl', 'nbd'],
    ...over,
  });

  it("reads a running VM's snapshot: allocated areas, copy equals the disk, no password in argv", async () => {
    const reading: NbdkitReading = await openNbdkitDisk(diskOf(), { connections: 3 });
    try {
      assert.equal(reading.capacity, 40 * MiB);
      const pids = await nbdkitPids();
      assert.ok(pids.length > 0, 'nbdkit runs');
      for (const pid of pids) {
        const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
        assert.ok(!argv.some((a) => a.includes(sim.password)), 'the password is not on the command line');
        assert.ok(argv.some((a) => /^password=\+\//.test(a)), 'the password comes from a file');
      }

      const areas = await reading.allocated(AbortSignal.timeout(30_000));
      assert.deepEqual(areas, [{ start: 0, length: MiB }, { start: 8 * MiB, length: 3 * MiB }, { start: 36 * MiB, length: 4 * MiB }]);

      const target = join(dir, 'disk.raw');
      await writeFile(target, '');
      await truncate(target, reading.capacity);
      await copyToFile({ source: reading.source, target, capacity: reading.capacity, extents: areas, targetIsZero: true, streams: reading.maxStreams, requestSize: 2 * MiB });
      assert.equal(await sha256File(target), vm.disks[0]!.sha256);
      const { open } = (await simStats(sim)).diskReads;
      assert.deepEqual(
        open.map((o) => [o.vm, o.disk, o.via]),
        [[vm.moref.value, vm.disks[0]!.fileName, 'nfc-disk']],
        'the NBD connections hold the disk open: one read of it',
      );
    } finally {
      await reading.close();
    }
    assert.deepEqual(await nbdkitPids(), [], 'nbdkit is stopped on close');
    const reads = (await simStats(sim)).diskReads;
    assert.deepEqual(Object.values(reads.hosts).map((h) => [h.current, h.max, h.total]), [[0, 1, 1]], 'one disk read, ended when nbdkit stopped');
  });

  it('the nfc plugin reads the same disk', async () => {
    const reading = await openNbdkitDisk(diskOf({ plugin: 'nfc', libdir: undefined }));
    try {
      assert.equal(reading.reader, 'nfc');
      const chunks: Uint8Array[] = [];
      for await (const c of await reading.source.open(8 * MiB - 100, 8 * MiB + 100, AbortSignal.timeout(10_000))) chunks.push(c);
      const got = Buffer.concat(chunks);
      const fh = await readFile(vm.disks[0]!.flatPath);
      assert.ok(got.equals(fh.subarray(8 * MiB - 100, 8 * MiB + 100)));
    } finally {
      await reading.close();
    }
  });

  const refused = async (disk: NbdkitDisk, kind: string, pattern: RegExp): Promise<void> => {
    await assert.rejects(openNbdkitDisk(disk), (err: unknown) => {
      assert.ok(err instanceof OneswapError, String(err));
      assert.equal(err.kind, kind, err.message);
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes('\n'), 'one line');
      assert.ok(!/standin|python/i.test(err.message), `the product does not see the stand-in: ${err.message}`);
      return true;
    });
    assert.deepEqual(await nbdkitPids(), [], 'nbdkit is stopped after a refusal');
  };

  it('a wrong password is an auth error', () => refused(diskOf({ password: 'wrong' }), 'auth', /user name or password/));

  it('a wrong thumbprint is a connection (TLS) error', () =>
    refused(diskOf({ thumbprint: '00'.repeat(20) }), 'connection', /thumbprint/));

  it('an unknown snapshot is not found', () => refused(diskOf({ snapshot: 'snapshot-9999' }), 'not-found', /snapshot-9999/));

  it("a running VM's disk without a snapshot is refused, saying to use a snapshot", async () => {
    await assert.rejects(openNbdkitDisk(diskOf({ snapshot: undefined })), (err: unknown) => {
      assert.ok(err instanceof OneswapError);
      assert.equal(err.kind, 'conflict');
      assert.match(err.message, /locked|in use/);
      assert.match(err.hint ?? '', /snapshot/);
      return true;
    });
  });

  it('a VDDK directory without the library is a usage error', () =>
    refused(diskOf({ libdir: dir }), 'usage', /VDDK library/));
});

/** nbdkit processes started by this test process (children of it). */
async function nbdkitPids(): Promise<number[]> {
  const { readdir } = await import('node:fs/promises');
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (ppid === process.pid && comm === 'nbdkit') out.push(Number(name));
    } catch {
      // the process went away
    }
  }
  return out;
}
