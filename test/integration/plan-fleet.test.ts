// A whole estate through `oneswap plan`: 40 small VMs on two ESXi hosts and two datastores of the
// vCenter simulator, run under a budget of two disk reads per host. The simulator records every
// disk read per host, so the budget is checked where it matters; the run is killed with -9 about
// half way and run again, and every image must then equal its disk. The simulator also records the
// byte ranges each disk was read at: the re-run must read none that the journals of the VMs under
// way recorded as copied, and the two runs together must read every disk's data.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { vcsimSkip } from '../peers/vcsim/index.js';
import { createTestVm, readPeaks, resetDiskReads, sha256File, simStats, type SimDiskRanges, type SimReadInterval } from '../peers/vcsim/fixture.js';
import { createFleet, fleetVcsimOptions, fleetVmDefaults, type FleetVm } from '../peers/vcsim/fleet.js';
import { oneswap, spawnOneswap } from '../peers/cli.js';
import { planFileDefaults, planFileHead, planSummary, startMigrationPeers, type MigrationPeers } from '../peers/migration.js';
import { OneClient, Template } from '../../lib/one/index.js';
import { normalizeExtents, subtractExtents, totalLength, type Extent } from '../../lib/extents/index.js';
import type { JournalData } from '../../lib/supervisor/index.js';

const MiB = 1024 * 1024;
const skip = vcsimSkip();

interface Event {
  type: string;
  vm?: string;
  ok?: boolean;
  message?: string;
  imageIds?: number[];
  templateId?: number;
}
const events = (stdout: string): Event[] => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Event);

describe('a plan of 40 VMs on two hosts', { skip, timeout: 15 * 60_000 }, () => {
  let peers: MigrationPeers;
  let fleet: FleetVm[];
  let planFile: string;
  const reads: SimReadInterval[] = [];
  /** The byte ranges of each disk read, per collectReads call. */
  const ranges: SimDiskRanges[][] = [];

  before(async () => {
    // Each /folder download paced, as a real datastore HTTP stream is: reads last long enough to
    // overlap, so a budget that did not hold would show.
    peers = await startMigrationPeers('plan-fleet', { vcsim: { ...fleetVcsimOptions({ hosts: 2, datastores: 2 }), folderRate: 4 * MiB } });
    peers.oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 64 }] });
    fleet = await createFleet(peers.sim, { count: 40, vm: () => ({ nics: [{ network: 'VM Network' }] }) });
    planFile = join(peers.work, 'estate.yaml');
    await writeFile(
      planFile,
      [
        ...planFileHead(peers),
        ...planFileDefaults(peers),
        'budgets: {readsPerHost: 2, converting: 1, inFlight: 8}',
        'waves: [one, two]',
        'vms:',
        ...fleet.map((vm, i) => `  - {name: ${vm.name}, wave: ${i < 20 ? 'one' : 'two'}}`),
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    await peers?.stop();
  });

  test('plan check: the 40 VMs are ready; VMs made to block (RDM, CBT off for warm, unmapped network, name clash, no room for all) are told, each by its own reason, and the room is summed over the plan', async () => {
    // plan new writes a plan of the 40, one entry each with its facts, that loads and checks clean.
    const drafted = join(peers.work, 'drafted.yaml');
    const made = await oneswap(['plan', 'new', '--vcenter', `127.0.0.1:${peers.proxy.port}`, '--user', peers.sim.username, '--thumbprint', peers.sim.thumbprintSha256, '--datastore', String(peers.dsId), '--endpoint', peers.oned.endpoint, '--name', 'fleet-*', '-o', drafted], peers.env);
    assert.equal(made.exitCode, 0, made.stderr);
    const draft = await readFile(drafted, 'utf8');
    assert.deepEqual(draft.split('\n').filter((l) => l.startsWith('  - ')), fleet.map((vm) => `  - name: ${vm.name}`));
    assert.match(draft, /^ {4}VM Network: VM Network$/m);
    const fromDraft = await oneswap(['plan', 'check', drafted], peers.env);
    assert.equal(fromDraft.exitCode, 0, fromDraft.stdout + fromDraft.stderr);

    const ok = await oneswap(['plan', 'check', planFile], peers.env);
    assert.equal(ok.exitCode, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^40 VMs: 40 ready, 0 with warnings, 0 blocked$/m);

    // More VMs, each with a reason to block (CBT off for warm, an unmapped network, a name clash, an RDM), and a datastore each alone fits but not all.
    const small = await peers.oned.createDatastore({ name: 'small', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared', freeMb: 40 });
    await createTestVm(peers.sim, { name: 'blk-nocbt', host: 'DC0_H0', cbt: false, powerOn: true, disks: [{ sizeBytes: 8 * MiB }], nics: [{ network: 'VM Network' }] });
    await createTestVm(peers.sim, { name: 'blk-net', host: 'DC0_H1', disks: [{ sizeBytes: 8 * MiB }], nics: [{ network: 'DC0_DVPG0' }] });
    await createTestVm(peers.sim, { name: 'blk-clash', host: 'DC0_H1', disks: [{ sizeBytes: 8 * MiB }], nics: [{ network: 'VM Network' }] });
    await createTestVm(peers.sim, { name: 'blk-rdm', host: 'DC0_H0', disks: [{ sizeBytes: 8 * MiB }, { sizeBytes: 16 * MiB, rdm: 'physical' }], nics: [{ network: 'VM Network' }] });
    for (const name of ['room-1', 'room-2', 'room-3']) await createTestVm(peers.sim, { name, host: 'DC0_H0', disks: [{ sizeBytes: 16 * MiB }], nics: [{ network: 'VM Network' }] });
    const one = await OneClient.connect({ endpoint: peers.oned.endpoint, env: { ONE_AUTH: peers.env.ONE_AUTH! } });
    try {
      await one.waitForImage(await one.imageAllocate(Template.of({ NAME: 'blk-clash-disk0', TYPE: 'DATABLOCK', SIZE: 1, FORMAT: 'raw' }), peers.dsId), { pollMs: 50 });
    } finally {
      one.close();
    }
    const clashFile = join(peers.work, 'check.yaml');
    const text = (await readFile(planFile, 'utf8')).replace(/\n$/, '');
    await writeFile(
      clashFile,
      [
        text,
        '  - {name: blk-nocbt, mode: warm}',
        '  - {name: blk-net}',
        '  - {name: blk-clash}',
        '  - {name: blk-rdm}',
        // Three VMs of 16 MiB into 40 MiB: each fits alone, together they do not.
        ...['room-1', 'room-2', 'room-3'].map((name) => `  - {name: ${name}, datastore: ${small}}`),
        '',
      ].join('\n'),
    );
    const r = await oneswap(['plan', 'check', clashFile, '--json'], peers.env);
    assert.equal(r.exitCode, 6, r.stderr);
    const check = JSON.parse(r.stdout) as { blocked: boolean; vms: Array<{ key: string; blockers: Array<{ code: string }> }>; capacity: Array<{ datastoreId: number; enough: boolean; overflow: Array<{ key: string }> }> };
    const codes = new Map(check.vms.map((v) => [v.key, v.blockers.map((b) => b.code)]));
    assert.deepEqual(codes.get('blk-nocbt'), ['cbt-off']);
    assert.deepEqual(codes.get('blk-net'), ['unmapped-network']);
    assert.deepEqual(codes.get('blk-clash'), ['name-clash']);
    assert.deepEqual(codes.get('blk-rdm'), ['rdm-disk']);
    const onSmall = check.capacity.find((c) => c.datastoreId === small)!;
    assert.equal(onSmall.enough, false);
    assert.deepEqual(onSmall.overflow.map((o) => o.key), ['room-3']);
    assert.deepEqual([codes.get('room-1'), codes.get('room-2'), codes.get('room-3')], [[], [], ['capacity']]);
    assert.equal(check.vms.filter((v) => v.blockers.length > 0).length, 5);
    const table = await oneswap(['plan', 'check', clashFile], peers.env);
    assert.equal(table.exitCode, 6);
    assert.match(table.stdout, /^blk-net +\d+ +BLOCKER +unmapped-network /m);
    assert.match(table.stdout, /^47 VMs: 42 ready, 0 with warnings, 5 blocked$/m);
  });

  test('plan estimate: changes nothing, probes each host and datastore once, counts the data CBT knows and the provisioned size of the rest', async () => {
    const before = await simStats(peers.sim);
    const r = await oneswap(['plan', 'estimate', planFile, '--json'], peers.env);
    assert.equal(r.exitCode, 0, r.stderr);
    const e = JSON.parse(r.stdout) as { vms: Array<{ key: string; bytes: { value: number; basis: string }; endMs: number }>; waves: Array<{ name: string; startMs: number; endMs: number }>; totalMs: { value: number; basis: string }; probes: Array<{ host: string; datastore: string; bytes?: number; together?: number }> };
    const after = await simStats(peers.sim);
    assert.equal(after.leases.length, before.leases.length, 'no export lease');
    assert.equal(after.folderRefusals, before.folderRefusals);
    assert.deepEqual(e.vms.map((v) => v.key), fleet.map((vm) => vm.name));
    // Powered off with CBT on: the areas CBT reports, measured; CBT off: the disks' provisioned size.
    for (const [i, vm] of fleet.entries()) {
      const v = e.vms[i]!;
      if (vm.cbt) assert.deepEqual([v.bytes.value, v.bytes.basis], [vm.disks.reduce((n, d) => n + d.dataBytes, 0), 'measured'], vm.name);
      else assert.deepEqual([v.bytes.value, v.bytes.basis], [vm.disks.reduce((n, d) => n + d.sizeBytes, 0), 'assumed'], vm.name);
    }
    // One probe per ESXi host and datastore, then the reads together: 2 on each host (readsPerHost).
    assert.deepEqual(
      [e.probes.filter((p) => p.together === undefined).length, e.probes.filter((p) => p.together !== undefined).map((p) => p.together)],
      [4, [4, 4]],
      'one probe per ESXi host and datastore, one of the reads together per host',
    );
    assert.deepEqual(e.waves.map((w) => w.name), ['one', 'two']);
    assert.equal(e.waves[1]!.startMs, e.waves[0]!.endMs, 'wave two starts when the last VM of wave one ends');
    assert.equal(e.totalMs.value, Math.max(...e.vms.map((v) => v.endMs)));
    const text = await oneswap(['plan', 'estimate', planFile], peers.env);
    assert.equal(text.exitCode, 0, text.stderr);
    // The second estimate uses the rates the first measured: nothing is read again.
    const again = JSON.parse((await oneswap(['plan', 'estimate', planFile, '--json'], peers.env)).stdout) as { probes: unknown[] };
    assert.deepEqual(again.probes, []);
  });

  /** The resume journals in the state directory (lib/supervisor/journal.ts): the VMs under way. */
  async function journals(): Promise<JournalData[]> {
    const dir = join(peers.env.ONESWAP_STATE_DIR!, 'journal');
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: JournalData[] = [];
    for (const f of names.filter((n) => n.endsWith('.json'))) {
      // Removed by a VM that just finished: not under way any more.
      const text = await readFile(join(dir, f), 'utf8').catch(() => undefined);
      if (text !== undefined) out.push(JSON.parse(text) as JournalData);
    }
    return out;
  }

  /** The reads recorded since the last call, kept for the budget check at the end. */
  async function collectReads(): Promise<SimReadInterval[]> {
    const stats = await simStats(peers.sim);
    assert.equal(stats.diskReads.open.length, 0, 'no disk read is still open');
    const got = stats.diskReads.intervals;
    reads.push(...got);
    assert.equal(stats.diskReads.rangesDropped, 0);
    ranges.push(stats.diskReads.ranges);
    // The per-host maximum the simulator saw never exceeds the budget either.
    for (const [host, h] of Object.entries(stats.diskReads.hosts)) assert.ok(h.max <= 2, `${host} had ${h.max} disk reads at once`);
    await resetDiskReads(peers.sim);
    return got;
  }

  test('plan run under readsPerHost 2, killed with -9 half way, run again: every image equals its disk, finished VMs untouched, the budget never exceeded', async (t) => {
    await resetDiskReads(peers.sim);
    const child = spawnOneswap(['plan', 'run', planFile, '--progress', 'json'], peers.env, 10 * 60_000);
    const finished = new Set<string>();
    let killing: Promise<void> | undefined;
    let killed = false;
    child.stdout?.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (!line.includes('"type":"result"')) continue;
        const e = JSON.parse(line) as Event;
        if (e.ok) finished.add(e.vm!);
        // Half way, once a journal has recorded a copied range: the re-run has ranges not to read again.
        killing ??=
          finished.size >= 18
            ? (async () => {
                for (let i = 0; i < 400 && !(await journals()).some((j) => j.disks.some((x) => x.complete || x.done.length > 0)); i++) await new Promise((r) => setTimeout(r, 25));
                killed = child.kill('SIGKILL');
              })()
            : undefined;
      }
    });
    const first = await child;
    await killing;
    assert.ok(killed, `the run ended before it was killed: ${first.exitCode} ${String(first.stderr)}`);
    assert.equal(first.signal, 'SIGKILL');
    const firstReads = await collectReads();
    const firstRanges = ranges.at(-1)!;
    // What the journals of the VMs under way say each disk has copied (VM name, disk index → ranges).
    const journalled = new Map<string, Extent[]>();
    for (const j of await journals()) {
      for (const d of j.disks) {
        const image = peers.oned.image(d.imageId)!.template;
        journalled.set(`${image.get('ONESWAP_VM_NAME')}/${image.get('ONESWAP_DISK_INDEX')}`, d.complete ? [{ start: 0, length: d.capacityBytes }] : d.done);
      }
    }
    assert.ok([...journalled.values()].some((done) => done.length > 0), `no journal recorded a copied range: ${JSON.stringify([...journalled])}`);

    // The status says the run stopped without ending, and which VMs it finished.
    const st = await oneswap(['plan', 'status', planFile, '--json'], peers.env);
    assert.equal(st.exitCode, 0, st.stderr);
    const status = JSON.parse(st.stdout) as { ended: boolean; running: boolean; vms: Array<{ key: string; state: string }> };
    assert.deepEqual([status.ended, status.running], [false, false]);
    const doneThen = status.vms.filter((v) => v.state === 'done').map((v) => v.key);
    assert.ok(doneThen.length >= 18 && doneThen.every((k) => finished.has(k)), `done in the status: ${doneThen.join(', ')}`);
    const table = await oneswap(['plan', 'status', planFile], peers.env);
    assert.match(table.stdout, /stopped without ending: process \d+ is gone/);

    peers.proxy.reset();
    const again = await oneswap(['plan', 'run', planFile, '--progress', 'json'], peers.env, 10 * 60_000);
    assert.equal(again.exitCode, 0, again.stderr);
    const secondReads = await collectReads();
    const ev = events(again.stdout);
    // The VMs the first run finished are neither started nor read again.
    const started = new Set(ev.filter((e) => e.type === 'result').map((e) => e.vm!));
    for (const k of doneThen) assert.ok(!started.has(k), `${k} was migrated again`);
    const byName = new Map(fleet.map((vm) => [vm.name, vm]));
    const readAgain = new Set(secondReads.map((r) => r.vm));
    const vmRefs = new Map(fleet.map((vm) => [vm.moref.value, vm.name]));
    for (const ref of readAgain) assert.ok(!doneThen.includes(vmRefs.get(ref)!), `${vmRefs.get(ref)} was read again`);
    // VMs under way at the kill resume from their journals: less than their whole data is read.
    const resumed = ev.filter((e) => e.type === 'log' && /resuming an earlier run/.test(e.message ?? '')).map((e) => e.vm!);
    assert.ok(resumed.length > 0, 'no VM resumed');
    // Range by range: nothing the journals recorded as copied is read again, and the two runs
    // together read each disk's data.
    const secondRanges = ranges.at(-1)!;
    const rangesOf = (all: readonly SimDiskRanges[], vm: FleetVm, k: number): Extent[] =>
      (all.find((d) => d.vm === vm.moref.value && d.disk === vm.disks[k]!.fileName)?.ranges ?? []).map((r) => ({ start: r.start, length: r.end - r.start }));
    let checked = 0;
    for (const [i, vm] of fleet.entries()) {
      for (const [k, disk] of vm.disks.entries()) {
        const done = normalizeExtents(journalled.get(`${vm.name}/${k}`) ?? [], disk.sizeBytes);
        for (const r of rangesOf(secondRanges, vm, k)) {
          assert.equal(totalLength(subtractExtents([r], done)), r.length, `${vm.name} disk ${k}: [${r.start}, ${r.start + r.length}) read again, the journal had ${JSON.stringify(done)} copied`);
          if (done.length > 0) checked++;
        }
        const data = fleetVmDefaults(i).disks[k]!.data!.map((a) => ({ start: a.offset, length: a.length }));
        const read = normalizeExtents([...rangesOf(firstRanges, vm, k), ...rangesOf(secondRanges, vm, k)], disk.sizeBytes);
        assert.deepEqual(subtractExtents(normalizeExtents(data, disk.sizeBytes), read), [], `${vm.name} disk ${k}: data never read`);
      }
    }
    assert.ok(checked > 0, 'no disk with copied ranges was read again at all');
    t.diagnostic(`journals at the kill: ${[...journalled].map(([disk, done]) => `${disk} ${totalLength(done)} bytes copied`).join(', ')}; ${checked} ranges read by the re-run on those disks, none of them copied before`);

    // Every image equals its disk.
    const summary = await planSummary(again.stdout);
    assert.deepEqual(summary.vms.map((v) => v.outcome), fleet.map(() => 'done'));
    const images = new Map<string, readonly number[]>();
    const templates = new Map<string, number>();
    for (const line of [...String(first.stdout).split('\n'), ...again.stdout.split('\n')]) {
      if (!line.includes('"type":"result"')) continue;
      const e = JSON.parse(line) as Event;
      if (e.ok) images.set(e.vm!, e.imageIds!);
      if (e.ok) templates.set(e.vm!, e.templateId!);
    }
    for (const vm of fleet) {
      const ids = images.get(vm.name);
      assert.ok(ids && ids.length === vm.disks.length, `${vm.name}: images ${ids?.join(',')}`);
      for (const [i, id] of ids.entries()) assert.equal(await sha256File(peers.oned.image(id)!.source), vm.disks[i]!.sha256, `${vm.name} disk ${i}`);
    }
    assert.equal(byName.size, 40);

    // The budget held over both runs, and was used: some host read two disks at once.
    const peaks = readPeaks({ hosts: {}, intervals: reads, open: [], dropped: 0 }, 50);
    assert.equal(Object.keys(peaks).length, 2, 'both hosts were read');
    for (const [host, n] of Object.entries(peaks)) assert.ok(n <= 2, `${host}: ${n} disks read at once`);
    assert.ok(Object.values(peaks).some((n) => n === 2), `the budget was never reached: ${JSON.stringify(peaks)}`);
    assert.ok(firstReads.length > 0 && secondReads.length > 0);

    // Checked again now, the plan blocks nothing: each VM is one an earlier run migrated (its
    // names are its own, it needs no room), and a run would skip it.
    const after = await oneswap(['plan', 'check', planFile, '--json'], peers.env);
    assert.equal(after.exitCode, 0, after.stderr);
    const checked2 = JSON.parse(after.stdout) as { vms: { key: string; blockers: unknown[]; warnings: { code: string; message: string }[] }[] };
    for (const v of checked2.vms) {
      assert.deepEqual(v.blockers, [], v.key);
      const ids = images.get(v.key)!;
      const template = templates.get(v.key)!;
      assert.deepEqual(v.warnings, [{ code: 'finished', message: `VM ${v.key} was migrated by an earlier run (template ${template}, image${ids.length === 1 ? '' : 's'} ${ids.join(', ')}); a plan run skips it` }], v.key);
    }
  });
});
