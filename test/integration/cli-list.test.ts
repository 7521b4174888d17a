// `oneswap list ...` against the vCenter simulator's default inventory, as the real command.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startVcsim, vcsimSkip, type Vcsim } from '../peers/vcsim/index.js';
import { oneswap } from '../peers/cli.js';

const skip = vcsimSkip();

describe('oneswap list', { skip }, () => {
  let sim: Vcsim;
  let work: string;
  let env: Record<string, string>;
  const list = (...extra: string[]) =>
    oneswap(['list', ...extra, '--vcenter', `127.0.0.1:${sim.port}`, '--user', sim.username, '--ca', sim.certFile], env);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-list-'));
    sim = await startVcsim();
    const pw = join(work, 'pw');
    await writeFile(pw, `${sim.password}\n`, { mode: 0o600 });
    env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ONESWAP_VCENTER_PASSWORD_FILE: pw };
  });
  after(async () => {
    await sim?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('vms: a table with power, CPU, memory, disks, firmware, CBT; filters by name, power, cluster', async () => {
    const all = await list('vms');
    assert.equal(all.exitCode, 0, all.stderr);
    const lines = all.stdout.trim().split('\n');
    assert.match(lines[0]!, /^NAME\s+POWER\s+CPU\s+MEMORY\s+DISKS\s+FIRMWARE\s+CBT\s+GUEST\s+DATACENTER\s+CLUSTER\/HOST$/);
    assert.equal(lines.length, 5);
    const glob = await list('vms', '--name', 'DC0_C0_*', '--json');
    const vms = JSON.parse(glob.stdout) as Array<{ name: string; powerState: string; disks: unknown[]; nics: unknown[] }>;
    assert.deepEqual(vms.map((v) => v.name).sort(), ['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1']);
    assert.ok(vms.every((v) => v.disks.length === 1 && v.nics.length === 1));
    const off = await list('vms', '--power', 'off', '--json');
    assert.deepEqual(JSON.parse(off.stdout), []);
    const cluster = await list('vms', '--cluster', 'DC0_C0', '--json');
    assert.equal((JSON.parse(cluster.stdout) as unknown[]).length, 2);
    const bad = await list('vms', '--power', 'sideways');
    assert.equal(bad.exitCode, 2);
    assert.match(bad.stderr, /--power "sideways"/);
  });

  test('datacenters, clusters, hosts, datastores, networks', async () => {
    assert.match((await list('datacenters')).stdout, /^DC0\s+\/DC0$/m);
    assert.match((await list('clusters')).stdout, /^DC0_C0\s+DC0\s+3$/m);
    const hosts = JSON.parse((await list('hosts', '--json')).stdout) as Array<{ name: string; cluster?: string }>;
    assert.equal(hosts.length, 4);
    assert.deepEqual(hosts.filter((h) => h.cluster === undefined).map((h) => h.name), ['DC0_H0']);
    assert.match((await list('datastores')).stdout, /^LocalDS_0\s+DC0\s+/m);
    const nets = (await list('networks')).stdout;
    assert.match(nets, /^VM Network\s+DC0\s+Network$/m);
    assert.match(nets, /^DC0_DVPG0\s+DC0\s+DistributedVirtualPortgroup$/m);
    const unknown = await list('toasters');
    assert.equal(unknown.exitCode, 2);
    assert.match(unknown.stderr, /cannot list "toasters"/);
  });

  test('a password file others can read is refused, as ssh refuses such a key, with the chmod to run', async () => {
    for (const mode of [0o644, 0o640]) {
      const pw = join(work, `pw-open-${mode.toString(8)}`);
      await writeFile(pw, `${sim.password}\n`, { mode });
      const r = await oneswap(['list', 'datacenters', '--vcenter', `127.0.0.1:${sim.port}`, '--user', sim.username, '--ca', sim.certFile, '--password-file', pw], env);
      assert.equal(r.exitCode, 2, r.stderr);
      assert.deepEqual(r.stderr.trim().split('\n'), [`oneswap: the password file ${pw} can be read by other users (mode ${mode.toString(8)}): refused (chmod 600 ${pw})`]);
      assert.equal(r.stdout, '');
    }
  });

  test('no password source and no terminal: exit 2 with what to do', async () => {
    const r = await oneswap(['list', 'vms', '--vcenter', `127.0.0.1:${sim.port}`, '--user', sim.username, '--ca', sim.certFile], { PATH: env.PATH!, HOME: work });
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /no password for vCenter user user.*--password-file/);
  });

  test('usage errors: exit 2, the error and a pointer to --help, not the whole help', async () => {
    const r = await oneswap(['import', 'web01'], env);
    assert.equal(r.exitCode, 2);
    assert.deepEqual(r.stderr.trim().split('\n'), [
      'oneswap: a vCenter import needs --datastore ID (oneswap import --vcenter HOST --datastore ID VM...; from files: --ova FILE or --vmdk FILE... with --datastore ID or --output-dir DIR)',
    ]);
    const u = await oneswap(['import', '--datastore', '1', 'web01', '--no-such-option'], env);
    assert.equal(u.exitCode, 2);
    assert.deepEqual(u.stderr.trim().split('\n'), ["error: unknown option '--no-such-option'", '(oneswap <command> --help shows the options)']);
  });
});
