import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { Credentials, resolveCredentials, resolveEndpoint, resolveTimeoutMs, resolveTls } from '../../lib/one/session.js';

const root = mkdtempSync(join(tmpdir(), 'oneswap-session-'));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fresh HOME and system directory, each optionally holding ~/.one files. */
function place(files: { home?: Record<string, string>; system?: Record<string, string> } = {}): { home: string; systemDir: string } {
  const base = join(root, String(n++));
  const home = join(base, 'home');
  const systemDir = join(base, 'var-lib-one', '.one');
  mkdirSync(join(home, '.one'), { recursive: true });
  mkdirSync(systemDir, { recursive: true });
  for (const [name, text] of Object.entries(files.home ?? {})) writeFileSync(join(home, '.one', name), text);
  for (const [name, text] of Object.entries(files.system ?? {})) writeFileSync(join(systemDir, name), text);
  return { home, systemDir };
}

describe('endpoint resolution', () => {
  it('explicit → ONE_XMLRPC → ~/.one/one_endpoint → /var/lib/one/.one/one_endpoint → default', () => {
    const p = place({ home: { one_endpoint: ' http://home:2633/RPC2\n' }, system: { one_endpoint: 'http://system:2633/RPC2\n' } });
    const env = { HOME: p.home, ONE_XMLRPC: 'http://env:2633/RPC2' };
    assert.deepEqual(resolveEndpoint('http://explicit/RPC2', { env, systemDir: p.systemDir }), { value: 'http://explicit/RPC2', from: 'option' });
    assert.deepEqual(resolveEndpoint(undefined, { env, systemDir: p.systemDir }), { value: 'http://env:2633/RPC2', from: 'ONE_XMLRPC' });
    assert.deepEqual(resolveEndpoint(undefined, { env: { HOME: p.home }, systemDir: p.systemDir }), {
      value: 'http://home:2633/RPC2',
      from: join(p.home, '.one', 'one_endpoint'),
    });
    assert.equal(resolveEndpoint(undefined, { env: {}, systemDir: p.systemDir }).value, 'http://system:2633/RPC2');
    const empty = place();
    assert.deepEqual(resolveEndpoint(undefined, { env: { HOME: empty.home, ONE_XMLRPC: '' }, systemDir: empty.systemDir }), {
      value: 'http://localhost:2633/RPC2',
      from: 'default',
    });
  });
});

describe('secret resolution', () => {
  it('explicit → file named by ONE_AUTH → $HOME/.one/one_auth → /var/lib/one/.one/one_auth', () => {
    const p = place({ home: { one_auth: 'homeuser:homepw\n' }, system: { one_auth: 'oneadmin:syspw\n' } });
    const named = join(root, `named-${n}`);
    writeFileSync(named, 'nameduser:namedpw');
    const where = (env: NodeJS.ProcessEnv) => ({ env, systemDir: p.systemDir });
    assert.equal(resolveCredentials('me:pw', where({ HOME: p.home, ONE_AUTH: named })).value.session, 'me:pw');
    assert.equal(resolveCredentials(undefined, where({ HOME: p.home, ONE_AUTH: named })).value.user, 'nameduser');
    assert.equal(resolveCredentials(undefined, where({ HOME: p.home, ONE_AUTH: join(root, 'missing') })).value.user, 'homeuser');
    assert.equal(resolveCredentials(undefined, where({ HOME: p.home, ONE_AUTH: root /* a directory */ })).value.user, 'homeuser');
    const sys = resolveCredentials(undefined, where({}));
    assert.equal(sys.value.session, 'oneadmin:syspw');
    assert.equal(sys.from, join(p.systemDir, 'one_auth'));
  });

  it('fails with "ONE_AUTH file not present" when nothing is found', () => {
    const p = place();
    assert.throws(
      () => resolveCredentials(undefined, { env: { HOME: p.home }, systemDir: p.systemDir }),
      (e: unknown) => e instanceof OneswapError && e.kind === 'auth' && e.message === 'ONE_AUTH file not present',
    );
  });

  it('takes the first line, strips trailing whitespace, splits at the first colon', () => {
    const p = place({ home: { one_auth: 'alice:pa:ss:word  \t\r\nsecond:line\n' } });
    const c = resolveCredentials(undefined, { env: { HOME: p.home }, systemDir: p.systemDir }).value;
    assert.equal(c.user, 'alice');
    assert.equal(c.session, 'alice:pa:ss:word');
  });

  it('never shows the password: not in errors, inspect or JSON', () => {
    const p = place({ home: { one_auth: 'no-colon-secretvalue\n' } });
    assert.throws(
      () => resolveCredentials(undefined, { env: { HOME: p.home }, systemDir: p.systemDir }),
      (e: unknown) => e instanceof OneswapError && e.kind === 'auth' && !e.message.includes('secretvalue') && e.message.includes('one_auth'),
    );
    assert.throws(() => new Credentials('secretvalue'), (e: unknown) => e instanceof Error && !e.message.includes('secretvalue'));
    const c = new Credentials('bob:hunter2');
    assert.ok(!inspect(c).includes('hunter2'));
    assert.ok(!inspect({ c }, { depth: 5, showHidden: true }).includes('hunter2'));
    assert.ok(!JSON.stringify({ c }).includes('hunter2'));
    assert.ok(!String(c).includes('hunter2'));
  });
});

describe('timeout and TLS settings', () => {
  it('explicit ms → ONE_XMLRPC_TIMEOUT seconds → 30 s', () => {
    assert.equal(resolveTimeoutMs(1500, { env: { ONE_XMLRPC_TIMEOUT: '5' } }), 1500);
    assert.equal(resolveTimeoutMs(undefined, { env: { ONE_XMLRPC_TIMEOUT: '5' } }), 5000);
    assert.equal(resolveTimeoutMs(undefined, { env: { ONE_XMLRPC_TIMEOUT: '0.5' } }), 500);
    assert.equal(resolveTimeoutMs(undefined, { env: {} }), 30_000);
    assert.throws(() => resolveTimeoutMs(undefined, { env: { ONE_XMLRPC_TIMEOUT: 'soon' } }), (e: unknown) => e instanceof OneswapError && e.kind === 'usage');
    assert.throws(() => resolveTimeoutMs(0), (e: unknown) => e instanceof OneswapError && e.kind === 'usage');
  });

  it('ONE_DISABLE_SSL_VERIFY and ONE_CERT_DIR', () => {
    assert.deepEqual(resolveTls({ env: {} }), {});
    assert.equal(resolveTls({ env: { ONE_DISABLE_SSL_VERIFY: 'yes' } }).rejectUnauthorized, false);
    const dir = join(root, 'certs');
    mkdirSync(dir);
    writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'README'), 'not a certificate');
    const ca = resolveTls({ env: { ONE_CERT_DIR: dir } }).ca ?? [];
    assert.ok(ca.some((pem) => pem.includes('MIIB')));
    assert.ok(ca.length > 1, 'the default CAs stay');
    assert.ok(!ca.includes('not a certificate'));
  });
});
