// The private Ceph configuration an RBD target is reached through (no Ceph needed): the datastore's
// conf plus a section for the user naming CEPH_KEY, private files, settings that win over the
// datastore's own, and qemu's reasons for a failure read without the secrets around them; and the
// same made on a bridge host (an ssh stand-in here).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OneswapError } from '../../lib/errors/index.js';
import { openRbdAccess, privateConf } from '../../lib/output/rbd-access.js';
import { qemuNbdReason } from '../../lib/output/qemu-nbd.js';
import { qemuImgReason } from '../../lib/output/qemu-img.js';
import { withTempDir } from '../support/temp-dir.js';

const DATASTORE_CONF = `[global]
mon host = [v2:10.0.0.1:3300,v1:10.0.0.1:6789]
auth client required = cephx

[client]
keyring = /etc/ceph/ceph.client.admin.keyring
client mount timeout = 300

[client.libvirt]
rados osd op timeout = 0
`;
const KEY = 'AQBSdFhfAAAAABAAmdBMd7vVoXuE6fRzUr8bXg==';

test('the private conf is the datastore conf plus the user section, 0600 in a 0700 directory, named like the original', async () => {
  await withTempDir('oneswap-rbd-access-', async (dir) => {
    const conf = join(dir, 'ceph.conf');
    const keyring = join(dir, 'ceph.client.libvirt.keyring');
    await writeFile(conf, DATASTORE_CONF);
    await writeFile(keyring, `[client.libvirt]\n\tkey = ${KEY}\n`, { mode: 0o600 });
    const access = await openRbdAccess({ pool: 'one', image: 'one-12', user: 'client.libvirt', conf, keyfile: keyring }, { connectSeconds: 7, operationSeconds: 9 });
    try {
      assert.equal(access.name, 'rbd one/one-12');
      assert.equal(access.user, 'libvirt');
      assert.equal((await stat(access.conf)).mode & 0o777, 0o600);
      assert.equal((await stat(dirname(access.conf))).mode & 0o777, 0o700);
      assert.equal(access.conf.endsWith('/ceph.conf'), true, 'librados takes the cluster name from the file name');
      const text = await readFile(access.conf, 'utf8');
      assert.ok(text.startsWith(DATASTORE_CONF), 'the datastore settings come first');
      assert.match(text, new RegExp(`\\[client\\.libvirt\\]\\nkeyring = ${keyring}\\nclient mount timeout = 7\\nrados mon op timeout = 7\\nrados osd op timeout = 9\\n$`));
      assert.ok(!text.includes(KEY), 'the key stays in its own file');
      assert.deepEqual(JSON.parse(access.qemu.filename.slice('json:'.length)), {
        driver: 'raw',
        file: { driver: 'rbd', pool: 'one', image: 'one-12', user: 'libvirt', conf: access.conf },
      });
      assert.equal(access.qemu.format, 'raw');

      // What librados will read: ours wins over [client], [global] and the datastore's own [client.libvirt].
      const cephConf = (key: string): string | undefined => {
        const r = spawnSync('ceph-conf', ['-c', access.conf, '--name', 'client.libvirt', key], { encoding: 'utf8' });
        return r.status === 0 ? r.stdout.trim() : undefined;
      };
      if (spawnSync('ceph-conf', ['--version']).status === 0) {
        assert.equal(cephConf('keyring'), keyring);
        assert.equal(cephConf('client_mount_timeout'), '7');
        assert.equal(cephConf('rados_osd_op_timeout'), '9');
        assert.equal(cephConf('mon_host'), '[v2:10.0.0.1:3300,v1:10.0.0.1:6789]');
      }
    } finally {
      await access.dispose();
      await access.dispose();
    }
    await assert.rejects(stat(dirname(access.conf)), /ENOENT/);
  });
});

test('CEPH_KEY holding the bare key is a keyfile; no CEPH_KEY leaves the key to the conf', async () => {
  await withTempDir('oneswap-rbd-access-', async (dir) => {
    const conf = join(dir, 'other.conf');
    const keyfile = join(dir, 'libvirt.key');
    await writeFile(conf, DATASTORE_CONF);
    await writeFile(keyfile, `${KEY}\n`, { mode: 0o600 });
    const a = await openRbdAccess({ pool: 'p', image: 'i', user: 'libvirt', conf, keyfile });
    const b = await openRbdAccess({ pool: 'p', image: 'i', conf });
    try {
      assert.match(await readFile(a.conf, 'utf8'), new RegExp(`\\[client\\.libvirt\\]\\nkeyfile = ${keyfile}\\n`));
      assert.equal(a.conf.endsWith('/other.conf'), true);
      const own = await readFile(b.conf, 'utf8');
      assert.equal(b.user, 'admin');
      assert.match(own, /\[client\.admin\]\nclient mount timeout = 30\nrados mon op timeout = 30\nrados osd op timeout = 120\n$/);
    } finally {
      await Promise.all([a.dispose(), b.dispose()]);
    }
  });
});

test('a missing conf or key file, or a user name that is not one, is a usage error naming it', async () => {
  await withTempDir('oneswap-rbd-access-', async (dir) => {
    const conf = join(dir, 'ceph.conf');
    await writeFile(conf, DATASTORE_CONF);
    const usage = (text: RegExp) => (err: unknown) => err instanceof OneswapError && err.kind === 'usage' && text.test(err.message);
    await assert.rejects(openRbdAccess({ pool: 'one', image: 'x', conf: join(dir, 'nope.conf') }), usage(/Ceph configuration .*nope\.conf does not exist, needed for rbd one\/x/));
    await assert.rejects(openRbdAccess({ pool: 'one', image: 'x', conf, keyfile: join(dir, 'nope.key') }), usage(/Ceph key file .*nope\.key does not exist/));
    await assert.rejects(openRbdAccess({ pool: 'one', image: 'x', conf, user: 'a]\nkeyring = /x' }), usage(/is not a Ceph user name/));
  });
});

test('privateConf keeps the datastore text as it is and ends it before its own section', () => {
  const text = privateConf('[global]\nmon host = 1.2.3.4', 'u', { keyfile: '/k' }, {});
  assert.equal(text.split('\n').slice(0, 3).join('\n'), '[global]\nmon host = 1.2.3.4\n');
  assert.match(text, /\n\[client\.u\]\nkeyfile = \/k\n/);
});

test("qemu's reasons are read without the options it echoes or the library lines around them", () => {
  const nbd = [
    "2026-12-07T01:22:20.815+0000 7f10f32220c0 -1 auth: failed to decode key 'AQBwrong=='",
    "qemu-nbd: Failed to blk_new_open 'json:{\"driver\":\"raw\",\"file\":{\"driver\":\"rbd\",\"pool\":\"one\",\"image\":\"x\",\"user\":\"admin\",\"conf\":\"/tmp/c\"}}': error connecting: Invalid argument",
    '',
  ].join('\n');
  assert.equal(qemuNbdReason(nbd), 'error connecting: Invalid argument');
  assert.equal(qemuNbdReason('qemu-nbd: Failed to blk_new_open \'f.qcow2\': Failed to get "write" lock\nIs another process using the image [f.qcow2]?\n'), 'Failed to get "write" lock');
  assert.equal(qemuNbdReason('qemu-nbd: Failed to bind socket to /x: Permission denied\n'), 'Failed to bind socket to /x: Permission denied');
  assert.equal(qemuNbdReason('some library noise\n'), undefined);
  assert.equal(
    qemuImgReason("qemu-img: Could not open 'json:{\"driver\":\"raw\"}': error reading header from img: Connection timed out\n"),
    'error reading header from img: Connection timed out',
  );
  assert.equal(qemuImgReason("qemu-img: Could not open 'x.qcow2': Could not open 'x.qcow2': No such file or directory"), "Could not open 'x.qcow2': No such file or directory");
});

test('on a bridge host (an ssh stand-in running the scripts here): the same private conf, written there in a 0700 mktemp directory; only the key file\'s section headers come back', async () => {
  await withTempDir('oneswap-rbd-access-', async (dir) => {
    const bin = join(dir, 'bin');
    await mkdir(bin);
    // ssh -o BatchMode=yes HOST 'bash -s': the script on stdin, what it prints kept to look at.
    await writeFile(join(bin, 'ssh'), `#!/bin/bash\nset -o pipefail\necho "$3" >> ${dir}/hosts\nbash -s | tee -a ${dir}/out\n`, { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      const conf = join(dir, 'ceph.conf');
      const keyring = join(dir, 'ceph.client.libvirt.keyring');
      const bare = join(dir, 'libvirt.key');
      await writeFile(conf, DATASTORE_CONF);
      await writeFile(keyring, `[client.libvirt]\n\tkey = ${KEY}\n`, { mode: 0o600 });
      await writeFile(bare, `${KEY}\n`, { mode: 0o600 });
      const timeouts = { connectSeconds: 7, operationSeconds: 9 };
      const here = await openRbdAccess({ pool: 'one', image: 'one-12', user: 'libvirt', conf, keyfile: keyring }, timeouts);
      const there = await openRbdAccess({ pool: 'one', image: 'one-12', user: 'libvirt', conf, keyfile: keyring, host: 'ceph-node1' }, timeouts);
      const bareThere = await openRbdAccess({ pool: 'one', image: 'one-12', user: 'libvirt', conf, keyfile: bare, host: 'ceph-node1' });
      try {
        assert.notEqual(there.conf, here.conf);
        assert.equal(await readFile(there.conf, 'utf8'), await readFile(here.conf, 'utf8'), 'the same text as the private conf made here');
        assert.equal((await stat(there.conf)).mode & 0o777, 0o600);
        assert.equal((await stat(dirname(there.conf))).mode & 0o777, 0o700);
        assert.match(dirname(there.conf), /\/oneswap-rbd-\w{10}$/);
        assert.equal(there.conf.endsWith('/ceph.conf'), true);
        assert.equal(JSON.parse(there.qemu.filename.slice('json:'.length)).file.conf, there.conf);
        assert.match(await readFile(bareThere.conf, 'utf8'), new RegExp(`\\[client\\.libvirt\\]\\nkeyfile = ${bare}\\n`));
        assert.ok(!(await readFile(join(dir, 'out'), 'utf8')).includes(KEY), 'the key never leaves the bridge host');
      } finally {
        await Promise.all([here.dispose(), there.dispose(), bareThere.dispose()]);
      }
      await assert.rejects(stat(dirname(there.conf)), /ENOENT/);
      await assert.rejects(stat(dirname(bareThere.conf)), /ENOENT/);
      assert.deepEqual((await readFile(join(dir, 'hosts'), 'utf8')).trim().split('\n'), Array(6).fill('ceph-node1'), 'read, write and remove, each over ssh to the host');

      const usage = (text: RegExp) => (err: unknown) => err instanceof OneswapError && err.kind === 'usage' && text.test(err.message);
      await assert.rejects(
        openRbdAccess({ pool: 'one', image: 'x', conf: join(dir, 'nope.conf'), host: 'ceph-node1' }),
        usage(/^the Ceph configuration \S+nope\.conf does not exist on the bridge host ceph-node1, needed for rbd one\/x$/),
      );
      await assert.rejects(
        openRbdAccess({ pool: 'one', image: 'x', conf, keyfile: join(dir, 'nope.key'), host: 'ceph-node1' }),
        usage(/^the Ceph key file \S+nope\.key does not exist on the bridge host ceph-node1, needed for rbd one\/x$/),
      );
    } finally {
      process.env.PATH = path;
    }
  });
});
