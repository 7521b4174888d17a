/**
 * The oned simulator's datastore rules without Ceph or sshd (reference §5.8): one.datastore.allocate
 * (REQUIRED_ATTRS order, TM_MAD_CONF copied into the template, DISK_TYPE), the image record on a Ceph
 * datastore, the `onehost` stand-in, and the ceph/fs drivers' BRIDGE_LIST handling driven through
 * test doubles of ssh, rbd and ceph put first in the drivers' PATH (driverEnv).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { IMAGE_STATE, startOned, type Oned } from '../peers/one/index.js';
import { splitStderr } from '../peers/one/driver-runner.js';
import { hostCliScript } from '../peers/one/simulator.js';
import { rpc } from '../peers/one/rpc.js';

const docParser = new XMLParser({ ignoreAttributes: true, parseTagValue: false });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = any;

const dsInfo = async (oned: Oned, id: number): Promise<Doc> =>
  (docParser.parse(String((await rpc(oned.endpoint, oned.adminSession, 'one.datastore.info', id, false)).value)) as Doc).DATASTORE;

const allocDs = (oned: Oned, tmpl: string, cluster = -1): ReturnType<typeof rpc> => rpc(oned.endpoint, oned.adminSession, 'one.datastore.allocate', tmpl, cluster);

describe('one.datastore.allocate (Datastore::insert)', () => {
  let oned: Oned;
  before(async () => {
    oned = await startOned({ adminPassword: 'pw', asyncDelayMs: 10 });
    // no Ceph here: the monitor answers for the ceph driver
    oned.setDriverAction('monitor', (ctx) => (ctx.dsMad === 'ceph' ? { stdout: 'USED_MB=1\nTOTAL_MB=100\nFREE_MB=99\n' } : undefined));
  });
  after(() => oned.stop());

  test('a ceph template needs DISK_TYPE, then BRIDGE_LIST: 8192 with oned\'s text, no prefix', async () => {
    const base = 'NAME="c"\nDS_MAD="ceph"\nTM_MAD="ceph"';
    assert.deepEqual(await allocDs(oned, base), { ok: false, value: '[one.datastore.allocate] Datastore template is missing the "DISK_TYPE" attribute or it\'s empty.', code: 8192 });
    assert.deepEqual(await allocDs(oned, `${base}\nBRIDGE_LIST="h1"`), { ok: false, value: '[one.datastore.allocate] Datastore template is missing the "DISK_TYPE" attribute or it\'s empty.', code: 8192 });
    assert.deepEqual(await allocDs(oned, `${base}\nDISK_TYPE="RBD"`), { ok: false, value: '[one.datastore.allocate] Datastore template is missing the "BRIDGE_LIST" attribute or it\'s empty.', code: 8192 });
  });

  test('DS_MAD / TM_MAD / DISK_TYPE / cluster / caller errors', async () => {
    const cases: [string, string][] = [
      ['NAME="x"\nTM_MAD=shared', 'No DS_MAD in template.'],
      ['NAME="x"\nDS_MAD=nope\nTM_MAD=shared', 'DS_MAD named "nope" is not defined in oned.conf'],
      ['NAME="x"\nDS_MAD=fs', 'No TM_MAD in template.'],
      ['NAME="x"\nDS_MAD=fs\nTM_MAD=nope', 'TM_MAD named "nope" is not defined in oned.conf'],
      ['NAME="x"\nTYPE=SYSTEM_DS\nDS_MAD=fs\nTM_MAD=shared', 'SYSTEM datastores cannot have DS_MAD defined.'],
      ['NAME="x"\nDS_MAD=fs\nTM_MAD=shared\nDISK_TYPE=CDROM', 'Invalid DISK_TYPE for an Image Datastore.'],
      ['NAME="x"\nDS_MAD=fs\nTM_MAD=shared\nDISK_TYPE=FLOPPY', 'Unknown DISK_TYPE in template.'],
      ['NAME="default"\nDS_MAD=fs\nTM_MAD=shared', 'NAME is already taken by DATASTORE 1.'],
    ];
    for (const [tmpl, msg] of cases) assert.deepEqual(await allocDs(oned, tmpl), { ok: false, value: `[one.datastore.allocate] ${msg}`, code: 8192 }, tmpl);
    assert.deepEqual(await allocDs(oned, 'NAME="x"\nDS_MAD=fs\nTM_MAD=shared', 7), { ok: false, value: '[one.datastore.allocate] Error getting cluster [7].', code: 1024 });
    oned.createUser('bob', 'pw2');
    const r = await rpc(oned.endpoint, 'bob:pw2', 'one.datastore.allocate', 'NAME="b"\nDS_MAD=fs\nTM_MAD=shared', -1);
    assert.deepEqual([r.ok, r.code], [false, 512]);
    // the cluster id is not optional
    await assert.rejects(rpc(oned.endpoint, oned.adminSession, 'one.datastore.allocate', 'NAME="x"\nDS_MAD=fs\nTM_MAD=shared'), /Not enough parameters/);
  });

  test('a ceph datastore: DISK_TYPE 3 and "RBD", the attributes of TM_MAD_CONF ceph, no SHARED; monitored after the reply', async () => {
    const r = await allocDs(oned, 'NAME="ceph"\nTYPE=IMAGE_DS\nDS_MAD=ceph\nTM_MAD=ceph\nDISK_TYPE=rbd\nBRIDGE_LIST="h1 h2"\nPOOL_NAME=one');
    assert.equal(r.ok, true);
    const id = r.value as number;
    await oned.idle();
    assert.ok(oned.log.some((e) => e.action === 'monitor' && e.argv[0] === String(id) && e.hooked));
    const d = await dsInfo(oned, id);
    assert.deepEqual([d.DISK_TYPE, d.TEMPLATE.DISK_TYPE, d.FREE_MB, d.TOTAL_MB, d.USED_MB], ['3', 'RBD', '99', '100', '1']);
    assert.deepEqual(
      Object.fromEntries(Object.entries(d.TEMPLATE as Record<string, string>).filter(([k]) => !['NAME', 'TYPE', 'DS_MAD', 'TM_MAD', 'BRIDGE_LIST', 'POOL_NAME', 'DISK_TYPE'].includes(k))),
      { ALLOW_ORPHANS: 'mixed', CLONE_TARGET: 'SELF', CLONE_TARGET_SSH: 'SYSTEM', DISK_TYPE_SSH: 'FILE', DRIVER: 'raw', LN_TARGET: 'NONE', LN_TARGET_SSH: 'SYSTEM', PERSISTENT_SNAPSHOTS: 'YES', RESTRICTED_DIRS: '/', SAFE_DIRS: '/var/tmp', TM_MAD_SYSTEM: 'ssh' },
    );
  });

  test('TM_MAD_CONF DRIVER reaches the template (qcow2); a system datastore gets SHARED/DS_MIGRATE and no targets; SAFE_DIRS kept when given', async () => {
    const q = await oned.createDatastore({ name: 'q', type: 'IMAGE_DS', tmMad: 'qcow2', noMonitor: true });
    assert.equal(oned.datastore(q)?.template.get('DRIVER'), 'qcow2');
    const sys = await oned.createDatastore({ name: 'sys2', type: 'SYSTEM_DS', tmMad: 'ssh', noMonitor: true });
    const st = oned.datastore(sys)?.template;
    assert.deepEqual([st?.get('SHARED'), st?.get('DS_MIGRATE'), st?.get('LN_TARGET'), st?.get('DS_MAD')], ['NO', 'YES', undefined, undefined]);
    const safe = await oned.createDatastore({ name: 'safe', type: 'IMAGE_DS', tmMad: 'shared', template: { SAFE_DIRS: '/srv' }, noMonitor: true });
    assert.deepEqual([oned.datastore(safe)?.template.get('SAFE_DIRS'), oned.datastore(safe)?.template.get('RESTRICTED_DIRS')], ['/srv', undefined]);
    await assert.rejects(oned.createDatastore({ name: 'bad', type: 'IMAGE_DS', tmMad: 'nope' }), /TM_MAD named "nope" is not defined in oned.conf/);
  });

  test('one.system.config lists the ceph DS_MAD_CONF and TM_MAD_CONF and MONITORING_INTERVAL_DATASTORE', async () => {
    const xml = String((await rpc(oned.endpoint, oned.adminSession, 'one.system.config')).value);
    assert.match(xml, /<DS_MAD_CONF><MARKETPLACE_ACTIONS>export<\/MARKETPLACE_ACTIONS><NAME>ceph<\/NAME><PERSISTENT_ONLY>NO<\/PERSISTENT_ONLY><REQUIRED_ATTRS>DISK_TYPE,BRIDGE_LIST<\/REQUIRED_ATTRS><\/DS_MAD_CONF>/);
    assert.match(xml, /<TM_MAD_CONF>[^]*?<NAME>ceph<\/NAME>[^]*?<TM_MAD_SYSTEM>ssh<\/TM_MAD_SYSTEM><\/TM_MAD_CONF>/);
    assert.match(xml, /<MONITORING_INTERVAL_DATASTORE>300<\/MONITORING_INTERVAL_DATASTORE>/);
  });
});

describe('pure pieces', () => {
  test('stderr split: a log line ending in \\r (ssh\'s messages) is still a log line', () => {
    const r = splitStderr('ERROR: mkfs: Command "x" failed: ssh: connect to host h port 22: Connection refused\r\nplain one\nplain two\n');
    assert.deepEqual(r.logLines, ['ERROR: mkfs: Command "x" failed: ssh: connect to host h port 22: Connection refused\r']);
    assert.equal(r.errorText, 'plain oneplain two');
  });

  test('the onehost stand-in lists the hosts whose STAT the filter names, with a header', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'one-sim-onehost-'));
    try {
      const hosts = path.join(dir, 'hosts.csv');
      writeFileSync(path.join(dir, 'onehost'), hostCliScript(hosts), { mode: 0o755 });
      const list = (): string =>
        spawnSync(path.join(dir, 'onehost'), ['list', '--operator', 'OR', '--no-pager', '--csv', '--filter=STAT=off,STAT=err,STAT=dsbl', '--list=NAME,STAT'], { encoding: 'utf8' }).stdout;
      assert.equal(list(), 'NAME,STAT\n');
      writeFileSync(hosts, 'a,on\nb,off\nc,err\nd,dsbl\ne,init\n');
      assert.equal(list(), 'NAME,STAT\nb,off\nc,err\nd,dsbl\n');
      assert.notEqual(spawnSync(path.join(dir, 'onehost'), ['show', 'a']).status, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The drivers' BRIDGE_LIST logic with test doubles: `ssh <host> cmd` runs cmd here and records the
// host; `rbd` and `ceph` record their arguments and answer from files the test writes.

const FAKE_SSH = `#!/bin/bash
printf '%s\\n' "$1" >> "$FAKE_DIR/ssh-hosts"
host=$1; shift
if [ "$host" = down ]; then echo "ssh: connect to host down port 22: Connection refused" >&2; exit 255; fi
exec bash -c "$*"
`;
const FAKE_RBD = `#!/bin/bash
printf '%s\\n' "$*" >> "$FAKE_DIR/rbd"
case " $* " in
*" create "*) [ -f "$FAKE_DIR/rbd-create-error" ] && { cat "$FAKE_DIR/rbd-create-error" >&2; exit 2; }; exit 0 ;;
*" info "*) [ -f "$FAKE_DIR/rbd-info" ] || { echo "rbd: error opening image: (2) No such file or directory" >&2; exit 2; }; cat "$FAKE_DIR/rbd-info" ;;
*" snap "*) ;;
*" rm "*) [ -f "$FAKE_DIR/rbd-info" ] || { echo "rbd: delete error: (2) No such file or directory" >&2; exit 2; } ;;
esac
exit 0
`;
const FAKE_CEPH = `#!/bin/bash
printf '%s\\n' "$*" >> "$FAKE_DIR/ceph"
cat "$FAKE_DIR/ceph-df.json"
`;

describe('ceph and fs drivers with BRIDGE_LIST, through ssh/rbd/ceph test doubles', () => {
  let oned: Oned;
  let fake: string;
  let cephDs: number;
  const lines = (f: string): string[] => (existsSync(path.join(fake, f)) ? readFileSync(path.join(fake, f), 'utf8').trim().split('\n') : []);
  // after idle(): a monitor still running would record its (random) bridge after the reset
  const reset = async (): Promise<void> => {
    await oned.idle();
    for (const f of ['ssh-hosts', 'rbd', 'ceph', 'rbd-create-error', 'rbd-info']) rmSync(path.join(fake, f), { force: true });
  };
  const allocImage = async (tmpl: string, ds: number, skipCapacity = false): Promise<number> => {
    const r = await rpc(oned.endpoint, oned.adminSession, 'one.image.allocate', tmpl, ds, skipCapacity);
    assert.ok(r.ok, String(r.value));
    return r.value as number;
  };
  const df = (pools: object[]): void => writeFileSync(path.join(fake, 'ceph-df.json'), `\n${JSON.stringify({ stats: {}, pools })}\n`);

  before(async () => {
    fake = mkdtempSync(path.join(os.tmpdir(), 'one-sim-fakes-'));
    const bin = path.join(fake, 'bin');
    spawnSync('mkdir', [bin]);
    for (const [n, body] of [['ssh', FAKE_SSH], ['rbd', FAKE_RBD], ['ceph', FAKE_CEPH]] as const) {
      writeFileSync(path.join(bin, n), body);
      chmodSync(path.join(bin, n), 0o755);
    }
    df([{ name: 'one', stats: { stored: 10 * 1048576 + 5, bytes_used: 30 * 1048576, max_avail: 900 * 1048576, quota_bytes: 0 } }]);
    oned = await startOned({ asyncDelayMs: 10, driverEnv: { PATH: `${bin}:${process.env.PATH ?? ''}`, FAKE_DIR: fake } });
    cephDs = await oned.createDatastore({
      name: 'ceph',
      type: 'IMAGE_DS',
      dsMad: 'ceph',
      tmMad: 'ceph',
      template: { DISK_TYPE: 'RBD', BRIDGE_LIST: 'h0 h1 h2', CEPH_USER: 'u', CEPH_KEY: '/k', CEPH_CONF: '/c.conf' },
    });
  });
  after(async () => {
    await oned.stop();
    rmSync(fake, { recursive: true, force: true });
  });

  test('ceph monitor: stored / max_avail in MiB, TOTAL their sum, `ceph --id --keyfile --conf df detail` on a bridge', () => {
    const d = oned.datastore(cephDs);
    assert.deepEqual([d?.usedMb, d?.freeMb, d?.totalMb], [10, 900, 910]);
    assert.deepEqual(lines('ceph'), ['--id u --keyfile /k --conf /c.conf df detail --format json']);
    assert.ok(['h0', 'h1', 'h2'].includes(lines('ssh-hosts')[0] ?? ''));
  });

  test('ceph monitor: stored 0 → bytes_used; a quota below max_avail caps FREE_MB; a pool not listed → 0/0/0', async () => {
    df([{ name: 'one', stats: { stored: 0, bytes_used: 3 * 1048576, max_avail: 900 * 1048576, quota_bytes: 50 * 1048576 } }]);
    await oned.monitorDatastore(cephDs);
    let d = oned.datastore(cephDs);
    assert.deepEqual([d?.usedMb, d?.freeMb, d?.totalMb], [3, 50, 53]);
    df([{ name: 'other', stats: { stored: 1, max_avail: 1 } }]);
    await oned.monitorDatastore(cephDs);
    d = oned.datastore(cephDs);
    assert.deepEqual([d?.usedMb, d?.freeMb, d?.totalMb], [0, 0, 0]);
    df([{ name: 'one', stats: { stored: 10 * 1048576, max_avail: 900 * 1048576, quota_bytes: 0 } }]);
    await oned.monitorDatastore(cephDs);
  });

  test('ceph mkfs: rbd create on BRIDGE_LIST[id % 3] with the identity; SOURCE one/one-<ID>, FORMAT and DRIVER raw even when qcow2 was asked; RBD_FORMAT 1 has no --image-format', async () => {
    for (let n = 0; n < 3; n++) {
      await reset();
      const id = await allocImage(`NAME="m${n}"\nTYPE=DATABLOCK\nSIZE=10\nFORMAT=qcow2`, cephDs);
      const img = await oned.waitImage(id);
      assert.equal(img.state, IMAGE_STATE.READY, img.template.get('ERROR'));
      assert.deepEqual([img.source, img.format, img.template.get('DRIVER'), img.diskType], [`one/one-${id}`, 'raw', 'raw', 3]);
      assert.equal(lines('ssh-hosts')[0], `h${id % 3}`);
      assert.deepEqual(lines('rbd'), [`--id u --keyfile /k --conf /c.conf create --image-format 2 one/one-${id} --size 10`]);
    }
    const v1 = await oned.createDatastore({ name: 'ceph-v1', type: 'IMAGE_DS', dsMad: 'ceph', tmMad: 'ceph', template: { DISK_TYPE: 'RBD', BRIDGE_LIST: 'h0', RBD_FORMAT: '1', POOL_NAME: 'p' } });
    await reset();
    const id = await allocImage('NAME="v1"\nTYPE=DATABLOCK\nSIZE=3', v1, true);
    assert.equal((await oned.waitImage(id)).source, `p/one-${id}`);
    assert.deepEqual(lines('rbd'), [`create p/one-${id} --size 3`]);
  });

  test('hosts onehost lists as off/err/dsbl are dropped before id % n; all of them → ERROR', async () => {
    oned.setHostState('h0', 'off');
    oned.setHostState('h2', 'err');
    await reset();
    const id = await allocImage('NAME="f1"\nTYPE=DATABLOCK\nSIZE=1', cephDs);
    assert.equal((await oned.waitImage(id)).state, IMAGE_STATE.READY);
    assert.equal(lines('ssh-hosts')[0], 'h1');
    oned.setHostState('h1', 'dsbl');
    const none = await oned.waitImage(await allocImage('NAME="f2"\nTYPE=DATABLOCK\nSIZE=1', cephDs));
    assert.equal(none.state, IMAGE_STATE.ERROR);
    assert.match(none.template.get('ERROR') ?? '', / : Error creating datablock: All hosts from 'BRIDGE_LIST' are offline, error or disabledDatastore template missing 'BRIDGE_LIST' attribute\.$/);
    for (const h of ['h0', 'h1', 'h2']) oned.setHostState(h, null);
  });

  test('ceph mkfs failure: rbd\'s stderr is in the ERROR text (the stock helper logs the multi-line command), after it the driver\'s own message', async () => {
    await reset();
    writeFileSync(path.join(fake, 'rbd-create-error'), "rbd: error opening pool 'nopool': (2) No such file or directory\n");
    const img = await oned.waitImage(await allocImage('NAME="e1"\nTYPE=DATABLOCK\nSIZE=1', cephDs));
    assert.equal(img.state, IMAGE_STATE.ERROR);
    assert.equal(img.source, '');
    assert.match(img.template.get('ERROR') ?? '', /Error creating datablock: .*--size 1 \|\| exit \$\?" failed: rbd: error opening pool 'nopool': \(2\) No such file or directoryError registering one\/one-\d+ in h\d$/);
    assert.ok(oned.onedLog.some((l) => l.includes('ERROR: Command "export PATH=/usr/sbin:/sbin:$PATH')));
  });

  test('ceph rm: format 2 → snapshots listed and the image removed with the identity; an image rbd cannot open → the rm fails', async () => {
    await reset();
    const id = await allocImage('NAME="r1"\nTYPE=DATABLOCK\nSIZE=1', cephDs);
    await oned.waitImage(id);
    await reset();
    writeFileSync(path.join(fake, 'rbd-info'), `rbd image 'one-${id}':\n\tformat: 2\n`);
    assert.equal((await rpc(oned.endpoint, oned.adminSession, 'one.image.delete', id, false)).ok, true);
    await oned.idle();
    assert.equal(oned.image(id), undefined);
    const id1 = `--id u --keyfile /k --conf /c.conf`;
    assert.deepEqual(lines('rbd'), [`${id1} info one/one-${id}`, `${id1} snap ls one/one-${id}`, `${id1} rm one/one-${id}`]);

    const id2 = await allocImage('NAME="r2"\nTYPE=DATABLOCK\nSIZE=1', cephDs);
    await oned.waitImage(id2);
    await reset();
    assert.equal((await rpc(oned.endpoint, oned.adminSession, 'one.image.delete', id2, false)).ok, true);
    const img = await oned.waitImage(id2, [IMAGE_STATE.ERROR]);
    assert.match(img.template.get('ERROR') ?? '', /Error removing image from datastore\. Retry the operation/);
  });

  test('fs with BRIDGE_LIST: mkfs runs qemu-img create on the bridge (BRIDGE_LIST[id % n]); an unreachable bridge → ERROR', async () => {
    const ds = await oned.createDatastore({ name: 'fsb', type: 'IMAGE_DS', tmMad: 'shared', template: { BRIDGE_LIST: 'b0 b1' } });
    assert.ok(['b0', 'b1'].includes(lines('ssh-hosts').at(-1) ?? ''), 'monitor went to a bridge');
    assert.ok((oned.datastore(ds)?.freeMb ?? 0) > 0);
    await reset();
    const id = await allocImage('NAME="fb"\nTYPE=DATABLOCK\nSIZE=2', ds);
    const img = await oned.waitImage(id);
    assert.equal(img.state, IMAGE_STATE.READY, img.template.get('ERROR'));
    assert.equal(lines('ssh-hosts')[0], `b${id % 2}`);
    assert.ok(existsSync(img.source));

    const down = await oned.createDatastore({ name: 'fsd', type: 'IMAGE_DS', tmMad: 'shared', template: { BRIDGE_LIST: 'down' } });
    assert.equal(oned.datastore(down)?.freeMb, 0);
    const bad = await oned.waitImage(await allocImage('NAME="fd"\nTYPE=DATABLOCK\nSIZE=2', down, true));
    assert.equal(bad.state, IMAGE_STATE.ERROR);
    assert.match(bad.template.get('ERROR') ?? '', /Connection refusedUnable to create image with format raw in down:\S+$/);
  });
});
