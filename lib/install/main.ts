// install.sh's helper (run from a build: node dist/lib/install/main.js ...):
//   check FILE        exit 1 with the reason when register would refuse FILE (changes nothing)
//   register FILE     register the oneswap drivers in oned.conf FILE
//   unregister FILE   take them out again
//   modules ROOT      print the production node_modules directories of checkout ROOT to copy, one a line
// register/unregister change FILE only when its text changes: first a backup FILE.oneswap-<time>.bak
// (same mode and owner), then the new text through a temporary file renamed over FILE (same mode and
// owner). Of the backups oneswap made, two are kept: the oldest (FILE before oneswap first changed it)
// and the one just made (FILE before this change); those in between are removed, so install and
// uninstall cycles do not pile them up. Messages go to stdout, one line each; an error is one line on stderr and exit status 1,
// with FILE untouched; bad usage exits 2.

import { closeSync, fchmodSync, fchownSync, fsyncSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { OnedConfError, register, unregister, type EditResult } from './oned-conf.js';
import { productionModules } from './modules.js';

const USAGE = 'usage: node dist/lib/install/main.js check|register|unregister ONED_CONF | modules CHECKOUT';

function stamp(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
}

// oned.conf is read and written as latin1: one character per byte, so bytes that are not UTF-8
// come back exactly as they were; everything the edit looks at is ASCII.
const BYTES = 'latin1';

/** Creates `file` exclusively with `text`, the mode and owner of `like`. */
function writeLike(file: string, text: string, like: { mode: number; uid: number; gid: number }): void {
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, Buffer.from(text, BYTES));
    try {
      fchownSync(fd, like.uid, like.gid);
    } catch (e) {
      throw new Error(`cannot give ${file} the owner ${like.uid}:${like.gid} of the original (${(e as Error).message}): run as root`);
    }
    fchmodSync(fd, like.mode & 0o7777);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(file, { force: true });
    throw e;
  }
  closeSync(fd);
}

function backup(file: string, text: string, like: { mode: number; uid: number; gid: number }): string {
  const base = `${file}.oneswap-${stamp(new Date())}`;
  for (let n = 0; ; n++) {
    const name = n === 0 ? `${base}.bak` : `${base}-${n}.bak`;
    try {
      writeLike(name, text, like);
      return name;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || n > 100) throw e;
    }
  }
}

/** The backups `backup` made of `file`, oldest first (by the time in the name, then the counter). */
function backupsOf(file: string): string[] {
  const base = path.basename(file);
  const found: { name: string; key: string }[] = [];
  for (const name of readdirSync(path.dirname(file))) {
    if (!name.startsWith(`${base}.oneswap-`)) continue;
    const m = /^(\d{8}-\d{6})(?:-(\d+))?\.bak$/.exec(name.slice(base.length + '.oneswap-'.length));
    if (m) found.push({ name: path.join(path.dirname(file), name), key: `${m[1]}-${(m[2] ?? '0').padStart(4, '0')}` });
  }
  return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((f) => f.name);
}

/** Keeps the first backup and `latest`; returns the first (undefined when `latest` is the only one). */
function pruneBackups(file: string, latest: string): string | undefined {
  const older = backupsOf(file).filter((b) => b !== latest);
  for (const b of older.slice(1)) rmSync(b, { force: true });
  return older[0];
}

function edit(action: 'register' | 'unregister', file: string): void {
  const real = realpathSync(file);
  const original = readFileSync(real, BYTES);
  let result: EditResult;
  try {
    result = action === 'register' ? register(original) : unregister(original);
  } catch (e) {
    if (e instanceof OnedConfError) throw new Error(`${file}: ${e.message}; not changed`);
    throw e;
  }
  if (!result.changed) {
    console.log(action === 'register' ? `oned.conf: oneswap already registered in ${file}` : `oned.conf: no oneswap registration in ${file}`);
    for (const m of result.messages.filter((m) => /still|stays/.test(m))) console.log(`oned.conf: ${m}`);
    return;
  }
  const st = statSync(real);
  const saved = backup(real, original, st);
  const tmp = path.join(path.dirname(real), `.${path.basename(real)}.oneswap-${process.pid}.tmp`);
  writeLike(tmp, result.text, st);
  renameSync(tmp, real);
  const dir = openSync(path.dirname(real), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  const first = pruneBackups(real, saved);
  for (const m of result.messages) console.log(`oned.conf: ${m}`);
  console.log(`oned.conf: ${file} changed; as it was before this change: ${saved}`);
  if (first !== undefined) console.log(`oned.conf: as it was before oneswap first changed it: ${first} (backups in between removed)`);
}

function check(file: string): void {
  try {
    register(readFileSync(file, BYTES));
  } catch (e) {
    if (e instanceof OnedConfError) throw new Error(`${file}: ${e.message}; nothing installed`);
    throw e;
  }
}

function main(argv: string[]): number {
  const [command, arg, ...rest] = argv;
  if (!arg || rest.length > 0) {
    console.error(USAGE);
    return 2;
  }
  try {
    if (command === 'register' || command === 'unregister') {
      edit(command, arg);
    } else if (command === 'check') {
      check(arg);
    } else if (command === 'modules') {
      for (const dir of productionModules(arg).topLevel) console.log(dir);
    } else {
      console.error(USAGE);
      return 2;
    }
    return 0;
  } catch (e) {
    console.error(`install.sh: ${(e as Error).message}`);
    return 1;
  }
}

process.exitCode = main(process.argv.slice(2));
