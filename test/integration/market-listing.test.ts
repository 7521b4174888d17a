// How soon a oneswap marketplace lists the vCenter's VMs, against the OpenNebula simulator behaving
// as oned 7.4 does: one.market.allocate monitors nothing, MarketPlaceManager's timer monitors every
// MONITORING_INTERVAL_MARKET (600 s), and only enabling a DISABLED marketplace monitors it at once.
// The simulator stands for an oned that has run for a while: its next cycle is a whole interval
// away, so a setup that relied on the cycle would list nothing here. Also `oneswap market refresh`.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vcsimSkip, startVcsim, type Vcsim } from '../peers/vcsim/index.js';
import { createTestVm } from '../peers/vcsim/fixture.js';
import type { Oned } from '../peers/one/index.js';
import { startOnedWithDrivers, type DriverPeers } from '../peers/one-drivers.js';
import { oneswap, spawnOneswap } from '../peers/cli.js';
import { OneClient, Template } from '../../lib/one/index.js';

const MiB = 1024 * 1024;

describe('the first listing of a oneswap marketplace', { skip: vcsimSkip(), timeout: 5 * 60_000 }, () => {
  let sim: Vcsim;
  let peers: DriverPeers;
  let oned: Oned;
  let one: OneClient;
  let work: string;
  let env: Record<string, string>;
  let marketId: number;

  const marketTemplate = (name: string, extra: Record<string, string> = {}): string =>
    Template.of({ NAME: name, MARKET_MAD: 'oneswap', VCENTER_HOST: `127.0.0.1:${sim.port}`, ONESWAP_CREDENTIALS: peers.credentials, ...extra }).toXml();
  const monitorsOf = (id: number) => oned.log.filter((e) => e.kind === 'market' && e.action === 'monitor' && e.argv[1] === String(id));
  /** Cycles of the timer monitor every enabled marketplace, the OpenNebula Public one (id 0) too. */
  const cycles = () => monitorsOf(0).length;
  const appsOf = async (id: number): Promise<readonly number[]> => (await one.marketplace(id)).appIds;
  const refresh = (args: string[], auth = env) => oneswap(['market', 'refresh', ...args, '--endpoint', oned.endpoint], auth);
  const lastLine = (text: string): string => text.trim().split('\n').at(-1)!;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-market-listing-'));
    sim = await startVcsim();
    await createTestVm(sim, { name: 'listed', disks: [{ sizeBytes: 4 * MiB, data: [{ offset: 0, length: 4096 }] }] });
    peers = await startOnedWithDrivers(sim, { market: true, marketMonitorFirstCycleMs: 600_000 });
    oned = peers.oned;
    one = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession, env: {} });
    await writeFile(join(work, 'one_auth'), `${oned.adminSession}\n`, { mode: 0o600 });
    env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ONE_AUTH: join(work, 'one_auth') };
  });

  after(async () => {
    one?.close();
    await oned?.stop();
    await sim?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('created enabled, the old way: nothing is listed until the next cycle of the timer', async () => {
    const id = Number(await one.call('one.market.allocate', [marketTemplate('old-way')]));
    await new Promise((r) => setTimeout(r, 5000));
    assert.deepEqual(monitorsOf(id), [], 'no monitor without a cycle');
    assert.deepEqual(await appsOf(id), []);
    await oned.marketCycle();
    assert.equal(monitorsOf(id).length, 1);
    assert.ok((await appsOf(id)).length > 0, 'the cycle listed the VMs');
    // App names are unique across marketplaces: the next ones list the same VMs only once these go.
    await one.call('one.market.delete', [id]);
  });

  test('created DISABLED and then enabled, the documented way: listed within seconds, no cycle needed', async () => {
    const cyclesBefore = cycles();
    marketId = Number(await one.call('one.market.allocate', [marketTemplate('vcenter', { STATE: 'DISABLED' })]));
    assert.equal((await one.marketplace(marketId)).state, 'DISABLED');
    const t0 = Date.now();
    await one.marketplaceEnable(marketId, true);
    while ((await appsOf(marketId)).length === 0) {
      assert.ok(Date.now() - t0 < 10_000, `nothing listed ${Date.now() - t0} ms after enabling: ${monitorsOf(marketId).map((e) => e.stderr).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(cycles(), cyclesBefore, 'no cycle of the timer ran');
    const [monitor] = monitorsOf(marketId);
    assert.equal(monitor?.exitCode, 0, monitor?.stderr);
    const names = (await one.call('one.marketapppool.info', [-2, -1, -1])) as string;
    assert.match(names, /<NAME>listed \(127\.0\.0\.1\)<\/NAME>/);
    assert.match(names, /<NAME>listed \(127\.0\.0\.1\) disk0<\/NAME>/);
    const apps = [...monitor!.stdout.matchAll(/^APP="([^"]+)"$/gm)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8'));
    const vms = apps.filter((a) => /^TYPE\s*=\s*"VMTEMPLATE"$/m.test(a)).length;
    process.stderr.write(`# first listing ${seconds.toFixed(1)} s after enabling; the monitor of ${vms} VMs ran ${monitor!.durationMs} ms\n`);
  });

  test('oneswap market refresh lists again at once, under new ids; a disabled marketplace is just enabled', async () => {
    const before = await appsOf(marketId);
    const cyclesBefore = cycles();
    const r = await refresh([String(marketId)]);
    assert.equal(r.exitCode, 0, r.stderr);
    const after = await appsOf(marketId);
    assert.match(r.stdout, new RegExp(`^marketplace ${marketId} \\(vcenter\\): ${after.length} apps listed \\d+ s after it was enabled$`));
    assert.equal(after.length, before.length);
    assert.deepEqual(after.filter((a) => before.includes(a)), [], 'new ids');
    assert.equal(monitorsOf(marketId).length, 2);
    assert.equal(cycles(), cyclesBefore);

    await one.marketplaceEnable(marketId, false);
    const again = await refresh([String(marketId)]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.equal((await one.marketplace(marketId)).state, 'ENABLED');
    assert.equal((await appsOf(marketId)).length, before.length);
  });

  test('oneswap market refresh refuses, in one line with its exit code: no id, an unknown or foreign marketplace, a user who may not manage it, a listing that does not come', async () => {
    const notId = await refresh(['vcenter']);
    assert.deepEqual([notId.exitCode, lastLine(notId.stderr)], [2, 'oneswap: marketplace id "vcenter" is not a non-negative integer']);
    const noTime = await refresh([String(marketId), '--timeout', '0']);
    assert.deepEqual([noTime.exitCode, lastLine(noTime.stderr)], [2, 'oneswap: --timeout "0" is not a positive integer']);

    const unknown = await refresh(['4242']);
    assert.deepEqual([unknown.exitCode, lastLine(unknown.stderr)], [5, 'oneswap: [one.market.info] Error getting marketplace [4242].']);

    const foreign = await refresh(['0']);
    assert.equal(foreign.exitCode, 2, foreign.stderr);
    assert.equal(
      lastLine(foreign.stderr),
      'oneswap: marketplace 0 (OpenNebula Public) has MARKET_MAD one, not oneswap: oneswap refreshes only its own marketplaces (for another marketplace: onemarket disable 0; onemarket enable 0)',
    );
    assert.equal((await one.marketplace(0)).state, 'ENABLED', 'left alone');

    const listed = await appsOf(marketId);
    oned.createUser('viewer', 'viewer-pw');
    await writeFile(join(work, 'viewer_auth'), 'viewer:viewer-pw\n', { mode: 0o600 });
    const denied = await refresh([String(marketId)], { ...env, ONE_AUTH: join(work, 'viewer_auth') });
    assert.equal(denied.exitCode, 3, denied.stderr);
    assert.match(lastLine(denied.stderr), /^oneswap: \[one\.market\.enable\] .*Not authorized/);
    assert.deepEqual(await appsOf(marketId), listed, 'the marketplace is untouched');

    const broken = Number(await one.call('one.market.allocate', [marketTemplate('broken', { ONESWAP_CREDENTIALS: join(work, 'missing.yaml'), STATE: 'DISABLED' })]));
    const nothing = await refresh([String(broken), '--timeout', '3']);
    assert.equal(nothing.exitCode, 8, nothing.stderr);
    assert.equal(
      lastLine(nothing.stderr),
      `oneswap: marketplace ${broken} (broken) is enabled but listed nothing within 3 s: its monitor failed (oned.log: "Error monitoring marketplace ${broken}"), or the vCenter has no VM with disks, or another marketplace lists the same VMs`,
    );
    assert.match(monitorsOf(broken)[0]?.stderr ?? '', /cannot read the vCenter credentials file/);

    const child = spawnOneswap(['market', 'refresh', String(broken), '--endpoint', oned.endpoint], env);
    while (monitorsOf(broken).length < 2) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGINT');
    const stopped = await child;
    assert.equal(stopped.exitCode, 130, String(stopped.stderr));
    assert.equal(lastLine(String(stopped.stderr)), `oneswap: stopped waiting for marketplace ${broken} (broken) to list its VMs (it is enabled)`);
  });
});
