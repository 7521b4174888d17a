// The HTTPS side of the vSphere client against a small local server: TLS policies, SOAPAction,
// cookies, re-login, timeouts, and /folder range reads. The certificate is made with openssl at
// test time; without openssl these tests are skipped (loudly).

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { VSphereClient } from '../../lib/vsphere/index.js';
import { buildDatastoreUrl, contentRangeMatches, describeDatastoreUrl } from '../../lib/vsphere/datastore-http.js';
import { SoapTransport } from '../../lib/vsphere/soap.js';
import { formatThumbprint, normalizeHex, parseThumbprint } from '../../lib/vsphere/thumbprint.js';
import { PolicyAgent } from '../../lib/vsphere/tls-agent.js';
import type { TlsPolicy } from '../../lib/vsphere/types.js';
import { makeFakeVcenterCert, opensslSkip } from '../support/fake-vcenter-cert.js';
import { refusal } from '../support/refusal.js';

describe('thumbprints', () => {
  it('normalizes colon, space and case variants to bare lower-case hex', () => {
    const sha256 = 'AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89';
    assert.deepEqual(parseThumbprint(sha256), { algorithm: 'sha256', hex: 'abcdef0123456789'.repeat(4) });
    assert.deepEqual(parseThumbprint(sha256.toLowerCase().replace(/:/g, ' ')), { algorithm: 'sha256', hex: 'abcdef0123456789'.repeat(4) });
    assert.deepEqual(parseThumbprint('sha256:' + 'ab'.repeat(32)), { algorithm: 'sha256', hex: 'ab'.repeat(32) });
    assert.deepEqual(parseThumbprint('2C:11:ED:D7:13:87:7D:B5:74:18:B8:1C:42:C2:56:1F:0D:B9:5B:B9'), { algorithm: 'sha1', hex: '2c11edd713877db57418b81c42c2561f0db95bb9' });
    assert.equal(normalizeHex('2C:11:ed'), '2c11ed');
    assert.equal(formatThumbprint('2c11edd7'), '2C:11:ED:D7');
  });

  it('refuses what is not a SHA-1 or SHA-256 fingerprint with a usage error', () => {
    for (const bad of ['', 'zz'.repeat(32), 'ab'.repeat(31), 'ab'.repeat(33)]) {
      assert.throws(() => parseThumbprint(bad), (e: unknown) => e instanceof OneswapError && e.kind === 'usage' && /--thumbprint/.test(e.message));
    }
  });
});

describe('datastore URLs', () => {
  it('percent-encodes path segments, dcPath and dsName', () => {
    assert.equal(buildDatastoreUrl('https://vc:443', '/DC0', 'LocalDS_0', 'DC0_H0_VM0/disk1.vmdk'), 'https://vc:443/folder/DC0_H0_VM0/disk1.vmdk?dcPath=DC0&dsName=LocalDS_0');
    assert.equal(
      buildDatastoreUrl('https://vc', '/Region West/DC 1', 'SAN #2 & backup (old)', '/my vm+1/my vm+1-flat.vmdk'),
      'https://vc/folder/my%20vm%2B1/my%20vm%2B1-flat.vmdk?dcPath=Region%20West%2FDC%201&dsName=SAN%20%232%20%26%20backup%20(old)',
    );
    assert.equal(buildDatastoreUrl('https://vc', 'DC0', 'ds', 'a%b/ü?.vmdk'), 'https://vc/folder/a%25b/%C3%BC%3F.vmdk?dcPath=DC0&dsName=ds');
  });

  it('round-trips through URL parsing for messages', () => {
    const u = new URL(buildDatastoreUrl('https://vc', 'DC0', 'SAN #2 & x', 'my vm/a b.vmdk'));
    assert.equal(u.searchParams.get('dsName'), 'SAN #2 & x');
    assert.equal(u.searchParams.get('dcPath'), 'DC0');
    assert.equal(describeDatastoreUrl(u), '[SAN #2 & x] my vm/a b.vmdk');
  });

  it('accepts only the exact Content-Range asked for', () => {
    assert.equal(contentRangeMatches('bytes 0-65535/16777216', 0, 65536), true);
    assert.equal(contentRangeMatches('bytes 100-199/*', 100, 200), true);
    assert.equal(contentRangeMatches('bytes 0-65535/16777216', 0, 65537), false);
    assert.equal(contentRangeMatches('bytes 1-65535/16777216', 0, 65536), false);
    assert.equal(contentRangeMatches('bytes 0-99/50', 0, 100), false);
    assert.equal(contentRangeMatches(undefined, 0, 1), false);
  });
});

// ---------------------------------------------------------------------------------------------
// A fake vCenter

const opensslMissing = opensslSkip('TLS and HTTP tests of the vSphere client');

const env = (body: string): string =>
  '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ' +
  `xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`;

const fault = (type: string, message = ''): string =>
  env(`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>${message}</faultstring><detail><${type}Fault xmlns="urn:vim25" xsi:type="${type}"></${type}Fault></detail></soapenv:Fault>`);

const SERVICE_CONTENT =
  '<returnval><rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector>' +
  '<viewManager type="ViewManager">ViewManager</viewManager><about><fullName>Fake vCenter</fullName><apiType>VirtualCenter</apiType><apiVersion>7.0.3.0</apiVersion></about>' +
  '<sessionManager type="SessionManager">SessionManager</sessionManager></returnval>';

const DESCRIPTOR = '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\n\n# Extent description\nRW 8 FLAT "disk-flat.vmdk" 0\n';
const DISK = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));

interface FakeState {
  requests: number;
  soapActions: string[];
  cookiesSeen: (string | undefined)[];
  logins: number;
  /** Session values the server accepts. */
  live: Set<string>;
  quoteCookie: boolean;
  /** When set, /sdk never answers (timeout tests). */
  hang: boolean;
  /** What /folder does with a Range request. */
  rangeMode: 'ok' | 'ignore' | 'wrong' | 'short';
}

const state: FakeState = { requests: 0, soapActions: [], cookiesSeen: [], logins: 0, live: new Set(), quoteCookie: false, hang: false, rangeMode: 'ok' };
const PASSWORD = 's3cr3t-Pa55';

function sessionOf(req: IncomingMessage): string | undefined {
  const m = /vmware_soap_session=("?)([^";]*)\1/.exec(req.headers.cookie ?? '');
  return m?.[2];
}

function handleSoap(req: IncomingMessage, res: ServerResponse, body: string): void {
  state.soapActions.push(String(req.headers.soapaction));
  state.cookiesSeen.push(req.headers.cookie);
  const method = /<soapenv:Body><(\w+)/.exec(body)?.[1] ?? '';
  const send = (status: number, xml: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'Content-Type': 'text/xml; charset=utf-8', ...headers });
    res.end(xml);
  };
  if (state.hang) return;
  if (method === 'RetrieveServiceContent') return send(200, env(`<RetrieveServiceContentResponse xmlns="urn:vim25">${SERVICE_CONTENT}</RetrieveServiceContentResponse>`));
  if (method === 'Login') {
    if (sessionOf(req) !== undefined && state.live.has(sessionOf(req) ?? '')) return send(500, fault('InvalidLogin', 'Login failure'));
    if (!body.includes(`<password>${PASSWORD}</password>`)) return send(500, fault('InvalidLogin', 'Login failure'));
    state.logins++;
    const id = `sess-${state.logins}`;
    state.live.add(id);
    const value = state.quoteCookie ? `"${id}"` : id;
    return send(200, env('<LoginResponse xmlns="urn:vim25"><returnval><key>k</key><userName>u</userName></returnval></LoginResponse>'), {
      'Set-Cookie': `vmware_soap_session=${value}; Path=/; HttpOnly${state.quoteCookie ? '; Secure' : ''}`,
    });
  }
  if (!state.live.has(sessionOf(req) ?? '')) return send(500, fault('NotAuthenticated'));
  if (method === 'Logout') {
    state.live.delete(sessionOf(req) ?? '');
    return send(200, env('<LogoutResponse xmlns="urn:vim25"></LogoutResponse>'));
  }
  if (method === 'CurrentTime') return send(200, env('<CurrentTimeResponse xmlns="urn:vim25"><returnval>2026-01-01T00:00:00Z</returnval></CurrentTimeResponse>'));
  return send(500, fault('MethodNotFound', `no ${method}`));
}

function handleFolder(req: IncomingMessage, res: ServerResponse): void {
  state.cookiesSeen.push(req.headers.cookie);
  if (!state.live.has(sessionOf(req) ?? '')) {
    res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="VMware HTTP server"' });
    return void res.end();
  }
  const url = new URL(req.url ?? '/', 'https://x');
  if (url.pathname === '/folder/vm%201/disk.vmdk') {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
    return void res.end(DESCRIPTOR);
  }
  if (url.pathname === '/folder/big.txt') {
    res.writeHead(200, { 'Content-Length': String(2 * 1024 * 1024) });
    return void res.end(Buffer.alloc(2 * 1024 * 1024));
  }
  if (url.pathname !== '/folder/vm%201/disk-flat.vmdk' || url.searchParams.get('dsName') !== 'ds 1' || url.searchParams.get('dcPath') !== 'DC0') {
    res.writeHead(404);
    return void res.end();
  }
  const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  if (req.method === 'HEAD' || range === null || state.rangeMode === 'ignore') {
    res.writeHead(200, { 'Content-Length': String(DISK.length) });
    return void res.end(req.method === 'HEAD' ? undefined : DISK);
  }
  const start = Number(range[1]);
  const end = Number(range[2]);
  if (state.rangeMode === 'wrong') {
    res.writeHead(206, { 'Content-Range': `bytes 0-${end - start}/${DISK.length}`, 'Content-Length': String(end - start + 1) });
    return void res.end(DISK.subarray(0, end - start + 1));
  }
  res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${DISK.length}`, 'Content-Length': String(end - start + 1) });
  if (state.rangeMode === 'short') {
    res.write(DISK.subarray(start, start + 10));
    return void setTimeout(() => res.destroy(), 50);
  }
  res.end(DISK.subarray(start, end + 1));
}

describe('vSphere client over HTTPS (fake vCenter)', { skip: opensslMissing || false }, () => {
  let dir = '';
  let certPem = '';
  let sha256 = '';
  let sha1 = '';
  let server: https.Server;
  let port = 0;
  const host = '127.0.0.1';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oneswap-vsphere-tls-'));
    let keyPem: string;
    ({ keyPem, certPem } = makeFakeVcenterCert(dir));
    const x509 = new X509Certificate(certPem);
    sha256 = x509.fingerprint256;
    sha1 = x509.fingerprint;
    server = https.createServer({ key: keyPem, cert: certPem }, (req, res) => {
      state.requests++;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/sdk') handleSoap(req, res, Buffer.concat(chunks).toString('utf8'));
        else handleFolder(req, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  const connect = (tls: TlsPolicy, extra: { password?: string; logger?: { warn(m: string): void }; timeoutMs?: number; host?: string } = {}) =>
    VSphereClient.connect({
      host: extra.host ?? host,
      port,
      credentials: { user: 'administrator@vsphere.local', password: extra.password ?? PASSWORD },
      tls,
      keepAliveMs: 0,
      ...(extra.timeoutMs === undefined ? {} : { timeoutMs: extra.timeoutMs }),
      ...(extra.logger === undefined ? {} : { logger: extra.logger }),
    });

  describe('TLS policies', () => {
    it('verify without a CA: refuses before sending anything, prints the SHA-256 thumbprint to pin', async () => {
      const before = state.requests;
      const err = await refusal(connect({ kind: 'verify' }));
      assert.equal(err.kind, 'connection');
      assert.equal(state.requests, before, 'no HTTP request may reach an untrusted server');
      assert.ok(err.message.includes(sha256), err.message);
      assert.match(err.message, /not trusted/);
      assert.ok(err.message.includes(`--thumbprint ${sha256}`));
      assert.match(err.message, /--ca/);
      assert.ok(!err.message.includes('\n'));
    });

    it('verify with the certificate as CA: connects', async () => {
      const client = await connect({ kind: 'verify', ca: certPem });
      assert.equal(client.apiVersion, '7.0.3.0');
      await client.logout();
    });

    it('verify with the right CA but a host name the certificate does not name: refuses', async () => {
      const err = await refusal(connect({ kind: 'verify', ca: certPem }, { host: 'localhost' }));
      assert.equal(err.kind, 'connection');
      assert.match(err.message, /names do not include localhost/);
    });

    it('thumbprint pin: SHA-256 or SHA-1, any notation, connects', async () => {
      for (const thumbprint of [sha256, normalizeHex(sha256), sha1.toLowerCase()]) {
        const client = await connect({ kind: 'thumbprint', thumbprint });
        await client.logout();
      }
    });

    it('wrong pin: refuses before sending anything and shows both thumbprints', async () => {
      const before = state.requests;
      const wrong = 'AA:'.repeat(31) + 'AA';
      const err = await refusal(connect({ kind: 'thumbprint', thumbprint: wrong }));
      assert.equal(err.kind, 'connection');
      assert.equal(state.requests, before);
      assert.ok(err.message.includes(sha256));
      assert.ok(err.message.includes(wrong));
    });

    it('insecure: connects and warns through the logger', async () => {
      const warnings: string[] = [];
      const client = await connect({ kind: 'insecure' }, { logger: { warn: (m) => warnings.push(m) } });
      await client.logout();
      assert.equal(warnings.length, 1);
      assert.match(warnings[0] ?? '', /verification is off/);
    });
  });

  describe('SOAP session', () => {
    it('speaks the server API version in SOAPAction after RetrieveServiceContent', async () => {
      state.soapActions.length = 0;
      const client = await connect({ kind: 'thumbprint', thumbprint: sha256 });
      await client.logout();
      assert.deepEqual(state.soapActions, ['urn:vim25/6.5', 'urn:vim25/7.0.3.0', 'urn:vim25/7.0.3.0']);
    });

    it('sends a quoted session cookie back verbatim', async () => {
      state.quoteCookie = true;
      state.cookiesSeen.length = 0;
      try {
        const client = await connect({ kind: 'thumbprint', thumbprint: sha256 });
        await client.logout();
      } finally {
        state.quoteCookie = false;
      }
      assert.match(state.cookiesSeen.at(-1) ?? '', /^vmware_soap_session="sess-\d+"$/);
    });

    it('wrong password: auth error naming host and user, never the password', async () => {
      const err = await refusal(connect({ kind: 'thumbprint', thumbprint: sha256 }, { password: 'wrong-Pa55word' }));
      assert.equal(err.kind, 'auth');
      assert.equal(err.message, `vCenter ${host} refused the login for user administrator@vsphere.local: wrong user name or password`);
      assert.ok(!JSON.stringify({ m: err.message, h: err.hint, c: String(err.cause) }).includes('wrong-Pa55word'));
    });

    it('re-logs in once when the session expired, then retries the call', async () => {
      const agent = new PolicyAgent({ endpoint: { host, port }, tls: { kind: 'thumbprint', thumbprint: sha256 }, maxSockets: 2, handshakeTimeoutMs: 5000 });
      const transport = new SoapTransport({ endpoint: { host, port }, agent, timeoutMs: 5000 });
      transport.cookie = 'vmware_soap_session=expired';
      const stale: (string | undefined)[] = [];
      transport.reauthenticate = async (staleCookie) => {
        stale.push(staleCookie);
        state.live.add('fresh');
        transport.cookie = 'vmware_soap_session=fresh';
      };
      const rv = await transport.callOne('CurrentTime', { type: 'ServiceInstance', value: 'ServiceInstance' });
      assert.equal(rv, '2026-01-01T00:00:00Z');
      assert.deepEqual(stale, ['vmware_soap_session=expired']);

      // A second NotAuthenticated after the re-login is an auth error, not a loop.
      transport.cookie = 'vmware_soap_session=expired';
      transport.reauthenticate = async () => {};
      const err = await refusal(transport.callOne('CurrentTime', { type: 'ServiceInstance', value: 'ServiceInstance' }));
      assert.equal(err.kind, 'auth');
      agent.destroy();
    });

    it('a silent server times out as a connection error naming host:port and the call', async () => {
      const client = await connect({ kind: 'thumbprint', thumbprint: sha256 }, { timeoutMs: 300 });
      state.hang = true;
      try {
        const err = await refusal(client.powerState({ type: 'VirtualMachine', value: 'vm-1' }));
        assert.equal(err.kind, 'connection');
        assert.match(err.message, new RegExp(`${host}:${port} did not answer RetrievePropertiesEx within 0.3 s`));
      } finally {
        state.hang = false;
      }
      await client.logout();
    });

    it('a closed port is a connection error naming host:port', async () => {
      const err = await refusal(VSphereClient.connect({ host, port: 1, credentials: { user: 'u', password: 'p' }, tls: { kind: 'insecure' }, keepAliveMs: 0 }));
      assert.equal(err.kind, 'connection');
      assert.match(err.message, /cannot reach vCenter 127\.0\.0\.1:1 \(connection refused\)/);
    });

    it('an unknown host name is a connection error', async () => {
      const err = await refusal(VSphereClient.connect({ host: 'no-such-host.invalid', credentials: { user: 'u', password: 'p' }, keepAliveMs: 0, timeoutMs: 5000 }));
      assert.equal(err.kind, 'connection');
      assert.match(err.message, /no-such-host\.invalid:443/);
    });
  });

  describe('/folder', () => {
    it('reads exact ranges with the session cookie, HEAD gives the size', async () => {
      const client = await connect({ kind: 'thumbprint', thumbprint: sha256 });
      try {
        const url = client.datastoreUrl('/DC0', 'ds 1', 'vm 1/disk-flat.vmdk');
        assert.deepEqual(await client.head(url), { size: DISK.length });
        const body = await (await client.openRange(url, 100, 1100)).toArray();
        assert.deepEqual(Buffer.concat(body), DISK.subarray(100, 1100));
        assert.match(state.cookiesSeen.at(-1) ?? '', /^vmware_soap_session=sess-\d+$/);
      } finally {
        await client.logout();
      }
    });

    it('re-logs in on 401 and retries once', async () => {
      const client = await connect({ kind: 'thumbprint', thumbprint: sha256 });
      try {
        const url = client.datastoreUrl('DC0', 'ds 1', 'vm 1/disk-flat.vmdk');
        state.live.clear(); // the server forgot every session
        const logins = state.logins;
        const body = await (await client.openRange(url, 0, 16)).toArray();
        assert.deepEqual(Buffer.concat(body), DISK.subarray(0, 16));
        assert.equal(state.logins, logins + 1);
      } finally {
        await client.logout();
      }
    });

    it('refuses a full-body 200 or a mismatched Content-Range instead of reading it as the range', async () => {
      const client = await connect({ kind: 'thumbprint', thumbprint: sha256 });
      const url = client.datastoreUrl('DC0', 'ds 1', 'vm 1/disk-flat.vmdk');
      try {
        state.rangeMode = 'ignore';
        const ignored = await refusal(client.openRange(url, 100, 200));
        assert.equal(ignored.kind, 'remote');
        assert.match(ignored.message, /HTTP 200/);
        assert.match(ignored.message, /\[ds 1\] vm 1\/disk-flat\.vmdk/);
        state.rangeMode = 'wrong';
        const wrong = await refusal(client.openRange(url, 100, 200));
        assert.match(wrong.message, /Content-Range "bytes 0-99\/4096"/);
      } finally {
        state.rangeMode = 'ok';
        await client.logout();
      }
    });

    it('fails the stream of a body cut short', async () => {
      const client = await connect({ kind: 'thumbprint', thumbprint: sha256 });
      try {
        state.rangeMode = 'short';
        const stream = await client.openRange(client.datastoreUrl('DC0', 'ds 1', 'vm 1/disk-flat.vmdk'), 0, 1000);
        const err = await refusal(stream.toArray());
        assert.ok(err.kind === 'connection' || err.kind === 'data', err.kind);
      } finally {
        state.rangeMode = 'ok';
        await client.logout();
      }
    });

    it('404 names the file; a big "text" file is refused; foreign hosts never get the cookie', async () => {
      const client = await connect({ kind: 'thumbprint', thumbprint: sha256 });
      try {
        const missing = await refusal(client.openRange(client.datastoreUrl('DC0', 'ds 1', 'vm 1/nope.vmdk'), 0, 10));
        assert.equal(missing.kind, 'not-found');
        assert.match(missing.message, /\[ds 1\] vm 1\/nope\.vmdk/);
        const big = await refusal(client.getText(client.datastoreUrl('DC0', 'ds 1', 'big.txt')));
        assert.equal(big.kind, 'data');
        const foreign = await refusal(client.head('https://evil.example.com/folder/x?dcPath=DC0&dsName=ds'));
        assert.equal(foreign.kind, 'usage');
        const range = await refusal(client.openRange(client.datastoreUrl('DC0', 'ds 1', 'vm 1/disk-flat.vmdk'), 10, 10));
        assert.equal(range.kind, 'internal');
      } finally {
        await client.logout();
      }
    });

    it('getText reads a small file', async () => {
      const client = await connect({ kind: 'thumbprint', thumbprint: sha256 });
      try {
        assert.equal(await client.getText(client.datastoreUrl('DC0', 'ds 1', 'vm 1/disk.vmdk')), DESCRIPTOR);
      } finally {
        await client.logout();
      }
    });
  });
});
