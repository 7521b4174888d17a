// oned.conf registration of the oneswap drivers (lib/install/oned-conf.ts): what register adds,
// that a second register adds nothing, and that unregister gives back the original bytes, on the
// stock 7.4 shape and on edge cases.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  BEGIN_MARKER,
  DS_MAD_CONF_BLOCK,
  END_MARKER,
  MARKET_MAD_CONF_BLOCK,
  OnedConfError,
  isRegistered,
  register,
  unregister,
} from '../../lib/install/index.js';

const STOCK = readFileSync(fileURLToPath(new URL('../fixtures/oned.conf', import.meta.url)), 'utf8');

const DS = (args: string) => `DATASTORE_MAD = [\n    EXECUTABLE = "one_datastore",\n    ARGUMENTS  = "${args}"\n]\n`;
const MARKET = (args: string) => `MARKET_MAD = [\n    EXECUTABLE = "one_market",\n    ARGUMENTS  = "${args}"\n]\n`;
const BASIC = `${DS('-t 15 -d dummy,fs -s shared,ssh')}\n${MARKET('-t 15 -m http,one')}`;

/** The attribute text outside comments, to look at what oned would read. */
function code(text: string): string {
  return text
    .split('\n')
    .map((l) => l.replace(/^\s*#.*$/, ''))
    .join('\n');
}
function listOf(text: string, attr: string, flag: string): string[] {
  const block = new RegExp(`^${attr}\\s*=\\s*\\[[^\\]]*\\]`, 'im').exec(code(text));
  assert.ok(block, `${attr} block`);
  const m = new RegExp(`${flag}\\s*([^\\s"]+)`).exec(block[0]);
  assert.ok(m, `${flag} list in ${attr}`);
  return m[1]!.split(',');
}
function count(text: string, re: RegExp): number {
  return (code(text).match(re) ?? []).length;
}
const DS_CONF_ONESWAP = /DS_MAD_CONF\s*=\s*\[\s*NAME\s*=\s*"oneswap"/g;
const MARKET_CONF_ONESWAP = /MARKET_MAD_CONF\s*=\s*\[\s*NAME\s*=\s*"oneswap"/g;

/** register → register → unregister: changes once, then nothing, then the original bytes. */
function roundTrip(original: string): string {
  const first = register(original);
  const second = register(first.text);
  assert.equal(second.changed, false, 'a second register changes nothing');
  assert.equal(second.text, first.text);
  const back = unregister(first.text);
  assert.equal(back.text, original, 'unregister gives the original bytes');
  assert.equal(unregister(back.text).changed, false, 'a second unregister changes nothing');
  assert.ok(isRegistered(first.text));
  return first.text;
}

test('stock 7.4 oned.conf: oneswap appended to the -d and -m lists, one block at the end, nothing else', () => {
  const result = register(STOCK);
  assert.equal(result.changed, true);
  assert.deepEqual(result.messages, [
    'appended oneswap to the DATASTORE_MAD -d list',
    'appended oneswap to the MARKET_MAD -m list',
    'added DS_MAD_CONF for oneswap',
    'added MARKET_MAD_CONF for oneswap',
  ]);
  const expected = STOCK.replace(
    '-d dummy,fs,lvm,ceph,dev,iscsi_libvirt,vcenter,restic,rsync -s shared',
    '-d dummy,fs,lvm,ceph,dev,iscsi_libvirt,vcenter,restic,rsync,oneswap -s shared',
  )
    .replace('-m http,s3,one,linuxcontainers"', '-m http,s3,one,linuxcontainers,oneswap"')
    .concat(`\n${BEGIN_MARKER}\n# oneswap was appended to: DATASTORE_MAD -d, MARKET_MAD -m\n${DS_MAD_CONF_BLOCK}\n${MARKET_MAD_CONF_BLOCK}${END_MARKER}\n`);
  assert.equal(result.text, expected);
  assert.deepEqual(listOf(result.text, 'DATASTORE_MAD', '-d').filter((d) => d === 'oneswap'), ['oneswap']);
  assert.deepEqual(listOf(result.text, 'DATASTORE_MAD', '-s'), ['shared', 'ssh', 'ceph', 'fs_lvm', 'fs_lvm_ssh', 'qcow2', 'vcenter']);
  assert.deepEqual(listOf(result.text, 'TM_MAD', '-d').includes('oneswap'), false);
  assert.equal(listOf(result.text, 'MARKET_MAD', '-m').at(-1), 'oneswap');
  assert.equal(count(result.text, DS_CONF_ONESWAP), 1);
  assert.equal(count(result.text, MARKET_CONF_ONESWAP), 1);
  assert.equal(isRegistered(STOCK), false);
  roundTrip(STOCK);
});

test('the conf entries carry the attributes oned 7.4 reads', () => {
  assert.match(DS_MAD_CONF_BLOCK, /NAME = "oneswap",\n\s+REQUIRED_ATTRS = "",\n\s+PERSISTENT_ONLY = "NO",\n\s+MARKETPLACE_ACTIONS = ""\n\]/);
  assert.match(MARKET_MAD_CONF_BLOCK, /NAME = "oneswap",\n\s+SUNSTONE_NAME = "VMware vCenter \(oneswap\)",\n\s+REQUIRED_ATTRS = "VCENTER_HOST,ONESWAP_CREDENTIALS",\n\s+APP_ACTIONS = "monitor",\n\s+PUBLIC = "yes"\n\]/);
});

test('register → unregister gives the original bytes on edge cases', () => {
  const cases: Record<string, string> = {
    'basic': BASIC,
    'no final newline': BASIC.trimEnd(),
    'empty lines at the end': `${BASIC}\n\n\n`,
    'CRLF line ends': BASIC.replace(/\n/g, '\r\n'),
    'single-line blocks': 'DATASTORE_MAD=[EXECUTABLE="one_datastore",ARGUMENTS="-t 15 -d fs"]\nMARKET_MAD=[EXECUTABLE="one_market",ARGUMENTS="-m http"]',
    'list is the last argument': `${DS('-t 15 -s shared -d dummy,fs')}${MARKET('-m http -t 15')}`,
    'lists first, options after': `${DS('-d fs -t 15 -w 60')}${MARKET('-m http --proxy http://p:3128')}`,
    'joined and long options': `${DS('-t 15 -dfs,ceph')}${MARKET('-t 15 --market-types=http,s3')}`,
    'long option with a space': `${DS('-t 15 --ds-types fs')}${MARKET('--market-types http -t 15')}`,
    'multi-line ARGUMENTS': 'DATASTORE_MAD = [\n  EXECUTABLE = "one_datastore",\n  ARGUMENTS = "-t 15\n     -d dummy,fs\n     -s shared" ]\nMARKET_MAD = [ EXECUTABLE = "one_market",\n  ARGUMENTS = "-t 15\n  -m http" ]\n',
    'lower-case keys': 'datastore_mad = [ executable = "one_datastore", arguments = "-d fs" ]\nmarket_mad = [ executable = "one_market", arguments = "-m http" ]\n',
    'comments with the same words': `# DATASTORE_MAD = [ ARGUMENTS = "-d commented" ]\n#MARKET_MAD = [ ARGUMENTS = "-m commented" ]\n${DS('-d fs # not a comment inside quotes')}# DS_MAD_CONF = [ NAME = "oneswap" ]\n${MARKET('-m http')}# see ${BEGIN_MARKER.slice(2)}\n# ${END_MARKER.slice(2)} is its end\n`,
    'brackets and hashes in quoted values': `X = [ A = "a ] b # c", B = "[" ]\n${DS('-d fs')}${MARKET('-m http')}`,
    'trailing comma in the list': `${DS('-d fs,ceph, -s ssh')}${MARKET('-m http,')}`,
    'oneswap already in one list': `${DS('-d fs,oneswap')}${MARKET('-m http')}`,
    'oneswap already first in a list': `${DS('-d oneswap,fs')}${MARKET('-m oneswap')}`,
    'a list that only has a prefix of oneswap': `${DS('-d fs,ones,oneswap2')}${MARKET('-m oneswapx')}`,
    'DS_MAD_CONF of oneswap already there': `${BASIC}\nDS_MAD_CONF = [ NAME = "oneswap", REQUIRED_ATTRS = "X", PERSISTENT_ONLY = "YES" ]\n`,
    'everything already there': `${DS('-d fs,oneswap')}${MARKET('-m oneswap')}DS_MAD_CONF = [ NAME = "oneswap" ]\nMARKET_MAD_CONF = [ NAME = "oneswap" ]\n`,
    'no -d or -m option (all drivers)': `${DS('-t 15 -s shared')}${MARKET('-t 15')}`,
    'no ARGUMENTS': `DATASTORE_MAD = [ EXECUTABLE = "one_datastore" ]\n${MARKET('-m http')}`,
    'the stock file': STOCK,
    'the stock file without final newline': STOCK.trimEnd(),
  };
  for (const [name, text] of Object.entries(cases)) {
    try {
      roundTrip(text);
    } catch (e) {
      (e as Error).message = `${name}: ${(e as Error).message}`;
      throw e;
    }
  }
});

test('lists: appended once, at the end of the list, never inside comments or other options', () => {
  const last = register(`${DS('-t 15 -s shared -d dummy,fs')}${MARKET('-m http -t 15')}`).text;
  assert.match(last, /ARGUMENTS {2}= "-t 15 -s shared -d dummy,fs,oneswap"/);
  assert.match(last, /ARGUMENTS {2}= "-m http,oneswap -t 15"/);
  const joined = register(`${DS('-t 15 -dfs,ceph')}${MARKET('-t 15 --market-types=http,s3')}`).text;
  assert.match(joined, /-dfs,ceph,oneswap"/);
  assert.match(joined, /--market-types=http,s3,oneswap"/);
  const multi = register('DATASTORE_MAD = [\n  ARGUMENTS = "-t 15\n     -d dummy,fs\n     -s shared" ]\nMARKET_MAD = [ ARGUMENTS = "-m http" ]\n').text;
  assert.match(multi, /-d dummy,fs,oneswap\n {5}-s shared"/);
  const commented = register(`# DATASTORE_MAD = [ ARGUMENTS = "-d commented" ]\n${DS('-d fs')}${MARKET('-m http')}`).text;
  assert.match(commented, /^# DATASTORE_MAD = \[ ARGUMENTS = "-d commented" \]$/m);
  assert.match(commented, /"-d fs,oneswap"/);
  // GetoptLong: the last -d wins.
  assert.match(register(`${DS('-d fs -d ceph')}${MARKET('-m http')}`).text, /"-d fs -d ceph,oneswap"/);
});

test('already listed or already defined: nothing added twice, and unregister leaves what it did not add', () => {
  const listed = `${DS('-d fs,oneswap')}${MARKET('-m http')}`;
  const r = register(listed);
  assert.ok(r.messages.includes('the DATASTORE_MAD -d list already names oneswap'));
  assert.equal(count(r.text, /oneswap/g) - count(listed, /oneswap/g), 1 + 1 + 2, '-m list, DS_MAD_CONF name, MARKET_MAD_CONF name and title');
  assert.match(r.text, /# oneswap was appended to: MARKET_MAD -m\n/);
  const u = unregister(r.text);
  assert.equal(u.text, listed);
  assert.ok(u.messages.some((m) => /DATASTORE_MAD -d list still names oneswap/.test(m)));

  const defined = `${BASIC}DS_MAD_CONF = [ NAME = "oneswap", REQUIRED_ATTRS = "X" ]\n`;
  const d = register(defined);
  assert.equal(count(d.text, DS_CONF_ONESWAP), 1);
  assert.equal(count(d.text, MARKET_CONF_ONESWAP), 1);
  assert.ok(d.messages.includes('oned.conf already has a DS_MAD_CONF for oneswap: not adding another'));
  assert.match(d.text, /REQUIRED_ATTRS = "X"/);

  const all = `${DS('-d fs,oneswap')}${MARKET('-m oneswap')}DS_MAD_CONF = [ NAME = "oneswap" ]\nMARKET_MAD_CONF = [ NAME = "oneswap" ]\n`;
  assert.deepEqual(register(all), { text: all, changed: false, messages: register(all).messages });
  assert.ok(!register(all).text.includes(BEGIN_MARKER));
});

test('missing DATASTORE_MAD or MARKET_MAD: a clear error', () => {
  assert.throws(() => register(MARKET('-m http')), (e: unknown) => e instanceof OnedConfError && /no DATASTORE_MAD = \[ \.\.\. \] block/.test(e.message));
  assert.throws(() => register(DS('-d fs')), (e: unknown) => e instanceof OnedConfError && /no MARKET_MAD = \[ \.\.\. \] block/.test(e.message));
  assert.throws(() => register(`# DATASTORE_MAD = [ ARGUMENTS = "-d fs" ]\n${MARKET('-m http')}`), /no DATASTORE_MAD/);
  assert.throws(() => register(''), /no DATASTORE_MAD/);
  assert.throws(() => register(`${BASIC}${DS('-d ceph')}`), /2 DATASTORE_MAD = \[ \.\.\. \] blocks \(lines 1, 10\)/);
  assert.throws(() => register(`${BASIC}X = [ A = "unterminated ]\n`), /unterminated quoted value starting at line 10/);
  assert.throws(() => register(`DATASTORE_MAD = [ ARGUMENTS = "-d fs"\n${MARKET('-m http')}`), /has no closing "\]"|"\[" inside/);
  // -m without a value enables no marketplace driver at all: not ours to guess
  assert.throws(() => register(`${DS('-d fs')}${MARKET('-t 15 -m')}`), /MARKET_MAD ARGUMENTS has -m without a list of drivers/);
  assert.throws(() => register(`${DS('-d -s shared')}${MARKET('-m http')}`), /DATASTORE_MAD ARGUMENTS has -d without a list/);
});

test('a damaged marker block is refused, not guessed at', () => {
  const registered = register(BASIC).text;
  const noEnd = registered.replace(`${END_MARKER}\n`, '');
  assert.throws(() => unregister(noEnd), (e: unknown) => e instanceof OnedConfError && /has no "# END oneswap drivers"/.test(e.message));
  // register leaves a file that registers oneswap alone, damaged marker or not
  assert.equal(register(noEnd).changed, false);
  assert.throws(() => register(noEnd.replace(',oneswap', '')), OnedConfError);
  const noBegin = registered.replace(`${BEGIN_MARKER}\n`, '');
  assert.throws(() => unregister(noBegin), /without "# BEGIN oneswap drivers/);
});

test('what the admin wrote after the block or elsewhere stays; only oneswap\'s part goes', () => {
  const registered = register(BASIC).text;
  const edited = `${registered.replace('-t 15 -m', '-t 20 -m')}\nVM_MAD = [ NAME = "kvm" ]\n`;
  const back = unregister(edited);
  assert.equal(back.text, `${BASIC.replace('-t 15 -m', '-t 20 -m')}\nVM_MAD = [ NAME = "kvm" ]\n`);
  // register on an edited, registered file: same registration, edits kept
  const again = register(edited);
  assert.equal(again.changed, false);
  // the admin took oneswap out of a list by hand: register puts it back, unregister still restores
  const removed = registered.replace('-d dummy,fs,oneswap', '-d dummy,fs');
  const repaired = register(removed);
  assert.equal(repaired.changed, true);
  assert.equal(repaired.text, registered);
  assert.equal(unregister(removed).text, BASIC);
});

test('unregister of a file oneswap never touched returns it unchanged', () => {
  for (const text of [STOCK, BASIC, '', 'garbage "', `${DS('-d fs,oneswap')}`]) {
    const u = unregister(text);
    assert.equal(u.changed, false);
    assert.equal(u.text, text);
  }
});
