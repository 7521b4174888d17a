// An image on a BRIDGE_LIST host written from here: qemu-nbd runs on the bridge host over ssh (as
// the bridge user, the way OpenNebula's drivers reach it) and its socket is forwarded to ours.
// The bridge is the loopback sshd of test/peers/bridge.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chown, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { bridgeSkip, startBridge, type Bridge } from '../peers/bridge/index.js';
import { openQcow2Writer } from '../../lib/output/index.js';
import { OneswapError } from '../../lib/errors/index.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('an image on a bridge host, written through qemu-nbd over ssh', { skip: bridgeSkip() }, () => {
  let bridge: Bridge;
  let dir: string;
  let prevPath: string | undefined;

  before(async () => {
    bridge = await startBridge({ hosts: ['bridge1'], refusedHosts: ['bridge-down'] });
    // The product runs plain `ssh <host>`: the peer's wrapper first in PATH.
    prevPath = process.env.PATH;
    process.env.PATH = bridge.env().PATH;
    dir = await mkdtemp('/var/tmp/oneswap-bridge-target-');
    await bridge.grant(dir, 'rw');
  });

  after(async () => {
    process.env.PATH = prevPath;
    await bridge?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a qcow2 file on the bridge host takes the data, zeros deallocate, and nothing is left running there', async () => {
    const file = join(dir, 'disk.qcow2');
    const size = 32 * MiB + 4096;
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(size)]);
    await chown(file, bridge.uid, bridge.gid);
    const source = Buffer.alloc(size);
    randomBytes(3 * MiB).copy(source, 5 * MiB);
    randomBytes(4096).copy(source, size - 4096);
    const w = await openQcow2Writer(file, size, { host: 'bridge1' });
    try {
      await w.write(Buffer.alloc(MiB, 0x55), 20 * MiB);
      await w.write(source.subarray(5 * MiB, 8 * MiB), 5 * MiB);
      await w.write(source.subarray(size - 4096), size - 4096);
      await w.zero([{ start: 20 * MiB, length: MiB }]);
      await w.flush();
    } finally {
      await w.close();
    }
    const raw = join(dir, 'back.raw');
    await execa('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, raw]);
    assert.equal(sha(await readFile(raw)), sha(source));
    const sessions = await bridge.sessions();
    assert.ok(sessions.some((s) => s.host === 'bridge1' && /qemu-nbd .*disk\.qcow2/.test(s.command)), 'qemu-nbd ran on the bridge host');
    // The bridge user's qemu-nbd is gone, and so is its private directory.
    const { stdout } = await execa('pgrep', ['-u', bridge.user, '-f', 'qemu-nbd'], { reject: false });
    assert.equal(stdout.trim(), '');
    assert.deepEqual((await readdir('/tmp')).filter((f) => f.startsWith('oneswap-nbd-')), []);
  });

  test('a bridge host that is down, and a file the bridge host lacks: one-line errors that say which host', async () => {
    const file = join(dir, 'missing.qcow2');
    await assert.rejects(openQcow2Writer(file, MiB, { host: 'bridge-down' }), (e) => e instanceof OneswapError && e.kind === 'connection' && /bridge host bridge-down/.test(e.message));
    await assert.rejects(openQcow2Writer(file, MiB, { host: 'bridge1' }), (e) => e instanceof OneswapError && e.kind === 'not-found' && /missing\.qcow2/.test(e.message));
  });
});
