import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { describe, it, after } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { decodeResponse, encodeCall, XmlRpcClient } from '../../lib/one/xmlrpc.js';

const wrap = (inner: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\r\n<methodResponse>\r\n<params>\r\n<param><value>${inner}</value></param>\r\n</params>\r\n</methodResponse>\r\n`;

describe('XML-RPC request encoding', () => {
  it('types integers, doubles, booleans, strings, arrays and structs', () => {
    const xml = encodeCall('one.image.allocate', ['oneadmin:pw', 7, 1.5, true, false, ['a', 2], { K: 'v' }, 5_000_000_000, 3n]);
    assert.match(xml, /<methodName>one\.image\.allocate<\/methodName>/);
    assert.ok(xml.includes('<value><string>oneadmin:pw</string></value>'));
    assert.ok(xml.includes('<value><int>7</int></value>'));
    assert.ok(xml.includes('<value><double>1.5</double></value>'));
    assert.ok(xml.includes('<value><boolean>1</boolean></value>'));
    assert.ok(xml.includes('<value><boolean>0</boolean></value>'));
    assert.ok(xml.includes('<value><array><data><value><string>a</string></value><value><int>2</int></value></data></array></value>'));
    assert.ok(xml.includes('<value><struct><member><name>K</name><value><string>v</string></value></member></struct></value>'));
    assert.ok(xml.includes('<value><i8>5000000000</i8></value>'));
    assert.ok(xml.includes('<value><i8>3</i8></value>'));
  });

  it('escapes & < > and strips XML-illegal control characters from strings', () => {
    const xml = encodeCall('m', ['<TEMPLATE><D>a &amp; b</D></TEMPLATE>\u0001\u0008x\ty\r\n']);
    assert.ok(xml.includes('<string>&lt;TEMPLATE&gt;&lt;D&gt;a &amp;amp; b&lt;/D&gt;&lt;/TEMPLATE&gt;x\ty&#13;\n</string>'));
  });

  it('refuses NaN, Infinity and undefined', () => {
    assert.throws(() => encodeCall('m', [Number.NaN]), (e: unknown) => e instanceof OneswapError && e.kind === 'internal');
    assert.throws(() => encodeCall('m', [undefined as unknown as string]), (e: unknown) => e instanceof OneswapError && e.kind === 'internal');
  });

  it('round-trips strings through its own decoder', () => {
    const text = 'a & b < c > d "q" \'s\' ]]> \r\n\u00e9\u{1F600}';
    const call = encodeCall('m', [text]);
    const asReply = call.replace(/^[\s\S]*<params>/, '<methodResponse><params>').replace(/<\/params>[\s\S]*$/, '</params></methodResponse>');
    assert.deepEqual(decodeResponse(asReply), { fault: false, value: text });
  });
});

describe('XML-RPC reply decoding', () => {
  it('reads a success array as oned sends it', () => {
    const reply = wrap('<array><data>\r\n<value><boolean>1</boolean></value>\r\n<value><i4>42</i4></value>\r\n<value><i4>0</i4></value>\r\n</data></array>');
    assert.deepEqual(decodeResponse(reply), { fault: false, value: [true, 42, 0] });
  });

  it('reads a failure array with an <i8> beyond 2^53 as a string', () => {
    const reply = wrap(
      '<array><data><value><boolean>0</boolean></value><value><string>[one.image.allocate] Error allocating a new image. NAME is already taken by IMAGE 12.</string></value><value><i4>16384</i4></value><value><i4>-1</i4></value><value><i8>18446744073709551615</i8></value></data></array>',
    );
    const decoded = decodeResponse(reply);
    assert.equal(decoded.fault, false);
    assert.ok(!decoded.fault);
    const value = decoded.value as unknown[];
    assert.equal(value[0], false);
    assert.equal(value[2], 16384);
    assert.equal(value[3], -1);
    assert.equal(value[4], '18446744073709551615');
  });

  it('accepts untyped values, <int>, <double>, <nil/>, <base64>, structs and empty strings', () => {
    const reply = wrap(
      '<array><data><value>untyped  text </value><value><int>-3</int></value><value><double>2.5</double></value><value><nil/></value><value><base64>aGk=</base64></value><value><struct><member><name>a</name><value><string>b</string></value></member></struct></value><value><string/></value><value></value></data></array>',
    );
    assert.deepEqual(decodeResponse(reply), {
      fault: false,
      value: ['untyped  text ', -3, 2.5, null, Buffer.from('hi'), { a: 'b' }, '', ''],
    });
  });

  it('decodes an info document sent escaped and one sent in CDATA to the same string', () => {
    const doc = '<IMAGE><ID>1</ID><NAME>a &amp; b</NAME></IMAGE>';
    const escaped = wrap(`<string>${doc.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')}</string>`);
    const cdata = wrap(`<string><![CDATA[${doc}]]></string>`);
    assert.deepEqual(decodeResponse(escaped), { fault: false, value: doc });
    assert.deepEqual(decodeResponse(cdata), { fault: false, value: doc });
  });

  it('decodes numeric character references and keeps CR sent as &#x0d;', () => {
    assert.deepEqual(decodeResponse(wrap('<string>a&#x0d;&#10;b&#233;&quot;&apos;</string>')), { fault: false, value: 'a\r\nbé"\'' });
  });

  it('reads a fault', () => {
    const reply =
      '<?xml version="1.0"?><methodResponse><fault><value><struct><member><name>faultCode</name><value><i4>-502</i4></value></member><member><name>faultString</name><value><string>Not enough parameters</string></value></member></struct></value></fault></methodResponse>';
    assert.deepEqual(decodeResponse(reply), { fault: true, code: -502, message: 'Not enough parameters' });
  });

  it('refuses what is not an XML-RPC reply', () => {
    for (const bad of ['<html><body>hi</body></html>', 'not xml', wrap('<array><data><value><int>x</int></value></data></array>'), wrap('<array><data><value><blob>1</blob></value></data></array>'), '<methodResponse><params><param><value><string>cut']) {
      assert.throws(() => decodeResponse(bad), (e: unknown) => e instanceof OneswapError && e.kind === 'data', bad);
    }
  });

  it('does not let a struct member named __proto__ touch the prototype', () => {
    const reply = wrap('<struct><member><name>__proto__</name><value><string>x</string></value></member></struct>');
    const decoded = decodeResponse(reply);
    assert.ok(!decoded.fault);
    assert.equal(Object.getPrototypeOf(decoded.value), Object.prototype);
    assert.equal((decoded.value as Record<string, unknown>)['__proto__'], 'x');
  });
});

describe('XML-RPC transport', () => {
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });

  async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server }> {
    const server = createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/RPC2`, server };
  }

  it('posts text/xml and returns the decoded reply, reusing the connection', async () => {
    const bodies: string[] = [];
    const sockets = new Set<Socket>();
    const { url } = await serve((req, res) => {
      sockets.add(req.socket);
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        bodies.push(`${req.method} ${req.headers['content-type']} ${body}`);
        res.setHeader('Content-Type', 'text/xml');
        res.end(wrap('<array><data><value><boolean>1</boolean></value><value><string>7.4.0</string></value><value><i4>0</i4></value></data></array>'));
      });
    });
    const client = new XmlRpcClient({ endpoint: url, timeoutMs: 5000 });
    try {
      for (let i = 0; i < 3; i++) {
        assert.deepEqual(await client.call('one.system.version', ['u:p']), { fault: false, value: [true, '7.4.0', 0] });
      }
    } finally {
      client.close();
    }
    assert.equal(bodies.length, 3);
    assert.match(bodies[0] ?? '', /^POST text\/xml <\?xml/);
    assert.equal(sockets.size, 1, 'keep-alive reuses one connection');
  });

  it('times out on a server that accepts and never answers, and destroys the socket', async () => {
    let serverSocketClosed: Promise<void> | undefined;
    const { url } = await serve((req) => {
      serverSocketClosed = new Promise((resolve) => req.socket.on('close', () => resolve()));
      // never answers
    });
    const client = new XmlRpcClient({ endpoint: url, timeoutMs: 300 });
    const started = Date.now();
    await assert.rejects(client.call('one.image.info', ['u:secretpw', 1, false]), (e: unknown) => {
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, 'connection');
      assert.match(e.message, /did not answer one\.image\.info within 0\.3 s/);
      assert.ok(e.message.includes(url));
      assert.ok(!e.message.includes('secretpw'));
      return true;
    });
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 280 && elapsed < 2000, `failed after ${elapsed} ms`);
    assert.ok(serverSocketClosed, 'the request reached the server');
    await Promise.race([serverSocketClosed, new Promise((_, reject) => setTimeout(() => reject(new Error('socket not destroyed')), 2000))]);
    client.close();
  });

  it('reads ONE_XMLRPC_TIMEOUT-style per-call overrides and caller cancellation', async () => {
    const { url } = await serve(() => {});
    const client = new XmlRpcClient({ endpoint: url, timeoutMs: 60_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(client.call('m', [], { signal: controller.signal }), (e: unknown) => e instanceof OneswapError && e.kind === 'interrupted');
    await assert.rejects(client.call('m', [], { timeoutMs: 100 }), (e: unknown) => e instanceof OneswapError && e.kind === 'connection');
    client.close();
  });

  it('names the endpoint when nothing listens there', async () => {
    const { url, server } = await serve(() => {});
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const client = new XmlRpcClient({ endpoint: url, timeoutMs: 5000 });
    await assert.rejects(client.call('one.system.version', ['u:p']), (e: unknown) => {
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, 'connection');
      assert.match(e.message, /^cannot reach OpenNebula at http:\/\/127\.0\.0\.1:\d+\/RPC2: .*ECONNREFUSED/);
      return true;
    });
    client.close();
  });

  it('explains an HTTP 404 as a wrong endpoint path', async () => {
    const { url } = await serve((_req, res) => {
      res.statusCode = 404;
      res.end('Not Found');
    });
    const client = new XmlRpcClient({ endpoint: url.replace('/RPC2', '/wrong'), timeoutMs: 5000 });
    await assert.rejects(client.call('one.system.version', ['u:p']), (e: unknown) => {
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, 'connection');
      assert.equal(e.message, `no XML-RPC service at ${url.replace('/RPC2', '/wrong')} (check the endpoint path, usually /RPC2)`);
      return true;
    });
    client.close();
  });

  it('reports a non-XML-RPC answer as a connection problem naming the endpoint', async () => {
    const { url } = await serve((_req, res) => res.end('<html><body>welcome</body></html>'));
    const client = new XmlRpcClient({ endpoint: url, timeoutMs: 5000 });
    await assert.rejects(client.call('one.system.version', ['u:p']), (e: unknown) => {
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, 'connection');
      assert.ok(e.message.startsWith(`OpenNebula at ${url} answered one.system.version with not an XML-RPC reply`));
      return true;
    });
    client.close();
  });

  it('retries once when the server closed a kept-alive connection', async () => {
    let requests = 0;
    const { url } = await serve((req, res) => {
      requests++;
      req.resume();
      req.on('end', () => {
        if (requests === 2) {
          req.socket.destroy(); // the idle connection was closed under us
          return;
        }
        res.end(wrap('<array><data><value><boolean>1</boolean></value><value><i4>1</i4></value><value><i4>0</i4></value></data></array>'));
      });
    });
    const client = new XmlRpcClient({ endpoint: url, timeoutMs: 5000 });
    await client.call('m', []);
    assert.deepEqual(await client.call('m', []), { fault: false, value: [true, 1, 0] });
    assert.equal(requests, 3);
    client.close();
  });

  it('refuses endpoints that are not http(s) URLs and hides user:password in messages', () => {
    assert.throws(() => new XmlRpcClient({ endpoint: 'localhost:2633', timeoutMs: 1 }), (e: unknown) => e instanceof OneswapError && e.kind === 'usage');
    assert.throws(() => new XmlRpcClient({ endpoint: 'ftp://x/RPC2', timeoutMs: 1 }), (e: unknown) => e instanceof OneswapError && e.kind === 'usage');
    const c = new XmlRpcClient({ endpoint: 'http://u:pw@host:2633/RPC2', timeoutMs: 1 });
    assert.equal(c.displayEndpoint, 'http://host:2633/RPC2');
    c.close();
  });
});
