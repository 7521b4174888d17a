// Files written whole: the old file or the new one, mode 0600, writes of one file in the order
// asked, no temporary file left behind whether the write succeeds or fails.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { updateFileAtomically, writeFileAtomically, writeFileAtomicallySync } from '../../lib/atomic-write/index.js';

async function inTemp(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-atomic-'));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('both forms: folders made (0700), the file private (0600) or at the mode given, nothing else left', () =>
  inTemp(async (dir) => {
    const a = join(dir, 'a', 'b', 'state.json');
    await writeFileAtomically(a, 'one\n');
    assert.equal(await readFile(a, 'utf8'), 'one\n');
    assert.equal((await stat(a)).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'a', 'b'))).mode & 0o777, 0o700);
    const s = join(dir, 's', 'status.json');
    writeFileAtomicallySync(s, 'two\n');
    assert.equal(await readFile(s, 'utf8'), 'two\n');
    assert.equal((await stat(s)).mode & 0o777, 0o600);
    writeFileAtomicallySync(s, 'three\n', 0o640);
    assert.equal(await readFile(s, 'utf8'), 'three\n');
    assert.equal((await stat(s)).mode & 0o777, 0o640);
    assert.deepEqual(await readdir(join(dir, 'a', 'b')), ['state.json']);
    assert.deepEqual(await readdir(join(dir, 's')), ['status.json']);
  }));

test('writes of one file asked at once all succeed and land in order (they share one temporary name)', () =>
  inTemp(async (dir) => {
    const f = join(dir, 'times.json');
    // A long body makes each write take several syscalls, so unqueued writes would interleave.
    const bodies = Array.from({ length: 20 }, (_, i) => `${String(i).repeat(100_000)}\n`);
    await Promise.all(bodies.map((b) => writeFileAtomically(f, b)));
    assert.equal(await readFile(f, 'utf8'), bodies[19]);
    assert.deepEqual(await readdir(dir), ['times.json']);
  }));

test('a failed write leaves the old file as it was and no temporary file; the next write goes on', () =>
  inTemp(async (dir) => {
    // A folder in the file's place: the temporary file is written, the rename fails.
    const f = join(dir, 'state.json');
    await mkdir(f);
    await writeFile(join(f, 'kept'), 'x');
    await assert.rejects(writeFileAtomically(f, 'new'), { code: 'EISDIR' });
    assert.throws(() => writeFileAtomicallySync(f, 'new'), { code: 'EISDIR' });
    assert.deepEqual((await readdir(dir)).sort(), ['state.json']);
    assert.deepEqual(await readdir(f), ['kept']);
    await rm(f, { recursive: true });
    await writeFileAtomically(f, 'after\n');
    assert.equal(await readFile(f, 'utf8'), 'after\n');
  }));

test('updates of one file read what the one before wrote: none lost', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-update-'));
  try {
    const file = join(dir, 'sub', 'count.json');
    await Promise.all(Array.from({ length: 20 }, () => updateFileAtomically(file, (text) => String(Number(text ?? '0') + 1))));
    assert.equal(await readFile(file, 'utf8'), '20');
    await updateFileAtomically(file, () => undefined);
    assert.equal(await readFile(file, 'utf8'), '20', 'undefined: left as it is');
    assert.deepEqual(await readdir(join(dir, 'sub')), ['count.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
