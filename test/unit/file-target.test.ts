// The raw file target (lib/output/file-target.ts): clearing a file an interrupted copy wrote.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clearFile } from '../../lib/output/file-target.js';
import { OneswapError } from '../../lib/errors/index.js';

test('clearing a file: what a copy wrote is dropped, the file is cut or grown to the disk\'s exact size', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-target-'));
  try {
    const path = join(dir, 'image');
    const h = await open(path, 'w');
    await h.truncate(8 << 20);
    await h.write(Buffer.alloc(1 << 20, 0xab), 0, 1 << 20, 3 << 20);
    await h.write(Buffer.alloc(4096, 0xcd), 0, 4096, (4 << 20) + 512);
    await h.close();
    await clearFile(path, (4 << 20) + 512);
    const s = await stat(path);
    assert.equal(s.size, (4 << 20) + 512, 'a larger file (a placeholder rounded up to MiB) is cut to the disk');
    assert.equal(s.blocks, 0, 'all holes');
    assert.ok((await readFile(path)).every((b) => b === 0));

    const small = join(dir, 'small');
    await writeFile(small, Buffer.alloc(4096, 1));
    await clearFile(small, 1 << 20);
    assert.equal((await stat(small)).size, 1 << 20, 'a short file grows to the disk');
    assert.ok((await readFile(small)).every((b) => b === 0));

    await assert.rejects(clearFile(join(dir, 'missing'), 10), (e) => e instanceof OneswapError && e.kind === 'not-found');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
