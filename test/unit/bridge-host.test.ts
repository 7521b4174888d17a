// The work oneswap does on a BRIDGE_LIST host, against a stand-in `ssh` first in PATH that runs
// `bash -s` here: how a host is picked, ssh's own failure told apart from the script's, qemu-img
// missing there, and the image file a datastore driver's cp makes there (claimed, never
// overwritten, removed on request). The real sshd and a bridge user are the integration tests'.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { OneswapError } from '../../lib/errors/index.js';
import { bridgeHostFor, lastLine, onBridge, shellQuote } from '../../lib/output/bridge-host.js';
import { createImageFile } from '../../lib/output/datastore-file.js';
import { qemuImg } from '../../lib/output/qemu-img.js';

const MiB = 1024 * 1024;

describe('work on a bridge host', () => {
  let dir: string;
  let empty: string;
  const savedPath = process.env.PATH;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oneswap-bridge-unit-'));
    empty = join(dir, 'empty-path');
    await execa('mkdir', [empty]);
    // ssh -o BatchMode=yes HOST 'bash -s': host "down" is unreachable (ssh exits 255), host
    // "bare" has nothing on PATH but bash's builtins, any other runs the script here.
    const ssh = join(dir, 'ssh');
    await writeFile(
      ssh,
      [
        '#!/bin/bash',
        'host=$3',
        'case $host in',
        '  down) echo "ssh: connect to host down port 22: Connection refused" >&2; exit 255 ;;',
        `  bare) exec env PATH=${empty} /bin/bash -s ;;`,
        '  *) exec /bin/bash -s ;;',
        'esac',
        '',
      ].join('\n'),
    );
    await chmod(ssh, 0o755);
    process.env.PATH = `${dir}:${savedPath ?? ''}`;
  });

  after(async () => {
    process.env.PATH = savedPath;
    await rm(dir, { recursive: true, force: true });
  });

  test('the host of an image is BRIDGE_LIST[id % n], as the stock drivers pick it', () => {
    assert.equal(bridgeHostFor(['a', 'b', 'c'], 7), 'b');
    assert.equal(bridgeHostFor(['a', 'b', 'c'], 9), 'a');
    assert.equal(bridgeHostFor(['only'], 12), 'only');
    assert.throws(() => bridgeHostFor([], 1), (e: unknown) => e instanceof OneswapError && e.kind === 'internal');
  });

  test('a word survives the shell whatever it holds', async () => {
    for (const word of ["it's", 'a b', '$(touch /x)', '`x`', '"q"', 'back\\slash', '', "'"]) {
      const r = await onBridge('h', `printf %s ${shellQuote(word)}`);
      assert.deepEqual([r.code, r.stdout], [0, word]);
    }
  });

  test("the script's exit code and output are the caller's; ssh's 255 is a connection error naming the host", async () => {
    const r = await onBridge('h', 'echo out; echo "first" >&2; echo "the reason" >&2; exit 7');
    assert.deepEqual([r.code, r.stdout, lastLine(r.stderr)], [7, 'out', 'the reason']);
    await assert.rejects(onBridge('down', 'true'), (e: unknown) => {
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, 'connection');
      assert.equal(e.message, 'cannot reach the bridge host down over ssh: ssh: connect to host down port 22: Connection refused');
      assert.match(e.hint ?? '', /ssh down/);
      return true;
    });
  });

  test('qemu-img missing on the bridge host: a usage error naming the host and the fix', async () => {
    await assert.rejects(qemuImg(['info', '/nonexistent'], { host: 'bare', explain: (r) => new Error(r) }), (e: unknown) => {
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, 'usage');
      assert.equal(e.message, 'qemu-img is not installed on the bridge host bare');
      assert.match(e.hint ?? '', /install\.sh --bridge/);
      return true;
    });
    // Its own failure is qemu-img's reason, as here.
    await assert.rejects(qemuImg(['info', join(dir, 'nonexistent')], { host: 'h', explain: (r) => new Error(`explained: ${r}`) }), /^Error: explained: Could not open '[^']*nonexistent': No such file or directory$/);
  });

  test('the image file a cp makes on the bridge host: raw of the exact size, or qcow2; a name already taken is never overwritten', async () => {
    const base = join(dir, 'datastores', '101');
    const raw = await createImageFile({ basePath: `${base}//`, imageId: 5, capacity: 3 * MiB + 512, format: 'raw', host: 'h' });
    assert.match(raw.path, new RegExp(`^${base}/[0-9a-f]{32}$`));
    assert.equal((await stat(raw.path)).size, 3 * MiB + 512);
    assert.equal((await stat(raw.path)).blocks, 0, 'sparse: nothing allocated');

    const qcow = await createImageFile({ basePath: base, imageId: 6, capacity: 5 * MiB, format: 'qcow2', host: 'h' });
    const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', qcow.path])).stdout) as { format: string; 'virtual-size': number; 'cluster-size': number };
    assert.deepEqual([info.format, info['virtual-size'], info['cluster-size']], ['qcow2', 5 * MiB, 64 * 1024]);

    // The name comes from the time and the id: one already there (this second's, the next's) is
    // refused as a conflict and left as it was.
    const now = Math.floor(Date.now() / 1000);
    const names = [now, now + 1].map((t) => join(base, createHash('md5').update(`${t}:7`).digest('hex')));
    for (const n of names) await writeFile(n, 'first');
    await assert.rejects(createImageFile({ basePath: base, imageId: 7, capacity: MiB, format: 'raw', host: 'h' }), (e: unknown) => e instanceof OneswapError && e.kind === 'conflict');
    for (const n of names) assert.equal((await stat(n)).size, 'first'.length, 'the file that was there is as it was');

    await raw.remove();
    await qcow.remove();
    await assert.rejects(stat(raw.path), /ENOENT/);
    await assert.rejects(stat(qcow.path), /ENOENT/);
  });
});
