// `oneswap plan ...` against the vCenter and OpenNebula simulators, as the real command: a few
// VMs on two ESXi hosts, an OpenNebula network named like one vCenter network. One set of peers
// for the whole file; each step of the plan (new, check, estimate, run) is a test of its own.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { vcsimSkip } from '../peers/vcsim/index.js';
import { createTestVm, resetDiskReads, sha256File, simStats, type TestVm } from '../peers/vcsim/fixture.js';
import { oneswap, spawnOneswap } from '../peers/cli.js';
import { planFileDefaults, planFileHead, planSummary, planSummaryFiles, startMigrationPeers, type MigrationPeers } from '../peers/migration.js';
import { loadPlan, planStateDir, statusFile } from '../../lib/plan/index.js';
import { Journal } from '../../lib/supervisor/index.js';

const MiB = 1024 * 1024;
const skip = vcsimSkip();

describe('oneswap plan', { skip }, () => {
  let peers: MigrationPeers;
  /** `--vcenter … --user … --thumbprint …`, the password in the environment as a user would have it. */
  let vcenterArgs: string[];

  before(async () => {
    // Two standalone hosts, DC0_H0 and DC0_H1: a VM's host is then the one it was created on.
    peers = await startMigrationPeers('plan', { vcsim: { extraArgs: ['-standalone-host', '2'] } });
    vcenterArgs = ['--vcenter', `127.0.0.1:${peers.proxy.port}`, '--user', peers.sim.username, '--thumbprint', peers.sim.thumbprintSha256];
    peers.oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 8 }] });
    await createTestVm(peers.sim, {
      name: 'plan-web1',
      host: 'DC0_H0',
      guestId: 'ubuntu64Guest',
      hardwareVersion: 'vmx-13',
      cbt: true,
      powerOn: true,
      disks: [{ sizeBytes: 2 * MiB }, { sizeBytes: 1 * MiB }],
      nics: [{ network: 'VM Network' }],
    });
    await createTestVm(peers.sim, { name: 'plan-web2', host: 'DC0_H1', guestId: 'centos8_64Guest', hardwareVersion: 'vmx-14', disks: [{ sizeBytes: 1 * MiB }], nics: [{ network: 'DC0_DVPG0' }] });
    await createTestVm(peers.sim, { name: 'plan-db', host: 'DC0_H1', guestId: 'windows2019srv_64Guest', hardwareVersion: 'vmx-15', disks: [{ sizeBytes: 3 * MiB }], nics: [{ network: 'VM Network' }, { network: 'VM Network' }] });
  });
  after(async () => {
    await peers?.stop();
  });

  const planNew = (...extra: string[]) =>
    oneswap(['plan', 'new', ...vcenterArgs, '--datastore', String(peers.dsId), '--endpoint', peers.oned.endpoint, '--name', 'plan-*', ...extra], peers.env);

  test('plan new: one entry per selected VM with its facts, networks mapped by name, loads back as written', async () => {
    const r = await planNew();
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(
      r.stdout,
      [
        `# oneswap plan: 3 VMs of vCenter 127.0.0.1:${peers.proxy.port}, written by oneswap plan new.`,
        '# Review it (docs/PLANS.md describes every key), then: oneswap plan check PLAN',
        '',
        'version: 1',
        'vcenter:',
        `  host: 127.0.0.1:${peers.proxy.port}`,
        `  user: ${peers.sim.username}`,
        '  # passwordFile: FILE   (the password on its first line, mode 0600; or set ONESWAP_VCENTER_PASSWORD; never the password here)',
        `  thumbprint: ${peers.sim.thumbprintSha256}`,
        'one:',
        `  endpoint: ${peers.oned.endpoint}`,
        'defaults:',
        `  datastore: ${peers.dsId}`,
        '  mode: cold',
        '  shutdown: false',
        '  networkMap:',
        '    VM Network: VM Network',
        '    # not mapped: DC0_DVPG0 (no OpenNebula network of that name)',
        'budgets:',
        '  readsPerHost: 2',
        '  converting: 1',
        '  inFlight: 4',
        'vms:',
        '  # off, CBT off, vmx-15, boot disk 3.0 MiB, disk 3.0 MiB, guest windows2019srv_64Guest, host DC0_H1',
        '  - name: plan-db',
        '  # on, CBT on, vmx-13, boot disk 2.0 MiB, 2 disks 3.0 MiB, guest ubuntu64Guest, host DC0_H0',
        '  - name: plan-web1',
        '  # off, CBT off, vmx-14, boot disk 1.0 MiB, disk 1.0 MiB, guest centos8_64Guest, host DC0_H1',
        '  - name: plan-web2',
      ].join('\n'),
    );

    const file = join(peers.work, 'estate.yaml');
    const written = await planNew('--mode', 'warm', '-o', file);
    assert.equal(written.exitCode, 0, written.stderr);
    assert.equal(written.stdout, '');
    const plan = await loadPlan(file);
    assert.equal(plan.vcenter.address, `127.0.0.1:${peers.proxy.port}`);
    assert.deepEqual(plan.vcenter.tls, { kind: 'thumbprint', thumbprint: peers.sim.thumbprintSha256 });
    assert.equal(plan.endpoint, peers.oned.endpoint);
    assert.deepEqual(plan.waves, ['default']);
    const common = {
      wave: 'default',
      priority: 0,
      mode: { kind: 'warm', enableCbt: false },
      datastoreId: peers.dsId,
      networkMap: new Map([['VM Network', 'VM Network']]),
      convert: true,
      output: 'template',
      transport: 'auto',
      namePrefix: '',
      keepMac: true,
      keepIp: false,
    };
    assert.deepEqual(plan.vms, [
      { key: 'plan-db', query: { by: 'name', value: 'plan-db' }, line: 25, ...common },
      { key: 'plan-web1', query: { by: 'name', value: 'plan-web1' }, line: 27, ...common },
      { key: 'plan-web2', query: { by: 'name', value: 'plan-web2' }, line: 29, ...common },
    ]);
    assert.match(await readFile(file, 'utf8'), /^ {2}enableCbt: false$/m);

    await writeFile(file, 'changed by hand\n');
    const again = await planNew('-o', file);
    assert.equal(again.exitCode, 6);
    assert.equal(again.stderr, `oneswap: ${file} exists; plan new does not overwrite a plan (choose another file name, or remove it first)`);
    assert.equal(await readFile(file, 'utf8'), 'changed by hand\n');
  });

  test('plan new: filters as oneswap list vms; nothing selected is an error', async () => {
    const on = await planNew('--power', 'on');
    assert.equal(on.exitCode, 0, on.stderr);
    assert.deepEqual(on.stdout.split('\n').filter((l) => l.startsWith('  - ')), ['  - name: plan-web1']);
    const none = await planNew('--power', 'suspended');
    assert.equal(none.exitCode, 5);
    assert.equal(none.stderr, `oneswap: no VM of vCenter 127.0.0.1:${peers.proxy.port} matches the filters (list them with: oneswap list vms)`);
  });

  test('plan run: waves in order, each VM imported exactly, one that fails stops none; status from another shell; a re-run skips what is done', async () => {
    const vms: TestVm[] = [];
    for (const [name, host, disks] of [
      ['run-a', 'DC0_H0', [{ sizeBytes: 8 * MiB, data: [{ offset: 0, length: 2 * MiB }] }, { sizeBytes: 4 * MiB, data: [{ offset: MiB, length: MiB }] }]],
      ['run-b', 'DC0_H0', [{ sizeBytes: 6 * MiB, data: [{ offset: 2 * MiB, length: 3 * MiB }] }]],
      ['run-c', 'DC0_H1', [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: 4 * MiB }] }]],
    ] as const) {
      vms.push(await createTestVm(peers.sim, { name, host, cbt: true, disks: disks.map((d) => ({ sizeBytes: d.sizeBytes, data: [...d.data] })), nics: [{ network: 'VM Network' }] }));
    }
    const file = join(peers.work, 'run.yaml');
    await writeFile(
      file,
      [
        ...planFileHead(peers),
        ...planFileDefaults(peers, 'p-'),
        'budgets: {readsPerHost: 1, converting: 1, inFlight: 2}',
        'waves: [first, second]',
        'vms:',
        '  - name: run-b',
        '  - name: run-a',
        '    priority: 5',
        '  - name: ghost',
        '  - name: run-c',
        '    wave: second',
        '',
      ].join('\n'),
    );
    const r = await oneswap(['plan', 'run', file, '--progress', 'json'], peers.env);
    assert.equal(r.exitCode, 5, r.stderr);
    assert.match(r.stderr.trim(), /^oneswap: 1 of 4 VMs failed: ghost: .*ghost/);
    const ev = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; vm?: string; phase?: string; state?: string; ok?: boolean; imageIds?: number[]; templateId?: number; message?: string });
    const results = ev.filter((e) => e.type === 'result');
    assert.deepEqual(results.map((e) => [e.vm, e.ok]).sort(), [['ghost', false], ['run-a', true], ['run-b', true], ['run-c', true]]);
    // Wave "second" starts only once every VM of "first" has ended; within "first", priority first.
    const starts = ev.filter((e) => e.type === 'phase' && e.phase === 'precheck' && e.state === 'start').map((e) => e.vm);
    assert.deepEqual(starts.slice(0, 2), ['run-a', 'run-b']);
    const firstEnds = ev.findLastIndex((e) => e.type === 'result' && e.vm !== 'run-c');
    const cStarts = ev.findIndex((e) => e.type === 'phase' && e.vm === 'run-c');
    assert.ok(cStarts > firstEnds, 'run-c (wave second) started before wave first ended');
    for (const [k, vm] of vms.entries()) {
      const res = results.find((e) => e.vm === vm.name)!;
      assert.equal(res.imageIds!.length, vm.disks.length);
      for (const [i, id] of res.imageIds!.entries()) assert.equal(await sha256File(peers.oned.image(id)!.source), vm.disks[i]!.sha256, `${vm.name} disk ${i} (${k})`);
      assert.equal(peers.oned.template(res.templateId!)!.name, `p-${vm.name}`);
    }
    const { text, html } = planSummaryFiles(r.stdout);
    const summary = await planSummary(r.stdout);
    assert.deepEqual(summary.waves.map((w) => [w.name, w.vms]), [['first', ['run-b', 'run-a', 'ghost']], ['second', ['run-c']]]);
    assert.deepEqual(summary.vms.map((v) => [v.key, v.outcome, v.host ?? '-']), [['run-b', 'done', 'DC0_H0'], ['run-a', 'done', 'DC0_H0'], ['ghost', 'failed', '-'], ['run-c', 'done', 'DC0_H1']]);
    assert.deepEqual(summary.vms.map((v) => v.bytesCopied), [3 * MiB, 3 * MiB, 0, 4 * MiB]);
    assert.match(summary.vms[2]!.error!, /ghost/);
    assert.match(await readFile(text, 'utf8'), /run-a +done/);
    assert.ok((await stat(html)).size > 0);

    // From another shell: every VM's state, the run ended.
    const st = await oneswap(['plan', 'status', file, '--json'], peers.env);
    assert.equal(st.exitCode, 0, st.stderr);
    const status = JSON.parse(st.stdout) as { ended: boolean; running: boolean; vms: Array<{ key: string; state: string; bytesDone: number; lastError?: string }> };
    assert.equal(status.ended, true);
    assert.equal(status.running, false);
    assert.deepEqual(status.vms.map((v) => [v.key, v.state, v.bytesDone]), [['run-b', 'done', 3 * MiB], ['run-a', 'done', 3 * MiB], ['ghost', 'failed', 0], ['run-c', 'done', 4 * MiB]]);
    const table = await oneswap(['plan', 'status', file], peers.env);
    assert.match(table.stdout, /^plan .*: ended .*; 3 done, 1 failed$/m);

    // Again: the finished VMs are not touched, the failed one is tried again.
    peers.proxy.reset();
    const again = await oneswap(['plan', 'run', file, '--progress', 'json'], peers.env);
    assert.equal(again.exitCode, 5, again.stderr);
    assert.match(again.stderr.trim(), /^oneswap: 1 of 4 VMs failed: ghost: vCenter \S+ has no VM "ghost"/);
    assert.equal(peers.proxy.counters.down < MiB, true, `${peers.proxy.counters.down} bytes read by the re-run`);
    const againResults = again.stdout.split('\n').filter((l) => l.includes('"type":"result"')).map((l) => (JSON.parse(l) as { vm: string }).vm);
    assert.deepEqual(againResults, ['ghost']);
  });

  test('plan run: a warm VM syncs until its window and then cuts over, letting the next wave go on after its first round and giving its only in-flight slot to it meanwhile; its downtime is in the summary', async () => {
    const warm = await createTestVm(peers.sim, { name: 'run-w', host: 'DC0_H0', cbt: true, powerOn: true, disks: [{ sizeBytes: 8 * MiB, data: [{ offset: 0, length: 2 * MiB }] }], nics: [{ network: 'VM Network' }] });
    const cold = await createTestVm(peers.sim, { name: 'run-after', host: 'DC0_H1', disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: MiB }] }], nics: [{ network: 'VM Network' }] });
    // Whole seconds: the plan gives the window to the second.
    const window = new Date(Math.ceil((Date.now() + 15_000) / 1000) * 1000);
    const file = join(peers.work, 'warm.yaml');
    await writeFile(
      file,
      [
        ...planFileHead(peers),
        ...planFileDefaults(peers, 'w-'),
        // One VM in flight: the next wave runs only because the warm VM waits without its slot.
        'budgets: {inFlight: 1}',
        'windows:',
        `  soon: {start: ${window.toISOString().slice(0, 19)}Z}`,
        'waves: [first, second]',
        'vms:',
        '  - {name: run-w, mode: warm, cutover: soon}',
        '  - {name: run-after, wave: second}',
        '',
      ].join('\n'),
    );
    const r = await oneswap(['plan', 'run', file, '--progress', 'json', '--sync-interval', '4s'], peers.env, 5 * 60_000);
    assert.equal(r.exitCode, 0, r.stderr);
    const ev = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; vm?: string; phase?: string; state?: string; ok?: boolean; imageIds?: number[]; message?: string });
    const at = (pred: (e: (typeof ev)[number]) => boolean): number => ev.findIndex(pred);
    const firstRound = at((e) => e.vm === 'run-w' && e.phase === 'sync' && e.state === 'done');
    const nextWave = at((e) => e.vm === 'run-after' && e.phase === 'precheck' && e.state === 'start');
    const shutdown = at((e) => e.vm === 'run-w' && e.phase === 'shutdown' && e.state === 'start');
    const released = at((e) => e.vm === 'run-w' && e.type === 'slot' && e.state === 'released');
    const coldDone = at((e) => e.vm === 'run-after' && e.type === 'result');
    const taken = at((e) => e.vm === 'run-w' && e.type === 'slot' && e.state === 'taken');
    assert.ok(firstRound >= 0 && released > firstRound && nextWave > released && coldDone > nextWave && taken > coldDone && shutdown > taken, `order: round ${firstRound}, slot released ${released}, next wave ${nextWave}, its end ${coldDone}, slot taken ${taken}, cutover ${shutdown}`);
    // Without VDDK a round streams the whole disk through an export lease: it waits for its window
    // without more rounds, and the cutover reads what changed.
    assert.ok(ev.some((e) => e.vm === 'run-w' && e.type === 'log' && /more rounds would stream every disk/.test(e.message ?? '')));
    assert.match(ev.find((e) => e.vm === 'run-w' && e.type === 'log' && /cutting over/.test(e.message ?? ''))!.message!, /has come/);
    for (const [vm, name] of [[warm, 'run-w'], [cold, 'run-after']] as const) {
      const res = ev.find((e) => e.type === 'result' && e.vm === name)!;
      assert.equal(res.ok, true);
      assert.equal(await sha256File(peers.oned.image(res.imageIds![0]!)!.source), vm.disks[0]!.sha256, name);
    }
    const summary = await planSummary(r.stdout);
    const w = summary.vms.find((v) => v.key === 'run-w')!;
    assert.equal(w.mode, 'warm');
    assert.ok(w.downtimeMs !== undefined && w.downtimeMs > 0 && w.downtimeMs < w.durationMs, `downtime ${w.downtimeMs} of ${w.durationMs} ms`);
    assert.ok(Date.parse(w.phases.find((p) => p.phase === 'shutdown')!.start) >= window.getTime(), 'the cutover waited for its window');
  });

  test('plan run: datastoreRate holds what one vSphere datastore serves to its rate, shared by the VMs reading it; a rate for a datastore the plan does not read changes nothing', async () => {
    const rate = 4 * MiB;
    const vms: TestVm[] = [];
    for (const [name, host] of [['rate-1', 'DC0_H0'], ['rate-2', 'DC0_H1'], ['rate-3', 'DC0_H1']] as const) {
      vms.push(await createTestVm(peers.sim, { name, host, datastore: 'LocalDS_0', disks: [{ sizeBytes: 8 * MiB, data: [{ offset: 0, length: 8 * MiB }] }], nics: [{ network: 'VM Network' }] }));
    }
    const file = join(peers.work, 'rate.yaml');
    await writeFile(
      file,
      [
        ...planFileHead(peers),
        ...planFileDefaults(peers, 'r-'),
        // One byte per second on a datastore none of the VMs is on: were it applied, the run would not end.
        `budgets: {readsPerHost: 4, inFlight: 3, datastoreRate: {LocalDS_0: ${rate}, unread-ds: 1}}`,
        'vms:',
        ...vms.map((v) => `  - name: ${v.name}`),
        '',
      ].join('\n'),
    );
    await resetDiskReads(peers.sim);
    // Disk bytes the simulator served, whatever the reader (its descriptor files are not disk bytes).
    const served = async (): Promise<number> => Object.values((await simStats(peers.sim)).hostBytes).reduce((a, b) => a + b, 0);
    const base = await served();
    // What the datastore has served, sampled while the run goes on: each sample's time is taken
    // after the simulator answered, so it is never earlier than the moment the count was read.
    const samples: Array<{ at: number; bytes: number }> = [];
    const child = spawnOneswap(['plan', 'run', file, '--progress', 'json'], peers.env);
    let running = true;
    const sampling = (async () => {
      while (running) {
        const bytes = (await served()) - base;
        samples.push({ at: Date.now(), bytes });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    const r = await child;
    running = false;
    await sampling;
    assert.equal(r.exitCode, 0, String(r.stderr));
    const total = (await served()) - base;
    assert.equal(total, 3 * 8 * MiB, 'each disk read once');
    const reads = (await simStats(peers.sim)).diskReads;
    assert.equal(reads.dropped, 0);
    assert.deepEqual([...new Set(reads.intervals.map((i) => /^\[(\S+)\]/.exec(i.disk)![1]))], ['LocalDS_0'], 'every byte came from LocalDS_0');
    const lastServed = Math.max(...reads.intervals.map((i) => i.end!));

    const ev = String(r.stdout).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; vm?: string; imageIds?: number[] });
    const summary = await planSummary(String(r.stdout));
    assert.deepEqual(summary.budgets.datastoreBytesPerSec, { LocalDS_0: rate, 'unread-ds': 1 });
    assert.deepEqual(summary.vms.map((v) => [v.key, v.outcome]), vms.map((v) => [v.name, 'done']));
    // The budget's definition (lib/supervisor/budgets.ts ByteRate, applied per range request in
    // lib/supervisor/steps.ts): requests get consecutive, non-overlapping intervals of `rate` whose
    // first may start up to 250 ms before the first request's turn, and a request is sent no earlier
    // than the start of its interval, so by time t the datastore has served at most
    //   rate × (t − first turn + 0.25 s) + one request (1 MiB, sent before its interval has passed).
    // The first turn comes after the summary's earliest copy phase start (recorded, to the
    // millisecond rounded down, before any disk is read): an exact bound, in bytes × 1000 to stay whole.
    const copyStart = Math.min(...summary.vms.map((v) => Date.parse(v.phases.find((p) => p.phase === 'copy')!.start)));
    const within = (at: number, bytes: number): boolean => (at < copyStart ? bytes === 0 : bytes * 1000 <= rate * (at - copyStart) + rate * 250 + MiB * 1000);
    for (const s of [...samples, { at: lastServed, bytes: total }]) {
      assert.ok(within(s.at, s.bytes), `${s.bytes} bytes served ${(s.at - copyStart).toFixed(1)} ms after the copies began: more than ${rate} bytes/s allow`);
    }
    // So the whole read took at least (24 MiB − 1 MiB) / rate − 0.25 s ≈ 5.5 s; unpaced it takes well under one.
    for (const vm of vms) {
      const id = ev.find((e) => e.type === 'result' && e.vm === vm.name)!.imageIds![0]!;
      assert.equal(await sha256File(peers.oned.image(id)!.source), vm.disks[0]!.sha256, vm.name);
    }
  });

  test('plan run: a second run of the same plan while one goes on is refused, nothing touched, no run log', async () => {
    const file = join(peers.work, 'locked.yaml');
    await writeFile(file, [...planFileHead(peers), ...planFileDefaults(peers, 'l-'), 'vms: [{name: plan-web2}]', ''].join('\n'));
    // A live process holds the plan's lock: this test's own.
    const dir = planStateDir(peers.env.ONESWAP_STATE_DIR!, file);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'run.lock'), String(process.pid));
    const before = peers.imageIds();
    const logDir = join(peers.env.ONESWAP_STATE_DIR!, 'logs');
    const logsBefore = await readdir(logDir).catch(() => []);
    try {
      const r = await oneswap(['plan', 'run', file], peers.env);
      assert.equal(r.exitCode, 6, r.stderr);
      assert.equal(r.stderr, `oneswap: plan ${file} is being run by process ${process.pid} (watch it with oneswap plan status ${file}, or stop that process first)`);
      assert.deepEqual(peers.imageIds(), before);
      assert.deepEqual(await readdir(logDir).catch(() => []), logsBefore);
    } finally {
      await rm(join(dir, 'run.lock'), { force: true });
    }
  });

  test('plan status: a plan that never ran here (exit 5), a status oneswap did not write (exit 9): one line each', async () => {
    const stateDir = peers.env.ONESWAP_STATE_DIR!;
    const never = join(peers.work, 'never-run.yaml');
    const r = await oneswap(['plan', 'status', never], peers.env);
    assert.equal(r.exitCode, 5, r.stderr);
    assert.equal(r.stderr, `oneswap: plan ${never} has not run on this host (no status under ${stateDir}) (oneswap plan run ${never})`);
    assert.equal(r.stdout, '');

    const foreign = join(peers.work, 'foreign-status.yaml');
    const path = statusFile(stateDir, foreign);
    await mkdir(planStateDir(stateDir, foreign), { recursive: true });
    for (const [text, why] of [['{"foo":1}\n', 'not a version 1 status'], ['null', 'not a version 1 status'], ['garbage\nmore\n', 'not JSON']] as const) {
      await writeFile(path, text);
      for (const args of [[], ['--json']]) {
        const st = await oneswap(['plan', 'status', foreign, ...args], peers.env);
        assert.equal(st.exitCode, 9, st.stderr);
        assert.equal(st.stderr, `oneswap: ${path} is not a plan status oneswap wrote: ${why} (remove it; the next plan run starts the plan's state afresh (the VMs it finished are then recognised in OpenNebula and skipped))`, text);
        assert.equal(st.stdout, '');
      }
    }
  });

  test('plan run: Ctrl-C stops it (exit 130), the VM under way keeps its images, the rest are not started; the same command then finishes the plan', async () => {
    const vms: TestVm[] = [];
    for (const name of ['int-1', 'int-2', 'int-3']) vms.push(await createTestVm(peers.sim, { name, host: 'DC0_H1', cbt: true, disks: [{ sizeBytes: 16 * MiB, data: [{ offset: 0, length: 8 * MiB }] }], nics: [{ network: 'VM Network' }] }));
    const file = join(peers.work, 'interrupted.yaml');
    await writeFile(file, [...planFileHead(peers), ...planFileDefaults(peers, 'i-'), 'budgets: {inFlight: 1}', 'vms:', ...vms.map((v) => `  - name: ${v.name}`), ''].join('\n'));
    peers.proxy.faults = { throttleBytesPerSecond: 2 * MiB };
    const child = spawnOneswap(['plan', 'run', file, '--progress', 'json'], peers.env);
    let sent = false;
    child.stdout?.on('data', (d: Buffer) => {
      if (!sent && /"type":"disk","vm":"int-2".*"state":"copying"/.test(d.toString())) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const first = await child;
    peers.proxy.faults = {};
    assert.ok(sent, 'int-2 never started copying');
    assert.equal(first.exitCode, 130, String(first.stderr));
    const out = String(first.stdout).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; vm?: string; ok?: boolean; imageIds?: number[]; message?: string });
    assert.deepEqual(out.filter((e) => e.type === 'result').map((e) => [e.vm, e.ok]), [['int-1', true], ['int-2', false]]);
    const kept = out.find((e) => e.type === 'result' && e.vm === 'int-2')!.imageIds!;
    assert.equal(kept.length, 1);
    assert.equal(peers.oned.image(kept[0]!)!.template.get('ONESWAP_STATE'), 'FAILED');
    assert.ok(out.some((e) => e.type === 'log' && /stopped before 1 VM\(s\) started: int-3/.test(e.message ?? '')));

    const again = await oneswap(['plan', 'run', file, '--progress', 'json'], peers.env);
    assert.equal(again.exitCode, 0, again.stderr);
    const ev = again.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; vm?: string; ok?: boolean; imageIds?: number[]; message?: string });
    assert.deepEqual(ev.filter((e) => e.type === 'result').map((e) => [e.vm, e.ok]), [['int-2', true], ['int-3', true]]);
    assert.ok(ev.some((e) => e.vm === 'int-2' && e.type === 'log' && /resuming an earlier run/.test(e.message ?? '')));
    assert.deepEqual(ev.find((e) => e.type === 'result' && e.vm === 'int-2')!.imageIds, kept);
    for (const vm of vms.slice(1)) {
      const id = ev.find((e) => e.type === 'result' && e.vm === vm.name)!.imageIds![0]!;
      assert.equal(await sha256File(peers.oned.image(id)!.source), vm.disks[0]!.sha256, vm.name);
    }
  });

  // --- A re-run after a kill that came between a VM's cleanup and the plan's status write ---
  test('plan run: a VM whose migration finished but whose status was not written (killed after or in its cleanup) is recognised from OpenNebula and skipped, nothing read or created; one not all DONE without its journal is not', async () => {
    const vms: TestVm[] = [];
    for (const [name, host, sizes] of [['fin-a', 'DC0_H0', [2, 1]], ['fin-b', 'DC0_H1', [2]], ['fin-c', 'DC0_H1', [1]]] as const)
      vms.push(await createTestVm(peers.sim, { name, host, cbt: true, disks: sizes.map((n) => ({ sizeBytes: n * MiB, data: [{ offset: 0, length: MiB / 2 }] })), nics: [{ network: 'VM Network' }] }));
    const file = join(peers.work, 'finished.yaml');
    await writeFile(file, [...planFileHead(peers), 'defaults:', `  datastore: ${peers.dsId}`, '  convert: false', '  namePrefix: "f-"', 'vms:', ...vms.map((v) => `  - name: ${v.name}`), ''].join('\n'));
    const first = await oneswap(['plan', 'run', file, '--progress', 'json'], peers.env);
    assert.equal(first.exitCode, 0, first.stderr);
    type Ev = { type: string; vm?: string; ok?: boolean; imageIds?: number[]; templateId?: number; message?: string };
    const events = (out: string) => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Ev);
    const made = new Map(events(first.stdout).filter((e) => e.type === 'result').map((e) => [e.vm!, { templateId: e.templateId!, imageIds: e.imageIds! }]));

    // The status as a kill in the window leaves it: every VM still running, in its cleanup.
    const statusPath = join(planStateDir(peers.env.ONESWAP_STATE_DIR!, file), 'status.json');
    const rewind = async () => {
      const status = JSON.parse(await readFile(statusPath, 'utf8')) as { ended: boolean; vms: Array<{ state: string; phase?: string }> };
      status.ended = false;
      for (const v of status.vms) Object.assign(v, { state: 'running', phase: 'cleanup' });
      await writeFile(statusPath, JSON.stringify(status));
    };
    await rewind();
    // Killed in the cleanup, its journal still there, listing that template and those images: fin-b
    // after marking its image DONE; fin-a after marking its first image, the second still COPIED.
    const leftovers: string[] = [];
    for (const name of ['fin-a', 'fin-b']) {
      const m = made.get(name)!;
      const identity = peers.oned.image(m.imageIds[0]!)!.template.get('ONESWAP_SOURCE_VM')!;
      const leftover = Journal.fileFor(peers.env.ONESWAP_STATE_DIR!, identity, peers.dsId);
      await mkdir(dirname(leftover), { recursive: true });
      const disks = m.imageIds.map((imageId, k) => ({ sourceKey: String(2000 + k), imageId, imagePath: '', capacityBytes: vms.find((v) => v.name === name)!.disks[k]!.sizeBytes, done: [], complete: true }));
      await writeFile(leftover, JSON.stringify({ version: 1, source: identity, datastoreId: peers.dsId, createdAt: new Date().toISOString(), disks, addressRanges: [], templateId: m.templateId }));
      leftovers.push(leftover);
    }
    const unmarked = made.get('fin-a')!.imageIds[1]!;
    peers.oned.image(unmarked)!.template.set('ONESWAP_STATE', 'COPIED');

    const images = peers.imageIds();
    const templates = peers.templateIds();
    await resetDiskReads(peers.sim);
    const hostBytes = (await simStats(peers.sim)).hostBytes;
    const again = await oneswap(['plan', 'run', file, '--progress', 'json'], peers.env);
    assert.equal(again.exitCode, 0, again.stderr);
    const ev = events(again.stdout);
    assert.deepEqual(ev.filter((e) => e.type === 'result' || e.type === 'phase').map((e) => e.vm), []);
    for (const vm of vms) {
      const m = made.get(vm.name)!;
      assert.equal(ev.find((e) => e.vm === vm.name && e.type === 'log')?.message, `finished by an earlier run: template ${m.templateId}, images ${m.imageIds.join(', ')}; not started again`);
    }
    const stats = await simStats(peers.sim);
    assert.deepEqual([stats.diskReads.intervals, stats.diskReads.open], [[], []]);
    assert.deepEqual(stats.hostBytes, hostBytes);
    assert.deepEqual([peers.imageIds(), peers.templateIds()], [images, templates]);
    for (const leftover of leftovers) await assert.rejects(stat(leftover), { code: 'ENOENT' });
    assert.equal(peers.oned.image(unmarked)!.template.get('ONESWAP_STATE'), 'DONE', 'the cleanup the kill cut short is finished');
    const st = JSON.parse((await oneswap(['plan', 'status', file, '--json'], peers.env)).stdout) as { ended: boolean; vms: Array<{ key: string; state: string; finishedEarlier?: boolean }> };
    assert.deepEqual(st.vms.map((v) => [v.key, v.state, v.finishedEarlier]), vms.map((v) => [v.name, 'done', true]));
    assert.match((await oneswap(['plan', 'status', file], peers.env)).stdout, /^\S+ +fin-a +cold +done +finished by an earlier run /m);
    const { text } = planSummaryFiles(again.stdout);
    const summary = await planSummary(again.stdout);
    assert.deepEqual(summary.vms.map((v) => [v.key, v.outcome, v.finishedEarlier, v.templateId, v.imageIds]), vms.map((v) => [v.name, 'done', true, made.get(v.name)!.templateId, made.get(v.name)!.imageIds]));
    assert.match(await readFile(text, 'utf8'), /fin-a +done \(earlier run\)/);

    // Not all of fin-c's images DONE: not a finished migration, so the VM is started and its names clash.
    await rewind();
    peers.oned.image(made.get('fin-c')!.imageIds[0]!)!.template.set('ONESWAP_STATE', 'COPIED');
    const third = await oneswap(['plan', 'run', file, '--progress', 'json'], peers.env);
    assert.equal(third.exitCode, 6, third.stderr);
    assert.match(third.stderr.trim(), /^oneswap: 1 of 3 VMs failed: fin-c: image name "f-fin-c-disk0" is already taken by image \d+/);
    assert.deepEqual(events(third.stdout).filter((e) => e.type === 'result').map((e) => [e.vm, e.ok]), [['fin-c', false]]);
    assert.deepEqual([peers.imageIds(), peers.templateIds()], [images, templates]);
  });
});
