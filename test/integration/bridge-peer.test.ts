// The bridge host peer (test/peers/bridge): plain `ssh <alias>` through its wrapper reaches a private
// sshd on loopback as the bridge user, by key only; root, passwords and other keys are refused; a
// refused alias fails at once; sessions are recorded; grant() opens exactly one directory and stop()
// undoes it and leaves no sshd behind.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BRIDGE_USER, bridgeSkip, startBridge, type Bridge } from '../peers/bridge/index.js';

const skip = bridgeSkip();

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(false);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('bridge host peer', { skip }, () => {
  let bridge: Bridge;
  let work: string;

  before(async () => {
    bridge = await startBridge({ hosts: ['bridge1', 'bridge2'], refusedHosts: ['bridge-down'] });
    work = await mkdtemp(join(tmpdir(), 'oneswap-bridge-test-'));
  });
  after(async () => {
    await bridge?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('`ssh <alias>` from the wrapper dir in PATH logs in as the bridge user; `bash -s` reads the script from stdin; the alias is recorded', async () => {
    const r = spawnSync('ssh', ['bridge2', 'bash', '-s'], { input: 'id -un; echo "$HOME"; echo err >&2; exit 3\n', encoding: 'utf8', env: bridge.env() });
    assert.equal(r.status, 3);
    assert.equal(r.stdout, `${BRIDGE_USER}\n/var/lib/oneswap-bridge\n`);
    assert.equal(r.stderr, 'err\n', 'nothing but the command\'s own stderr (no banner, no host key warning)');
    // like any ssh: the arguments are joined and run by the login shell
    const q = spawnSync('ssh', ['bridge1', 'printf', "'%s\\n'", 'a', "'b c'"], { encoding: 'utf8', env: bridge.env() });
    assert.equal(q.stdout, 'a\nb c\n');
    const sessions = await bridge.sessions();
    assert.deepEqual(sessions.slice(-2), [
      { host: 'bridge2', command: 'bash -s', script: 'id -un; echo "$HOME"; echo err >&2; exit 3\n' },
      { host: 'bridge1', command: "printf '%s\\n' a 'b c'" },
    ]);
    assert.match(await readFile(bridge.sshdLog, 'utf8'), new RegExp(`Accepted publickey for ${BRIDGE_USER} from 127\\.0\\.0\\.1`));
  });

  it('refuses root, passwords and other keys; a refused alias fails at once; nothing listens beyond loopback', async () => {
    const root = spawnSync('ssh', ['-o', 'User=root', 'bridge1', 'true'], { encoding: 'utf8', env: bridge.env() });
    assert.equal(root.status, 255);
    assert.match(root.stderr, /Permission denied \(publickey\)/);
    const pw = spawnSync('ssh', ['-o', 'PreferredAuthentications=password,keyboard-interactive', 'bridge1', 'true'], { encoding: 'utf8', env: bridge.env() });
    assert.equal(pw.status, 255);
    assert.match(pw.stderr, /Permission denied \(publickey\)/);
    const other = join(work, 'other_key');
    assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]).status, 0);
    const wrongKey = spawnSync('ssh', ['-o', `IdentityFile=${other}`, '-o', 'IdentitiesOnly=yes', '-F', '/dev/null', '-o', `UserKnownHostsFile=${join(bridge.dir, 'known_hosts')}`, '-o', 'BatchMode=yes', '-p', String(bridge.port), `${BRIDGE_USER}@127.0.0.1`, 'true'], { encoding: 'utf8' });
    assert.equal(wrongKey.status, 255);

    const t0 = Date.now();
    const down = await bridge.ssh('bridge-down', 'true');
    assert.equal(down.code, 255);
    assert.match(down.stderr, /^ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused\r?\n$/);
    assert.ok(Date.now() - t0 < 3000);

    const external = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal);
    if (external) assert.equal(await connects(external.address, bridge.port), false, `sshd must not answer on ${external.address}`);
    assert.equal(await connects('127.0.0.1', bridge.port), true);
  });

  it('grant(): the bridge user may write a granted directory, not its unlisted parent; giveFile() is the user\'s alone', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'oneswap-bridge-grant-'));
    const dir = join(parent, 'ds');
    await mkdir(dir);
    await writeFile(join(parent, 'secret'), 'no', { mode: 0o600 });
    try {
      const before = await bridge.ssh('bridge1', `touch ${dir}/f`);
      assert.notEqual(before.code, 0);
      await bridge.grant(dir, 'rw');
      assert.equal((await bridge.ssh('bridge1', `touch ${dir}/f && ls ${dir}`)).stdout, 'f\n');
      assert.notEqual((await bridge.ssh('bridge1', `ls ${parent}`)).code, 0, 'the parent is traversable, not listable');
      // the parent is traversable now: a file there is kept from the bridge user by its own mode only
      assert.notEqual((await bridge.ssh('bridge1', `cat ${parent}/secret`)).code, 0);
      assert.equal((await stat(join(dir, 'f'))).uid, bridge.uid);

      const key = await bridge.giveFile('k', 'secret\n');
      const st = await stat(key);
      assert.deepEqual([st.uid, st.mode & 0o777], [bridge.uid, 0o600]);
      assert.equal((await bridge.ssh('bridge1', `cat ${key}`)).stdout, 'secret\n');
      const staging = await stat(bridge.stagingDir);
      assert.deepEqual([staging.uid, staging.mode & 0o777], [bridge.uid, 0o700]);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });

  it('stop() ends sshd, restores the modes grant() changed and removes the directory', async () => {
    const b = await startBridge();
    const parent = await mkdtemp(join(tmpdir(), 'oneswap-bridge-undo-'));
    try {
      const modeBefore = (await stat(parent)).mode & 0o777;
      await b.grant(parent, 'r');
      assert.notEqual((await stat(parent)).mode & 0o777, modeBefore);
      const port = b.port;
      await b.stop();
      assert.equal((await stat(parent)).mode & 0o777, modeBefore);
      assert.equal(existsSync(b.dir), false);
      assert.equal(await connects('127.0.0.1', port), false);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });
});
