// The plan file: a valid plan read into exact PlannedVm values, each kind of mistake reported at
// its line and column with its fix, all of them at once; and the starting plan `plan new` writes
// read back as written.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PlanFileError, parsePlan, startingPlan, type PlannedVm } from '../../lib/plan/index.js';
import type { VmSummary } from '../../lib/vsphere/index.js';
import { planVcenterOptions } from '../../lib/cli/plan.js';
import { summary } from '../support/vm-summary.js';

const HEAD = ['version: 1', 'vcenter:', '  host: vc.example.com', '  user: admin@vsphere.local'];

function problems(lines: readonly string[]): string[] {
  try {
    parsePlan(lines.join('\n'), 'estate.yaml');
  } catch (err) {
    assert.ok(err instanceof PlanFileError, String(err));
    assert.equal(err.exitCode, 2);
    assert.equal(err.message, err.problems.map((p) => `estate.yaml:${p.line}:${p.col}: ${p.where}: ${p.what}`).join('\n'));
    return err.message.split('\n');
  }
  assert.fail('the plan was accepted');
}

describe('plan file', () => {
  test('a valid plan: defaults merged under each VM, windows, waves, budgets, anchors and comments', () => {
    const plan = parsePlan(
      [
        '# the estate of the Paris office',
        'version: 1',
        'vcenter:',
        '  host: vc.example.com:8443',
        '  user: admin@vsphere.local',
        '  passwordFile: secrets/vc.pw   # mode 0600',
        '  ca: ca.pem',
        '  datacenter: DC0',
        'one:',
        '  endpoint: http://one.example.com:2633/RPC2',
        'defaults:',
        '  datastore: 100',
        '  networkMap:',
        '    VM Network: prod',
        '    DMZ: 7',
        'budgets:',
        '  readsPerHost: 3',
        '  datastoreRate:',
        '    LocalDS_0: 200M/s',
        '    LocalDS_1: 1G',
        'windows:',
        '  night: {start: 2027-01-12T22:00, end: 2027-01-13T04:00}',
        'waves: [pilot, bulk]',
        'x-warm: &warm',
        '  mode: warm',
        '  enableCbt: true',
        'vms:',
        '  - name: web01',
        '  - path: /DC0/vm/db/db01',
        '    <<: *warm',
        '    cutover: night',
        '    wave: pilot',
        '    priority: 10',
        '    networkMap: {DMZ: dmz-new}',
        '  - uuid: 421C2D2A-1111-2222-3333-444455556666',
        '    <<: *warm',
        '    enableCbt: false',
        '    cutover: 2027-01-14T23:30',
        '    datastore: 101',
        '    output: vm',
        '    transport: vddk',
        '    convert: false',
        '    namePrefix: "paris-"',
        '    keepMac: false',
        '    keepIp: true',
        '    wave: bulk',
        '  - name: batch07',
        '    shutdown: true',
      ].join('\n'),
      '/plans/estate.yaml',
    );
    assert.deepEqual(plan.vcenter, {
      address: 'vc.example.com:8443',
      host: 'vc.example.com',
      port: 8443,
      user: 'admin@vsphere.local',
      passwordFile: '/plans/secrets/vc.pw',
      tls: { kind: 'ca', file: '/plans/ca.pem' },
      datacenter: 'DC0',
    });
    assert.deepEqual(planVcenterOptions(plan.vcenter), { vcenter: 'vc.example.com:8443', user: 'admin@vsphere.local', passwordFile: '/plans/secrets/vc.pw', ca: '/plans/ca.pem' });
    assert.equal(plan.source, '/plans/estate.yaml');
    assert.equal(plan.endpoint, 'http://one.example.com:2633/RPC2');
    assert.deepEqual(plan.waves, ['pilot', 'bulk']);
    assert.deepEqual(plan.budgets, { readsPerHost: 3, converting: 1, inFlight: 4, datastoreBytesPerSec: new Map([['LocalDS_0', 200 * 2 ** 20], ['LocalDS_1', 2 ** 30]]) });
    const night = { name: 'night', start: new Date(2027, 0, 12, 22, 0), end: new Date(2027, 0, 13, 4, 0) };
    assert.deepEqual(plan.windows, new Map([['night', night]]));
    const base = { priority: 0, datastoreId: 100, convert: true, output: 'template', transport: 'auto', namePrefix: '', keepMac: true, keepIp: false } as const;
    const expected: PlannedVm[] = [
      { ...base, key: 'web01', query: { by: 'name', value: 'web01' }, line: 28, wave: 'pilot', mode: { kind: 'cold', shutdown: false }, networkMap: new Map([['VM Network', 'prod'], ['DMZ', '7']]) },
      {
        ...base,
        key: '/DC0/vm/db/db01',
        query: { by: 'path', value: '/DC0/vm/db/db01' },
        line: 29,
        wave: 'pilot',
        priority: 10,
        mode: { kind: 'warm', enableCbt: true, cutover: night },
        networkMap: new Map([['VM Network', 'prod'], ['DMZ', 'dmz-new']]),
      },
      {
        key: '421C2D2A-1111-2222-3333-444455556666',
        query: { by: 'uuid', value: '421C2D2A-1111-2222-3333-444455556666' },
        line: 35,
        wave: 'bulk',
        priority: 0,
        mode: { kind: 'warm', enableCbt: false, cutover: { start: new Date(2027, 0, 14, 23, 30) } },
        datastoreId: 101,
        networkMap: new Map([['VM Network', 'prod'], ['DMZ', '7']]),
        convert: false,
        output: 'vm',
        transport: 'vddk',
        namePrefix: 'paris-',
        keepMac: false,
        keepIp: true,
      },
      { ...base, key: 'batch07', query: { by: 'name', value: 'batch07' }, line: 47, wave: 'pilot', mode: { kind: 'cold', shutdown: true }, networkMap: new Map([['VM Network', 'prod'], ['DMZ', '7']]) },
    ];
    assert.deepEqual(plan.vms, expected);
  });

  test('without waves every VM is in the wave "default"; TLS by thumbprint or insecure; a time with an offset', () => {
    const plan = parsePlan(
      ['version: 1', 'vcenter: {host: 10.0.0.5, user: u, insecure: true}', 'defaults: {datastore: 1, mode: warm}', 'vms:', '  - name: a', '    cutover: 2027-03-01T02:00Z'].join('\n'),
      'p.yaml',
    );
    assert.deepEqual(plan.waves, ['default']);
    assert.deepEqual(plan.vcenter.tls, { kind: 'insecure' });
    assert.deepEqual(planVcenterOptions(plan.vcenter), { vcenter: '10.0.0.5', user: 'u', insecure: true });
    assert.equal(plan.vcenter.port, 443);
    assert.deepEqual(plan.vms[0]!.mode, { kind: 'warm', enableCbt: false, cutover: { start: new Date('2027-03-01T02:00:00Z') } });
    assert.deepEqual(plan.budgets, { readsPerHost: 2, converting: 1, inFlight: 4, datastoreBytesPerSec: new Map() });
  });

  test("docs/PLANS.md's complete plan is a valid plan", () => {
    const doc = readFileSync(new URL('../../docs/PLANS.md', import.meta.url), 'utf8');
    const example = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    assert.ok(example !== undefined);
    const plan = parsePlan(example, '/plans/estate.yaml');
    assert.deepEqual(
      plan.vms.map((v) => [v.key, v.wave, v.mode.kind, v.datastoreId]),
      [
        ['web01', 'pilot', 'cold', 100],
        ['/Paris/vm/db/db01', 'bulk', 'warm', 100],
        ['421c2d2a-1111-2222-3333-444455556666', 'bulk', 'warm', 101],
        ['batch07', 'pilot', 'cold', 100],
      ],
    );
  });

  test('a password is refused with what to use instead', () => {
    assert.deepEqual(problems([...HEAD, '  password: hunter2', 'defaults: {datastore: 1}', 'vms: [{name: a}]']), [
      'estate.yaml:5:3: vcenter.password: a password does not belong in a plan; name a file only you can read (mode 0600) with passwordFile, or set ONESWAP_VCENTER_PASSWORD',
    ]);
  });

  test('every mistake at once, in the order of the file, each at its line and column', () => {
    assert.deepEqual(
      problems([
        'version: 1',
        'vcenter:',
        '  host: "vc:99999x"',
        '  thumbprint: AA',
        '  insecure: true',
        'defaults:',
        '  mode: hot',
        '  transport: ftp',
        '  keepMac: "yes"',
        'budgets:',
        '  readsPerHost: 0',
        '  inFlight: many',
        '  datastoreRate: {LocalDS_0: fast}',
        '  cpu: 4',
        'windows:',
        '  night: {start: 2027-02-30T22:00}',
        '  day: {start: 2027-01-12T08:00, end: 2027-01-12T07:00}',
        '  lunch: {end: 2027-01-12T13:00}',
        'waves: [one, one]',
        'vms:',
        '  - name: web01',
        '    cutover: night',
        '    colour: blue',
        '  - name: web01',
        '  - name: db',
        '    mode: warm',
        '    cutover: tea-time',
        '    wave: w9',
        '    shutdown: true',
        '  - name: batch',
        '    enableCbt: true',
        '    priority: high',
        '  - path: db02',
        '  - uuid: abc-1234',
        '  - name: both',
        '    path: /DC0/vm/both',
        '  - {}',
        '  - name: 42',
      ]),
      [
        'estate.yaml:2:1: vcenter.user: missing; the vCenter user, e.g. administrator@vsphere.local',
        'estate.yaml:3:9: vcenter.host: the host "vc:99999x" is not a host name or host:port',
        'estate.yaml:5:3: vcenter.insecure: choose one of thumbprint, ca and insecure',
        'estate.yaml:7:9: defaults.mode: must be one of cold, warm, not "hot"',
        'estate.yaml:8:14: defaults.transport: must be one of auto, folder, lease, vddk, nfc, not "ftp"',
        'estate.yaml:9:12: defaults.keepMac: must be true or false, not "yes"',
        'estate.yaml:11:17: budgets.readsPerHost: must be a whole number (1 or more), not 0',
        'estate.yaml:12:13: budgets.inFlight: must be a whole number (1 or more), not "many"',
        'estate.yaml:13:30: budgets.datastoreRate.LocalDS_0: "fast" is not a rate; give bytes per second like 200M or 1G',
        'estate.yaml:14:3: budgets: unknown key "cpu" (known here: readsPerHost, converting, inFlight, datastoreRate)',
        'estate.yaml:16:18: windows.night.start: "2027-02-30T22:00" is not a date and time that exists',
        'estate.yaml:17:39: windows.day.end: is not after start',
        'estate.yaml:18:3: windows.lunch: has no start; give start: 2027-01-12T22:00 (local time)',
        'estate.yaml:19:14: waves: "one" is listed twice',
        'estate.yaml:21:5: vms[web01]: has no datastore; set defaults.datastore or datastore: on this VM (an OpenNebula image datastore id)',
        'estate.yaml:22:5: vms[web01].cutover: a cutover time is only for warm VMs; set mode: warm on this VM or remove cutover',
        'estate.yaml:23:5: vms[web01]: unknown key "colour" (known here: name, path, uuid, datastore, mode, shutdown, enableCbt, convert, output, transport, networkMap, namePrefix, keepMac, keepIp, wave, priority, cutover)',
        'estate.yaml:24:11: vms[web01].name: is already planned on line 21; list each VM once',
        'estate.yaml:25:5: vms[db]: has no datastore; set defaults.datastore or datastore: on this VM (an OpenNebula image datastore id)',
        'estate.yaml:27:14: vms[db].cutover: unknown window "tea-time"; name a window of windows: or give a date and time like 2027-01-12T22:00',
        'estate.yaml:28:11: vms[db].wave: unknown wave "w9" (waves: one)',
        'estate.yaml:29:5: vms[db].shutdown: is for cold VMs (a warm cutover always shuts the guest down); remove it or set mode: cold',
        'estate.yaml:30:5: vms[batch]: has no datastore; set defaults.datastore or datastore: on this VM (an OpenNebula image datastore id)',
        'estate.yaml:31:5: vms[batch].enableCbt: is for warm VMs; remove it or set mode: warm',
        'estate.yaml:32:15: vms[batch].priority: must be a whole number, not "high"',
        'estate.yaml:33:11: vms[db02].path: an inventory path starts with "/", e.g. /DC0/vm/web01',
        'estate.yaml:34:11: vms[abc-1234].uuid: is not a UUID (8-4-4-4-12 hexadecimal digits)',
        'estate.yaml:35:5: vms[both]: has no datastore; set defaults.datastore or datastore: on this VM (an OpenNebula image datastore id)',
        'estate.yaml:36:5: vms[both]: give only one of name, path and uuid, not name and path',
        'estate.yaml:37:5: vms[#8]: names no VM; give one of name:, path: or uuid:',
        'estate.yaml:38:11: vms[#9].name: must be text; quote it: "42"',
      ],
    );
  });

  test('missing sections, a wrong version, YAML syntax and a repeated key', () => {
    assert.deepEqual(problems(['version: 2']), [
      'estate.yaml:1:1: vcenter: missing; add a vcenter: mapping with host and user',
      'estate.yaml:1:1: vms: missing; list the VMs to migrate under vms: (each "- name: VM")',
      'estate.yaml:1:10: version: this oneswap reads plan version 1, not 2',
    ]);
    assert.deepEqual(problems(['vcenter: {host: h, user: u}', 'vms: []']), [
      'estate.yaml:1:1: version: missing; start the plan with "version: 1"',
      'estate.yaml:2:1: vms: lists no VM; add one "- name: VM" per VM',
    ]);
    assert.deepEqual(problems([...HEAD, '  user: other', 'defaults: {datastore: 1}', 'vms: [{name: a}]']), [
      'estate.yaml:5:3: YAML: this key is given twice in the same mapping; keep one',
    ]);
    assert.deepEqual(problems([...HEAD, 'vms:', '  - name: a', ' - name: b']), ['estate.yaml:7:1: YAML: A block sequence may not be used as an implicit map key']);
  });

  test('a datastore rate of nothing is refused: a budget of 0 bytes per second would stall every copy', () => {
    assert.deepEqual(
      problems([...HEAD, 'defaults: {datastore: 1}', 'budgets:', '  datastoreRate: {LocalDS_0: 0, LocalDS_1: 0M/s, LocalDS_2: 0.1}', '  readsPerHost: 2', 'vms: [{name: a}]']),
      [
        'estate.yaml:7:30: budgets.datastoreRate.LocalDS_0: 0 is not a rate; give bytes per second like 200M or 1G',
        'estate.yaml:7:44: budgets.datastoreRate.LocalDS_1: "0M/s" is not a rate; give bytes per second like 200M or 1G',
        'estate.yaml:7:61: budgets.datastoreRate.LocalDS_2: 0.1 is not a rate; give bytes per second like 200M or 1G',
      ],
    );
  });

  test('a VM named by a number, a mapping where a value belongs', () => {
    assert.deepEqual(problems([...HEAD, 'defaults:', '  datastore: {id: 1}', 'vms:', '  - name: "42"', 'waves: pilot']), [
      'estate.yaml:6:14: defaults.datastore: must be a single value, not a mapping or a list',
      'estate.yaml:9:8: waves: must be a list of wave names (lines starting with "- ")',
    ]);
  });
});

describe('the starting plan', () => {
  const vm = (name: string, folder: string, over: Partial<VmSummary> = {}): VmSummary =>
    summary([], {
      ref: { type: 'VirtualMachine', value: `vm-${folder}-${name}` },
      name,
      uuid: '',
      instanceUuid: '',
      host: 'esx1',
      path: `/DC0/vm/${folder}/${name}`,
      numCPU: 1,
      numCoresPerSocket: 1,
      memoryMiB: 512,
      guestId: 'otherGuest',
      guestFullName: '',
      changeTrackingEnabled: false,
      nics: [],
      ...over,
    });
  const nic = (network: string) => ({ key: 4000, label: 'Network adapter 1', macAddress: '00:50:56:00:00:01', network, adapterType: 'VirtualVmxnet3', connected: true });

  test('VMs whose names repeat are planned by path; networks: by name, ambiguous and missing ones as a comment; reads back', () => {
    const text = startingPlan({
      vcenter: { address: 'vc:443', user: 'u', passwordFile: '/home/u/vc.pw', datacenter: 'DC0' },
      datastoreId: 5,
      mode: 'warm',
      vms: [vm('web', 'a', { nics: [nic('prod'), nic('dmz')] }), vm('web', 'b', { nics: [nic('backup')], powerState: 'suspended', host: undefined })],
      oneNetworks: [
        { id: 1, name: 'prod' },
        { id: 2, name: 'backup' },
        { id: 3, name: 'backup' },
      ],
    });
    assert.equal(
      text,
      [
        '# oneswap plan: 2 VMs of vCenter vc:443, written by oneswap plan new.',
        '# Review it (docs/PLANS.md describes every key), then: oneswap plan check PLAN',
        '',
        'version: 1',
        'vcenter:',
        '  host: vc:443',
        '  user: u',
        '  passwordFile: /home/u/vc.pw',
        '  datacenter: DC0',
        'defaults:',
        '  datastore: 5',
        '  mode: warm',
        '  enableCbt: false',
        '  networkMap:',
        '    prod: prod',
        '    # not mapped: backup (OpenNebula networks 2, 3 all have that name; map it to one id); dmz (no OpenNebula network of that name)',
        'budgets:',
        '  readsPerHost: 2',
        '  converting: 1',
        '  inFlight: 4',
        'vms:',
        '  # off, CBT off, vmx-19, no disk, guest otherGuest, host esx1',
        '  - path: /DC0/vm/a/web',
        '  # suspended, CBT off, vmx-19, no disk, guest otherGuest, host unknown',
        '  - path: /DC0/vm/b/web',
        '',
      ].join('\n'),
    );
    const plan = parsePlan(text, '/plans/new.yaml');
    assert.deepEqual(
      plan.vms.map((v) => [v.key, v.query.by, v.line, v.mode.kind]),
      [
        ['/DC0/vm/a/web', 'path', 23, 'warm'],
        ['/DC0/vm/b/web', 'path', 25, 'warm'],
      ],
    );
    assert.equal(plan.vcenter.passwordFile, '/home/u/vc.pw');
  });

  test('no network at all and no password file: an empty map, the password file as a placeholder comment', () => {
    const text = startingPlan({ vcenter: { address: 'vc', user: 'u' }, datastoreId: 0, mode: 'cold', vms: [vm('a', 'f')], oneNetworks: [] });
    assert.match(text, /^vcenter:\n {2}host: vc\n {2}user: u\n {2}# passwordFile: FILE .*\ndefaults:\n {2}datastore: 0\n {2}mode: cold\n {2}shutdown: false\n {2}networkMap: \{\}\nbudgets:/m);
    assert.equal(parsePlan(text, 'p.yaml').vms.length, 1);
  });
});
