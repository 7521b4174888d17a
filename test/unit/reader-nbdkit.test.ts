// The nbdkit reader without VMware: a fake `nbdkit` first in PATH keeps the options the product
// gives and swaps the vddk/nfc plugin and its parameters for a local plugin (FAKE_PLUGIN), after
// recording the arguments and the password file it was given.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyToFile } from '../support/copy-to-file.js';
import { OneswapError } from '../../lib/errors/index.js';
import { errorLines, explainNbdkitFailure, nbdkitArgs, nbdkitPluginMissing, type NbdkitDisk } from '../../lib/input/nbdkit.js';
import { openNbdkitDisk } from '../../lib/input/reader-nbdkit.js';

const MiB = 1024 * 1024;
const SHA1 = '5A:8C:13:6B:2E:AA:01:77:90:3F:C4:D2:61:0B:9E:44:13:58:7A:BC';

const disk: NbdkitDisk = {
  plugin: 'vddk',
  libdir: '/opt/vmware-vix-disklib-distrib',
  server: 'vc.example.com',
  user: 'administrator@vsphere.local',
  password: 's3cret pass',
  thumbprint: SHA1.toLowerCase().replace(/:/g, ''),
  vm: 'vm-42',
  file: '[datastore1] web01/web01.vmdk',
  snapshot: 'snapshot-7',
  transports: ['nbdssl', 'nbd'],
};

// In front of the real nbdkit (on SOCK.real): cuts the second NBD connection after 256 KiB of
// replies, as a dropped network connection to VMware would.
const PROXY = `
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
const [sock, ...args] = process.argv.slice(2);
const child = spawn('nbdkit', args, { stdio: 'inherit' });
process.on('SIGTERM', () => { child.kill('SIGTERM'); });
child.on('exit', () => process.exit(0));
let n = 0;
const server = net.createServer((c) => {
  const id = ++n;
  const up = net.connect(sock + '.real');
  let bytes = 0;
  up.on('data', (d) => {
    bytes += d.length;
    if (id === 2 && bytes > 256 * 1024) { c.destroy(); up.destroy(); return; }
    c.write(d);
  });
  c.on('data', (d) => up.write(d));
  c.on('close', () => up.destroy());
  up.on('close', () => c.destroy());
  c.on('error', () => {}); up.on('error', () => {});
});
const wait = setInterval(() => { if (existsSync(sock + '.real')) { clearInterval(wait); server.listen(sock); } }, 20);
`;

let dir: string;
const savedPath = process.env.PATH;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oneswap-fake-nbdkit-'));
  const script = `#!/bin/sh
# Fake nbdkit: options unchanged, the vddk/nfc plugin and its parameters replaced by $FAKE_PLUGIN.
set -e
out=""
seen=""
sock=""
next_is_sock=""
for a in "$@"; do
  if [ -n "$next_is_sock" ]; then sock="$a"; next_is_sock=""; [ -n "$FAKE_PROXY" ] && a="$a.real"; fi
  [ "$a" = --unix ] && next_is_sock=1
  if [ -z "$seen" ] && { [ "$a" = vddk ] || [ "$a" = nfc ]; }; then seen=1; continue; fi
  if [ -n "$seen" ]; then
    case "$a" in password=+*) f="\${a#password=+}"; cp "$f" "$FAKE_LOG.password"; stat -c %a "$f" > "$FAKE_LOG.mode" ;; esac
    continue
  fi
  out="$out $a"
done
printf '%s\\n' "$@" > "$FAKE_LOG.args"
[ -n "$FAKE_STDERR" ] && { echo "$FAKE_STDERR" >&2; exit 1; }
[ -n "$FAKE_PROXY" ] && exec /usr/bin/env PATH="$FAKE_REAL_PATH" "$FAKE_NODE" "$FAKE_PROXY" "$sock" $out $FAKE_PLUGIN
exec /usr/bin/env PATH="$FAKE_REAL_PATH" nbdkit $out $FAKE_PLUGIN
`;
  await writeFile(join(dir, 'nbdkit'), script);
  await chmod(join(dir, 'nbdkit'), 0o755);
  await writeFile(join(dir, 'proxy.mjs'), PROXY);
  process.env.FAKE_NODE = process.execPath;
  process.env.FAKE_REAL_PATH = savedPath;
  process.env.FAKE_LOG = join(dir, 'log');
  process.env.PATH = `${dir}:${savedPath}`;
});

after(async () => {
  process.env.PATH = savedPath;
  await rm(dir, { recursive: true, force: true });
});

test('the command line is the vddk plugin documented parameters, password as +FILE', () => {
  assert.deepEqual(nbdkitArgs({ ...disk, port: 8443, compression: 'zlib' }, '/tmp/x/nbd.sock', '/tmp/x/password'), [
    '--readonly', '--exit-with-parent', '-f', '--unix', '/tmp/x/nbd.sock', 'vddk',
    'libdir=/opt/vmware-vix-disklib-distrib',
    'server=vc.example.com',
    'user=administrator@vsphere.local',
    'password=+/tmp/x/password',
    `thumbprint=${SHA1}`,
    'vm=moref=vm-42',
    'file=[datastore1] web01/web01.vmdk',
    'snapshot=snapshot-7',
    'transports=nbdssl:nbd',
    'compression=zlib',
    'port=8443',
  ]);
  const nfc = nbdkitArgs({ ...disk, plugin: 'nfc', snapshot: undefined, transports: undefined }, 's', 'p');
  assert.equal(nfc[5], 'nfc');
  assert.ok(!nfc.some((a) => a.startsWith('libdir=') || a.startsWith('snapshot=')));
  assert.throws(() => nbdkitArgs({ ...disk, thumbprint: 'ab'.repeat(32) }, 's', 'p'), /SHA-1/);
});

test("nbdkit's error lines become one error of the right kind, naming the disk", () => {
  const log = [
    'nbdkit: vddk[1]: error: VixDiskLib_ConnectEx: Cannot complete login due to an incorrect user name or password.',
    'nbdkit: vddk[1]: error: VixDiskLib_ConnectEx: Cannot complete login due to an incorrect user name or password.',
    'nbdkit: debug: something else',
  ].join('\n');
  assert.deepEqual(errorLines(log), ['VixDiskLib_ConnectEx: Cannot complete login due to an incorrect user name or password.']);
  const kinds: Array<[string, string]> = [
    ['VixDiskLib_ConnectEx: Cannot complete login due to an incorrect user name or password.', 'auth'],
    ['VixDiskLib_ConnectEx: SSL Verification failed: the thumbprint does not match', 'connection'],
    ['VixDiskLib_Open: The system cannot find the file specified (FileNotFound: [ds] x.vmdk)', 'not-found'],
    ['VixDiskLib_Open: ManagedObjectNotFound: snapshot-9', 'not-found'],
    ['VixDiskLib_Open: The file is already in use (FileLocked)', 'conflict'],
    ["cannot open VDDK library: libvixDiskLib.so.8: cannot open shared object file", 'usage'],
    ['something odd', 'connection'],
  ];
  for (const [line, kind] of kinds) {
    const e = explainNbdkitFailure(disk, [line], 'fallback');
    assert.equal(e.kind, kind, line);
    assert.match(e.message, /\[datastore1\] web01\/web01\.vmdk/);
    assert.match(e.message, /snapshot-7/);
    assert.ok(!e.message.includes('\n'));
  }
});

test('the availability probe says why a plugin is missing', async () => {
  process.env.PATH = savedPath;
  try {
    const why = await nbdkitPluginMissing('nfc');
    assert.match(why ?? '', /nbdkit nfc plugin is not usable/);
    const none = process.env.PATH;
    process.env.PATH = '/nonexistent';
    assert.match((await nbdkitPluginMissing('vddk', '/opt/x')) ?? '', /not installed/);
    process.env.PATH = none;
  } finally {
    process.env.PATH = `${dir}:${savedPath}`;
  }
});

function islands(size: number): Buffer {
  const b = Buffer.alloc(size);
  let x = 99;
  for (const [s, l] of [[0, 64 * 1024], [5 * MiB + 4096, 3 * MiB], [19 * MiB, 1 * MiB + 512]] as const) {
    for (let i = s; i < s + l; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      b[i] = (x >>> 24) | 1;
    }
  }
  return b;
}

test('reads a disk through nbdkit: allocated areas, copy equals the disk, password in a 0600 file', async () => {
  const data = islands(24 * MiB);
  const src = join(dir, 'disk.raw');
  const target = join(dir, 'target.raw');
  // A sparse source file: the file plugin reports its holes through block status.
  await writeFile(src, '');
  await truncate(src, data.length);
  const { open } = await import('node:fs/promises');
  const fh = await open(src, 'r+');
  for (const [s, l] of [[0, 64 * 1024], [5 * MiB + 4096, 3 * MiB], [19 * MiB, 1 * MiB + 512]] as const) await fh.write(data, s, l, s);
  await fh.close();
  process.env.FAKE_PLUGIN = `file ${src}`;
  const reading = await openNbdkitDisk(disk, { connections: 3, pieceSize: MiB });
  try {
    assert.equal(reading.reader, 'vddk');
    assert.equal(reading.capacity, data.length);
    assert.equal(reading.maxStreams, 3);
    const args = (await readFile(join(dir, 'log.args'), 'utf8')).split('\n');
    assert.ok(args.includes('password=+' + args.find((a) => a.startsWith('password=+'))!.slice(10)));
    assert.ok(!args.some((a) => a.includes(disk.password)), 'the password is not on the command line');
    assert.equal(await readFile(join(dir, 'log.password'), 'utf8'), disk.password);
    assert.equal((await readFile(join(dir, 'log.mode'), 'utf8')).trim(), '600');
    const pwFile = args.find((a) => a.startsWith('password=+'))!.slice(10);
    await assert.rejects(stat(pwFile), { code: 'ENOENT' }, 'the password file is gone once nbdkit is up');

    const areas = await reading.allocated(AbortSignal.timeout(10_000));
    // File systems allocate in 4 KiB blocks: the areas cover the data, rounded out.
    assert.deepEqual(areas, [{ start: 0, length: 64 * 1024 }, { start: 5 * MiB + 4096, length: 3 * MiB }, { start: 19 * MiB, length: MiB + 4096 }]);

    await writeFile(target, '');
    await truncate(target, data.length);
    const stats = await copyToFile({ source: reading.source, target, capacity: data.length, extents: areas, targetIsZero: true, streams: reading.maxStreams, requestSize: 2 * MiB });
    assert.equal(stats.retries, 0);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    assert.equal(sha(await readFile(target)), sha(data));

    // A range is delivered exactly, across piece boundaries.
    const chunks: Uint8Array[] = [];
    for await (const c of await reading.source.open(MiB - 3, 3 * MiB + 5, AbortSignal.timeout(5000))) chunks.push(c);
    assert.ok(Buffer.concat(chunks).equals(data.subarray(MiB - 3, 3 * MiB + 5)));
  } finally {
    await reading.close();
    await reading.close();
  }
});

test('failed reads are retried by the copy engine and then succeed', async () => {
  const data = Buffer.alloc(8 * MiB);
  for (let i = 0; i < data.length; i += 8) data.writeBigUInt64BE(BigInt(i), i);
  process.env.FAKE_PLUGIN = '--filter=error pattern size=8M error-pread=EIO error-pread-rate=30%';
  const reading = await openNbdkitDisk({ ...disk, plugin: 'nfc', libdir: undefined }, { pieceSize: 256 * 1024 });
  const target = join(dir, 'retry.raw');
  try {
    await writeFile(target, '');
    await truncate(target, data.length);
    const stats = await copyToFile({
      source: reading.source, target, capacity: data.length, extents: [{ start: 0, length: data.length }],
      targetIsZero: true, streams: 4, requestSize: MiB, retries: 50, retryDelayMs: 1,
    });
    assert.ok(stats.retries > 0);
    assert.ok((await readFile(target)).equals(data));
  } finally {
    await reading.close();
  }
});

test('a dropped connection is replaced: the range is retried and the copy completes', async () => {
  const data = Buffer.alloc(8 * MiB);
  for (let i = 0; i < data.length; i += 8) data.writeBigUInt64BE(BigInt(i), i);
  process.env.FAKE_PLUGIN = 'pattern size=8M';
  process.env.FAKE_PROXY = join(dir, 'proxy.mjs');
  const target = join(dir, 'dropped.raw');
  try {
    const reading = await openNbdkitDisk(disk, { connections: 2, pieceSize: 64 * 1024 });
    try {
      await writeFile(target, '');
      await truncate(target, data.length);
      const stats = await copyToFile({
        source: reading.source, target, capacity: data.length, extents: [{ start: 0, length: data.length }],
        targetIsZero: true, streams: 2, requestSize: MiB, retries: 3, retryDelayMs: 1,
      });
      assert.ok(stats.retries >= 1, 'the cut range was retried');
      assert.ok((await readFile(target)).equals(data));
    } finally {
      await reading.close();
    }
  } finally {
    delete process.env.FAKE_PROXY;
  }
});

test('a start-up failure is one OneswapError from nbdkit stderr; nothing is left behind', async () => {
  process.env.FAKE_STDERR = 'nbdkit: vddk[1]: error: VixDiskLib_ConnectEx: Cannot complete login due to an incorrect user name or password.';
  try {
    await assert.rejects(openNbdkitDisk(disk), (err: unknown) => {
      assert.ok(err instanceof OneswapError);
      assert.equal(err.kind, 'auth');
      assert.match(err.message, /could not open disk \[datastore1\] web01\/web01\.vmdk of VM vm-42 \(snapshot snapshot-7\) on vc\.example\.com: the server refused/);
      return true;
    });
  } finally {
    delete process.env.FAKE_STDERR;
  }
});

test('an open refused at connect time is explained from the log (python plugin raising in open)', async () => {
  const plugin = join(dir, 'refuse.py');
  await writeFile(plugin, [
    'import sys',
    'sys.tracebacklimit = 0',
    'API_VERSION = 2',
    'def open(readonly):',
    '    sys.stderr.write("nbdkit: vddk[1]: error: VixDiskLib_Open: The system cannot find the file specified (FileNotFound)\\n")',
    '    raise RuntimeError("open failed")',
    'def get_size(h): return 1',
    'def pread(h, buf, off, flags): pass',
    '',
  ].join('\n'));
  process.env.FAKE_PLUGIN = `python ${plugin}`;
  await assert.rejects(openNbdkitDisk(disk), (err: unknown) => err instanceof OneswapError && err.kind === 'not-found' && /cannot find the file/.test(err.message));
});
