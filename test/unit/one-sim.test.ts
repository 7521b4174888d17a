/**
 * The OpenNebula simulator (test/peers/one) over raw HTTP with hand-written
 * XML-RPC bodies: wire-exact reply shapes, faults, image lifecycles with real
 * driver scripts, errors and instantiate rules of shared/reference/opennebula.md.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { startOned, type Oned, IMAGE_STATE, VM_STATE } from '../peers/one/index.js';
import { parseTemplate } from '../peers/one/template-syntax.js';

// ------------------------------------------------------------------ raw XML-RPC helpers

type P = string;
const s = (v: string): P => `<value><string>${v.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</string></value>`;
const cdataStr = (v: string): P => `<value><string><![CDATA[${v}]]></string></value>`;
const untyped = (v: string): P => `<value>${v.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</value>`;
const i = (v: number): P => `<value><int>${v}</int></value>`;
const i4 = (v: number): P => `<value><i4>${v}</i4></value>`;
const b = (v: boolean): P => `<value><boolean>${v ? 1 : 0}</boolean></value>`;

function body(method: string, params: P[]): string {
  return `<?xml version="1.0"?>\n<methodCall><methodName>${method}</methodName><params>${params.map((p) => `<param>${p}</param>`).join('')}</params></methodCall>`;
}

async function raw(oned: Oned, method: string, params: P[]): Promise<string> {
  const r = await fetch(oned.endpoint, { method: 'POST', body: body(method, params), headers: { 'Content-Type': 'text/xml' } });
  assert.equal(r.status, 200);
  return r.text();
}

const rpcParser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: false,
  isArray: (name) => name === 'value' || name === 'member',
});

type V = string | number | boolean | { i8: string } | V[] | { [k: string]: V };

function decode(v: Record<string, unknown>): V {
  const [k, x] = Object.entries(v)[0] ?? ['string', ''];
  switch (k) {
    case 'string':
      return String(x ?? '');
    case 'int':
    case 'i4':
      return Number(x);
    case 'i8':
      return { i8: String(x) };
    case 'boolean':
      return x === '1';
    case 'array': {
      const data = (x as { data?: { value?: Record<string, unknown>[] } }).data;
      return (data?.value ?? []).map(decode);
    }
    case 'struct': {
      const out: Record<string, V> = {};
      for (const m of (x as { member: { name: string; value: Record<string, unknown>[] }[] }).member) out[m.name] = decode(m.value[0] ?? {});
      return out;
    }
    default:
      return String(x);
  }
}

interface Reply {
  raw: string;
  fault?: { faultCode: number; faultString: string };
  arr?: V[];
}

async function call(oned: Oned, method: string, params: P[], session = oned.adminSession): Promise<Reply> {
  const text = await raw(oned, method, [s(session), ...params]);
  const doc = rpcParser.parse(text) as { methodResponse: { fault?: { value: Record<string, unknown>[] }; params?: { param: { value: Record<string, unknown>[] } } } };
  if (doc.methodResponse.fault) {
    return { raw: text, fault: decode(doc.methodResponse.fault.value[0] ?? {}) as unknown as Reply['fault'] };
  }
  return { raw: text, arr: decode(doc.methodResponse.params?.param.value[0] ?? {}) as V[] };
}

async function ok(oned: Oned, method: string, params: P[], session?: string): Promise<V> {
  const r = await call(oned, method, params, session);
  assert.ok(r.arr, `expected an array reply, got ${r.raw}`);
  assert.equal(r.arr[0], true, `call failed: ${JSON.stringify(r.arr)}`);
  assert.equal(r.arr.length, 3);
  assert.equal(r.arr[2], 0);
  return r.arr[1] as V;
}

async function fails(oned: Oned, method: string, params: P[], session?: string): Promise<{ msg: string; code: number; id: number; raw: string }> {
  const r = await call(oned, method, params, session);
  assert.ok(r.arr, `expected an array reply, got ${r.raw}`);
  assert.equal(r.arr[0], false, `expected failure: ${JSON.stringify(r.arr)}`);
  assert.equal(r.arr.length, 5);
  assert.deepEqual(r.arr[4], { i8: '-1' });
  assert.match(r.raw, /<value><i8>-1<\/i8><\/value>/);
  return { msg: r.arr[1] as string, code: r.arr[2] as number, id: r.arr[3] as number, raw: r.raw };
}

const ARRAY_PATHS = /(^|\.)(DISK|NIC|AR|LEASE)$|\.(GROUPS|VMS|IMAGES|CLUSTERS)\.ID$|^(IMAGE_POOL\.IMAGE|DATASTORE_POOL\.DATASTORE|VMTEMPLATE_POOL\.VMTEMPLATE|VNET_POOL\.VNET|VM_POOL\.VM)$/;
const docParser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (_n, jpath) => ARRAY_PATHS.test(String(jpath)) });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const parseDoc = (x: V): any => docParser.parse(x as string);

async function imageInfo(oned: Oned, id: number): Promise<{ xml: string; doc: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const xml = (await ok(oned, 'one.image.info', [i(id), b(false)])) as string;
  return { xml, doc: parseDoc(xml).IMAGE };
}

async function waitState(oned: Oned, id: number, states: number[]): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const end = Date.now() + 20_000;
  for (;;) {
    const { doc } = await imageInfo(oned, id);
    if (states.includes(Number(doc.STATE))) return doc;
    if (Date.now() > end) throw new Error(`image ${id} stuck in ${doc.STATE}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const allocate = (oned: Oned, tmpl: string, ds = 1, session?: string, skip = false): Promise<Reply> =>
  call(oned, 'one.image.allocate', [s(tmpl), i(ds), b(skip)], session);

// ------------------------------------------------------------------ tests

let oned: Oned;
let work: string;

before(async () => {
  oned = await startOned({ adminPassword: 'pa:ss', asyncDelayMs: 50 });
  work = mkdtempSync(path.join(os.tmpdir(), 'one-sim-test-'));
});

after(async () => {
  await oned.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('wire format', () => {
  test('success is [true, value, 0] with <boolean> and <i4>', async () => {
    const text = await raw(oned, 'one.system.version', [s(oned.adminSession)]);
    assert.match(text, /<value><boolean>1<\/boolean><\/value>\s*<value><string>7\.4\.0<\/string><\/value>\s*<value><i4>0<\/i4><\/value>/);
  });

  test('session may be untyped, <i4> and <int> are both integers, password may contain ":"', async () => {
    assert.equal(oned.adminSession, 'oneadmin:pa:ss');
    const text = await raw(oned, 'one.datastore.info', [untyped(oned.adminSession), i4(1)]);
    assert.match(text, /<boolean>1<\/boolean>/);
    const xml = await ok(oned, 'one.datastore.info', [i(1)]);
    assert.match(xml as string, /^<DATASTORE><ID>1<\/ID>/);
  });

  test('CDATA in strings and entity escapes are decoded', async () => {
    const r = await call(oned, 'one.image.allocate', [cdataStr('NAME="cdata & <img>-x"\nSIZE=1\nTYPE=DATABLOCK'), i(1), b(false)]);
    assert.equal(r.arr?.[0], false);
    assert.match(r.arr?.[1] as string, /Invalid NAME, char '&' is not allowed/);
  });

  test('authentication failure is a 5-element array ending in <i8>', async () => {
    const f = await fails(oned, 'one.system.version', [], 'oneadmin:wrong');
    assert.equal(f.msg, "[one.system.version] User couldn't be authenticated, aborting call.");
    assert.equal(f.code, 256);
    assert.equal(f.id, -1);
  });

  test('faults: -506 unknown method, -502 too few parameters, -501 wrong type', async () => {
    const unknown = await call(oned, 'one.nothing.here', []);
    assert.equal(unknown.fault?.faultCode, -506);
    assert.match(unknown.raw, /<fault>/);

    const few = await call(oned, 'one.vmpool.info', [i(-2), i(-1), i(-1)]);
    assert.equal(few.fault?.faultCode, -502);
    assert.equal(few.fault?.faultString, 'Not enough parameters');

    const wrongType = await call(oned, 'one.image.info', [s('0')]);
    assert.equal(wrongType.fault?.faultCode, -501);

    const boolAsInt = await call(oned, 'one.image.delete', [i(0), i(1)]);
    assert.equal(boolAsInt.fault?.faultCode, -501);

    // vmpool.info with the 4 ints of 7.4 works
    const pool = await ok(oned, 'one.vmpool.info', [i(-2), i(-1), i(-1), i(-1)]);
    assert.match(pool as string, /^<VM_POOL>/);
  });

  test('template.instantiate reads hold and extra_template together', async () => {
    const r = await call(oned, 'one.template.instantiate', [i(0), s(''), b(false)]);
    assert.equal(r.fault?.faultCode, -502);
  });

  test('HTTP path other than /RPC2 is 404', async () => {
    const r = await fetch(oned.endpoint.replace('/RPC2', '/other'), { method: 'POST', body: body('one.system.version', []) });
    assert.equal(r.status, 404);
  });
});

describe('system and users', () => {
  test('system.config exposes DATASTORE_LOCATION, DS_MAD_CONF, IMAGE_RESTRICTED_ATTR', async () => {
    const xml = (await ok(oned, 'one.system.config', [])) as string;
    assert.match(xml, /^<OPENNEBULA_CONFIGURATION>/);
    assert.ok(xml.includes(`<DATASTORE_LOCATION>${oned.datastoreLocation}</DATASTORE_LOCATION>`));
    assert.match(xml, /<DS_MAD_CONF>.*<NAME>fs<\/NAME>/);
    assert.match(xml, /<IMAGE_RESTRICTED_ATTR>SOURCE<\/IMAGE_RESTRICTED_ATTR>/);
  });

  test('user.info -1 returns the caller with TEMPLATE/SSH_PUBLIC_KEY', async () => {
    const uid = oned.createUser('alice', 'secret', { sshKey: 'ssh-ed25519 AAAA alice@x' });
    const xml = (await ok(oned, 'one.user.info', [i(-1), b(false)], 'alice:secret')) as string;
    const u = parseDoc(xml).USER;
    assert.equal(u.ID, String(uid));
    assert.equal(u.GID, '1');
    assert.equal(u.GNAME, 'users');
    assert.equal(u.TEMPLATE.SSH_PUBLIC_KEY, 'ssh-ed25519 AAAA alice@x');
    const admin = parseDoc(await ok(oned, 'one.user.info', [i(-1)])).USER;
    assert.equal(admin.ID, '0');
    assert.equal(admin.NAME, 'oneadmin');
  });

  test('user.login gives a token usable as session', async () => {
    const token = (await ok(oned, 'one.user.login', [s('oneadmin'), s(''), i(600), i(-1)])) as string;
    assert.match(token, /^[0-9a-f]{40}$/);
    assert.equal(await ok(oned, 'one.system.version', [], `oneadmin:${token}`), '7.4.0');
  });
});

describe('datastores', () => {
  test('defaults of a fresh install: 0 system, 1 default, 2 files, TM_MAD local, BASE_PATH with //', async () => {
    const pool = parseDoc(await ok(oned, 'one.datastorepool.info', []));
    const byId = new Map<string, any>((pool.DATASTORE_POOL.DATASTORE ?? []).map((d: any) => [d.ID, d])); // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(byId.get('0')?.TYPE, '1');
    assert.equal(byId.get('1')?.NAME, 'default');
    assert.equal(byId.get('2')?.TYPE, '2');
    const xml = (await ok(oned, 'one.datastore.info', [i(1), b(false)])) as string;
    assert.ok(xml.includes('<DS_MAD><![CDATA[fs]]></DS_MAD><TM_MAD><![CDATA[local]]></TM_MAD>'));
    assert.match(xml, /<BASE_PATH><!\[CDATA\[[^\]]*\/\/datastores\/1\]\]><\/BASE_PATH>/);
    assert.match(xml, /<RESTRICTED_DIRS><!\[CDATA\[\/\]\]><\/RESTRICTED_DIRS>/);
    assert.match(xml, /<SAFE_DIRS><!\[CDATA\[\/var\/tmp\]\]><\/SAFE_DIRS>/);
    const ds = parseDoc(xml).DATASTORE;
    assert.ok(Number(ds.TOTAL_MB) > 0, 'monitor ran at start');
    assert.ok(existsSync(ds.BASE_PATH));
  });

  test('datastore.info of a missing id', async () => {
    const f = await fails(oned, 'one.datastore.info', [i(77)]);
    assert.equal(f.msg, '[one.datastore.info] Error getting datastore [77].');
    assert.equal(f.code, 1024);
    assert.equal(f.id, 77);
  });
});

describe('image allocate: mkfs route', () => {
  test('LOCKED then READY with a real sparse raw file at BASE_PATH/<md5>', async () => {
    const r = await allocate(oned, 'NAME = "blank-1"\nTYPE = "DATABLOCK"\nSIZE = "100"\nFORMAT = "raw"\nDEV_PREFIX = "vd"\nMY_ATTR = "x & <y>"');
    assert.equal(r.arr?.[0], true, r.raw);
    const id = r.arr?.[1] as number;
    const first = await imageInfo(oned, id);
    assert.equal(first.doc.STATE, String(IMAGE_STATE.LOCKED));
    assert.ok(first.xml.includes('<SOURCE><![CDATA[]]></SOURCE>'));
    const doc = await waitState(oned, id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
    assert.equal(doc.STATE, '1', JSON.stringify(doc.TEMPLATE));
    assert.equal(doc.FORMAT, 'raw');
    assert.equal(doc.SIZE, '100');
    assert.equal(doc.TYPE, '2');
    assert.equal(doc.PERSISTENT, '0');
    assert.equal(doc.TEMPLATE.MY_ATTR, 'x & <y>');
    assert.equal(doc.TEMPLATE.DEV_PREFIX, 'vd');
    const base = oned.datastore(1)?.basePath ?? '';
    assert.match(doc.SOURCE, /\/[0-9a-f]{32}$/);
    assert.equal(path.dirname(doc.SOURCE), base);
    const st = statSync(doc.SOURCE);
    assert.equal(st.size, 100 * 1048576);
    assert.ok(st.blocks * 512 < st.size / 10, 'sparse');
    const { xml } = await imageInfo(oned, id);
    assert.ok(xml.includes(`<SOURCE><![CDATA[${doc.SOURCE}]]></SOURCE>`));
    assert.ok(xml.includes('<MY_ATTR>x &amp; &lt;y&gt;</MY_ATTR>'));
    // element order of §4.1
    const order = ['ID', 'UID', 'GID', 'UNAME', 'GNAME', 'NAME', 'PERMISSIONS', 'TYPE', 'DISK_TYPE', 'PERSISTENT', 'REGTIME', 'SOURCE', 'PATH', 'FORMAT', 'FS', 'SIZE', 'STATE', 'PREV_STATE', 'RUNNING_VMS', 'CLONING_OPS', 'CLONING_ID', 'TARGET_SNAPSHOT', 'DATASTORE_ID', 'DATASTORE', 'VMS', 'CLONES', 'APP_CLONES', 'TEMPLATE', 'SNAPSHOTS', 'BACKUP_INCREMENTS'];
    const pos = order.map((t) => xml.indexOf(`<${t}>`));
    assert.deepEqual([...pos].sort((a, c) => a - c), pos);

    // the driver call: argv = image id, base64 on stdin without newline, full IMAGE + DATASTORE
    const mkfs = oned.log.find((l) => l.action === 'mkfs' && l.argv[0] === String(id));
    assert.ok(mkfs);
    assert.deepEqual(mkfs.argv, [String(id)]);
    assert.ok(!mkfs.stdin.endsWith('\n'));
    const payload = Buffer.from(mkfs.stdin, 'base64').toString('utf8');
    assert.match(payload, /^<DS_DRIVER_ACTION_DATA><IMAGE><ID>\d+<\/ID>.*<STATE>4<\/STATE>.*<\/IMAGE><DATASTORE><ID>1<\/ID>.*<\/DATASTORE><\/DS_DRIVER_ACTION_DATA>$/s);
    assert.ok(payload.includes('<MY_ATTR>x &amp; &lt;y&gt;</MY_ATTR>'));
    assert.ok(payload.includes('//datastores/1]]></BASE_PATH>'));
  });

  test('name rules: taken, forbidden characters, too long', async () => {
    const a = await allocate(oned, 'NAME="dup"\nSIZE=1\nTYPE=DATABLOCK');
    assert.equal(a.arr?.[0], true);
    const f = await fails(oned, 'one.image.allocate', [s('NAME="dup"\nSIZE=1\nTYPE=DATABLOCK'), i(1), b(false)]);
    assert.equal(f.msg, `[one.image.allocate] Error allocating a new image. NAME is already taken by IMAGE ${a.arr?.[1]}.`);
    assert.equal(f.code, 16384);
    const slash = await fails(oned, 'one.image.allocate', [s('NAME="vm/disk"\nSIZE=1\nTYPE=DATABLOCK'), i(1), b(false)]);
    assert.equal(slash.msg, "[one.image.allocate] Error allocating a new image. Invalid NAME, char '/' is not allowed");
    const long = await fails(oned, 'one.image.allocate', [s(`NAME="${'x'.repeat(129)}"\nSIZE=1`), i(1), b(false)]);
    assert.match(long.msg, /max length is 128 chars/);
    const spaces = await allocate(oned, 'NAME="with space"\nSIZE=1\nTYPE=DATABLOCK');
    assert.equal(spaces.arr?.[0], true);
  });

  test('datastore type and existence checks', async () => {
    const sys = await fails(oned, 'one.image.allocate', [s('NAME="s"\nSIZE=1'), i(0), b(false)]);
    assert.equal(sys.msg, '[one.image.allocate] Error allocating a new image. New images can only be allocated in a files or image datastore.');
    assert.equal(sys.code, 16384);
    const none = await fails(oned, 'one.image.allocate', [s('NAME="s"\nSIZE=1'), i(999), b(false)]);
    assert.equal(none.msg, '[one.image.allocate] Error getting datastore [999].');
    assert.equal(none.code, 1024);
    const parse = await fails(oned, 'one.image.allocate', [s('NAME = "unterminated'), i(1), b(false)]);
    assert.equal(parse.code, 8192);
    assert.match(parse.msg, /^\[one\.image\.allocate\] Parse error/);
  });

  test('capacity: Not enough space in datastore (ACTION), admin may skip the check', async () => {
    const ds = await oned.createDatastore({ name: 'small', type: 'IMAGE_DS', totalMb: 50, freeMb: 10 });
    const f = await fails(oned, 'one.image.allocate', [s('NAME="big"\nSIZE=100\nTYPE=DATABLOCK'), i(ds), b(false)]);
    assert.equal(f.msg, '[one.image.allocate] Not enough space in datastore');
    assert.equal(f.code, 2048);
    const skipped = await allocate(oned, 'NAME="big"\nSIZE=100\nTYPE=DATABLOCK', ds, undefined, true);
    assert.equal(skipped.arr?.[0], true);
    oned.createUser('bob', 'pw');
    const nonAdmin = await fails(oned, 'one.image.allocate', [s('NAME="big"\nSIZE=100\nTYPE=DATABLOCK'), i(ds), b(true)], 'bob:pw');
    assert.equal(nonAdmin.code, 2048, 'skip flag ignored for non-admins');
  });

  test('datastore TM_MAD=qcow2 forces qcow2 even when raw is asked (§3.2)', async () => {
    const ds = await oned.createDatastore({ name: 'q', type: 'IMAGE_DS', tmMad: 'qcow2' });
    const r = await allocate(oned, 'NAME="q1"\nSIZE=10\nTYPE=DATABLOCK\nFORMAT=raw\nDRIVER=raw', ds);
    const id = r.arr?.[1] as number;
    const doc = await waitState(oned, id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
    assert.equal(doc.FORMAT, 'qcow2');
    assert.equal(doc.TEMPLATE.DRIVER, 'qcow2');
    const info = execFileSync('qemu-img', ['info', doc.SOURCE], { encoding: 'utf8' });
    assert.match(info, /file format: qcow2/);
  });

  test('mkfs failure → ERROR with "<date> : Error creating datablock: <stderr>"', async () => {
    oned.setDriverAction('mkfs', () => ({ exitCode: 1, stderr: 'ERROR: logged only\nno space\nleft\n' }));
    try {
      const r = await allocate(oned, 'NAME="mkfs-fail"\nSIZE=1\nTYPE=DATABLOCK');
      const doc = await waitState(oned, r.arr?.[1] as number, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
      assert.equal(doc.STATE, '5');
      assert.match(doc.TEMPLATE.ERROR, /^\w{3} \w{3} \d{2} \d{2}:\d{2}:\d{2} \d{4} : Error creating datablock: no spaceleft$/);
      const { xml } = await imageInfo(oned, r.arr?.[1] as number);
      assert.match(xml, /<ERROR><!\[CDATA\[.*Error creating datablock.*\]\]><\/ERROR>/);
      assert.ok(oned.onedLog.some((l) => l.includes('ERROR: logged only')));
    } finally {
      oned.setDriverAction('mkfs', null);
    }
  });
});

describe('image allocate: PATH route (stat + cp)', () => {
  let safeDs: number;
  before(async () => {
    safeDs = await oned.createDatastore({ name: 'safe', type: 'IMAGE_DS', template: { SAFE_DIRS: work } });
  });

  test('stat synchronous with a request counter, cp about the async delay later with the image id', async () => {
    const file = path.join(work, 'disk.raw');
    execFileSync('qemu-img', ['create', '-f', 'raw', file, '3M']);
    const statsBefore = oned.log.filter((l) => l.action === 'stat').length;
    const t0 = Date.now();
    const r = await allocate(oned, `NAME="from-path"\nPATH="${file}"\nTYPE=OS\nPERSISTENT=YES\nVCENTER_VM_MOREF="vm-1234"`, safeDs);
    assert.equal(r.arr?.[0], true, r.raw);
    const id = r.arr?.[1] as number;
    const stats = oned.log.filter((l) => l.action === 'stat');
    assert.equal(stats.length, statsBefore + 1);
    const st = stats[stats.length - 1];
    assert.ok(st);
    assert.deepEqual(st.argv, [String(statsBefore)]);
    assert.ok(!st.stdin.endsWith('\n'));
    assert.equal(st.payload.replace(/<DATASTORE>.*<\/DATASTORE>/s, '<DATASTORE/>'), `<DS_DRIVER_ACTION_DATA><IMAGE><PATH>${file}</PATH><SIZE></SIZE></IMAGE><DATASTORE/></DS_DRIVER_ACTION_DATA>`);
    const doc = await waitState(oned, id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
    assert.equal(doc.STATE, '1', JSON.stringify(doc.TEMPLATE));
    assert.equal(doc.SIZE, '3');
    assert.equal(doc.FORMAT, 'raw');
    assert.equal(doc.PERSISTENT, '1');
    assert.equal(doc.PATH, file);
    const cp = oned.log.find((l) => l.action === 'cp' && l.argv[0] === String(id));
    assert.ok(cp);
    assert.ok(cp.startedAt - t0 >= 50);
    assert.match(cp.payload, /<IMAGE><ID>\d+<\/ID>.*<SOURCE><!\[CDATA\[\]\]><\/SOURCE><PATH>[^<]+<\/PATH><FORMAT><\/FORMAT>.*<STATE>4<\/STATE>.*<TEMPLATE><DEV_PREFIX>sd<\/DEV_PREFIX><VCENTER_VM_MOREF>vm-1234<\/VCENTER_VM_MOREF><\/TEMPLATE>/s);
    // monitor runs after cp
    await oned.idle();
    const after = oned.log.filter((l) => l.action === 'monitor' && l.argv[0] === String(safeDs) && l.startedAt >= cp.startedAt);
    assert.ok(after.length >= 1);
  });

  test('stat failure: [false, "[one.image.allocate] Cannot parse image SIZE: <stderr>", 8192, -1, "-1"]', async () => {
    const missing = path.join(work, 'nope.raw');
    const f = await fails(oned, 'one.image.allocate', [s(`NAME="missing"\nPATH="${missing}"`), i(safeDs), b(false)]);
    assert.equal(f.msg, `[one.image.allocate] Cannot parse image SIZE: Cannot determine size for ${missing}: No such file or directory`);
    assert.equal(f.code, 8192);
    assert.equal(f.id, -1);
    oned.setDriverAction('stat', () => ({ stdout: 'not-a-number\n' }));
    try {
      const g = await fails(oned, 'one.image.allocate', [s(`NAME="nan"\nPATH="${missing}"`), i(safeDs), b(false)]);
      assert.equal(g.msg, '[one.image.allocate] Cannot parse image SIZE: not-a-number');
    } finally {
      oned.setDriverAction('stat', null);
    }
  });

  test('stat size larger than free space fails synchronously', async () => {
    const small = await oned.createDatastore({ name: 'small2', type: 'IMAGE_DS', freeMb: 1, totalMb: 1, template: { SAFE_DIRS: work } });
    const file = path.join(work, 'five.raw');
    execFileSync('qemu-img', ['create', '-f', 'raw', file, '5M']);
    const f = await fails(oned, 'one.image.allocate', [s(`NAME="five"\nPATH="${file}"`), i(small), b(false)]);
    assert.equal(f.msg, '[one.image.allocate] Not enough space in datastore');
  });

  test('cp outside SAFE_DIRS → ERROR "Error copying image in the datastore: Not allowed to copy image from …"', async () => {
    const file = path.join(work, 'restricted.raw');
    writeFileSync(file, Buffer.alloc(1024));
    const r = await allocate(oned, `NAME="restricted"\nPATH="${file}"`, 1);
    const doc = await waitState(oned, r.arr?.[1] as number, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
    assert.equal(doc.STATE, '5');
    assert.match(doc.TEMPLATE.ERROR, / : Error copying image in the datastore: Not allowed to copy image from .*restricted\.raw, check RESTRICTED_DIRS in your datastore$/);
  });

  test('cp stdout without FORMAT → ERROR, SOURCE kept; plain stderr lines joined with no separator', async () => {
    const file = path.join(work, 'small.raw');
    writeFileSync(file, Buffer.alloc(4096));
    oned.setDriverAction('cp', () => ({ stdout: '/some/where/abc\n' }));
    try {
      const r = await allocate(oned, `NAME="nofmt"\nPATH="${file}"`, safeDs);
      const doc = await waitState(oned, r.arr?.[1] as number, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
      assert.equal(doc.STATE, '5');
      assert.equal(doc.SOURCE, '/some/where/abc');
      assert.match(doc.TEMPLATE.ERROR, / : CP operation succeeded but image FORMAT was not returned\.$/);
    } finally {
      oned.setDriverAction('cp', null);
    }
    oned.setDriverAction('cp', () => ({ exitCode: 2, stderr: 'INFO: copying\nfirst part\nsecond part\nDEBUG: x\n' }));
    try {
      const r = await allocate(oned, `NAME="cpfail"\nPATH="${file}"`, safeDs);
      const doc = await waitState(oned, r.arr?.[1] as number, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
      assert.match(doc.TEMPLATE.ERROR, / : Error copying image in the datastore: first partsecond part$/);
    } finally {
      oned.setDriverAction('cp', null);
    }
  });

  test('http URL: stat via Content-Length and cp via curl', async () => {
    const http = await import('node:http');
    const data = Buffer.alloc(2 * 1048576 + 10, 1);
    const srv = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Length': data.length });
      res.end(req.method === 'HEAD' ? undefined : data);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (srv.address() as { port: number }).port;
      const r = await allocate(oned, `NAME="http"\nPATH="http://127.0.0.1:${port}/disk.img"`, safeDs);
      assert.equal(r.arr?.[0], true, r.raw);
      const doc = await waitState(oned, r.arr?.[1] as number, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
      assert.equal(doc.STATE, '1', JSON.stringify(doc.TEMPLATE));
      assert.equal(doc.SIZE, '3');
      assert.equal(statSync(doc.SOURCE).size, data.length);
    } finally {
      srv.close();
    }
  });
});

describe('image allocate: SOURCE route and restricted attributes', () => {
  test('admin SOURCE → READY at once, no driver call', async () => {
    // the market timer's cycle may run the (absent) OpenNebula Public market driver meanwhile
    const datastoreRuns = (): number => oned.log.filter((l) => l.kind !== 'market').length;
    const n = datastoreRuns();
    const src = `${oned.datastore(1)?.basePath}/made-by-client`;
    writeFileSync(src, Buffer.alloc(0));
    const r = await allocate(oned, `NAME="by-source"\nSOURCE="${src}"\nFORMAT=raw\nSIZE=5\nTYPE=OS`);
    const { doc } = await imageInfo(oned, r.arr?.[1] as number);
    assert.equal(doc.STATE, '1');
    assert.equal(doc.SOURCE, src);
    assert.equal(datastoreRuns(), n);
    const nofmt = await fails(oned, 'one.image.allocate', [s(`NAME="src2"\nSOURCE="${src}"\nSIZE=5`), i(1), b(false)]);
    assert.equal(nofmt.msg, '[one.image.allocate] Error allocating a new image. SOURCE needs FORMAT to be set.');
    const both = await fails(oned, 'one.image.allocate', [s(`NAME="src3"\nSOURCE="${src}"\nPATH="/x"\nFORMAT=raw\nSIZE=5`), i(1), b(false)]);
    assert.match(both.msg, /PATH and SOURCE cannot be both set\./);
  });

  test('non-admin SOURCE → AUTHORIZATION', async () => {
    const uid = oned.createUser('carol', 'pw');
    const f = await fails(oned, 'one.image.allocate', [s('NAME="x"\nSOURCE="/tmp/x"\nFORMAT=raw\nSIZE=1'), i(1), b(false)], 'carol:pw');
    assert.equal(f.msg, `[one.image.allocate] User [${uid}] : Template includes a restricted attribute SOURCE.`);
    assert.equal(f.code, 512);
    const okr = await allocate(oned, 'NAME="carols"\nSIZE=1\nTYPE=DATABLOCK', 1, 'carol:pw');
    assert.equal(okr.arr?.[0], true);
    // private to carol
    const denied = await fails(oned, 'one.image.info', [i(okr.arr?.[1] as number)], 'alice:secret');
    assert.equal(denied.code, 512);
  });
});

describe('image delete, update and friends', () => {
  test('delete → DELETE state, rm with the image id, file and record gone', async () => {
    const r = await allocate(oned, 'NAME="to-delete"\nSIZE=2\nTYPE=DATABLOCK');
    const id = r.arr?.[1] as number;
    const doc = await waitState(oned, id, [IMAGE_STATE.READY]);
    assert.equal(await ok(oned, 'one.image.delete', [i(id), b(false)]), id);
    const { doc: during } = await imageInfo(oned, id);
    assert.equal(during.STATE, String(IMAGE_STATE.DELETE));
    await oned.idle();
    const rm = oned.log.find((l) => l.action === 'rm' && l.argv[0] === String(id));
    assert.ok(rm);
    assert.equal(rm.exitCode, 0);
    assert.ok(!existsSync(doc.SOURCE));
    const f = await fails(oned, 'one.image.info', [i(id), b(false)]);
    assert.equal(f.msg, `[one.image.info] Error getting image [${id}].`);
    assert.equal(f.code, 1024);
    assert.equal(f.id, id);
  });

  test('LOCKED image: delete without force fails, with force succeeds', async () => {
    oned.setDriverAction('mkfs', () => new Promise((res) => setTimeout(() => res({ stdout: '/nowhere/x\n' }), 500)));
    try {
      const r = await allocate(oned, 'NAME="locked"\nSIZE=2\nTYPE=DATABLOCK');
      const id = r.arr?.[1] as number;
      const f = await fails(oned, 'one.image.delete', [i(id), b(false)]);
      assert.equal(f.msg, '[one.image.delete] Image locked, use --force flag to remove the image. Force delete may leave some files on Datastore');
      assert.equal(f.code, 8192);
      assert.equal(await ok(oned, 'one.image.delete', [i(id), b(true)]), id);
      await oned.idle();
      assert.equal(oned.image(id), undefined);
    } finally {
      oned.setDriverAction('mkfs', null);
    }
  });

  test('rm refuses a SOURCE outside BASE_PATH → ERROR with 7.4\'s text (the driver\'s only in oned.log)', async () => {
    const src = path.join(work, 'outside.raw');
    writeFileSync(src, '');
    const r = await allocate(oned, `NAME="outside"\nSOURCE="${src}"\nFORMAT=raw\nSIZE=1`);
    const id = r.arr?.[1] as number;
    await ok(oned, 'one.image.delete', [i(id), b(false)]);
    await oned.idle();
    const { doc } = await imageInfo(oned, id);
    assert.equal(doc.STATE, '5');
    assert.match(
      doc.TEMPLATE.ERROR,
      / : Error removing image from datastore\. Retry the operation or manually remove image source {2}and run the delete --force operation to completely delete the image$/,
    );
    assert.ok(oned.onedLog.some((l) => l.includes(`Error removing image ${id}`) && l.includes('Bad formed or unavailable Image source')));
    assert.ok(existsSync(src));
    // a forced delete drops the record although rm fails again; the file stays
    await ok(oned, 'one.image.delete', [i(id), b(true)]);
    await oned.idle();
    assert.equal(oned.image(id), undefined);
    assert.ok(existsSync(src));
  });

  test('update replace/merge, chtype, persistent, rename, chown', async () => {
    const r = await allocate(oned, 'NAME="upd"\nSIZE=1\nTYPE=DATABLOCK\nA=1\nB=2');
    const id = r.arr?.[1] as number;
    await waitState(oned, id, [IMAGE_STATE.READY]);
    await ok(oned, 'one.image.update', [i(id), s('B="3"\nC=[X="1"]'), i(1)]);
    let { doc } = await imageInfo(oned, id);
    assert.equal(doc.TEMPLATE.A, '1');
    assert.equal(doc.TEMPLATE.B, '3');
    assert.equal(doc.TEMPLATE.C.X, '1');
    await ok(oned, 'one.image.update', [i(id), s('<TEMPLATE><ONLY>me</ONLY></TEMPLATE>'), i(0)]);
    ({ doc } = await imageInfo(oned, id));
    assert.deepEqual(Object.keys(doc.TEMPLATE), ['ONLY']);
    await ok(oned, 'one.image.chtype', [i(id), s('OS')]);
    const bad = await fails(oned, 'one.image.chtype', [i(id), s('KERNEL')]);
    assert.equal(bad.code, 2048);
    await ok(oned, 'one.image.persistent', [i(id), b(true)]);
    await ok(oned, 'one.image.rename', [i(id), s('upd-renamed')]);
    await ok(oned, 'one.image.chown', [i(id), i(-1), i(1)]);
    ({ doc } = await imageInfo(oned, id));
    assert.equal(doc.TYPE, '0');
    assert.equal(doc.PERSISTENT, '1');
    assert.equal(doc.NAME, 'upd-renamed');
    assert.equal(doc.GID, '1');
    assert.equal(doc.GNAME, 'users');
  });

  test('imagepool.info: filters, id range, paging; filter < -4 is XML_RPC_API', async () => {
    const all = parseDoc(await ok(oned, 'one.imagepool.info', [i(-2), i(-1), i(-1)])).IMAGE_POOL.IMAGE as { ID: string }[];
    const ids = all.map((x) => Number(x.ID));
    assert.ok(ids.length >= 5);
    assert.deepEqual(ids, [...ids].sort((a, c) => c - a), 'API_LIST_ORDER DESC');
    const page = parseDoc(await ok(oned, 'one.imagepool.info', [i(-2), i(1), i(-2)])).IMAGE_POOL.IMAGE as { ID: string }[];
    assert.deepEqual(page.map((x) => Number(x.ID)), ids.slice(1, 3));
    const range = parseDoc(await ok(oned, 'one.imagepool.info', [i(-2), i(0), i(1)])).IMAGE_POOL.IMAGE as { ID: string }[];
    assert.ok(range.every((x) => Number(x.ID) <= 1));
    const f = await fails(oned, 'one.imagepool.info', [i(-5), i(-1), i(-1)]);
    assert.equal(f.code, 4096);
    const mine = parseDoc(await ok(oned, 'one.imagepool.info', [i(-3), i(-1), i(-1)], 'carol:pw')).IMAGE_POOL.IMAGE as { UNAME: string }[];
    assert.ok(mine.length >= 1 && mine.every((x) => x.UNAME === 'carol'));
  });
});

describe('templates, VMs, networks', () => {
  let net: number;
  let persImg: number;
  let volImg: number;
  before(async () => {
    net = oned.createNetwork({ name: 'vlan1', bridge: 'br0', ars: [{ type: 'ETHER', mac: '00:50:56:aa:bb:00', size: 4 }, { type: 'IP4', ip: '10.0.0.10', size: 4 }] });
    const a = await allocate(oned, 'NAME="pers-disk"\nSIZE=1\nTYPE=OS\nPERSISTENT=YES');
    const c = await allocate(oned, 'NAME="np-disk"\nSIZE=1\nTYPE=DATABLOCK');
    persImg = a.arr?.[1] as number;
    volImg = c.arr?.[1] as number;
    await waitState(oned, persImg, [IMAGE_STATE.READY]);
    await waitState(oned, volImg, [IMAGE_STATE.READY]);
  });

  test('template syntax: text with vectors, escapes, comments; XML names as written', () => {
    const t = parseTemplate('name = "a \\"q\\" b\\\\c" # comment\nvec = [ k1 = "v1", K2 = plain ]\nEMPTY =\nmulti="l1\nl2"');
    assert.equal(t.get('NAME'), 'a "q" b\\\\c');
    assert.equal(t.vectors('VEC')[0]?.get('K1'), 'v1');
    assert.equal(t.vectors('VEC')[0]?.get('K2'), 'plain');
    assert.equal(t.get('EMPTY'), '');
    assert.equal(t.get('MULTI'), 'l1\nl2');
    const x = parseTemplate('<TEMPLATE><lower>a &amp; b</lower><DISK><IMAGE_ID>3</IMAGE_ID></DISK><C><![CDATA[<x>]]></C></TEMPLATE>');
    assert.equal(x.get('lower'), 'a & b');
    assert.equal(x.get('LOWER'), undefined);
    assert.equal(x.vectors('DISK')[0]?.get('IMAGE_ID'), '3');
    assert.equal(x.get('C'), '<x>');
  });

  test('instantiate: persistent image USED_PERS, DRIVER forced, NIC by MAC; terminate frees', async () => {
    const tid = (await ok(oned, 'one.template.allocate', [
      s(`<TEMPLATE><NAME>web01</NAME><CPU>1</CPU><VCPU>2</VCPU><MEMORY>512</MEMORY><DISK><IMAGE_ID>${persImg}</IMAGE_ID><DRIVER>qcow2</DRIVER><DEV_PREFIX>vd</DEV_PREFIX></DISK><DISK><IMAGE_ID>${volImg}</IMAGE_ID></DISK><NIC><NETWORK_ID>${net}</NETWORK_ID><MAC>00:50:56:aa:bb:02</MAC></NIC><DESCRIPTION>a &lt;b&gt;</DESCRIPTION></TEMPLATE>`),
    ])) as number;
    const ext = parseDoc(await ok(oned, 'one.template.info', [i(tid), b(true), b(false)])).VMTEMPLATE;
    assert.equal(ext.TEMPLATE.DISK[0].SOURCE, oned.image(persImg)?.source);
    const vmId = (await ok(oned, 'one.template.instantiate', [i(tid), s('web01-vm'), b(true), s(''), b(false)])) as number;
    const vmXml = (await ok(oned, 'one.vm.info', [i(vmId), b(false)])) as string;
    const vm = parseDoc(vmXml).VM;
    assert.equal(vm.STATE, String(VM_STATE.HOLD));
    assert.equal(vm.NAME, 'web01-vm');
    assert.equal(vm.TEMPLATE.TEMPLATE_ID, String(tid));
    assert.equal(vm.TEMPLATE.DISK[0].DRIVER, 'raw');
    assert.equal(vm.TEMPLATE.DISK[0].TARGET, 'vda');
    assert.equal(vm.TEMPLATE.DISK[1].TARGET, 'sda');
    assert.equal(vm.TEMPLATE.NIC[0].MAC, '00:50:56:aa:bb:02');
    assert.equal(vm.TEMPLATE.NIC[0].BRIDGE, 'br0');
    assert.equal(vm.USER_TEMPLATE.DESCRIPTION, 'a <b>');
    assert.match(vmXml, /<DISK><CLONE><!\[CDATA\[NO\]\]><\/CLONE>/);
    assert.equal((await imageInfo(oned, persImg)).doc.STATE, String(IMAGE_STATE.USED_PERS));
    assert.equal((await imageInfo(oned, volImg)).doc.STATE, String(IMAGE_STATE.USED));
    const vn = parseDoc(await ok(oned, 'one.vn.info', [i(net), b(false)])).VNET;
    assert.equal(vn.AR_POOL.AR[0].LEASES.LEASE[0].MAC, '00:50:56:aa:bb:02');
    assert.equal(vn.AR_POOL.AR[0].LEASES.LEASE[0].VM, String(vmId));
    // a persistent image can be used once, and cannot be deleted while in use
    const again = await fails(oned, 'one.template.instantiate', [i(tid), s('second'), b(false), s('NIC=[NETWORK_ID="' + net + '"]'), b(false)]);
    assert.equal(again.code, 16384);
    assert.match(again.msg, /persistent and already in use/);
    const del = await fails(oned, 'one.image.delete', [i(persImg), b(false)]);
    assert.equal(del.msg, '[one.image.delete] Cannot delete image. There are 1 VMs using it.');
    // action first
    const wrongOrder = await call(oned, 'one.vm.action', [i(vmId), s('terminate')]);
    assert.equal(wrongOrder.fault?.faultCode, -501);
    assert.equal(await ok(oned, 'one.vm.action', [s('terminate'), i(vmId)]), vmId);
    assert.equal((await imageInfo(oned, persImg)).doc.STATE, String(IMAGE_STATE.READY));
    assert.equal((await imageInfo(oned, volImg)).doc.STATE, String(IMAGE_STATE.READY));
    assert.equal(oned.vm(vmId)?.state, VM_STATE.DONE);
    const vn2 = parseDoc(await ok(oned, 'one.vn.info', [i(net), b(false)])).VNET;
    assert.equal(vn2.AR_POOL.AR[0].USED_LEASES, '0');
  });

  test('NIC: MAC and IP together, or a MAC outside every AR, fail with 16384', async () => {
    const tid = (await ok(oned, 'one.template.allocate', [s(`NAME="nics"\nMEMORY=128\nCPU=1\nNIC=[NETWORK_ID="${net}"]`)])) as number;
    const both = await fails(oned, 'one.template.instantiate', [i(tid), s(''), b(false), s(`NIC=[NETWORK_ID="${net}", MAC="00:50:56:aa:bb:01", IP="10.0.0.11"]`), b(false)]);
    assert.equal(both.msg, `[one.template.instantiate] Error allocating a new virtual machine. Cannot get IP/MAC lease from virtual network ${net}.`);
    assert.equal(both.code, 16384);
    const outside = await fails(oned, 'one.template.instantiate', [i(tid), s(''), b(false), s(`NIC=[NETWORK_ID="${net}", MAC="00:50:56:ff:ff:ff"]`), b(false)]);
    assert.equal(outside.code, 16384);
    const byIp = (await ok(oned, 'one.template.instantiate', [i(tid), s(''), b(false), s(`NIC=[NETWORK_ID="${net}", IP="10.0.0.12"]`), b(false)])) as number;
    const vm = parseDoc(await ok(oned, 'one.vm.info', [i(byIp)])).VM;
    assert.equal(vm.STATE, String(VM_STATE.PENDING));
    assert.equal(vm.NAME, `nics-${byIp}`);
    assert.equal(vm.TEMPLATE.NIC[0].IP, '10.0.0.12');
    assert.equal(vm.TEMPLATE.NIC[0].MAC, '02:00:0a:00:00:0c');
    // add_ar then the MAC is leasable
    await ok(oned, 'one.vn.add_ar', [i(net), s('AR=[TYPE="ETHER", MAC="00:50:56:12:34:56", SIZE="1"]')]);
    const byMac = (await ok(oned, 'one.template.instantiate', [i(tid), s('m'), b(false), s(`NIC=[NETWORK_ID="${net}", MAC="00:50:56:12:34:56"]`), b(false)])) as number;
    assert.ok(byMac >= 0);
    const pool = parseDoc(await ok(oned, 'one.vnpool.info', [i(-2), i(-1), i(-1)])).VNET_POOL.VNET;
    assert.equal(pool[0].AR_POOL.AR[0].LEASES, undefined, 'pool form omits leases');
  });

  test('NIC/MAC is restricted for non-admins; unchanged admin values may be instantiated after chown', async () => {
    const uid = oned.sim.pools.users.size > 0 ? [...oned.sim.pools.users.values()].find((u) => u.name === 'alice')?.id ?? -1 : -1;
    const f = await fails(oned, 'one.template.allocate', [s(`NAME="mac"\nMEMORY=1\nNIC=[NETWORK_ID="${net}", MAC="00:50:56:aa:bb:03"]`)], 'alice:secret');
    assert.equal(f.msg, `[one.template.allocate] User [${uid}] : VM Template includes a restricted attribute NIC/MAC.`);
    assert.equal(f.code, 512);
    const tid = (await ok(oned, 'one.template.allocate', [s(`NAME="mac-admin"\nMEMORY=1\nNIC=[NETWORK_ID="${net}", MAC="00:50:56:aa:bb:03"]`)])) as number;
    await ok(oned, 'one.template.chown', [i(tid), i(uid), i(1)]);
    const vm = (await ok(oned, 'one.template.instantiate', [i(tid), s('alice-vm'), b(false), s(''), b(false)], 'alice:secret')) as number;
    assert.equal(oned.vm(vm)?.uid, uid);
    const changed = await fails(oned, 'one.template.instantiate', [i(tid), s('alice-vm2'), b(false), s(`NIC=[NETWORK_ID="${net}", MAC="00:50:56:aa:bb:01"]`), b(false)], 'alice:secret');
    assert.equal(changed.code, 512);
  });

  test('template delete recursive deletes the images of its DISKs', async () => {
    const r = await allocate(oned, 'NAME="rec-disk"\nSIZE=1\nTYPE=DATABLOCK');
    const img = r.arr?.[1] as number;
    await waitState(oned, img, [IMAGE_STATE.READY]);
    const tid = (await ok(oned, 'one.template.allocate', [s(`NAME="rec"\nMEMORY=1\nDISK=[IMAGE_ID="${img}"]`)])) as number;
    const pool = parseDoc(await ok(oned, 'one.templatepool.info', [i(-2), i(-1), i(-1)])).VMTEMPLATE_POOL.VMTEMPLATE as { ID: string }[];
    assert.ok(pool.some((t) => Number(t.ID) === tid));
    await ok(oned, 'one.template.delete', [i(tid), b(true)]);
    await oned.idle();
    assert.equal(oned.image(img), undefined);
    const f = await fails(oned, 'one.template.info', [i(tid)]);
    assert.equal(f.msg, `[one.template.info] Error getting virtual machine template [${tid}].`);
  });

  test('vm.allocate and vm.action state errors', async () => {
    const id = (await ok(oned, 'one.vm.allocate', [s('NAME="direct"\nMEMORY=64\nCPU=0.5'), b(false)])) as number;
    const f = await fails(oned, 'one.vm.action', [s('release'), i(id)]);
    assert.equal(f.code, 2048);
    assert.equal(await ok(oned, 'one.vm.action', [s('hold'), i(id)]), id);
    const mem = await fails(oned, 'one.vm.allocate', [s('NAME="nomem"'), b(false)]);
    assert.equal(mem.code, 16384);
  });
});

describe('custom DS_MAD (§5.7 scenario)', () => {
  test('stat/cp of a custom driver with a custom PATH scheme, payloads as oned 7.4 sends them', async () => {
    const dir = path.join(work, 'drv');
    const { mkdirSync, chmodSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'stat'), '#!/bin/bash\ncat > /dev/null\necho 42\n');
    writeFileSync(path.join(dir, 'cp'), `#!/bin/bash\nX=$(cat | base64 -d)\nBP=$(echo "$X" | sed -n 's/.*<BASE_PATH><!\\[CDATA\\[\\([^]]*\\)\\]\\]><\\/BASE_PATH>.*/\\1/p')\ntruncate -s 42M "$BP/disk-$1"\necho "$BP/disk-$1 raw"\n`);
    writeFileSync(path.join(dir, 'monitor'), '#!/bin/bash\ncat > /dev/null\necho USED_MB=1\necho TOTAL_MB=1000\necho FREE_MB=999\n');
    for (const f of ['stat', 'cp', 'monitor']) chmodSync(path.join(dir, f), 0o755);
    const o2 = await startOned({ asyncDelayMs: 20, drivers: { vcsim: { dir } } });
    try {
      const ds = await o2.createDatastore({ name: 'vc', type: 'IMAGE_DS', dsMad: 'vcsim', tmMad: 'shared', template: { VCENTER_HOST: 'vc.example' } });
      assert.equal(o2.datastore(ds)?.freeMb, 999);
      const r = await allocate(o2, 'NAME="web01-disk0" TYPE="OS" PATH="vcenter://example/disk0" PERSISTENT="YES" DEV_PREFIX="vd" VCENTER_VM_MOREF="vm-1234"', ds);
      assert.equal(r.arr?.[0], true, r.raw);
      const doc = await waitState(o2, r.arr?.[1] as number, [IMAGE_STATE.READY, IMAGE_STATE.ERROR]);
      assert.equal(doc.STATE, '1', JSON.stringify(doc.TEMPLATE));
      assert.equal(doc.SIZE, '42');
      assert.equal(doc.SOURCE, `${o2.datastore(ds)?.basePath}/disk-${r.arr?.[1]}`);
      const st = o2.log.find((l) => l.action === 'stat');
      assert.deepEqual(st?.argv, ['0']);
      assert.match(st?.payload ?? '', /^<DS_DRIVER_ACTION_DATA><IMAGE><PATH>vcenter:\/\/example\/disk0<\/PATH><SIZE><\/SIZE><\/IMAGE><DATASTORE>.*<VCENTER_HOST><!\[CDATA\[vc\.example\]\]><\/VCENTER_HOST>.*<\/DATASTORE><\/DS_DRIVER_ACTION_DATA>$/s);
      const cfg = (await ok(o2, 'one.system.config', [])) as string;
      assert.match(cfg, /<DS_MAD_CONF><NAME>vcsim<\/NAME>/);
      await assert.rejects(o2.createDatastore({ name: 'bad', type: 'IMAGE_DS', dsMad: 'nope' }), /DS_MAD named "nope" is not defined in oned.conf/);
    } finally {
      await o2.stop();
    }
  });
});

describe('fs driver scripts called directly', () => {
  test('≤6.6 argv form: <script> <base64> <id>, and 6.6.2 "-" form', () => {
    const file = path.join(work, 'argv.raw');
    writeFileSync(file, Buffer.alloc(3 * 1048576 + 1));
    const payload = Buffer.from(`<DS_DRIVER_ACTION_DATA><IMAGE><PATH>${file}</PATH><SIZE></SIZE></IMAGE><DATASTORE><BASE_PATH><![CDATA[/x]]></BASE_PATH></DATASTORE></DS_DRIVER_ACTION_DATA>`).toString('base64');
    const script = path.join(oned.remotesDir, 'datastore', 'fs', 'stat');
    const old = spawnSync(script, [payload, '7'], { encoding: 'utf8' });
    assert.equal(old.status, 0, old.stderr);
    assert.equal(old.stdout.trim(), '4');
    const dash = spawnSync(script, ['-', '7'], { encoding: 'utf8', input: payload });
    assert.equal(dash.stdout.trim(), '4');
    const stdin = spawnSync(script, ['7'], { encoding: 'utf8', input: payload });
    assert.equal(stdin.stdout.trim(), '4');
  });
});
