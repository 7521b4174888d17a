/**
 * Marketplaces in the OpenNebula simulator (test/peers/one, reference §7): the remotes
 * layout with extra drivers as directory symlinks, a fake market driver run like oned 7.4
 * runs it (payload in argv), app import/update/removal, the stock export of
 * `onemarketapp export` (exportMarketApp) into a fake datastore driver that delegates
 * to `../fs/cp`, and the error shapes of the market methods.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { DEFAULT_REMOTES_DIR, IMAGE_STATE, MARKETAPP_STATE, MARKETAPP_TYPE, OcaError, exportMarketApp, startOned, type Oned } from '../peers/one/index.js';
import { elementChildren, parseXml } from '../peers/one/xml.js';

// ------------------------------------------------------------------ raw XML-RPC helpers

type P = string;
const s = (v: string): P => `<value><string>${v.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</string></value>`;
const i = (v: number): P => `<value><int>${v}</int></value>`;
const b = (v: boolean): P => `<value><boolean>${v ? 1 : 0}</boolean></value>`;

const rpcParser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, trimValues: false, isArray: (name) => name === 'value' || name === 'member' });

type V = string | number | boolean | { i8: string } | V[];
function decode(v: Record<string, unknown>): V {
  const [k, x] = Object.entries(v)[0] ?? ['string', ''];
  if (k === 'int' || k === 'i4') return Number(x);
  if (k === 'i8') return { i8: String(x) };
  if (k === 'boolean') return x === '1';
  if (k === 'array') return ((x as { data?: { value?: Record<string, unknown>[] } }).data?.value ?? []).map(decode);
  if (k === 'struct') {
    const out: Record<string, V> = {};
    for (const m of (x as { member: { name: string; value: Record<string, unknown>[] }[] }).member) out[m.name] = decode(m.value[0] ?? {});
    return out as unknown as V;
  }
  return String(x ?? '');
}

interface Reply {
  raw: string;
  fault?: { faultCode: number; faultString: string };
  arr?: V[];
}

async function call(oned: Oned, method: string, params: P[], session = oned.adminSession): Promise<Reply> {
  const xml = `<?xml version="1.0"?>\n<methodCall><methodName>${method}</methodName><params>${[s(session), ...params].map((p) => `<param>${p}</param>`).join('')}</params></methodCall>`;
  const r = await fetch(oned.endpoint, { method: 'POST', body: xml, headers: { 'Content-Type': 'text/xml' } });
  const text = await r.text();
  const d = rpcParser.parse(text) as { methodResponse: { fault?: { value: Record<string, unknown>[] }; params?: { param: { value: Record<string, unknown>[] } } } };
  if (d.methodResponse.fault) return { raw: text, fault: decode(d.methodResponse.fault.value[0] ?? {}) as unknown as Reply['fault'] };
  return { raw: text, arr: decode(d.methodResponse.params?.param.value[0] ?? {}) as V[] };
}

async function ok(oned: Oned, method: string, params: P[], session?: string): Promise<V> {
  const r = await call(oned, method, params, session);
  assert.ok(r.arr, r.raw);
  assert.equal(r.arr[0], true, `call failed: ${JSON.stringify(r.arr)}`);
  assert.equal(r.arr.length, 3);
  return r.arr[1] as V;
}

async function fails(oned: Oned, method: string, params: P[], session?: string): Promise<{ msg: string; code: number; id: number }> {
  const r = await call(oned, method, params, session);
  assert.ok(r.arr, r.raw);
  assert.equal(r.arr[0], false, `expected failure: ${JSON.stringify(r.arr)}`);
  assert.equal(r.arr.length, 5);
  assert.deepEqual(r.arr[4], { i8: '-1' });
  return { msg: r.arr[1] as string, code: r.arr[2] as number, id: r.arr[3] as number };
}

const ARRAYS = /\.DISK$|\.MARKETPLACEAPPS\.ID$|^(MARKETPLACE_POOL\.MARKETPLACE|MARKETPLACEAPP_POOL\.MARKETPLACEAPP|IMAGE_POOL\.IMAGE)$/;
const docParser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: (_n, jpath) => ARRAYS.test(String(jpath)) });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = any;
const parseDoc = (x: V): Doc => docParser.parse(x as string);
/** names of the root's children, in order */
const childOrder = (xml: string): string[] => elementChildren(parseXml(xml)).map((e) => e.name);

async function apps(oned: Oned): Promise<Doc[]> {
  return (parseDoc(await ok(oned, 'one.marketapppool.info', [i(-2), i(-1), i(-1)])).MARKETPLACEAPP_POOL?.MARKETPLACEAPP ?? []) as Doc[];
}

// ------------------------------------------------------------------ fake drivers

const b64 = (x: string): string => Buffer.from(x, 'utf8').toString('base64');

function writeScript(file: string, text: string): void {
  writeFileSync(file, text);
  chmodSync(file, 0o755);
}

/**
 * A market driver: `monitor` records its argv and stdin, fails while `<dir>/fail` exists,
 * prints the capacity and one APP="<base64>" per `<dir>/apps/*.tmpl`; `delete` records argv.
 */
function makeMarketDriver(dir: string): void {
  mkdirSync(path.join(dir, 'apps'), { recursive: true });
  writeScript(
    path.join(dir, 'monitor'),
    `#!/bin/bash
# payload in argv: $1 = base64 MARKET_DRIVER_ACTION_DATA, $2 = market id
D='${dir}'
printf '%s\\n%s\\n%s\\n' "$0" "$1" "$2" > "$D/monitor.argv"
cat > "$D/monitor.stdin"
if [ -e "$D/fail" ]; then
  echo "ERROR: the catalog is unreachable" >&2
  echo "market unreachable" >&2
  exit 1
fi
echo USED_MB=10
echo FREE_MB=990
echo TOTAL_MB=1000
for f in "$D"/apps/*.tmpl; do
  [ -e "$f" ] || continue
  printf 'APP="%s"\\n' "$(base64 -w0 < "$f")"
done
`,
  );
  writeScript(path.join(dir, 'delete'), `#!/bin/bash\nprintf '%s\\n%s\\n' "$1" "$2" > '${dir}/delete.argv'\n`);
}

function imageApp(name: string, source: string, sizeMb: number, version = '1.0'): string {
  return [
    `NAME="${name}"`,
    `SOURCE="${source}"`,
    `IMPORT_ID="import-${name}"`,
    'ORIGIN_ID="-1"',
    'TYPE="IMAGE"',
    'FORMAT="raw"',
    `SIZE="${sizeMb}"`,
    'MD5="0123456789abcdef0123456789abcdef"',
    `DESCRIPTION="disk of ${name}"`,
    `VERSION="${version}"`,
    'REGTIME="1700000000"',
    `APPTEMPLATE64="${b64('DEV_PREFIX="vd"\nTYPE="OS"')}"`,
    'VCENTER_DISK_KEY="2000"',
  ].join('\n');
}

function vmApp(name: string, disks: [string, string][]): string {
  return [
    `NAME="${name}"`,
    `IMPORT_ID="import-${name}"`,
    'ORIGIN_ID="-1"',
    'TYPE="VMTEMPLATE"',
    'SIZE="0"',
    `DESCRIPTION="VMware VM ${name}"`,
    'VERSION="1.0"',
    'REGTIME="1700000001"',
    `APPTEMPLATE64="${b64('CPU="2"\nMEMORY="1024"\nOS=[ARCH="x86_64"]')}"`,
    ...disks.map(([n, app]) => `DISK=[NAME="${n}", APP="${app}"]`),
  ].join('\n');
}

// ------------------------------------------------------------------ setup

let oned: Oned;
let work: string;
let mktDir: string;
let delDir: string;
let dsDir: string;
let srcDir: string;
let dsId: number;
let marketId: number;

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'one-sim-market-'));
  mktDir = path.join(work, 'market-drv');
  delDir = path.join(work, 'market-del');
  dsDir = path.join(work, 'ds-drv');
  srcDir = path.join(work, 'src');
  mkdirSync(srcDir, { recursive: true });
  mkdirSync(dsDir, { recursive: true });
  writeFileSync(path.join(srcDir, 'disk0.raw'), Buffer.alloc(1048576 + 512, 1));
  writeFileSync(path.join(srcDir, 'disk1.raw'), Buffer.alloc(2 * 1048576, 2));
  makeMarketDriver(mktDir);
  makeMarketDriver(delDir);
  writeFileSync(path.join(mktDir, 'apps', '10-disk0.tmpl'), imageApp('web01 disk0', path.join(srcDir, 'disk0.raw'), 2));
  writeFileSync(path.join(mktDir, 'apps', '11-disk1.tmpl'), imageApp('web01 disk1', path.join(srcDir, 'disk1.raw'), 2));
  writeFileSync(path.join(mktDir, 'apps', '20-vm.tmpl'), vmApp('web01', [['disk0', 'web01 disk0'], ['disk1', 'web01 disk1']]));
  // a product-like DS driver: plain actions delegate to the stock one next to it, `..` taken lexically
  for (const action of ['cp', 'monitor']) {
    writeScript(
      path.join(dsDir, action),
      `#!/bin/bash\nprintf '%s\\n' "$0" >> '${work}/ds-${action}.calls'\nexec "$(cd "$(dirname "$0")/.." && pwd)/fs/${action}" "$@"\n`,
    );
  }
  writeScript(path.join(dsDir, 'stat'), `#!/bin/bash\necho "stat must not run for a marketplace app" >&2\nexit 1\n`);
  oned = await startOned({
    adminPassword: 'pw',
    asyncDelayMs: 1000,
    drivers: { mktds: { dir: dsDir } },
    marketDrivers: {
      fakemkt: { dir: mktDir },
      strict: { dir: mktDir, conf: { REQUIRED_ATTRS: 'VCENTER_HOST', PUBLIC: 'no' } },
      delmkt: { dir: delDir, conf: { APP_ACTIONS: 'monitor, delete', PUBLIC: 'no' } },
    },
  });
  dsId = await oned.createDatastore({ name: 'mkt-images', type: 'IMAGE_DS', dsMad: 'mktds', tmMad: 'shared', template: { SAFE_DIRS: srcDir } });
});

after(async () => {
  await oned.stop();
  rmSync(work, { recursive: true, force: true });
});

// ------------------------------------------------------------------ tests

describe('remotes layout', () => {
  test('the simulator builds <var>/remotes: fs + helpers linked, extra drivers as directory symlinks', () => {
    assert.equal(oned.remotesDir, path.join(oned.varDir, 'remotes'));
    const ds = path.join(oned.remotesDir, 'datastore');
    assert.ok(lstatSync(path.join(ds, 'mktds')).isSymbolicLink());
    assert.equal(readlinkSync(path.join(ds, 'mktds')), dsDir);
    assert.ok(lstatSync(path.join(oned.remotesDir, 'market', 'fakemkt')).isSymbolicLink());
    assert.equal(readlinkSync(path.join(oned.remotesDir, 'market', 'fakemkt')), mktDir);
    for (const f of ['fs', 'libfs.sh', 'xpath.mjs']) {
      assert.ok(lstatSync(path.join(ds, f)).isSymbolicLink(), f);
      assert.equal(realpathSync(path.join(ds, f)), realpathSync(path.join(DEFAULT_REMOTES_DIR, 'datastore', f)));
    }
    // `cd -P "$(dirname "$0")/.."` (driver/shim.sh goes up three) resolves through the directory symlink,
    // `cd "$(dirname "$0")/.."` (logical) stays in the remotes tree
    const up = (flag: string): string => execFileSync('bash', ['-c', `cd ${flag} "$(dirname "$1")/.." && pwd`, '_', path.join(ds, 'mktds', 'cp')], { encoding: 'utf8' }).trim();
    assert.equal(up('-P'), realpathSync(work));
    assert.equal(up('-L'), ds);
  });

  test('the datastore monitor ran through <remotes>/datastore/mktds and delegated to ../fs/monitor', () => {
    const m = oned.log.find((e) => e.kind === 'datastore' && e.action === 'monitor' && e.dsMad === 'mktds');
    assert.equal(m?.script, path.join(oned.remotesDir, 'datastore', 'mktds', 'monitor'));
    assert.equal(m?.exitCode, 0, m?.stderr);
    assert.match(m?.stdout ?? '', /^USED_MB=\d+\nTOTAL_MB=\d+\nFREE_MB=\d+/);
    assert.ok((oned.datastore(dsId)?.totalMb ?? 0) > 0);
    assert.equal(readFileSync(path.join(work, 'ds-monitor.calls'), 'utf8').trim().split('\n')[0], m?.script);
  });

  test('one.system.config lists MARKET_MAD -m and MARKET_MAD_CONF with the defaults for extra drivers', async () => {
    const cfg = (await ok(oned, 'one.system.config', [])) as string;
    assert.match(cfg, /<MARKET_MAD><ARGUMENTS>-t 15 -m one,http,s3,linuxcontainers,fakemkt,strict,delmkt<\/ARGUMENTS><EXECUTABLE>one_market<\/EXECUTABLE><\/MARKET_MAD>/);
    assert.match(cfg, /<MARKET_MAD_CONF><APP_ACTIONS>monitor<\/APP_ACTIONS><NAME>fakemkt<\/NAME><PUBLIC>yes<\/PUBLIC><REQUIRED_ATTRS><\/REQUIRED_ATTRS><SUNSTONE_NAME>fakemkt<\/SUNSTONE_NAME><\/MARKET_MAD_CONF>/);
    assert.match(cfg, /<MONITORING_INTERVAL_MARKET>600<\/MONITORING_INTERVAL_MARKET>/);
  });
});

describe('marketplace methods: errors', () => {
  test('allocate: unknown driver, missing MARKET_MAD, REQUIRED_ATTRS, non-admin', async () => {
    const unknown = await fails(oned, 'one.market.allocate', [s('NAME="x"\nMARKET_MAD="nope"')]);
    assert.equal(unknown.msg, '[one.market.allocate] Error allocating a new marketplace. MARKET_MAD_CONF named "nope" is not defined in oned.conf');
    assert.equal(unknown.code, 16384);
    assert.equal(unknown.id, -1);
    const none = await fails(oned, 'one.market.allocate', [s('NAME="x"')]);
    assert.equal(none.msg, '[one.market.allocate] Error allocating a new marketplace. No marketplace driver (MARKET_MAD) in template.');
    const req = await fails(oned, 'one.market.allocate', [s('NAME="x"\nMARKET_MAD="strict"')]);
    assert.equal(req.msg, `[one.market.allocate] Error allocating a new marketplace. MarketPlace template is missing the "VCENTER_HOST" attribute or it's empty.`);
    const taken = await fails(oned, 'one.market.allocate', [s('NAME="OpenNebula Public"\nMARKET_MAD="fakemkt"')]);
    assert.equal(taken.msg, '[one.market.allocate] Error allocating a new marketplace. NAME is already taken by MARKETPLACE 0');
    oned.createUser('mkuser', 'pw');
    const user = await fails(oned, 'one.market.allocate', [s('NAME="u"\nMARKET_MAD="fakemkt"')], 'mkuser:pw');
    assert.equal(user.code, 512);
  });

  test('info of unknown ids, pool parameters', async () => {
    const m = await fails(oned, 'one.market.info', [i(999)]);
    assert.deepEqual([m.msg, m.code, m.id], ['[one.market.info] Error getting marketplace [999].', 1024, 999]);
    const a = await fails(oned, 'one.marketapp.info', [i(999), b(false)]);
    assert.deepEqual([a.msg, a.code, a.id], ['[one.marketapp.info] Error getting marketplaceapp [999].', 1024, 999]);
    const d = await fails(oned, 'one.marketapp.delete', [i(999)]);
    assert.deepEqual([d.msg, d.code, d.id], ['[one.marketapp.delete] Error getting marketplaceapp [999].', 1024, 999]);
    const md = await fails(oned, 'one.market.delete', [i(999)]);
    assert.equal(md.msg, '[one.market.delete] Error getting marketplace [999].');
    const few = await call(oned, 'one.marketapppool.info', [i(-2)]);
    assert.equal(few.fault?.faultCode, -502);
    const bad = await fails(oned, 'one.marketapppool.info', [i(-9), i(-1), i(-1)]);
    assert.equal(bad.code, 4096);
  });

  test('a fresh install has the OpenNebula Public (0) and Linux Containers (1, disabled) marketplaces', async () => {
    const pool = parseDoc(await ok(oned, 'one.marketpool.info', [])).MARKETPLACE_POOL.MARKETPLACE as Doc[];
    const byId = new Map(pool.map((m) => [Number(m.ID), m]));
    assert.equal(byId.get(0)?.NAME, 'OpenNebula Public');
    assert.equal(byId.get(0)?.MARKET_MAD, 'one');
    assert.equal(byId.get(1)?.STATE, '1');
  });
});

describe('market driver: monitor and apps', () => {
  test('allocate monitors nothing; a monitor runs the driver with the payload in argv and imports the apps', async () => {
    marketId = (await ok(oned, 'one.market.allocate', [s('NAME="vc"\nMARKET_MAD="fakemkt"\nVCENTER_HOST="vc.example"\nDESCRIPTION="vCenter vc.example"')])) as number;
    assert.equal(marketId, 100);
    await oned.idle();
    assert.deepEqual(oned.log.filter((e) => e.kind === 'market'), []);
    assert.equal(oned.market(marketId)?.apps.size, 0);
    const e = (await oned.monitorMarket(marketId))!;
    assert.equal(oned.log.filter((x) => x.kind === 'market' && x.action === 'monitor').length, 1);
    assert.equal(e.script, path.join(oned.remotesDir, 'market', 'fakemkt', 'monitor'));
    assert.equal(e.argv.length, 2);
    assert.equal(e.argv[1], '100');
    assert.equal(e.stdin, '');
    assert.equal(Buffer.from(e.argv[0]!, 'base64').toString('utf8'), e.payload);
    assert.match(e.payload, /^<MARKET_DRIVER_ACTION_DATA><MARKETPLACE><ID>100<\/ID>.*<MARKET_MAD>fakemkt<\/MARKET_MAD>.*<VCENTER_HOST>(<!\[CDATA\[)?vc\.example(\]\]>)?<\/VCENTER_HOST>.*<\/MARKETPLACE><\/MARKET_DRIVER_ACTION_DATA>$/s);
    const [argv0, argv1, argv2] = readFileSync(path.join(mktDir, 'monitor.argv'), 'utf8').split('\n');
    assert.deepEqual([argv0, argv1, argv2], [e.script, e.argv[0], '100']);
    assert.equal(readFileSync(path.join(mktDir, 'monitor.stdin'), 'utf8'), '');

    const mxml = (await ok(oned, 'one.market.info', [i(marketId), b(false)])) as string;
    assert.deepEqual(childOrder(mxml), ['ID', 'UID', 'GID', 'UNAME', 'GNAME', 'NAME', 'STATE', 'MARKET_MAD', 'ZONE_ID', 'TOTAL_MB', 'FREE_MB', 'USED_MB', 'MARKETPLACEAPPS', 'PERMISSIONS', 'TEMPLATE']);
    const m = parseDoc(mxml).MARKETPLACE;
    assert.deepEqual([m.TOTAL_MB, m.FREE_MB, m.USED_MB, m.STATE, m.ZONE_ID], ['1000', '990', '10', '0', '0']);
    assert.deepEqual(m.MARKETPLACEAPPS.ID, ['0', '1', '2']);
    assert.equal(m.TEMPLATE.MARKET_MAD, 'fakemkt');
    assert.equal(m.TEMPLATE.NAME, undefined);
  });

  test('one.marketapppool.info: IMAGE and VMTEMPLATE apps with the fields of the app templates', async () => {
    const list = await apps(oned);
    assert.equal(list.length, 3);
    const vm = list.find((a) => a.NAME === 'web01');
    const d0 = list.find((a) => a.NAME === 'web01 disk0');
    assert.ok(vm && d0);
    assert.deepEqual(
      [vm.TYPE, vm.STATE, vm.SIZE, vm.MARKETPLACE_ID, vm.MARKETPLACE, vm.ORIGIN_ID, vm.ZONE_ID, vm.UID, vm.UNAME, vm.REGTIME, vm.VERSION],
      [String(MARKETAPP_TYPE.VMTEMPLATE), String(MARKETAPP_STATE.READY), '0', '100', 'vc', '-1', '0', '0', 'oneadmin', '1700000001', '1.0'],
    );
    assert.equal(Buffer.from(vm.APPTEMPLATE64, 'base64').toString('utf8'), 'CPU="2"\nMEMORY="1024"\nOS=[ARCH="x86_64"]');
    assert.deepEqual(vm.TEMPLATE.DISK, [{ APP: 'web01 disk0', NAME: 'disk0' }, { APP: 'web01 disk1', NAME: 'disk1' }]);
    assert.equal(vm.TEMPLATE.IMPORT_ID, 'import-web01');
    assert.equal(vm.TEMPLATE.APPTEMPLATE64, vm.APPTEMPLATE64);
    for (const gone of ['NAME', 'TYPE', 'SIZE', 'SOURCE', 'REGTIME', 'ORIGIN_ID']) assert.equal(vm.TEMPLATE[gone], undefined, gone);
    assert.deepEqual(
      [d0.TYPE, d0.SOURCE, d0.SIZE, d0.FORMAT, d0.MD5, d0.DESCRIPTION, d0.TEMPLATE.VCENTER_DISK_KEY],
      ['1', path.join(srcDir, 'disk0.raw'), '2', 'raw', '0123456789abcdef0123456789abcdef', 'disk of web01 disk0', '2000'],
    );
    assert.deepEqual(d0.PERMISSIONS, { OWNER_U: '1', OWNER_M: '1', OWNER_A: '0', GROUP_U: '1', GROUP_M: '0', GROUP_A: '0', OTHER_U: '1', OTHER_M: '0', OTHER_A: '0' });
    const axml = (await ok(oned, 'one.marketapp.info', [i(Number(vm.ID)), b(false)])) as string;
    assert.deepEqual(childOrder(axml), [
      'ID', 'UID', 'GID', 'UNAME', 'GNAME', 'REGTIME', 'NAME', 'ZONE_ID', 'ORIGIN_ID', 'SOURCE', 'MD5', 'SIZE', 'DESCRIPTION', 'VERSION',
      'FORMAT', 'APPTEMPLATE64', 'MARKETPLACE_ID', 'MARKETPLACE', 'STATE', 'TYPE', 'PERMISSIONS', 'TEMPLATE',
    ]);
    // a regular user sees the apps too (ACL "* MARKETPLACE+MARKETPLACEAPP * USE")
    oned.createUser('viewer', 'pw');
    const seen = parseDoc(await ok(oned, 'one.marketapppool.info', [i(-2), i(-1), i(-1)], 'viewer:pw')).MARKETPLACEAPP_POOL.MARKETPLACEAPP as Doc[];
    assert.equal(seen.length, 3);
  });

  test('a marketplace listing the same app NAMEs gets none of them: apps are matched by NAME across markets', async () => {
    const other = await oned.createMarket({ name: 'vc-copy', marketMad: 'strict', template: { VCENTER_HOST: 'vc.example' } });
    assert.equal((await oned.monitorMarket(other))?.exitCode, 0);
    assert.equal(oned.market(other)?.apps.size, 0);
    assert.equal((await apps(oned)).length, 3);
    await ok(oned, 'one.market.delete', [i(other)]);
  });

  test('APP_ACTIONS without delete: one.marketapp.delete is refused', async () => {
    const id = Number((await apps(oned)).find((a) => a.NAME === 'web01 disk1').ID);
    const f = await fails(oned, 'one.marketapp.delete', [i(id)]);
    assert.deepEqual([f.msg, f.code, f.id], ['[one.marketapp.delete] Cannot delete marketplaceapp. Delete disabled for market: vc', 2048, id]);
  });
});

describe('stock export (onemarketapp export / Sunstone Import)', () => {
  let result: Awaited<ReturnType<typeof exportMarketApp>>;
  let callsFrom: number;

  test('export of the VM app: one image per DISK app, then the VM template with DISK=[IMAGE_ID]', async () => {
    const vm = (await apps(oned)).find((a) => a.NAME === 'web01');
    callsFrom = oned.calls.length;
    result = await exportMarketApp({ endpoint: oned.endpoint, session: oned.adminSession, appId: Number(vm.ID), name: 'web01-imported', datastoreId: dsId });
    assert.deepEqual(result.errors, []);
    assert.equal(result.image.length, 2);
    assert.equal(result.vmtemplate.length, 1);
    assert.equal(result.imageType, null);
    // images are LOCKED until the (asynchronous) cp of the datastore driver is done
    for (const id of result.image) assert.equal(oned.image(id)?.state, IMAGE_STATE.LOCKED);
    assert.deepEqual(
      oned.calls.slice(callsFrom).map((c) => c.method),
      [
        'one.marketapp.info', 'one.marketapppool.info',
        'one.imagepool.info', 'one.marketapp.info', 'one.datastore.info', 'one.image.allocate', 'one.image.info', 'one.image.update',
        'one.imagepool.info', 'one.marketapp.info', 'one.datastore.info', 'one.image.allocate', 'one.image.info', 'one.image.update',
        'one.datastore.info', 'one.template.allocate', 'one.template.info', 'one.template.update',
      ],
    );
    const alloc = oned.calls.slice(callsFrom).find((c) => c.method === 'one.image.allocate');
    const sent = (alloc?.params[1] as { value: string }).value;
    assert.match(sent, /^DEV_PREFIX="vd"\nTYPE="OS" {16}NAME {5}= "web01-imported-disk0-0"\n {16}FROM_APP = "\d+"\n$/);
    assert.deepEqual(alloc?.params[3], { type: 'boolean', value: false });
  });

  test('the images go LOCKED → READY through the fake driver\'s cp (delegating to ../fs/cp); cp got <MARKETPLACE>; no stat', async () => {
    for (const id of result.image) {
      const img = await oned.waitImage(id, [IMAGE_STATE.READY, IMAGE_STATE.ERROR], 30_000);
      assert.equal(img.state, IMAGE_STATE.READY, img.template.get('ERROR'));
      assert.equal(img.format, 'raw');
      assert.equal(path.dirname(img.source), oned.datastore(dsId)?.basePath);
      assert.equal(img.size, 2);
    }
    const [i0, i1] = result.image.map((id) => oned.image(id)!);
    assert.deepEqual([i0!.name, i1!.name], ['web01-imported-disk0-0', 'web01-imported-disk1-1']);
    assert.deepEqual(readFileSync(i0!.source), readFileSync(path.join(srcDir, 'disk0.raw')));
    assert.equal(i0!.template.get('FROM_APP_NAME'), 'web01 disk0');
    assert.equal(i0!.template.get('FROM_APP_MD5'), '0123456789abcdef0123456789abcdef');
    assert.equal(i0!.template.get('DEV_PREFIX'), 'vd');
    assert.equal(i0!.template.get('FORMAT'), undefined);
    assert.equal(i0!.type, 0);

    assert.ok(!oned.log.some((e) => e.action === 'stat'), 'no stat for a marketplace app');
    const cps = oned.log.filter((e) => e.action === 'cp' && result.image.map(String).includes(e.argv[0]!));
    assert.equal(cps.length, 2);
    for (const cp of cps) {
      assert.equal(cp.script, path.join(oned.remotesDir, 'datastore', 'mktds', 'cp'));
      assert.match(cp.payload, /<\/DATASTORE><MARKETPLACE><ID>100<\/ID>.*<VCENTER_HOST>(<!\[CDATA\[)?vc\.example(\]\]>)?<\/VCENTER_HOST>.*<\/MARKETPLACE><\/DS_DRIVER_ACTION_DATA>$/s);
      assert.match(cp.payload, /<IMAGE><ID>\d+<\/ID>.*<STATE>4<\/STATE>.*<\/IMAGE><DATASTORE>/s);
      assert.match(cp.payload, /<FORMAT><\/FORMAT>/);
      assert.match(cp.payload, /<FROM_APP>\d+<\/FROM_APP>/);
      assert.ok(!cp.payload.includes('<MARKETPLACEAPP>'), 'no app element');
    }
    const cp0 = cps.find((c) => c.argv[0] === String(result.image[0]))!;
    assert.match(cp0.payload, new RegExp(`<PATH>${path.join(srcDir, 'disk0.raw').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}</PATH>`));
    const calls = readFileSync(path.join(work, 'ds-cp.calls'), 'utf8').trim().split('\n');
    assert.deepEqual(calls, [cps[0]!.script, cps[1]!.script]);
  });

  test('the VM template: APPTEMPLATE64 + NAME, DISK=[IMAGE_ID] per disk, no NAME/APP kept', async () => {
    const t = oned.template(result.vmtemplate[0]!);
    assert.equal(t?.name, 'web01-imported');
    assert.equal(t?.template.get('CPU'), '2');
    assert.equal(t?.template.get('MEMORY'), '1024');
    assert.deepEqual(
      t?.template.vectors('DISK').map((d) => Object.fromEntries(d)),
      result.image.map((id) => ({ IMAGE_ID: String(id) })),
    );
    assert.equal(t?.template.vectors('OS')[0]?.get('ARCH'), 'x86_64');
  });

  test('exporting again: image names get _0, the template name is taken → OCA "rolls back" with image.delete, which LOCKED images refuse', async () => {
    const vm = (await apps(oned)).find((a) => a.NAME === 'web01');
    const from = oned.calls.length;
    const again = await exportMarketApp({ endpoint: oned.endpoint, session: oned.adminSession, appId: Number(vm.ID), name: 'web01-imported', datastoreId: dsId });
    assert.deepEqual(again.image, []);
    assert.deepEqual(again.vmtemplate, []);
    assert.equal(again.errors.length, 1);
    assert.ok(again.errors[0] instanceof OcaError);
    assert.equal(again.errors[0]?.field, 'vmtemplate');
    assert.match(again.errors[0]!.message, /^\[one\.template\.allocate\] Error allocating a new virtual machine template\. NAME is already taken by TEMPLATE \d+\.$/);
    const later = oned.calls.slice(from);
    const deletes = later.filter((c) => c.method === 'one.image.delete');
    assert.equal(deletes.length, 2);
    assert.ok(deletes.every((d) => d.reply === 'failure' && /Image locked/.test(d.message ?? '')));
    const names = [...later.filter((c) => c.method === 'one.image.allocate')].map((c) => /NAME {5}= "([^"]+)"/.exec((c.params[1] as { value: string }).value)?.[1]);
    assert.deepEqual(names, ['web01-imported_0-disk0-0', 'web01-imported_0-disk1-1']);
    await oned.idle();
  });

  test('an IMAGE app exported alone; unknown app and missing disk app errors', async () => {
    const d1 = (await apps(oned)).find((a) => a.NAME === 'web01 disk1');
    const single = await exportMarketApp({ endpoint: oned.endpoint, session: oned.adminSession, appId: Number(d1.ID), name: 'single', datastoreId: dsId });
    assert.equal(single.image.length, 1);
    assert.equal(single.imageType, 'OS');
    assert.deepEqual(single.vmtemplate, []);
    await assert.rejects(
      exportMarketApp({ endpoint: oned.endpoint, session: oned.adminSession, appId: 999, name: 'x', datastoreId: dsId }),
      (e: unknown) => e instanceof OcaError && e.message === '[one.marketapp.info] Error getting marketplaceapp [999].' && e.errno === 1024,
    );
    writeFileSync(path.join(mktDir, 'apps', '30-broken.tmpl'), vmApp('broken', [['disk0', 'no such app']]));
    await oned.monitorMarket(marketId);
    const broken = (await apps(oned)).find((a) => a.NAME === 'broken');
    const r = await exportMarketApp({ endpoint: oned.endpoint, session: oned.adminSession, appId: Number(broken.ID), name: 'b', datastoreId: dsId });
    assert.deepEqual(r.errors.map((e) => [e.field, e.message]), [['vmtemplate', 'App `no such app` not found']]);
    rmSync(path.join(mktDir, 'apps', '30-broken.tmpl'));
    await oned.idle();
  });
});

describe('monitor cycles after the first', () => {
  test('a changed VERSION refreshes the app in place; a changed DESCRIPTION alone does not', async () => {
    const before = (await apps(oned)).find((a) => a.NAME === 'web01 disk0');
    writeFileSync(path.join(mktDir, 'apps', '10-disk0.tmpl'), imageApp('web01 disk0', path.join(srcDir, 'disk0.raw'), 2).replace('disk of web01 disk0', 'changed'));
    await oned.monitorMarket(marketId);
    assert.equal((await apps(oned)).find((a) => a.NAME === 'web01 disk0').DESCRIPTION, 'disk of web01 disk0');
    writeFileSync(path.join(mktDir, 'apps', '10-disk0.tmpl'), imageApp('web01 disk0', path.join(srcDir, 'disk0.raw'), 3, '2.0'));
    await oned.monitorMarket(marketId);
    const after = (await apps(oned)).find((a) => a.NAME === 'web01 disk0');
    assert.equal(after.ID, before.ID);
    assert.deepEqual([after.VERSION, after.SIZE], ['2.0', '3']);
  });

  test('an app the monitor no longer lists goes after MAX_MISSING_MONITORS (4 monitors in a row once seen)', async () => {
    const vmId = Number((await apps(oned)).find((a) => a.NAME === 'web01').ID);
    rmSync(path.join(mktDir, 'apps', '20-vm.tmpl'));
    for (let n = 1; n <= 3; n++) {
      const e = await oned.monitorMarket(marketId);
      assert.equal(e?.exitCode, 0);
      assert.ok(oned.marketApp(vmId), `still there after ${n} missing monitor(s)`);
    }
    await oned.monitorMarket(marketId);
    assert.equal(oned.marketApp(vmId), undefined);
    assert.ok(!oned.market(marketId)?.apps.has(vmId));
    const f = await fails(oned, 'one.marketapp.info', [i(vmId)]);
    assert.equal(f.code, 1024);
    assert.deepEqual((await apps(oned)).map((a) => a.NAME).sort(), ['web01 disk0', 'web01 disk1']);
  });

  test('a failing monitor keeps the apps and logs oned\'s MKP error', async () => {
    writeFileSync(path.join(mktDir, 'fail'), '');
    try {
      const e = await oned.monitorMarket(marketId);
      assert.equal(e?.exitCode, 1);
      assert.equal((await apps(oned)).length, 2);
      assert.ok(oned.onedLog.includes('[Z0][MKP][E]: Error monitoring marketplace 100: market unreachable'), oned.onedLog.join('\n'));
      assert.ok(oned.onedLog.includes('[MARKET MONITOR 100] ERROR: the catalog is unreachable'));
      assert.equal(oned.market(marketId)?.state, 0);
    } finally {
      rmSync(path.join(mktDir, 'fail'));
    }
  });

  test('a hook can answer for the market driver', async () => {
    oned.setMarketAction('monitor', () => ({ stdout: 'USED_MB=1\nFREE_MB=2\nTOTAL_MB=3\n' }));
    try {
      const e = await oned.monitorMarket(marketId);
      assert.equal(e?.hooked, true);
      assert.deepEqual([oned.market(marketId)?.totalMb, oned.market(marketId)?.freeMb], [3, 2]);
      // no APP lines: nothing counts as missing
      assert.equal((await apps(oned)).length, 2);
    } finally {
      oned.setMarketAction('monitor', null);
    }
  });
});

describe('deleting apps and marketplaces', () => {
  test('APP_ACTIONS with delete: the driver runs with the app + market in argv, the app goes when it answers', async () => {
    writeFileSync(path.join(delDir, 'apps', 'a.tmpl'), imageApp('del-app', '/nowhere', 1));
    writeFileSync(path.join(delDir, 'apps', 'b.tmpl'), vmApp('del-vm', [['disk0', 'del-app']]));
    const mid = (await ok(oned, 'one.market.allocate', [s('NAME="deleting"\nMARKET_MAD="delmkt"')])) as number;
    await oned.monitorMarket(mid);
    const list = await apps(oned);
    const app = list.find((a) => a.NAME === 'del-app');
    const vm = list.find((a) => a.NAME === 'del-vm');
    assert.equal(app.MARKETPLACE_ID, String(mid));
    const nonEmpty = await fails(oned, 'one.market.delete', [i(mid)]);
    assert.equal(nonEmpty.msg, `[one.market.delete] Cannot delete marketplace. marketplace  ${mid} is not empty.`);
    assert.equal(nonEmpty.code, 2048);

    assert.equal(await ok(oned, 'one.marketapp.delete', [i(Number(app.ID))]), Number(app.ID));
    assert.ok(!oned.market(mid)?.apps.has(Number(app.ID)), 'left the market at once');
    await oned.idle();
    assert.equal(oned.marketApp(Number(app.ID)), undefined);
    const del = oned.log.find((e) => e.kind === 'market' && e.action === 'delete');
    assert.equal(del?.argv[1], app.ID);
    assert.match(del?.payload ?? '', /^<MARKET_DRIVER_ACTION_DATA><MARKETPLACEAPP><ID>\d+<\/ID>.*<\/MARKETPLACEAPP><MARKETPLACE><ID>\d+<\/ID>.*<\/MARKETPLACE><\/MARKET_DRIVER_ACTION_DATA>$/s);
    assert.equal(readFileSync(path.join(delDir, 'delete.argv'), 'utf8').split('\n')[1], app.ID);

    // a VMTEMPLATE app never reaches the delete script
    rmSync(path.join(delDir, 'delete.argv'));
    await ok(oned, 'one.marketapp.delete', [i(Number(vm.ID))]);
    await oned.idle();
    assert.equal(oned.marketApp(Number(vm.ID)), undefined);
    assert.ok(!existsSync(path.join(delDir, 'delete.argv')));
    await ok(oned, 'one.market.delete', [i(mid)]);
    rmSync(path.join(delDir, 'apps'), { recursive: true });
  });

  test('one.market.update keeps MARKET_MAD and re-checks a new one; deleting a PUBLIC market takes its apps along', async () => {
    const f = await fails(oned, 'one.market.update', [i(marketId), s('MARKET_MAD="nope"'), i(1)]);
    assert.equal(f.msg, '[one.market.update] Cannot update template. MARKET_MAD_CONF named "nope" is not defined in oned.conf');
    assert.equal(f.code, 8192);
    await ok(oned, 'one.market.update', [i(marketId), s('NOTE="x"'), i(0)]);
    const t = parseDoc(await ok(oned, 'one.market.info', [i(marketId)])).MARKETPLACE.TEMPLATE;
    assert.deepEqual(t, { MARKET_MAD: 'fakemkt', NOTE: 'x' });
    const appIds = [...(oned.market(marketId)?.apps ?? [])];
    assert.ok(appIds.length > 0);
    await ok(oned, 'one.market.delete', [i(marketId)]);
    assert.ok(appIds.every((a) => oned.marketApp(a) === undefined));
    assert.equal(oned.market(marketId), undefined);
  });
});

describe('monitor timing: the timer of MarketPlaceManager and one.market.enable', () => {
  let dir: string;
  before(() => {
    dir = path.join(work, 'timing-drv');
    makeMarketDriver(dir);
    writeFileSync(path.join(dir, 'apps', 'a.tmpl'), imageApp('timing-app', '/nowhere', 1));
  });
  const monitorsOf = (o: Oned, id: number) => o.log.filter((e) => e.kind === 'market' && e.action === 'monitor' && e.argv[1] === String(id));
  const until = async (what: string, cond: () => boolean, ms: number): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  test('by default the first cycle comes 15 s after start, then one every MONITORING_INTERVAL_MARKET (600 s)', () => {
    assert.deepEqual([oned.sim.config.marketMonitorFirstCycleMs, oned.sim.config.marketMonitorIntervalMs], [15_000, 600_000]);
  });

  test('a market created ENABLED waits for a cycle: the first after marketMonitorFirstCycleMs, the next an interval later; DISABLED ones are skipped', async () => {
    const started = Date.now();
    const o = await startOned({ marketDrivers: { t: { dir } }, marketMonitorFirstCycleMs: 500, marketMonitorIntervalMs: 2000 });
    try {
      assert.match((await ok(o, 'one.system.config', [])) as string, /<MONITORING_INTERVAL_MARKET>2<\/MONITORING_INTERVAL_MARKET>/);
      const early = (await ok(o, 'one.market.allocate', [s('NAME="early"\nMARKET_MAD="t"')])) as number;
      await o.idle();
      assert.deepEqual(monitorsOf(o, early), []);
      await until('the first cycle', () => o.market(early)!.apps.size === 1, 3000);
      const first = monitorsOf(o, early)[0]!;
      assert.ok(first.startedAt - started >= 500, `first cycle ${first.startedAt - started} ms after start`);
      // the cycle tried every enabled market: the OpenNebula Public one (no script here), not the DISABLED Linux Containers
      assert.equal(monitorsOf(o, 0).length, 1);
      assert.ok(o.onedLog.some((l) => l.startsWith('[Z0][MKP][E]: Error monitoring marketplace 0: No such file or directory')), o.onedLog.join('\n'));
      assert.deepEqual(monitorsOf(o, 1), []);

      const late = (await ok(o, 'one.market.allocate', [s('NAME="late"\nMARKET_MAD="t"')])) as number;
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(monitorsOf(o, late), [], 'created after the first cycle: nothing until the next');
      await until('the second cycle', () => monitorsOf(o, late).length === 1, 3000);
      const second = monitorsOf(o, late)[0]!;
      assert.ok(second.startedAt - first.startedAt >= 1900, `second cycle ${second.startedAt - first.startedAt} ms after the first`);
      assert.equal(monitorsOf(o, early).length, 2);
    } finally {
      await o.stop();
    }
  });

  test('STATE="DISABLED" at allocate; enable(true) replies at once and the monitor follows without a cycle; enable of an enabled market does nothing; disable drops the apps', { timeout: 20_000 }, async () => {
    const o = await startOned({ marketDrivers: { t: { dir } } });
    try {
      const id = (await ok(o, 'one.market.allocate', [s('NAME="t"\nMARKET_MAD="t"\nSTATE="DISABLED"')])) as number;
      const doc = parseDoc(await ok(o, 'one.market.info', [i(id)])).MARKETPLACE;
      assert.deepEqual([doc.STATE, doc.TEMPLATE.STATE], ['1', undefined]);
      assert.equal(await o.monitorMarket(id), undefined, 'a cycle skips a DISABLED market');

      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      o.setMarketAction('monitor', async () => {
        await gate;
        return undefined; // then the script runs
      });
      const t0 = Date.now();
      assert.equal(await ok(o, 'one.market.enable', [i(id), b(true)]), id);
      assert.deepEqual([o.market(id)?.state, o.market(id)?.apps.size], [0, 0], 'the reply does not wait for the monitor');
      open();
      await until('the monitor after enable', () => o.market(id)!.apps.size === 1, 3000);
      assert.ok(Date.now() - t0 < 3000);
      assert.equal(monitorsOf(o, id).length, 1);
      assert.deepEqual(monitorsOf(o, 0), [], 'no cycle ran');
      o.setMarketAction('monitor', null);
      const firstIds = [...o.market(id)!.apps];

      await ok(o, 'one.market.enable', [i(id), b(true)]);
      await o.idle();
      assert.equal(monitorsOf(o, id).length, 1, 'enabling an enabled market runs no monitor');

      await ok(o, 'one.market.enable', [i(id), b(false)]);
      assert.equal(o.market(id)?.apps.size, 0);
      assert.equal(o.marketApp(firstIds[0]!), undefined);
      await ok(o, 'one.market.enable', [i(id), b(true)]);
      await o.idle();
      const again = [...o.market(id)!.apps];
      assert.equal(again.length, 1);
      assert.notDeepEqual(again, firstIds, 'listed again under new ids');
      assert.deepEqual(o.marketApp(again[0]!)?.name, 'timing-app');
      await assert.rejects(o.monitorMarket(12345), /does not exist/);
    } finally {
      await o.stop();
    }
  });
});
