// The 'lease' disk reader against the simulator: an export lease of a VM (ExportVm of a powered-off
// VM), each disk downloaded whole (no Range) and decoded on the fly into a raw target; the lease
// completed, or aborted on the signal; the serving certificate pinned to the lease's thumbprint.
// Skipped (loudly) when the simulator is not built, except in CI or with ONESWAP_REQUIRE_PEERS=1.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { openLease, type LeaseSession } from '../../lib/input/reader-lease.js';
import type { StreamReading } from '../../lib/input/disk-reader.js';
import { openFileWriter } from '../../lib/output/file-target.js';
import type { ExportLease, VSphereClient, VmSummary } from '../../lib/vsphere/index.js';
import { startVcsim, vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { createTestVm, powerOn, simStats, type TestVm } from '../peers/vcsim/fixture.js';
import { MemoryTarget } from '../support/memory-target.js';
import { refusal } from '../support/refusal.js';
import { withTempDir } from '../support/temp-dir.js';
import { connectTo } from '../support/vcsim-client.js';

const skip = vcsimSkip();

const KiB = 1024;
const MiB = 1024 * KiB;

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A fresh sparse target of the disk's size. */
async function placeholder(dir: string, name: string, size: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, '');
  await truncate(path, size);
  return path;
}

/** The whole disk through the reader into a fresh target file; the file's bytes. */
async function copyWhole(reading: StreamReading, dir: string, capacity: number, signal = new AbortController().signal): Promise<Buffer> {
  const path = await placeholder(dir, `${reading.name.replace(/\W+/g, '_')}.raw`, capacity);
  const target = await openFileWriter(path, capacity);
  try {
    const stats = await reading.copyInto({ target, capacity, areas: [{ start: 0, length: capacity }], targetIsZero: true, signal });
    assert.equal(stats.bytesPlanned, capacity);
    assert.ok(stats.bytesRead > 0 && stats.bytesWritten > 0);
  } finally {
    await target.close();
  }
  return readFile(path);
}

/** The lease's state on the server, and the simulator's record of how it ended. */
async function assertLeaseEnded(sim: Vcsim, lease: ExportLease, state: 'done' | 'error', end: 'complete' | 'abort' | 'expired'): Promise<string | undefined> {
  const s = await lease.state();
  assert.equal(s.state, state);
  const stats = (await simStats(sim)).leases.find((l) => l.id === lease.ref.value);
  assert.equal(stats?.end, end);
  return s.error;
}

/** Until the lease has left `ready` (an abort the signal started lands a moment later). */
async function leftReady(lease: ExportLease): Promise<void> {
  for (let i = 0; i < 100 && (await lease.state()).state === 'ready'; i++) await new Promise((r) => setTimeout(r, 20));
}

describe('lease disk reader against vcsim', { skip }, () => {
  let sim: Vcsim;
  let client: VSphereClient;
  let vm: TestVm;
  let summary: VmSummary;

  before(async () => {
    sim = await startVcsim();
    client = await connectTo(sim);
    vm = await createTestVm(sim, {
      name: 'lease1',
      disks: [
        { sizeBytes: 8 * MiB, data: [{ offset: 0, length: 64 * KiB }, { offset: 3 * MiB + 4096, length: 700 * KiB }, { offset: 8 * MiB - 4096, length: 4096 }] },
        { sizeBytes: 3 * MiB, controller: 'sata', data: [{ offset: MiB, length: 100_000 }] },
      ],
    });
    summary = await client.vm({ type: 'VirtualMachine', value: vm.moref.value });
  });

  after(async () => {
    await client?.logout();
    await sim?.stop();
  });

  it('ExportVm of a powered-off VM: both disks decoded, equal to the disks, the lease completed', async () => {
    await withTempDir('oneswap-lease-', async (dir) => {
      const session = await openLease(client, { vm: summary.ref }, summary.disks, { vmName: summary.name });
      assert.deepEqual([...session.disks.keys()], summary.disks.map((d) => d.key));
      const images = await Promise.all(summary.disks.map((d) => copyWhole(session.disks.get(d.key)!, dir, d.capacityBytes)));
      assert.deepEqual(images.map(sha256), vm.disks.map((d) => d.sha256));
      assert.ok(session.disks.get(summary.disks[0]!.key)!.reader === 'lease');
      await session.complete();
      await assertLeaseEnded(sim, session.lease, 'done', 'complete');
      // A stream is read once.
      const again = await refusal(session.disks.get(summary.disks[0]!.key)!.copyInto({ target: new MemoryTarget(1), capacity: 1, areas: [], targetIsZero: true, signal: new AbortController().signal }));
      assert.equal(again.kind, 'internal');
    });
  });

  it('Ctrl-C aborts the lease with our message and stops the copy', async () => {
    await withTempDir('oneswap-lease-', async (dir) => {
      const ctrlC = new AbortController();
      const session: LeaseSession = await openLease(client, { vm: summary.ref }, summary.disks, { vmName: summary.name, signal: ctrlC.signal });
      const reason = new OneswapError('interrupted', 'interrupted by the user (SIGINT)');
      ctrlC.abort(reason);
      const disk = summary.disks[0]!;
      await assert.rejects(copyWhole(session.disks.get(disk.key)!, dir, disk.capacityBytes, new AbortController().signal), (err) => err === reason);
      await leftReady(session.lease);
      const error = await assertLeaseEnded(sim, session.lease, 'error', 'abort');
      assert.match(error ?? '', /interrupted by the user \(SIGINT\)/);
    });
  });

  it('a serving certificate other than the lease names is refused before any byte', async () => {
    const lease = await client.exportVm(summary.ref);
    try {
      const device = lease.info.devices[0]!;
      assert.equal(device.sslThumbprint, sim.thumbprint);
      const wrong = sim.thumbprint.replace(/^../, (h) => (h === 'AA' ? 'BB' : 'AA'));
      const err = await refusal(lease.download({ ...device, sslThumbprint: wrong }));
      assert.equal(err.kind, 'connection');
      assert.match(err.message, new RegExp(`presented a certificate with SHA1 thumbprint ${sim.thumbprint}, not the ${wrong} the export lease names for disk-0\\.vmdk`));
      assert.ok(!err.message.includes('\n'));
      // The right one passes.
      const ok = await lease.download(device);
      let n = 0;
      for await (const c of ok.body) n += c.length;
      assert.equal(n, device.fileSize);
      assert.equal(ok.bytesReceived, n);
    } finally {
      await lease.abort('test over');
    }
  });

  it('ExportVm of a running VM is refused (InvalidPowerState)', async () => {
    const running = await createTestVm(sim, { name: 'lease-on', disks: [{ sizeBytes: MiB }] });
    await powerOn(sim, running.moref);
    const err = await refusal(client.exportVm({ type: 'VirtualMachine', value: running.moref.value }));
    assert.equal(err.kind, 'conflict');
    assert.match(err.message, /InvalidPowerState/);
  });
});

describe('lease disk reader: snapshots, keep-alive and expiry (vcsim with a 2 s lease timeout, paced downloads)', { skip }, () => {
  /** Random data (it does not compress): the stream is about this long. */
  const DATA = 768 * KiB;
  /** Bytes per second of each download: the stream takes about 6 s, three lease timeouts. */
  const RATE = 128 * KiB;

  async function withSim(delay: Record<string, string> | undefined, fn: (sim: Vcsim, client: VSphereClient) => Promise<void>): Promise<void> {
    const sim = await startVcsim({ leaseTimeout: '2s', nfcRate: RATE, ...(delay === undefined ? {} : { delay }) });
    const client = await connectTo(sim);
    try {
      await fn(sim, client);
    } finally {
      await client.logout();
      await sim.stop();
    }
  }

  const spec = (name: string, powerOnVm: boolean) => ({ name, powerOn: powerOnVm, disks: [{ sizeBytes: 4 * MiB, data: [{ offset: MiB, length: DATA }] }] });

  it('ExportSnapshot of a running VM; keep-alives hold a 2 s lease through a 6 s download', { timeout: 60_000 }, async () => {
    await withSim(undefined, async (sim, client) => {
      await withTempDir('oneswap-lease-', async (dir) => {
        const vm = await createTestVm(sim, spec('lease-snap', true));
        const ref = { type: 'VirtualMachine', value: vm.moref.value };
        const snap = await client.createSnapshot(ref, { name: 'oneswap-lease' });
        const disks = snap.disks ?? [];
        assert.equal(disks.length, 1);
        const session = await openLease(client, { snapshot: snap.ref }, disks, { vmName: 'lease-snap' });
        assert.equal(session.lease.info.leaseTimeoutSec, 2);
        const started = Date.now();
        const image = await copyWhole(session.disks.get(disks[0]!.key)!, dir, disks[0]!.capacityBytes);
        const took = Date.now() - started;
        assert.ok(took > 4500, `the download was paced (${took} ms)`);
        assert.equal(sha256(image), vm.disks[0]!.sha256);
        await session.complete();
        await assertLeaseEnded(sim, session.lease, 'done', 'complete');
        await client.removeSnapshot(snap.ref);
      });
    });
  });

  it('Ctrl-C in the middle of a disk: the download stops, the lease is aborted (seen in /sim/stats)', { timeout: 60_000 }, async () => {
    await withSim(undefined, async (sim, client) => {
      await withTempDir('oneswap-lease-', async (dir) => {
        const vm = await createTestVm(sim, spec('lease-ctrlc', false));
        const summary = await client.vm({ type: 'VirtualMachine', value: vm.moref.value });
        const ctrlC = new AbortController();
        const session = await openLease(client, { vm: summary.ref }, summary.disks, { vmName: summary.name, signal: ctrlC.signal });
        const reason = new OneswapError('interrupted', 'interrupted by the user (SIGINT)');
        setTimeout(() => ctrlC.abort(reason), 1500);
        const disk = summary.disks[0]!;
        const copy = copyWhole(session.disks.get(disk.key)!, dir, disk.capacityBytes, ctrlC.signal);
        await assert.rejects(copy, (err) => err === reason);
        await leftReady(session.lease);
        await assertLeaseEnded(sim, session.lease, 'error', 'abort');
        const bytes = (await simStats(sim)).leases.find((l) => l.id === session.lease.ref.value)?.bytes ?? 0;
        assert.ok(bytes > 0 && bytes < DATA, `the download was cut short (${bytes} bytes)`);
      });
    });
  });

  it('keep-alives that arrive too late: the lease expires mid-disk, one line naming the disk', { timeout: 60_000 }, async () => {
    await withSim({ HttpNfcLeaseProgress: '5s' }, async (sim, client) => {
      await withTempDir('oneswap-lease-', async (dir) => {
        const vm = await createTestVm(sim, spec('lease-late', false));
        const summary = await client.vm({ type: 'VirtualMachine', value: vm.moref.value });
        const session = await openLease(client, { vm: summary.ref }, summary.disks, { vmName: summary.name });
        const disk = summary.disks[0]!;
        const err = await refusal(copyWhole(session.disks.get(disk.key)!, dir, disk.capacityBytes));
        assert.equal(err.kind, 'connection');
        assert.ok(!err.message.includes('\n'), err.message);
        assert.match(err.message, new RegExp(`^the export lease for disk \\[LocalDS_0\\] lease-late/lease-late\\.vmdk of VM lease-late expired after \\d+ s, \\d+ of \\d+ bytes had arrived: (the server ended it \\(Timedout|no keep-alive got through)`));
        assert.match(err.hint ?? '', /HttpNfcLeaseProgress/);
        await assertLeaseEnded(sim, session.lease, 'error', 'expired');
      });
    });
  });
});
