import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatVcenterUrl, parseVcenterUrl, readCredentials, readDriverConfig, runDriver } from '../../lib/drivers/index.js';
import { readDriverCall } from '../../lib/drivers/action-call.js';
import { parseDriverActionData, withImageSource } from '../../lib/one/index.js';
import type { OneswapError } from '../../lib/errors/index.js';

test('vcenter:// URLs: parsed, percent-decoded, formatted back', () => {
  const r = parseVcenterUrl('vcenter://vc.example.com:8443/DC%201/prod/web%2F01?uuid=4213a3b1-0c2d-4e5f-8a9b-0123456789ab&disk=2');
  assert.deepEqual(r, { host: 'vc.example.com', port: 8443, datacenter: 'DC 1', vmPath: ['prod', 'web/01'], uuid: '4213a3b1-0c2d-4e5f-8a9b-0123456789ab', disk: 2 });
  assert.equal(formatVcenterUrl(r), 'vcenter://vc.example.com:8443/DC%201/prod/web%2F01?uuid=4213a3b1-0c2d-4e5f-8a9b-0123456789ab&disk=2');
  assert.equal(parseVcenterUrl('vcenter://vc/DC0/vm1?disk=0').port, 443);
  assert.equal(formatVcenterUrl({ host: 'vc', port: 443, datacenter: 'DC0', vmPath: ['vm1'], uuid: undefined, disk: 0 }), 'vcenter://vc/DC0/vm1?disk=0');
});

test('vcenter:// URLs: what is refused, and why', () => {
  assert.throws(() => parseVcenterUrl('vcenter://u:secret@vc/DC0/vm?disk=0'), (e: Error) => /must not carry credentials/.test(e.message) && !e.message.includes('secret'));
  assert.throws(() => parseVcenterUrl('vcenter://vc/DC0'), /no datacenter and VM path/);
  assert.throws(() => parseVcenterUrl('vcenter://vc/DC0/vm?disk=x'), /disk "x" is not a disk number/);
  assert.throws(() => parseVcenterUrl('vcenter://vc/DC0/vm?uuid=nope'), /not a UUID/);
  assert.throws(() => parseVcenterUrl('vcenter://vc/DC0/vm?disc=1'), /unknown parameter "disc"/);
  assert.throws(() => parseVcenterUrl('http://vc/DC0/vm?disk=1'), /scheme is not vcenter/);
});

test('credentials: per host (and host:port), TLS choice, permissions enforced', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-cred-'));
  try {
    const file = join(dir, 'vc.yaml');
    await writeFile(file, 'vc.example.com:\n  user: u@vsphere.local\n  password: "p: w#1"\n  thumbprint: "AA:BB"\n"vc.example.com:8443":\n  user: other\n  password: x\n  insecure: true\n', { mode: 0o600 });
    assert.deepEqual(await readCredentials(file, 'vc.example.com', 443), { user: 'u@vsphere.local', password: 'p: w#1', tls: { kind: 'thumbprint', thumbprint: 'AA:BB' } });
    assert.deepEqual((await readCredentials(file, 'vc.example.com', 8443)).tls, { kind: 'insecure' });
    await assert.rejects(readCredentials(file, 'other.example.com', 443), /no entry for other\.example\.com/);
    await chmod(file, 0o640);
    await assert.rejects(readCredentials(file, 'vc.example.com', 443), /can be read by other users \(mode 640\)/);
    await chmod(file, 0o600);
    await writeFile(file, 'vc:\n  user: u\n', { mode: 0o600 });
    await assert.rejects(readCredentials(file, 'vc', 443), /needs both user and password/);
    await writeFile(file, 'vc:\n  user: u\n  password: p\n  thumbprint: x\n  insecure: true\n');
    await assert.rejects(readCredentials(file, 'vc', 443), /more than one of thumbprint, ca and insecure/);
    await assert.rejects(readCredentials(join(dir, 'missing.yaml'), 'vc', 443), /cannot read the vCenter credentials file .*ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('settings: defaults without a file, values checked', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-cfg-'));
  try {
    const d = await readDriverConfig(join(dir, 'absent.yaml'));
    assert.equal(d.streams, 4);
    assert.equal(d.convert, true);
    assert.equal(d.progressIntervalMs, 5000);
    const file = join(dir, 'oneswap.yaml');
    await writeFile(file, 'streams: 8\nstate_dir: /srv/oneswap\nconvert: false\nprogress_interval: 2\n');
    const c = await readDriverConfig(file);
    assert.deepEqual([c.streams, c.stateDir, c.logDir, c.convert, c.progressIntervalMs], [8, '/srv/oneswap', '/srv/oneswap/logs', false, 2000]);
    await writeFile(file, 'streams: 0\n');
    await assert.rejects(readDriverConfig(file), /streams in .* must be a whole number from 1 to 64/);
    await writeFile(file, 'convert: maybe\n');
    await assert.rejects(readDriverConfig(file), /convert in .* must be true or false/);
    // How the driver reads disks: auto without a VDDK by default.
    assert.equal(d.transport, 'auto');
    assert.equal(d.vddkLibdir, undefined);
    await writeFile(file, 'transport: vddk\nvddk_libdir: /opt/vmware-vix-disklib-distrib\n');
    const v = await readDriverConfig(file);
    assert.deepEqual([v.transport, v.vddkLibdir], ['vddk', '/opt/vmware-vix-disklib-distrib']);
    await writeFile(file, 'transport: scp\n');
    await assert.rejects(readDriverConfig(file), /transport in .* must be one of auto, folder, lease, vddk, nfc, not "scp"/);
    await writeFile(file, 'vddk_libdir: 7\n');
    await assert.rejects(readDriverConfig(file), /vddk_libdir in .* must be a directory path/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('driver calls: the three argv conventions and the market one', async () => {
  const xml = '<DS_DRIVER_ACTION_DATA><IMAGE><PATH>vcenter://vc/DC0/vm?disk=0</PATH><SIZE></SIZE></IMAGE></DS_DRIVER_ACTION_DATA>';
  const b64 = Buffer.from(xml).toString('base64');
  const script = '/var/lib/one/remotes/datastore/oneswap/stat';
  const stdin = (s: string) => async () => s;
  for (const [args, input] of [[['3'], b64], [[b64, '3'], ''], [['-', '3'], `${b64}\n`]] as Array<[string[], string]>) {
    const call = await readDriverCall(script, args, stdin(input));
    assert.deepEqual([call.kind, call.action, call.id, call.xml], ['datastore', 'stat', '3', xml]);
  }
  const market = await readDriverCall('/var/lib/one/remotes/market/oneswap/monitor', [b64, '100'], stdin(''));
  assert.deepEqual([market.kind, market.action, market.id], ['market', 'monitor', '100']);
  await assert.rejects(readDriverCall('/tmp/x/stat', ['1'], stdin(b64)), /not a driver script/);
  await assert.rejects(readDriverCall(script, ['1'], stdin('bm90IHhtbA==')), /not base64-encoded XML/);
  const data = parseDriverActionData(xml);
  assert.equal(data.image?.path, 'vcenter://vc/DC0/vm?disk=0');
  assert.equal(data.image?.full, undefined, 'stat carries no whole image');
});

test('withImageSource: the IMAGE\'s SOURCE set (empty, CDATA or self-closed), nothing else changed', () => {
  const ds = '<DATASTORE><ID>100</ID><NAME>c</NAME><TEMPLATE><SOURCE>not this</SOURCE></TEMPLATE></DATASTORE>';
  for (const empty of ['<SOURCE/>', '<SOURCE><![CDATA[]]></SOURCE>', '<SOURCE></SOURCE>']) {
    const xml = `<DS_DRIVER_ACTION_DATA><IMAGE><ID>7</ID><NAME>x &lt;SOURCE&gt;</NAME>${empty}<PATH>vcenter://vc/DC0/vm?disk=0</PATH><TEMPLATE/></IMAGE>${ds}</DS_DRIVER_ACTION_DATA>`;
    const set = withImageSource(xml, 'one/one-7');
    assert.equal(set, xml.replace(empty, '<SOURCE>one/one-7</SOURCE>'));
    assert.equal(parseDriverActionData(set).image?.full?.source, 'one/one-7');
  }
  assert.throws(() => withImageSource(`<DS_DRIVER_ACTION_DATA>${ds}</DS_DRIVER_ACTION_DATA>`, 'one/one-7'), /no IMAGE\/SOURCE/);
});

test('credentials: owned by another user, not YAML, a CA file that is not there', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-cred-'));
  try {
    const file = join(dir, 'vc.yaml');
    await writeFile(file, 'vc:\n  user: u\n  password: p\n  ca: /nonexistent/ca.pem\n', { mode: 0o600 });
    await assert.rejects(readCredentials(file, 'vc', 443), /cannot read the CA file \/nonexistent\/ca\.pem named for vc in .*ENOENT/);
    await writeFile(file, 'vc: [unclosed\n');
    await assert.rejects(readCredentials(file, 'vc', 443), /is not valid YAML/);
    if (process.getuid?.() === 0) {
      await chown(file, 65534, 65534);
      await assert.rejects(readCredentials(file, 'vc', 443), (e: OneswapError) => {
        assert.match(e.message, /belongs to uid 65534, not to the user running OpenNebula's drivers \(uid 0\)/);
        assert.match(e.hint ?? '', /chown it to that user and chmod 600 it/);
        return true;
      });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('settings: a file that is not YAML', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-cfg-'));
  try {
    const file = join(dir, 'oneswap.yaml');
    await writeFile(file, 'streams: [4\n');
    await assert.rejects(readDriverConfig(file), /oneswap\.yaml is not valid YAML/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('runDriver: the market refuses uploads, accepts deletes, and a plain path without the stock fs (or, on Ceph, ceph) driver fails with one line', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-remotes-'));
  const run = async (script: string, xml: string): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    const code = await runDriver(join(dir, script), ['7'], { stdout: (t) => (out += t), stderr: (t) => (err += t), readStdin: async () => Buffer.from(xml).toString('base64') });
    return { code, out, err };
  };
  try {
    const market = '<MARKET_DRIVER_ACTION_DATA><MARKETPLACE><ID>100</ID><NAME>vc</NAME><TEMPLATE/></MARKETPLACE></MARKET_DRIVER_ACTION_DATA>';
    const upload = await run('market/oneswap/import', market);
    assert.notEqual(upload.code, 0);
    assert.equal(upload.err, 'the oneswap marketplace lists vCenter VMs; it does not take uploads\n');
    assert.equal((await run('market/oneswap/delete', market)).code, 0);
    const plain = await run('datastore/oneswap/mkfs', '<DS_DRIVER_ACTION_DATA><IMAGE><ID>7</ID><NAME>x</NAME></IMAGE></DS_DRIVER_ACTION_DATA>');
    assert.notEqual(plain.code, 0);
    assert.match(plain.err, /^the mkfs action needs OpenNebula's fs datastore driver at .*datastore\/fs\/mkfs, which is not there\n$/);
    // A datastore of RBD images (TM_MAD ceph) hands its actions to the stock ceph driver.
    const rbd = await run('datastore/oneswap/monitor', '<DS_DRIVER_ACTION_DATA><DATASTORE><ID>100</ID><NAME>c</NAME><DS_MAD>oneswap</DS_MAD><TM_MAD>ceph</TM_MAD><TEMPLATE/></DATASTORE></DS_DRIVER_ACTION_DATA>');
    assert.notEqual(rbd.code, 0);
    assert.match(rbd.err, /^the monitor action needs OpenNebula's ceph datastore driver at .*datastore\/ceph\/monitor, which is not there\n$/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
