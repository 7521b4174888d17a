import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, truncate, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { OneswapError } from '../../lib/errors/index.js';
import { findMember, readTarIndex, type TarMember } from '../../lib/input/tar-index.js';
import { parseManifest } from '../../lib/input/manifest.js';
import { withTempDir } from '../support/temp-dir.js';

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  return withTempDir('oneswap-tar-', fn);
}

/** Bytes of a member, read where the index says they are. */
async function memberBytes(m: TarMember): Promise<Buffer> {
  const fh = await open(m.path, 'r');
  try {
    const buf = Buffer.alloc(m.size);
    await fh.read(buf, 0, m.size, m.offset);
    return buf;
  } finally {
    await fh.close();
  }
}

function pseudoRandom(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** A hand-made tar header (ustar), for what GNU tar will not write. */
function header(name: string, size: number | Buffer, opts: { type?: string; magic?: 'ustar' | 'gnu'; badChecksum?: boolean } = {}): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  if (Buffer.isBuffer(size)) size.copy(h, 124);
  else h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write(opts.type ?? '0', 156, 'latin1');
  if (opts.magic === 'gnu') h.write('ustar  \0', 257, 'latin1');
  else h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  if (opts.badChecksum) sum += 1;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

const END = Buffer.alloc(1024);

function expectData(re: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof OneswapError, `not a OneswapError: ${String(err)}`);
    assert.equal(err.kind, 'data', err.message);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  };
}

for (const format of ['ustar', 'gnu', 'pax', 'v7'] as const) {
  test(`GNU tar --format=${format}: members, offsets and sizes, no unpacking`, async () => {
    await withDir(async (dir) => {
      const src = join(dir, 'src');
      await mkdir(join(src, 'sub'), { recursive: true });
      const files: Record<string, Buffer> = {
        'vm.ovf': Buffer.from('<Envelope/>\n'),
        'vm.mf': Buffer.from('SHA256(vm.ovf)= 00\n'),
        'disk1.vmdk': pseudoRandom(70_000, 1),
        'empty.txt': Buffer.alloc(0),
        'exact.bin': pseudoRandom(1024, 2),
        'sub/inner.bin': pseudoRandom(513, 3),
      };
      // ustar splits a long name into prefix + name; gnu uses an 'L' member; pax a 'path' record.
      if (format !== 'v7') files[`sub/${'a'.repeat(60)}/${'b'.repeat(80)}.vmdk`] = pseudoRandom(3000, 4);
      for (const [name, data] of Object.entries(files)) {
        await mkdir(join(src, name, '..'), { recursive: true });
        await writeFile(join(src, name), data);
      }
      const tar = join(dir, 'x.ova');
      execFileSync('tar', [`--format=${format}`, '-cf', tar, '-C', src, ...Object.keys(files)]);
      const members = await readTarIndex(tar);
      for (const [name, data] of Object.entries(files)) {
        const m = findMember(members, name);
        assert.ok(m, `member ${name} found`);
        assert.equal(m.type, 'file');
        assert.equal(m.path, tar);
        assert.equal(m.size, data.length);
        assert.equal(m.offset % 512, 0);
        assert.deepEqual(await memberBytes(m), data, name);
      }
      assert.equal(findMember(members, './vm.ovf')?.name, 'vm.ovf');
      assert.equal(findMember(members, 'missing.vmdk'), undefined);
    });
  });
}

test('directories, "./" names, links and an archive without end blocks', async () => {
  await withDir(async (dir) => {
    const src = join(dir, 'src');
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd', 'f.bin'), pseudoRandom(777, 5));
    execFileSync('ln', ['-s', 'f.bin', join(src, 'd', 'link')]);
    const tar = join(dir, 'x.tar');
    execFileSync('tar', ['--format=gnu', '-cf', tar, '-C', src, '.']);
    const members = await readTarIndex(tar);
    assert.equal(findMember(members, 'd')?.type, 'directory');
    assert.equal(findMember(members, 'd/link')?.type, 'other');
    const f = findMember(members, 'd/f.bin')!;
    assert.deepEqual(await memberBytes(f), pseudoRandom(777, 5));

    // Cut right after the last member's data (no padding, no end blocks): still complete.
    const bytes = await readFile(tar);
    const last = members[members.length - 1]!;
    const cut = join(dir, 'cut.tar');
    await writeFile(cut, bytes.subarray(0, last.offset + last.size));
    assert.equal((await readTarIndex(cut)).length, members.length);
  });
});

test('GNU base-256 and pax sizes for members of 8 GiB and more (sparse test file)', async () => {
  await withDir(async (dir) => {
    const big = 9 * 1024 ** 3 + 123;
    const size256 = Buffer.alloc(12);
    size256[0] = 0x80;
    size256.writeUIntBE(big, 6, 6);
    const first = Buffer.concat([header('small.txt', 5), padded(Buffer.from('hello'))]);
    const gnu = join(dir, 'gnu.tar');
    await writeFile(gnu, Buffer.concat([first, header('disk.vmdk', size256, { magic: 'gnu' })]));
    const dataAt = first.length + 512;
    await truncate(gnu, dataAt + Math.ceil(big / 512) * 512);
    await writeFile(gnu, END, { flag: 'a' });
    const m = findMember(await readTarIndex(gnu), 'disk.vmdk')!;
    assert.deepEqual([m.offset, m.size], [dataAt, big]);

    // pax: the size record overrides the header's (GNU tar writes 0 there).
    const rec = (k: string, v: string): string => {
      const body = ` ${k}=${v}\n`;
      let n = body.length + 1;
      while (String(n).length + body.length !== n) n++;
      return `${n}${body}`;
    };
    const pax = Buffer.from(rec('size', String(big)) + rec('path', 'dir/disk.vmdk') + rec('mtime', '1.5'));
    const paxTar = join(dir, 'pax.tar');
    const head = Buffer.concat([header('PaxHeaders/disk', pax.length, { type: 'x' }), padded(pax), header('disk', 0)]);
    await writeFile(paxTar, head);
    await truncate(paxTar, head.length + Math.ceil(big / 512) * 512);
    await writeFile(paxTar, END, { flag: 'a' });
    const p = findMember(await readTarIndex(paxTar), 'dir/disk.vmdk')!;
    assert.deepEqual([p.offset, p.size], [head.length, big]);
  });
});

test('refusals: not a tar, empty, wrong checksum, truncated', async () => {
  await withDir(async (dir) => {
    const ok = Buffer.concat([header('a.ovf', 600), padded(pseudoRandom(600, 6)), header('b.vmdk', 2000), padded(pseudoRandom(2000, 7)), END]);
    const write = async (name: string, b: Buffer): Promise<string> => {
      await writeFile(join(dir, name), b);
      return join(dir, name);
    };
    assert.equal((await readTarIndex(await write('ok.ova', ok))).length, 2);
    await assert.rejects(readTarIndex(await write('text.ova', Buffer.from('<?xml version="1.0"?><Envelope/>\n'.repeat(40)))), expectData(/is not a tar archive/));
    await assert.rejects(readTarIndex(await write('empty.ova', Buffer.alloc(0))), expectData(/is empty/));
    await assert.rejects(readTarIndex(await write('zeros.ova', Buffer.alloc(4096))), expectData(/is not a tar archive/));
    await assert.rejects(readTarIndex(await write('short.ova', ok.subarray(0, 300))), expectData(/is not a tar archive/));
    const badSecond = Buffer.from(ok);
    badSecond[1536 + 10] = badSecond[1536 + 10]! ^ 0x01; // a name byte of the second header
    await assert.rejects(readTarIndex(await write('bad.ova', badSecond)), expectData(/bad\.ova is damaged: the tar header at byte 1536 \(after member "a\.ovf"\) has a wrong checksum/));
    await assert.rejects(readTarIndex(await write('cut1.ova', ok.subarray(0, 1536 + 512 + 1000))), expectData(/cut1\.ova is truncated: member "b\.vmdk" needs 2000 bytes/));
    await assert.rejects(readTarIndex(await write('cut2.ova', ok.subarray(0, 1536 + 100))), expectData(/cut2\.ova is truncated: it ends inside a member header/));
    await assert.rejects(readTarIndex(await write('cut3.ova', ok.subarray(0, 300 + 512))), expectData(/truncated: member "a\.ovf" needs 600 bytes/));
    await assert.rejects(readTarIndex(join(dir, 'nothing.ova')), (e: unknown) => e instanceof OneswapError && e.kind === 'not-found');
    await assert.rejects(readTarIndex(dir), (e: unknown) => e instanceof OneswapError && e.kind === 'usage');
  });
});

test('refusals: unsafe and duplicate member names', async () => {
  await withDir(async (dir) => {
    const tarOf = async (names: string[], opts: { type?: string } = {}): Promise<string> => {
      const path = join(dir, `t${Math.random().toString(36).slice(2)}.tar`);
      await writeFile(path, Buffer.concat([...names.flatMap((n) => [header(n, 3, opts), padded(Buffer.from('abc'))]), END]));
      return path;
    };
    for (const bad of ['/etc/passwd', '../evil.vmdk', 'a/../../b', 'dir\\disk.vmdk', 'C:/x.vmdk']) {
      await assert.rejects(readTarIndex(await tarOf(['ok.ovf', bad])), expectData(/unsafe member name/), bad);
    }
    await assert.rejects(readTarIndex(await tarOf(['..'], { type: '5' })), expectData(/unsafe member name/));
    await assert.rejects(readTarIndex(await tarOf(['x.vmdk', './x.vmdk'])), expectData(/holds the member "x\.vmdk" twice/));
    // A GNU long name ('L') is checked like any other.
    const long = Buffer.from(`../${'x'.repeat(200)}\0`);
    const path = join(dir, 'long.tar');
    await writeFile(path, Buffer.concat([header('././@LongLink', long.length, { type: 'L', magic: 'gnu' }), padded(long), header('short', 3, { magic: 'gnu' }), padded(Buffer.from('abc')), END]));
    await assert.rejects(readTarIndex(path), expectData(/unsafe member name "\.\.\/x{20}/));
    // GNU tar itself writes the same name twice when asked to.
    await writeFile(join(dir, 'same'), 'x');
    execFileSync('tar', ['-cf', join(dir, 'dup.tar'), '-C', dir, 'same', 'same']);
    await assert.rejects(readTarIndex(join(dir, 'dup.tar')), expectData(/twice/));
    // An extension header with nobody after it.
    const orphan = join(dir, 'orphan.tar');
    await writeFile(orphan, Buffer.concat([header('a', 3), padded(Buffer.from('abc')), header('././@LongLink', long.length, { type: 'L', magic: 'gnu' }), padded(long), END]));
    await assert.rejects(readTarIndex(orphan), expectData(/truncated: the archive ends after an extension header/));
  });
});

test('manifest: SHA1, SHA256, SHA512; CRLF, no space, upper case', () => {
  const sha1 = 'a'.repeat(40);
  const sha256 = 'B'.repeat(64);
  const sha512 = '0123456789abcdef'.repeat(8);
  const m = parseManifest(`SHA1(vm.ovf)= ${sha1}\r\nSHA256(disk1.vmdk)=${sha256}\r\n\r\nSHA512(disk (2).vmdk)= ${sha512}\n`, 'vm.mf');
  assert.deepEqual(m.get('vm.ovf'), { algorithm: 'sha1', hex: sha1 });
  assert.deepEqual(m.get('disk1.vmdk'), { algorithm: 'sha256', hex: sha256.toLowerCase() });
  assert.deepEqual(m.get('disk (2).vmdk'), { algorithm: 'sha512', hex: sha512 });
  assert.equal(m.size, 3);
  assert.equal(parseManifest('', 'x.mf').size, 0);
});

test('manifest refusals name the line', () => {
  assert.throws(() => parseManifest(`SHA256(a)= ${'0'.repeat(64)}\nMD5(disk1.vmdk)= ${'0'.repeat(32)}\n`, 'vm.mf'), expectData(/vm\.mf line 2 uses the digest algorithm MD5/));
  assert.throws(() => parseManifest(`SHA256(a)= ${'0'.repeat(63)}\n`, 'vm.mf'), expectData(/vm\.mf line 1: the SHA256 digest of a must be 64 hex digits/));
  assert.throws(() => parseManifest(`SHA1(a)= ${'g'.repeat(40)}\n`, 'vm.mf'), expectData(/line 1: the SHA1 digest of a must be 40 hex digits/));
  assert.throws(() => parseManifest(`\n\nthis is not a manifest\n`, 'vm.mf'), expectData(/vm\.mf line 3 is not a manifest entry/));
  assert.throws(() => parseManifest(`SHA1()= ${'0'.repeat(40)}\n`, 'vm.mf'), expectData(/line 1 names no file/));
  assert.throws(() => parseManifest(`SHA1(a)= ${'0'.repeat(40)}\nSHA1(a)= ${'1'.repeat(40)}\n`, 'vm.mf'), expectData(/line 2 lists a a second time/));
});
