// install.sh into temporary roots: the system layout (DESTDIR + etc/one/oned.conf), the
// ONE_LOCATION layout, and the command alone without OpenNebula. Uses the build in dist/ (npm test
// builds first) through --no-deps; never touches the machine's own OpenNebula: every run has either
// DESTDIR or ONE_LOCATION pointing into a temporary directory.

import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const INSTALL = join(ROOT, 'install.sh');
const FIXTURE = join(ROOT, 'test/fixtures/oned.conf');
const STOCK = readFileSync(FIXTURE);
const DEFAULT_YAML = readFileSync(join(ROOT, 'templates/oneswap.yaml'));
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };
const DS_ACTIONS = readdirSync(join(ROOT, 'driver/datastore/oneswap')).sort();
const MARKET_ACTIONS = readdirSync(join(ROOT, 'driver/market/oneswap')).sort();
const DRIVERS_MAIN = join(ROOT, 'dist/lib/drivers/main.js');
const built = existsSync(join(ROOT, 'dist/lib/cli/main.js')) && existsSync(join(ROOT, 'dist/lib/install/main.js'));
const skip = built ? false : 'no build in dist/: run npm run build first (npm test does)';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** install.sh with a clean environment: PATH, and what the test gives (DESTDIR, ONE_LOCATION). */
function install(args: string[], env: Record<string, string> = {}, script = INSTALL): Run {
  const started = Date.now();
  const r = spawnSync('bash', [script, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

function ok(t: TestContext, what: string, r: Run): Run {
  assert.equal(r.status, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);
  t.diagnostic(`${what}: ${r.ms} ms`);
  assert.ok(r.ms < 30_000, `${what} took ${r.ms} ms: an install should take seconds`);
  return r;
}

/** Every file, directory and symlink under `dir`: type, mode and content hash (or link target). */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of (readdirSync(dir, { recursive: true }) as string[]).sort()) {
    const p = join(dir, rel);
    const st = lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out[rel] = `link ${readlinkSync(p)}`;
    else if (st.isDirectory()) out[rel] = `dir ${mode}`;
    else out[rel] = `file ${mode} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
  }
  return out;
}

function files(dir: string): string[] {
  return Object.entries(tree(dir))
    .filter(([, v]) => v.startsWith('file') || v.startsWith('link'))
    .map(([k]) => k)
    .sort();
}

/** Attribute text outside comment lines. */
function code(text: string): string {
  return text
    .split('\n')
    .map((l) => l.replace(/^\s*#.*$/, ''))
    .join('\n');
}

function checkRegisteredOnce(text: string): void {
  const c = code(text);
  const list = (attr: string, flag: string) => {
    const block = new RegExp(`^${attr}\\s*=\\s*\\[[^\\]]*\\]`, 'm').exec(c)?.[0] ?? '';
    return (new RegExp(`${flag} ([^\\s"]+)`).exec(block)?.[1] ?? '').split(',');
  };
  assert.equal(list('DATASTORE_MAD', '-d').filter((d) => d === 'oneswap').length, 1, 'oneswap once in the -d list');
  assert.equal(list('MARKET_MAD', '-m').filter((d) => d === 'oneswap').length, 1, 'oneswap once in the -m list');
  assert.equal((c.match(/DS_MAD_CONF\s*=\s*\[\s*NAME\s*=\s*"oneswap"/g) ?? []).length, 1, 'one DS_MAD_CONF for oneswap');
  assert.equal((c.match(/MARKET_MAD_CONF\s*=\s*\[\s*NAME\s*=\s*"oneswap"/g) ?? []).length, 1, 'one MARKET_MAD_CONF for oneswap');
}

function backups(etc: string): string[] {
  // Oldest first: by the time in the name, then the counter a second backup in the same second
  // gets (a plain sort puts `…-081530-1.bak` before `…-081530.bak`).
  const key = (f: string): [string, number] => {
    const m = /^oned\.conf\.oneswap-(\d{8}-\d{6})(?:-(\d+))?\.bak$/.exec(f)!;
    return [m[1]!, Number(m[2] ?? 0)];
  };
  return readdirSync(etc)
    .filter((f) => /^oned\.conf\.oneswap-\d{8}-\d{6}(-\d+)?\.bak$/.test(f))
    .sort((a, b) => {
      const [ta, na] = key(a);
      const [tb, nb] = key(b);
      return ta < tb ? -1 : ta > tb ? 1 : na - nb;
    });
}

/** The shims: real executable files, the paths written in, nothing left to fill. */
function checkShims(remotes: string, prog: string, conf: string): void {
  for (const [kind, actions] of [
    ['datastore', DS_ACTIONS],
    ['market', MARKET_ACTIONS],
  ] as const) {
    const dir = join(remotes, kind, 'oneswap');
    assert.deepEqual(readdirSync(dir).sort(), actions);
    for (const a of actions) {
      const p = join(dir, a);
      const st = lstatSync(p);
      assert.ok(st.isFile() && !st.isSymbolicLink(), `${p} is a real file`);
      assert.equal(st.mode & 0o777, 0o755, `${p} mode`);
      const text = readFileSync(p, 'utf8');
      assert.doesNotMatch(text, /@[A-Z_]+@/, `${p} has every placeholder filled`);
      assert.match(text, /^NODE='\/[^']*node'$/m);
      assert.ok(text.includes(`\nONESWAP_HOME='${prog}'\n`), `${p}: ONESWAP_HOME`);
      assert.ok(text.includes(`\nONESWAP_CONFIG='${conf}'\n`), `${p}: ONESWAP_CONFIG`);
    }
  }
}

/** The program directory: the build of lib only, package.json, production modules only. */
function checkProgram(dir: string): void {
  assert.deepEqual(readdirSync(dir).sort(), ['dist', 'node_modules', 'package.json']);
  assert.deepEqual(readdirSync(join(dir, 'dist')), ['lib']);
  assert.ok(existsSync(join(dir, 'dist/lib/cli/main.js')));
  assert.ok(!(readdirSync(join(dir, 'dist'), { recursive: true }) as string[]).some((f) => f.endsWith('.map')), 'no source maps');
  for (const dep of Object.keys(PKG.dependencies)) assert.ok(existsSync(join(dir, 'node_modules', dep, 'package.json')), `production dependency ${dep}`);
  for (const dev of [...Object.keys(PKG.devDependencies), 'esbuild', '.bin']) assert.ok(!existsSync(join(dir, 'node_modules', dev)), `no ${dev}`);
}

describe('install.sh', { skip }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'oneswap-install-'));
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('system layout under DESTDIR: twice gives the same files and one registration; --uninstall restores oned.conf', (t) => {
    const dest = join(work, 'system');
    const etc = join(dest, 'etc/one');
    mkdirSync(etc, { recursive: true });
    copyFileSync(FIXTURE, join(etc, 'oned.conf'));
    chmodSync(join(etc, 'oned.conf'), 0o640);
    const env = { DESTDIR: dest };

    const first = ok(t, 'first install', install(['--no-deps'], env));
    for (const line of [
      /^ {2}program +\/usr\/lib\/one\/oneswap \(dist\/lib, package\.json, \d+ production modules\)$/m,
      /^ {2}command +\/usr\/bin\/oneswap$/m,
      new RegExp(`^ {2}datastore +/var/lib/one/remotes/datastore/oneswap \\(${DS_ACTIONS.length} actions\\)$`, 'm'),
      new RegExp(`^ {2}market +/var/lib/one/remotes/market/oneswap \\(${MARKET_ACTIONS.length} actions\\)$`, 'm'),
      /^ {2}config +\/etc\/one\/oneswap\.yaml$/m,
      /^oned\.conf: appended oneswap to the DATASTORE_MAD -d list$/m,
      /^restart oned to load the drivers: systemctl restart opennebula$/m,
    ]) {
      assert.match(first.stdout, line);
    }
    const once = tree(dest);

    const second = ok(t, 'second install', install(['--no-deps'], env));
    assert.match(second.stdout, /oneswap already registered/);
    assert.doesNotMatch(second.stdout, /restart oned/);
    assert.deepEqual(tree(dest), once, 'the second run leaves the same files with the same contents');

    const conf = readFileSync(join(etc, 'oned.conf'), 'utf8');
    checkRegisteredOnce(conf);
    assert.equal(statSync(join(etc, 'oned.conf')).mode & 0o777, 0o640, 'oned.conf keeps its mode');
    const saved = backups(etc);
    assert.equal(saved.length, 1, 'one backup: the second run changed nothing');
    assert.deepEqual(readFileSync(join(etc, saved[0]!)), STOCK, 'the backup is the original');
    assert.equal(statSync(join(etc, saved[0]!)).mode & 0o777, 0o640, 'the backup keeps the mode');

    checkShims(join(dest, 'var/lib/one/remotes'), '/usr/lib/one/oneswap', '/etc/one/oneswap.yaml');
    checkProgram(join(dest, 'usr/lib/one/oneswap'));
    const wrapper = readFileSync(join(dest, 'usr/bin/oneswap'), 'utf8');
    assert.match(wrapper, /^#!\/bin\/sh\n/);
    assert.match(wrapper, /^exec '\/[^']*node' '\/usr\/lib\/one\/oneswap\/dist\/lib\/cli\/main\.js' "\$@"$/m);
    assert.equal(statSync(join(dest, 'usr/bin/oneswap')).mode & 0o777, 0o755);
    assert.deepEqual(readFileSync(join(etc, 'oneswap.yaml')), DEFAULT_YAML);
    const version = spawnSync(process.execPath, [join(dest, 'usr/lib/one/oneswap/dist/lib/cli/main.js'), '--version'], { encoding: 'utf8', cwd: work, env: { PATH: process.env.PATH } });
    assert.equal(version.stdout.trim(), PKG.version, version.stderr);

    const removed = ok(t, 'uninstall', install(['--uninstall'], env));
    assert.match(removed.stdout, /^restart oned to unload the drivers: systemctl restart opennebula$/m);
    assert.deepEqual(readFileSync(join(etc, 'oned.conf')), STOCK, 'oned.conf is the original, byte for byte');
    assert.equal(statSync(join(etc, 'oned.conf')).mode & 0o777, 0o640);
    const left = files(dest);
    const allBackups = backups(etc);
    assert.equal(allBackups.length, 2, 'install and uninstall each saved one backup');
    assert.deepEqual(left, ['etc/one/oned.conf', ...allBackups.map((b) => `etc/one/${b}`)].sort(), 'no oneswap files left, only the backups');

    const again = ok(t, 'second uninstall', install(['--uninstall'], env));
    assert.match(again.stdout, /no oneswap registration/);
    assert.deepEqual(files(dest), left);
    assert.deepEqual(readFileSync(join(etc, 'oned.conf')), STOCK);

    // More cycles keep two backups: oned.conf before oneswap first touched it, and before the last change.
    for (let cycle = 0; cycle < 2; cycle++) {
      const reinstalled = ok(t, `install, cycle ${cycle + 2}`, install(['--no-deps'], env));
      const registered = readFileSync(join(etc, 'oned.conf'));
      const removedAgain = ok(t, `uninstall, cycle ${cycle + 2}`, install(['--uninstall'], env));
      const kept = backups(etc);
      assert.equal(kept.length, 2, `cycle ${cycle + 2}: the first and the last backup, nothing in between`);
      assert.deepEqual(readFileSync(join(etc, kept[0]!)), STOCK, 'the first backup is oned.conf before oneswap first changed it');
      assert.equal(kept[0], allBackups[0], 'and it is the same file as after the first cycle');
      assert.deepEqual(readFileSync(join(etc, kept[1]!)), registered, 'the last backup is oned.conf before the uninstall');
      const at = (name: string): string => join(realpathSync(etc), name);
      for (const out of [reinstalled.stdout, removedAgain.stdout]) assert.ok(out.split('\n').includes(`oned.conf: as it was before oneswap first changed it: ${at(kept[0]!)} (backups in between removed)`), out);
      assert.ok(removedAgain.stdout.split('\n').includes(`oned.conf: ${join(etc, 'oned.conf')} changed; as it was before this change: ${at(kept[1]!)}`), removedAgain.stdout);
    }
    assert.deepEqual(readFileSync(join(etc, 'oned.conf')), STOCK);
  });

  test('ONE_LOCATION layout: the installed command and driver action run on their own node_modules', async (t) => {
    const one = join(work, 'one');
    mkdirSync(join(one, 'etc'), { recursive: true });
    // with bytes that are not UTF-8 in a comment: they must come back as they were
    const original = Buffer.concat([STOCK, Buffer.from('# caf\xe9 \xff\xfe\n', 'latin1')]);
    writeFileSync(join(one, 'etc/oned.conf'), original);
    // A stand-in for OpenNebula's stock fs driver, which oneswap's datastore hands plain paths to.
    const fs = join(one, 'var/remotes/datastore/fs');
    mkdirSync(fs, { recursive: true });
    writeFileSync(join(fs, 'stat'), '#!/bin/sh\ncat >/dev/null\necho 42\n', { mode: 0o755 });
    const env = { ONE_LOCATION: one };

    const first = ok(t, 'first install', install(['--no-deps'], env));
    assert.match(first.stdout, new RegExp(`^restart oned to load the drivers: ${one}/bin/one restart`, 'm'));
    const once = tree(one);
    ok(t, 'second install', install(['--no-deps'], env));
    assert.deepEqual(tree(one), once);
    checkRegisteredOnce(readFileSync(join(one, 'etc/oned.conf'), 'utf8'));
    assert.equal(backups(join(one, 'etc')).length, 1);
    assert.deepEqual(readFileSync(join(one, 'etc', backups(join(one, 'etc'))[0]!)), original, 'the backup is the original, byte for byte');
    const prog = join(one, 'lib/oneswap');
    checkShims(join(one, 'var/remotes'), prog, join(one, 'etc/oneswap.yaml'));
    checkProgram(prog);

    // The command as installed, from outside the checkout: only the program's own node_modules
    // are on its resolution path.
    const version = spawnSync(join(one, 'bin/oneswap'), ['--version'], { encoding: 'utf8', cwd: work, env: { PATH: process.env.PATH } });
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), PKG.version);
    const loadAll = `
      import { readdirSync } from 'node:fs';
      const mods = readdirSync('dist/lib', { recursive: true }).filter((f) => f.endsWith('.js') && !f.endsWith('main.js'));
      for (const m of mods) await import('./dist/lib/' + m);
      for (const d of ${JSON.stringify(Object.keys(PKG.dependencies))}) await import(d);
      console.log(mods.length);`;
    const loaded = spawnSync(process.execPath, ['--input-type=module', '-e', loadAll], { encoding: 'utf8', cwd: prog, env: { PATH: process.env.PATH } });
    assert.equal(loaded.status, 0, `every module of the installed program loads: ${loaded.stderr}`);
    t.diagnostic(`${loaded.stdout.trim()} modules of the installed program loaded from ${prog}`);

    const noDrivers = existsSync(DRIVERS_MAIN) ? false : `TODO: needs ${DRIVERS_MAIN} (lib/drivers/main.ts, being written): the installed stat is not run yet`;
    await t.test('the installed remotes/datastore/oneswap/stat runs oneswap', { skip: noDrivers }, () => {
      const payload = Buffer.from(
        '<DS_DRIVER_ACTION_DATA><IMAGE><PATH>/var/tmp/disk.img</PATH><SIZE></SIZE></IMAGE>' +
          '<DATASTORE><ID>100</ID><NAME>oneswap</NAME><DS_MAD><![CDATA[oneswap]]></DS_MAD><TM_MAD><![CDATA[shared]]></TM_MAD>' +
          '<BASE_PATH>/var/lib/one//datastores/100</BASE_PATH><TEMPLATE></TEMPLATE></DATASTORE></DS_DRIVER_ACTION_DATA>',
      ).toString('base64');
      const stat = spawnSync(join(one, 'var/remotes/datastore/oneswap/stat'), ['0'], { input: payload, encoding: 'utf8', cwd: '/', env: { PATH: '/usr/bin:/bin' } });
      assert.equal(stat.status, 0, `installed stat: ${stat.stderr}`);
      assert.equal(stat.stdout.trim(), '42', 'the installed stat ran oneswap, which handed the plain path to ../fs/stat');
    });

    // An edited oneswap.yaml is the admin's: kept, the new default beside it, on install and uninstall.
    const yaml = join(one, 'etc/oneswap.yaml');
    writeFileSync(yaml, 'streams: 8\n');
    const edited = ok(t, 'install over an edited oneswap.yaml', install(['--no-deps'], env));
    assert.match(edited.stdout, /oneswap\.yaml kept: it differs from the shipped default; the new default is in .*oneswap\.yaml\.new/);
    assert.equal(readFileSync(yaml, 'utf8'), 'streams: 8\n');
    assert.deepEqual(readFileSync(`${yaml}.new`), DEFAULT_YAML);

    const removed = ok(t, 'uninstall', install(['--uninstall'], env));
    assert.match(removed.stdout, /kept +.*oneswap\.yaml: it differs from the shipped default/);
    assert.deepEqual(readFileSync(join(one, 'etc/oned.conf')), original, 'oned.conf is the original, byte for byte');
    const allBackups = backups(join(one, 'etc')).map((b) => `etc/${b}`);
    assert.equal(allBackups.length, 2);
    assert.deepEqual(files(one), ['etc/oned.conf', 'etc/oneswap.yaml', ...allBackups, 'var/remotes/datastore/fs/stat'].sort());
  });

  test('without OpenNebula: the command only, under --prefix', (t) => {
    const dest = join(work, 'cli');
    mkdirSync(dest);
    const env = { DESTDIR: dest };
    const first = ok(t, 'first install', install(['--no-deps', '--prefix', '/opt/oneswap'], env));
    assert.match(first.stdout, /no OpenNebula here .*installing the oneswap command only, under \/opt\/oneswap/);
    assert.doesNotMatch(first.stdout, /restart oned|oned\.conf:/);
    const once = tree(dest);
    ok(t, 'second install', install(['--no-deps', '--prefix=/opt/oneswap'], env));
    assert.deepEqual(tree(dest), once);
    assert.deepEqual(
      [...new Set(files(dest).map((f) => f.split('/').slice(0, 4).join('/')))].sort(),
      ['opt/oneswap/bin/oneswap', 'opt/oneswap/lib/oneswap'],
    );
    checkProgram(join(dest, 'opt/oneswap/lib/oneswap'));
    assert.match(readFileSync(join(dest, 'opt/oneswap/bin/oneswap'), 'utf8'), /'\/opt\/oneswap\/lib\/oneswap\/dist\/lib\/cli\/main\.js'/);
    ok(t, 'uninstall', install(['--uninstall', '--prefix', '/opt/oneswap'], env));
    assert.deepEqual(files(dest), []);
  });

  test('refusals: one line, non-zero exit, nothing installed or changed', (t) => {
    // oned.conf without MARKET_MAD
    const dest = join(work, 'broken');
    mkdirSync(join(dest, 'etc/one'), { recursive: true });
    const broken = STOCK.toString('utf8').replace(/^MARKET_MAD = \[[^\]]*\]\n/m, '');
    assert.notEqual(broken, STOCK.toString('utf8'));
    writeFileSync(join(dest, 'etc/one/oned.conf'), broken);
    const r = install(['--no-deps'], { DESTDIR: dest });
    t.diagnostic(`refused in ${r.ms} ms`);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^install\.sh: .*oned\.conf: no MARKET_MAD = \[ \.\.\. \] block.*; nothing installed\n$/);
    assert.deepEqual(files(dest), ['etc/one/oned.conf']);
    assert.equal(readFileSync(join(dest, 'etc/one/oned.conf'), 'utf8'), broken);

    // a oneswap command install.sh did not write
    const foreign = join(work, 'foreign');
    mkdirSync(join(foreign, 'etc/one'), { recursive: true });
    mkdirSync(join(foreign, 'usr/bin'), { recursive: true });
    copyFileSync(FIXTURE, join(foreign, 'etc/one/oned.conf'));
    writeFileSync(join(foreign, 'usr/bin/oneswap'), '#!/bin/sh\necho someone else\n', { mode: 0o755 });
    const taken = install(['--no-deps'], { DESTDIR: foreign });
    assert.equal(taken.status, 1);
    assert.match(taken.stderr, /^install\.sh: .*\/usr\/bin\/oneswap exists and install\.sh did not write it: move it away and run again\n$/);
    assert.deepEqual(files(foreign), ['etc/one/oned.conf', 'usr/bin/oneswap']);
    assert.deepEqual(readFileSync(join(foreign, 'etc/one/oned.conf')), STOCK);

    // --no-deps without a build
    const checkout = join(work, 'checkout');
    mkdirSync(checkout);
    for (const f of ['install.sh', 'package.json', 'driver', 'templates']) cpSync(join(ROOT, f), join(checkout, f), { recursive: true, verbatimSymlinks: true });
    const nobuild = install(['--no-deps'], { DESTDIR: join(work, 'nobuild') }, join(checkout, 'install.sh'));
    assert.equal(nobuild.status, 1);
    assert.match(nobuild.stderr, /^install\.sh: no build in .*\/dist: run npm run build first/);

    const missing = install(['--no-deps'], { ONE_LOCATION: join(work, 'nowhere') });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /ONE_LOCATION is .*nowhere but there is no .*nowhere\/etc\/oned\.conf/);

    assert.equal(install(['--bogus']).status, 2);
    assert.equal(install(['--dev', '--uninstall']).status, 2);
    assert.equal(install(['--prefix']).status, 2);
    const help = install(['--help']);
    assert.equal(help.status, 0);
    for (const opt of ['--dev', '--no-deps', '--prefix DIR', '--uninstall', 'DESTDIR', 'ONE_LOCATION']) assert.ok(help.stdout.includes(opt), `--help names ${opt}`);
  });
});
