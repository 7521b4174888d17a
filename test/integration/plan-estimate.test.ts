// `plan estimate` against the vCenter simulator: a dry run that changes nothing (no snapshot, no
// lease, no task, no locked-file read), the exact bytes per disk (CBT areas of a powered-off VM
// with CBT on, else the provisioned size), a rate probe per ESXi host and datastore that is stored
// and used again without a second probe; a warm migration under way lends its measured change rate
// and rehearsal.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { estimatePlan, renderEstimateText, type PlanBudgets, type PlannedVm, type PlanEstimate } from '../../lib/plan/index.js';
import { ASSUMED_BUILD_MS } from '../../lib/plan/estimate.js';
import { Journal, readCopyRates } from '../../lib/supervisor/index.js';
import { describeVcenterVm, vmIdentity } from '../../lib/input/index.js';
import type { VSphereClient } from '../../lib/vsphere/index.js';
import { startVcsim, vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { children, client, createTestVm, listSnapshots, localPath, simStats, type TestVm } from '../peers/vcsim/fixture.js';
import { connectTo } from '../support/vcsim-client.js';

const skip = vcsimSkip();
const MiB = 1024 * 1024;

function planned(key: string, line: number, mode: PlannedVm['mode'], extra: Partial<PlannedVm> = {}): PlannedVm {
  return {
    key,
    query: { by: 'name', value: key },
    line,
    wave: 'w1',
    priority: 0,
    mode,
    datastoreId: 1,
    networkMap: new Map(),
    convert: false,
    output: 'template',
    transport: 'auto',
    namePrefix: '',
    keepMac: false,
    keepIp: false,
    ...extra,
  };
}

const budgets: PlanBudgets = { readsPerHost: 2, converting: 1, inFlight: 4, datastoreBytesPerSec: new Map() };

describe('plan estimate: a dry run on the simulator', { skip }, () => {
  let sim: Vcsim;
  let vsphere: VSphereClient;
  let stateDir: string;
  const vms: Record<string, TestVm> = {};

  before(async () => {
    sim = await startVcsim({ extraArgs: ['-ds', '2'] });
    stateDir = await mkdtemp(join(tmpdir(), 'oneswap-estimate-'));
    // Host DC0_H0: a powered-off VM with CBT on (1.5 MiB of data), one without CBT, a running one (warm).
    vms.offCbt = await createTestVm(sim, { name: 'off-cbt', host: 'DC0_H0', cbt: true, disks: [{ sizeBytes: 8 * MiB, data: [{ offset: 0, length: MiB }, { offset: 4 * MiB, length: MiB / 2 }] }] });
    vms.offPlain = await createTestVm(sim, { name: 'off-plain', host: 'DC0_H0', disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: MiB }] }] });
    vms.onCbt = await createTestVm(sim, { name: 'on-cbt', host: 'DC0_H0', cbt: true, powerOn: true, disks: [{ sizeBytes: 6 * MiB, data: [{ offset: 0, length: MiB }] }] });
    // The cluster: a powered-off VM with two disks, its host's only probe candidate.
    vms.cluster = await createTestVm(sim, { name: 'in-cluster', host: 'DC0_C0', disks: [{ sizeBytes: 3 * MiB, data: [{ offset: 0, length: MiB }] }, { sizeBytes: 2 * MiB }] });
    // Datastore LocalDS_1 holds only a running VM's disk: nothing there can be probed.
    vms.onOther = await createTestVm(sim, { name: 'on-other-ds', host: 'DC0_H0', datastore: 'LocalDS_1', powerOn: true, disks: [{ sizeBytes: 2 * MiB }] });
    vsphere = await connectTo(sim);
  });

  after(async () => {
    await vsphere?.logout();
    await sim?.stop();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  const plan = (): PlannedVm[] => [
    planned('off-cbt', 3, { kind: 'cold', shutdown: false }),
    planned('off-plain', 4, { kind: 'cold', shutdown: false }),
    planned('on-cbt', 5, { kind: 'warm', enableCbt: false }, { wave: 'w2' }),
    planned('in-cluster', 6, { kind: 'cold', shutdown: false }, { priority: 1 }),
    planned('on-other-ds', 7, { kind: 'cold', shutdown: true }),
  ];

  async function recentTasks(): Promise<string[]> {
    const c = await client(sim);
    const p = await c.props({ type: 'TaskManager', value: 'TaskManager' }, ['recentTask']);
    return children(p['recentTask'], 'ManagedObjectReference').map((t) => JSON.stringify(t));
  }

  const descriptorBytes = async (vm: TestVm): Promise<number> => Math.min(65536, (await stat(localPath(sim, vm.disks[0]!.fileName))).size);

  let first: PlanEstimate;

  it('reports exact bytes, probes each host and datastore once, and changes nothing', async () => {
    const tasks = await recentTasks();
    const before = await simStats(sim);
    first = await estimatePlan({ vsphere }, plan(), budgets, ['w1', 'w2'], stateDir, AbortSignal.timeout(60_000));
    const afterStats = await simStats(sim);

    // Nothing changed: no task, no snapshot, no lease, no refused (locked) read.
    assert.deepEqual(await recentTasks(), tasks);
    for (const vm of Object.values(vms)) assert.deepEqual(await listSnapshots(sim, vm.moref), [], vm.name);
    assert.deepEqual(afterStats.leases, []);
    assert.equal(afterStats.folderRefusals, 0);
    assert.equal(afterStats.nfcBytes + afterStats.nfcDiskBytes, 0);

    const byKey = Object.fromEntries(first.vms.map((v) => [v.key, v]));
    assert.deepEqual(
      first.vms.map((v) => [v.key, v.disks.map((d) => [d.bytes.value, d.bytes.basis])]),
      [
        ['off-cbt', [[1.5 * MiB, 'measured']]],
        ['off-plain', [[4 * MiB, 'assumed']]],
        ['on-cbt', [[6 * MiB, 'assumed']]],
        ['in-cluster', [[3 * MiB, 'assumed'], [2 * MiB, 'assumed']]],
        ['on-other-ds', [[2 * MiB, 'assumed']]],
      ],
    );
    assert.equal(byKey['off-cbt']!.disks[0]!.bytes.how, 'CBT allocated areas');
    assert.match(byKey['on-cbt']!.disks[0]!.bytes.how, /poweredOn: its CBT map needs a snapshot/);
    assert.deepEqual([byKey['off-cbt']!.downtimeMs.basis, byKey['on-other-ds']!.downtimeMs.basis], ['measured', 'assumed'], 'a running cold VM shuts down first: a guess');

    // One probe per (host, datastore): the largest powered-off disk there, read whole (< 32 MiB).
    // Then the reads together, as many as the plan makes at once: 2 per host (readsPerHost), 4 in
    // all (inFlight), each reading its disk whole again (they are small).
    const clusterHost = byKey['in-cluster']!.host;
    assert.notEqual(clusterHost, 'DC0_H0');
    assert.deepEqual(
      first.probes.map((p) => [p.host, p.datastore, p.disk, p.bytes, p.together, p.failed]),
      [
        ['DC0_H0', 'LocalDS_0', vms.offCbt!.disks[0]!.fileName, 8 * MiB, undefined, undefined],
        [clusterHost, 'LocalDS_0', vms.cluster!.disks[0]!.fileName, 3 * MiB, undefined, undefined],
        ['DC0_H0', 'LocalDS_1', undefined, undefined, undefined, 'no powered-off VM on this host has a disk there that can be read without a snapshot or a lease'],
        ['DC0_H0', 'LocalDS_0', vms.offCbt!.disks[0]!.fileName, 2 * 8 * MiB, 4, undefined],
        [clusterHost, 'LocalDS_0', vms.cluster!.disks[0]!.fileName, 2 * 3 * MiB, 4, undefined],
      ],
    );
    // /folder served the probes and their descriptors, nothing else.
    assert.equal(afterStats.folderBytes - before.folderBytes, 3 * (8 * MiB + (await descriptorBytes(vms.offCbt!)) + 3 * MiB + (await descriptorBytes(vms.cluster!))));

    // Stored: one probe rate per pair (mode 0600), the one each disk's copy time uses; what each
    // host, and this machine, gave the 4 reads together.
    const rates = await readCopyRates(stateDir);
    const stored = Object.values(rates.rates);
    assert.deepEqual(Object.keys(rates.hosts!).sort(), [clusterHost, 'DC0_H0'].sort());
    for (const h of [clusterHost, 'DC0_H0']) assert.deepEqual(Object.keys(rates.hosts![h]!).sort(), ['1', '2'], `${h}: alone and 2 at once`);
    assert.deepEqual(Object.keys(rates.total!).sort(), ['1', '4']);
    assert.deepEqual(stored.map((r) => [r.host, r.datastore, r.reader, r.how, r.count]).sort(), [
      [clusterHost, 'LocalDS_0', 'folder', 'probe', 1],
      ['DC0_H0', 'LocalDS_0', 'folder', 'probe', 1],
    ].sort());
    assert.equal((await stat(join(stateDir, 'copy-rates.json'))).mode & 0o777, 0o600);
    for (const v of first.vms.filter((x) => x.key !== 'on-other-ds'))
      for (const d of v.disks) {
        const r = stored.find((x) => x.host === v.host)!;
        assert.equal(d.rate.value, r.bytesPerSec);
        assert.equal(d.rate.basis, 'measured');
      }
    // Unprobed: the median of the two measured rates, said to be assumed.
    assert.deepEqual(byKey['on-other-ds']!.disks[0]!.rate, { value: (stored[0]!.bytesPerSec + stored[1]!.bytesPerSec) / 2, basis: 'assumed', how: 'the median of the rates measured elsewhere' });
    assert.equal(first.totalMs.basis, 'assumed', 'overheads and the warm cutover are assumed');
    // The warm VM is in wave 2, which starts once wave 1 ended (its VMs are cold).
    const w1 = first.waves.find((w) => w.name === 'w1')!;
    assert.equal(byKey['on-cbt']!.startMs, w1.endMs);
    assert.equal(first.totalMs.value, Math.max(...first.vms.map((v) => v.endMs)));

    const text = renderEstimateText(first);
    assert.match(text, /^Wave w1: 4 VMs, /m);
    assert.match(text, /^  DC0_H0 LocalDS_1: no powered-off VM .*; its rate is assumed$/m);
    assert.match(text, /off-cbt +cold +DC0_H0 +1\.5 MiB m /);
    assert.match(text, /on-cbt +warm +DC0_H0 +6\.0 MiB a /);
  });

  it('a second estimate uses the stored rates and reads no disk again', async () => {
    const before = await simStats(sim);
    const stored = await readFile(join(stateDir, 'copy-rates.json'), 'utf8');
    const again = await estimatePlan({ vsphere }, plan(), budgets, ['w1', 'w2'], stateDir, AbortSignal.timeout(60_000));
    // Only the datastore nothing can be probed on is looked at again (and read from: nothing).
    assert.deepEqual(again.probes, first.probes.filter((p) => p.failed !== undefined));
    assert.equal((await simStats(sim)).folderBytes, before.folderBytes);
    assert.equal(await readFile(join(stateDir, 'copy-rates.json'), 'utf8'), stored);
    assert.deepEqual(
      again.vms.map((v) => [v.key, v.startMs, v.endMs, v.disks.map((d) => d.rate.value)]),
      first.vms.map((v) => [v.key, v.startMs, v.endMs, v.disks.map((d) => d.rate.value)]),
    );
    // A byte budget of LocalDS_0 caps every disk read from it.
    const capped = await estimatePlan({ vsphere }, plan(), { ...budgets, datastoreBytesPerSec: new Map([['LocalDS_0', 1_048_576]]) }, ['w1', 'w2'], stateDir, AbortSignal.timeout(60_000));
    assert.deepEqual(
      capped.vms.map((v) => [v.key, v.disks.map((d) => d.rate.value)]),
      [['off-cbt', [1_048_576]], ['off-plain', [1_048_576]], ['on-cbt', [1_048_576]], ['in-cluster', [1_048_576, 1_048_576]], ['on-other-ds', [again.vms[4]!.disks[0]!.rate.value]]],
    );
    assert.equal(capped.vms[0]!.disks[0]!.copyMs.value, 1500, '1.5 MiB at 1 MiB/s');
  });

  it("a warm migration under way: its rounds' change rate and its rehearsal, its window", async () => {
    const summary = (await vsphere.vms()).find((v) => v.name === 'on-cbt')!;
    const identity = vmIdentity(describeVcenterVm(vsphere.host, summary));
    const { journal } = await Journal.open(stateDir, identity, 1);
    const key = String(summary.disks[0]!.key);
    // 3 600 000 bytes changed in the hour between the two rounds: 1000 bytes/s.
    journal.data.warm = {
      rounds: [
        { round: 0, full: true, final: false, snapshotAt: '2027-01-10T10:00:00.000Z', snapshotMs: 100, copyMs: 1000, bytes: { [key]: 6 * MiB } },
        { round: 1, full: false, final: false, snapshotAt: '2027-01-10T11:00:00.000Z', snapshotMs: 100, copyMs: 500, bytes: { [key]: 3_600_000 } },
      ],
      rehearsal: { ok: true, at: '2027-01-10T10:05:00.000Z', durationMs: 42_000, detail: 'Debian' },
    };
    await journal.flush();
    const journalFiles = await readdir(join(stateDir, 'journal'));

    const now = new Date('2027-01-11T12:00:00.000Z');
    const window = { start: new Date('2027-01-11T14:00:00.000Z') };
    const vms = plan().map((v) => (v.key === 'on-cbt' ? { ...v, convert: true, transport: 'nfc' as const, mode: { kind: 'warm' as const, enableCbt: false, cutover: window } } : v));
    const e = await estimatePlan({ vsphere, now, syncIntervalMs: 600_000 }, vms, budgets, ['w1', 'w2'], stateDir, AbortSignal.timeout(60_000));
    const warm = e.vms.find((v) => v.key === 'on-cbt')!;
    assert.deepEqual(warm.conversionMs, { value: 42_000, basis: 'from-history', how: "this VM's rehearsal at 2027-01-10T10:05:00.000Z" });
    assert.equal(warm.disks[0]!.reader, 'nfc');
    const rate = warm.disks[0]!.rate.value;
    // Cutover at the window (2 h from now): shutdown 60 s, the final delta (1000 bytes/s over one
    // sync interval of 10 min) at the host's rate, the conversion, the build.
    const cutover = 2 * 3600 * 1000;
    const end = cutover + 60_000 + (600_000 * 1000) / rate + 42_000 + ASSUMED_BUILD_MS;
    assert.equal(warm.endMs, end);
    assert.deepEqual(warm.downtimeMs, { value: end - cutover, basis: 'assumed', how: 'guest shutdown (assumed) + final delta (the change rate its rounds measured) + conversion + build' });
    assert.equal(e.totalMs.value, end);
    assert.deepEqual(await readdir(join(stateDir, 'journal')), journalFiles, 'read without a lock');
  });
});
