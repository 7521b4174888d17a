// The fleet fixture and the simulator's per-host disk-read record (test/peers/vcsim: fleet.ts,
// reads.go): 40 VMs on 2 ESXi hosts and 2 datastores, then disks read at once through /folder
// range streams, an export lease and /nfc-disk handles, with the record checked exactly. The reads
// are held open by not consuming the answers (bodies larger than what the sockets buffer), so
// "read at once" is a fact of the test, not a matter of timing. Then -host-rate: what each host
// serves over every window between two samples is bounded exactly (rate × window + one chunk).
// Run: node --import tsx --test --test-concurrency=1 test/integration/vcsim-fleet.test.ts

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { startVcsim, vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { clusterHosts, createFleet, fleetVcsimOptions, type FleetVm } from '../peers/vcsim/fleet.js';
import {
  child,
  children,
  moref,
  pseudoRandom,
  readPeaks,
  ref,
  resetDiskReads,
  simStats,
  text,
  VimClient,
  type SimDiskReads,
  type SimReadInterval,
} from '../peers/vcsim/fixture.js';

const MiB = 1 << 20;
const DISK = 16 * MiB;
const COUNT = 40;
// The VM exported through a lease: two disks whose data (12 MiB each, incompressible) is more than
// the sockets buffer, so a download not consumed keeps its reader open.
const EXPORTED = 3;

/** A request whose answer has arrived (status, headers) but whose body is not consumed yet. */
function held(sim: Vcsim, method: string, path: string, headers: Record<string, string>): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request({ host: sim.host, port: sim.port, path, method, headers, ca: sim.certPem, agent: false }, resolve);
    req.on('error', reject);
    req.end();
  });
}

async function body(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The /folder path of a disk's flat extent ('[ds] dir/name.vmdk' → dir/name-flat.vmdk). */
function folderPath(fileName: string): string {
  const m = /^\[([^\]]+)\] (.*)\.vmdk$/.exec(fileName);
  assert.ok(m, fileName);
  return `/folder/${m[2]}-flat.vmdk?dcPath=DC0&dsName=${m[1]}`;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

type Read = Pick<SimReadInterval, 'host' | 'vm' | 'disk' | 'via'>;
const byDisk = (a: Read, b: Read): number => a.disk.localeCompare(b.disk);

/** The record without times, reads sorted by disk (their order is the sockets'): what a test can demand exactly. */
function shape(r: Pick<SimDiskReads, 'hosts' | 'intervals' | 'open' | 'dropped'>): unknown {
  const strip = (i: SimReadInterval): Read => ({ host: i.host, vm: i.vm, disk: i.disk, via: i.via });
  return { hosts: r.hosts, intervals: r.intervals.map(strip).sort(byDisk), open: r.open.map(strip).sort(byDisk), dropped: r.dropped };
}

describe('vcsim fleet: 40 VMs on 2 hosts and 2 datastores, disk reads recorded per host', { skip: vcsimSkip() }, () => {
  let sim: Vcsim;
  let c: VimClient;
  let fleet: FleetVm[];
  let createMs = 0;
  /** ESXi host name → moref value. */
  const hostRef = new Map<string, string>();

  before(async () => {
    sim = await startVcsim({ ...fleetVcsimOptions() });
    const t0 = Date.now();
    fleet = await createFleet(sim, {
      count: COUNT,
      vm: (i) =>
        i === EXPORTED
          ? {
              disks: [0, 1].map((d) => ({ sizeBytes: DISK, data: [{ offset: 2 * MiB, length: 12 * MiB, seed: 500 + d }] })),
            }
          : {},
    });
    createMs = Date.now() - t0;
    c = await VimClient.login(sim);
    for (const vm of fleet.slice(0, 2)) hostRef.set(vm.host, text((await c.props(vm.moref, ['runtime.host']))['runtime.host']));
  });
  after(async () => {
    await sim?.stop();
  });

  it('the fleet: fleet-01..fleet-40 alternate between the hosts, 10 per host and datastore, disks as specified', async (t) => {
    t.diagnostic(`createFleet of ${COUNT} VMs: ${createMs} ms`);
    assert.deepEqual(
      fleet.map((v) => v.name),
      Array.from({ length: COUNT }, (_, i) => `fleet-${String(i + 1).padStart(2, '0')}`),
    );
    const cells = new Map<string, number>();
    for (const [i, vm] of fleet.entries()) {
      assert.equal(vm.host, i % 2 === 0 ? 'DC0_H0' : 'DC0_H1');
      const runtimeHost = text((await c.props(vm.moref, ['runtime.host']))['runtime.host']);
      assert.equal(runtimeHost, hostRef.get(vm.host), `${vm.name} is registered on ${vm.host}`);
      for (const d of vm.disks) assert.ok(d.fileName.startsWith(`[${vm.datastore}] ${vm.name}/`), d.fileName);
      assert.equal(vm.disks.length, i === EXPORTED || i % 3 === 2 ? 2 : 1, vm.name);
      assert.equal(vm.cbt, i % 2 === 0);
      assert.equal(vm.poweredOn, false);
      cells.set(`${vm.host} ${vm.datastore}`, (cells.get(`${vm.host} ${vm.datastore}`) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(cells), { 'DC0_H0 LocalDS_0': 10, 'DC0_H1 LocalDS_0': 10, 'DC0_H0 LocalDS_1': 10, 'DC0_H1 LocalDS_1': 10 });
    assert.notEqual(hostRef.get('DC0_H0'), hostRef.get('DC0_H1'));
    // The default disk: 1 MiB of data at 0 and at 8 MiB, seeds 10000 + 10i and 10001 + 10i.
    const expected = Buffer.alloc(DISK);
    pseudoRandom(10_000 + 10 * 7, MiB).copy(expected, 0);
    pseudoRandom(10_001 + 10 * 7, MiB).copy(expected, 8 * MiB);
    assert.equal(fleet[7]!.disks[0]!.sha256, sha256(expected));
    assert.equal(fleet[7]!.disks[0]!.dataBytes, 2 * MiB);
    // Making the fleet read no disk.
    assert.deepEqual((await simStats(sim)).diskReads, { hosts: {}, intervals: [], open: [], dropped: 0, ranges: [], rangesDropped: 0 });
  });

  it('/folder: the range streams of one disk are one read; max per host is the number of disks read at once', async () => {
    await resetDiskReads(sim);
    const h0 = [0, 2, 4].map((i) => fleet[i]!);
    const h1 = [1, 5].map((i) => fleet[i]!);
    const reads = [...h0, ...h1].map((vm) => ({ vm, disk: vm.disks[0]! }));
    // Two streams per disk, as the copy engine reads; neither consumed until all have answered.
    const streams = await Promise.all(
      reads.flatMap(({ disk }) =>
        [0, 1].map((half) =>
          held(sim, 'GET', folderPath(disk.fileName), { cookie: c.cookie, range: `bytes=${half * (DISK / 2)}-${(half + 1) * (DISK / 2) - 1}` }),
        ),
      ),
    );
    assert.deepEqual(
      streams.map((s) => s.statusCode),
      streams.map(() => 206),
    );
    const live = (await simStats(sim)).diskReads;
    const H0 = hostRef.get('DC0_H0')!;
    const H1 = hostRef.get('DC0_H1')!;
    const expectedReads: Read[] = reads.map(({ vm, disk }) => ({ host: hostRef.get(vm.host)!, vm: vm.moref.value, disk: disk.fileName, via: 'folder' as const })).sort(byDisk);
    assert.deepEqual(shape(live), {
      hosts: { [H0]: { name: 'DC0_H0', current: 3, max: 3, total: 3 }, [H1]: { name: 'DC0_H1', current: 2, max: 2, total: 2 } },
      intervals: [],
      open: expectedReads,
      dropped: 0,
    });
    assert.ok(live.open.every((o) => o.end === null));

    const bodies = await Promise.all(streams.map(body));
    for (const [k, { disk }] of reads.entries()) {
      assert.equal(sha256(Buffer.concat([bodies[2 * k]!, bodies[2 * k + 1]!])), disk.sha256, `${disk.fileName} read whole`);
    }
    const done = (await simStats(sim)).diskReads;
    assert.deepEqual(shape(done), {
      hosts: { [H0]: { name: 'DC0_H0', current: 0, max: 3, total: 3 }, [H1]: { name: 'DC0_H1', current: 0, max: 2, total: 2 } },
      intervals: expectedReads,
      open: [],
      dropped: 0,
    });
    for (const i of done.intervals) assert.ok(i.end !== null && i.end >= i.start, JSON.stringify(i));
    assert.deepEqual(readPeaks(done, 0), { [H0]: 3, [H1]: 2 }, 'the intervals say the same');
    // Each disk's ranges, as asked for (the two halves in whichever order they came).
    assert.deepEqual(
      done.ranges.map((d) => ({ ...d, ranges: [...d.ranges].sort((a, b) => a.start - b.start) })),
      reads.map(({ vm, disk }) => ({ vm: vm.moref.value, disk: disk.fileName, ranges: [{ start: 0, end: DISK / 2, via: 'folder' }, { start: DISK / 2, end: DISK, via: 'folder' }] })).sort((a, b) => a.vm.localeCompare(b.vm) || a.disk.localeCompare(b.disk)),
    );
    assert.equal(done.rangesDropped, 0);

    // A descriptor is no disk data: not a read.
    const descriptor = await c.http('GET', folderPath(h0[0]!.disks[0]!.fileName).replace('-flat.vmdk', '.vmdk'));
    assert.equal(descriptor.status, 200);
    await resetDiskReads(sim);
    assert.deepEqual((await simStats(sim)).diskReads, { hosts: {}, intervals: [], open: [], dropped: 0, ranges: [], rangesDropped: 0 }, 'reset forgets hosts with nothing open, and the ranges');
  });

  it('an export lease: each disk downloaded is a read of the VM host, beside /folder reads', async () => {
    const vm = fleet[EXPORTED]!;
    assert.equal(vm.host, 'DC0_H1');
    const lease = moref(await c.call('ExportVm', ref(vm.moref)));
    let state = '';
    for (let i = 0; i < 400 && (state = text((await c.props(lease, ['state']))['state'])) === 'initializing'; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(state, 'ready');
    const info = (await c.props(lease, ['info']))['info'];
    const paths = children(info, 'deviceUrl').map((d) => new URL(text(child(d, 'url')).replace('*', `${sim.host}:${sim.port}`)).pathname);
    assert.equal(paths.length, 2);
    await resetDiskReads(sim);

    const other = { h0: fleet[6]!, h1: fleet[9]! };
    const answers = await Promise.all([
      ...paths.map((p) => held(sim, 'GET', p, { cookie: c.cookie })),
      held(sim, 'GET', folderPath(other.h0.disks[0]!.fileName), { cookie: c.cookie, range: `bytes=0-${DISK - 1}` }),
      held(sim, 'GET', folderPath(other.h1.disks[0]!.fileName), { cookie: c.cookie, range: `bytes=0-${DISK - 1}` }),
    ]);
    assert.deepEqual(
      answers.map((a) => a.statusCode),
      [200, 200, 206, 206],
    );
    const H0 = hostRef.get('DC0_H0')!;
    const H1 = hostRef.get('DC0_H1')!;
    const live = (await simStats(sim)).diskReads;
    assert.deepEqual(live.hosts, { [H0]: { name: 'DC0_H0', current: 1, max: 1, total: 1 }, [H1]: { name: 'DC0_H1', current: 3, max: 3, total: 3 } });
    assert.deepEqual(
      live.open.map((o) => `${o.via} ${o.disk}`).sort(),
      [`nfc ${vm.disks[0]!.fileName}`, `nfc ${vm.disks[1]!.fileName}`, `folder ${other.h0.disks[0]!.fileName}`, `folder ${other.h1.disks[0]!.fileName}`].sort(),
    );
    await Promise.all(answers.map(body));
    await c.call('HttpNfcLeaseComplete', ref(lease));
    const done = (await simStats(sim)).diskReads;
    assert.deepEqual(done.hosts, { [H0]: { name: 'DC0_H0', current: 0, max: 1, total: 1 }, [H1]: { name: 'DC0_H1', current: 0, max: 3, total: 3 } });
    assert.equal(done.intervals.length, 4);
    assert.deepEqual(done.open, []);
    // A download is the whole disk; a /folder Range of the flat extent is that range of the disk.
    const rangesOf = (v: FleetVm, k: number) => done.ranges.find((d) => d.vm === v.moref.value && d.disk === v.disks[k]!.fileName)?.ranges;
    assert.deepEqual([rangesOf(vm, 0), rangesOf(vm, 1), rangesOf(other.h0, 0), rangesOf(other.h1, 0)], [
      [{ start: 0, end: DISK, via: 'nfc' }],
      [{ start: 0, end: DISK, via: 'nfc' }],
      [{ start: 0, end: DISK, via: 'folder' }],
      [{ start: 0, end: DISK, via: 'folder' }],
    ]);
    assert.equal(done.ranges.length, 4);
  });

  it('/nfc-disk: a handle is a read from open to close, however many handles and reads of the disk; a dropped connection ends it; reset keeps what is open', async () => {
    await resetDiskReads(sim);
    const vm = fleet[8]!;
    const disk = vm.disks[0]!;
    const q = new URLSearchParams({ vm: vm.moref.value, file: disk.fileName });
    const H0 = hostRef.get('DC0_H0')!;
    const open = async (): Promise<{ res: IncomingMessage; handle: string; capacity: number }> => {
      const res = await held(sim, 'GET', `/nfc-disk/open?${q}`, { cookie: c.cookie });
      assert.equal(res.statusCode, 200);
      const line = await new Promise<string>((resolve) => {
        let got = '';
        const onData = (b: Buffer): void => {
          got += b.toString('utf8');
          if (got.includes('\n')) {
            res.off('data', onData);
            res.pause();
            resolve(got.slice(0, got.indexOf('\n')));
          }
        };
        res.on('data', onData);
      });
      const { handle, capacity } = JSON.parse(line) as { handle: string; capacity: number };
      return { res, handle, capacity };
    };
    const close = async (handle: string): Promise<number> => (await c.http('POST', `/nfc-disk/close?${new URLSearchParams({ handle })}`)).status;
    const hosts = async (): Promise<SimDiskReads['hosts']> => (await simStats(sim)).diskReads.hosts;

    const a = await open();
    assert.equal(a.capacity, DISK);
    assert.deepEqual(await hosts(), { [H0]: { name: 'DC0_H0', current: 1, max: 1, total: 1 } });
    const b = await open();
    assert.notEqual(a.handle, b.handle);
    const part = await c.http('GET', `/nfc-disk/read?${q}`, { headers: { range: `bytes=0-${MiB - 1}` } });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, pseudoRandom(10_000 + 10 * 8, MiB));
    assert.deepEqual(await hosts(), { [H0]: { name: 'DC0_H0', current: 1, max: 1, total: 1 } }, 'two handles and a read of one disk: one read');
    assert.equal(await close(a.handle), 204);
    assert.deepEqual(await hosts(), { [H0]: { name: 'DC0_H0', current: 1, max: 1, total: 1 } });
    assert.equal(await close(b.handle), 204);
    assert.deepEqual(await hosts(), { [H0]: { name: 'DC0_H0', current: 0, max: 1, total: 1 } }, 'closed: the answer of close comes after the read ended');
    assert.equal(await close(b.handle), 404, 'a closed handle is gone');
    assert.equal((await c.http('GET', `/nfc-disk/close?handle=${a.handle}`)).status, 405, 'close is a POST');
    assert.equal((await c.http('POST', `/nfc-disk/close?handle=${a.handle}`, { cookie: '' })).status, 401, 'close needs the session');
    await Promise.all([body(a.res), body(b.res)]);
    const { intervals, ranges } = (await simStats(sim)).diskReads;
    assert.deepEqual(ranges, [{ vm: vm.moref.value, disk: disk.fileName, ranges: [{ start: 0, end: MiB, via: 'nfc-disk' }] }], 'opening a handle reads nothing; a read is its range');
    assert.deepEqual(shape({ hosts: {}, intervals, open: [], dropped: 0 }), {
      hosts: {},
      intervals: [{ host: H0, vm: vm.moref.value, disk: disk.fileName, via: 'nfc-disk' }],
      open: [],
      dropped: 0,
    });

    // A reader that is killed: its connection drops, the handle ends. Reset meanwhile keeps it.
    const dropped = await open();
    await resetDiskReads(sim);
    const kept = (await simStats(sim)).diskReads;
    assert.deepEqual(shape(kept), {
      hosts: { [H0]: { name: 'DC0_H0', current: 1, max: 1, total: 0 } },
      intervals: [],
      open: [{ host: H0, vm: vm.moref.value, disk: disk.fileName, via: 'nfc-disk' }],
      dropped: 0,
    });
    dropped.res.destroy();
    let now = kept.hosts;
    for (let i = 0; i < 200 && now[H0]?.current !== 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      now = await hosts();
    }
    assert.deepEqual(now, { [H0]: { name: 'DC0_H0', current: 0, max: 1, total: 0 } });
    assert.equal(await close(dropped.handle), 404);
  });

  it('in a cluster: each VM is registered on the host asked for (CreateVM_Task host), not where vcsim would put it', async () => {
    const csim = await startVcsim({ ...fleetVcsimOptions({ cluster: true }) });
    try {
      const vms = await createFleet(csim, { count: 6, hosts: clusterHosts(2), vm: () => ({ disks: [{ sizeBytes: MiB }] }) });
      const cc = await VimClient.login(csim);
      const names = await Promise.all(
        vms.map(async (vm) => {
          const host = moref((await cc.props(vm.moref, ['runtime.host']))['runtime.host']);
          return text((await cc.props(host, ['name']))['name']);
        }),
      );
      assert.deepEqual(names, ['DC0_C0_H0', 'DC0_C0_H1', 'DC0_C0_H0', 'DC0_C0_H1', 'DC0_C0_H0', 'DC0_C0_H1']);
      assert.deepEqual(
        vms.map((v) => [v.computeResource, v.host, v.datastore]),
        names.map((h, i) => ['DC0_C0', h, i < 2 || i >= 4 ? 'LocalDS_0' : 'LocalDS_1']),
      );
    } finally {
      await csim.stop();
    }
  });
});

describe('vcsim -host-rate: all disk reads of one ESXi host share its rate', { skip: vcsimSkip() }, () => {
  const RATE = 16 * MiB;
  // The pacing chunk at this rate (hostrate.go: 64 KiB, or rate/50 when less).
  const CHUNK = 64 << 10;
  let sim: Vcsim;
  let c: VimClient;
  let fleet: FleetVm[];

  before(async () => {
    sim = await startVcsim({ ...fleetVcsimOptions(), hostRate: RATE });
    fleet = await createFleet(sim, { count: 4, prefix: 'paced' });
    c = await VimClient.login(sim);
  });
  after(async () => {
    await sim?.stop();
  });

  it('two disks of DC0_H0 (/folder and /nfc-disk) and one of DC0_H1 read at once: each host served at most R × window + one chunk in every window, every byte counted', async () => {
    const H0 = text((await c.props(fleet[0]!.moref, ['runtime.host']))['runtime.host']);
    const H1 = text((await c.props(fleet[1]!.moref, ['runtime.host']))['runtime.host']);
    const before = (await simStats(sim)).hostBytes;
    assert.deepEqual(before, {}, 'making the fleet reads no disk');
    // Samples of hostBytes, each with the client's times before asking and after the answer: the
    // server's moment lies between them, so a window from one sample's `before` to another's
    // `after` holds the server's window between them.
    const samples: Array<{ before: number; after: number; bytes: Record<string, number> }> = [];
    let reading = true;
    const sampler = (async () => {
      while (reading) {
        const t0 = performance.now();
        const bytes = (await simStats(sim)).hostBytes;
        samples.push({ before: t0, after: performance.now(), bytes });
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    // DC0_H0: one disk through /folder, one through /nfc-disk (the VDDK stand-in's reader); DC0_H1: one through /folder.
    const reads = [0, 2, 1].map((i) => fleet[i]!.disks[0]!);
    const paths = [
      folderPath(reads[0]!.fileName),
      `/nfc-disk/read?${new URLSearchParams({ vm: fleet[2]!.moref.value, file: reads[1]!.fileName })}`,
      folderPath(reads[2]!.fileName),
    ];
    const bodies = await Promise.all(paths.map(async (p, k) => body(await held(sim, 'GET', p, { cookie: c.cookie, ...(k === 1 ? { range: `bytes=0-${DISK - 1}` } : {}) }))));
    reading = false;
    await sampler;
    for (const [k, d] of reads.entries()) assert.equal(sha256(bodies[k]!), d.sha256, `${d.fileName} read whole`);
    assert.deepEqual((await simStats(sim)).hostBytes, { [H0]: 2 * DISK, [H1]: DISK }, 'every byte counted for its host');

    assert.ok(samples.length >= 10, `${samples.length} samples over the read`);
    for (const [i, a] of samples.entries()) {
      for (const b of samples.slice(i + 1)) {
        const windowS = (b.after - a.before) / 1000;
        for (const h of [H0, H1]) {
          const served = (b.bytes[h] ?? 0) - (a.bytes[h] ?? 0);
          assert.ok(served <= RATE * windowS + CHUNK, `${h}: ${served} bytes in ${windowS.toFixed(3)} s, more than R × window + one chunk`);
        }
      }
    }
  });
});
