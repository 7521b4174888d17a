// OneClient against a scripted XML-RPC server: what goes on the wire for each method (every optional
// parameter explicit, ints as <int>, flags as <boolean>), paging, waiting for images, connecting.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { OneApiError, OneClient, Template } from '../../lib/one/index.js';
import { parseXml } from '../../lib/one/xml.js';

type Handler = (params: string[]) => string;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const ok = (v: string | number) =>
  `<methodResponse><params><param><value><array><data><value><boolean>1</boolean></value><value>${typeof v === 'number' ? `<i4>${v}</i4>` : `<string>${esc(v)}</string>`}</value><value><i4>0</i4></value></data></array></value></param></params></methodResponse>`;
const fail = (message: string, code: number) =>
  `<methodResponse><params><param><value><array><data><value><boolean>0</boolean></value><value><string>${esc(message)}</string></value><value><i4>${code}</i4></value><value><i4>-1</i4></value><value><i8>-1</i8></value></data></array></value></param></params></methodResponse>`;

const USER = (name: string) =>
  `<USER><ID>0</ID><GID>0</GID><GROUPS><ID>0</ID></GROUPS><GNAME>oneadmin</GNAME><NAME>${name}</NAME><TEMPLATE/></USER>`;
const IMAGE = (id: number, state: number, error = '') =>
  `<IMAGE><ID>${id}</ID><UID>0</UID><GID>0</GID><NAME>img${id}</NAME><STATE>${state}</STATE><SIZE>1</SIZE><DATASTORE_ID>1</DATASTORE_ID><TEMPLATE>${error ? `<ERROR><![CDATA[${error}]]></ERROR>` : ''}</TEMPLATE></IMAGE>`;

let server: Server;
let endpoint: string;
const calls: { method: string; params: string[] }[] = [];
let handlers: Record<string, Handler> = {};

/** Each top-level param as "type:text"; untyped values read as strings. */
function describeParams(xml: string): { method: string; params: string[] } {
  const root = parseXml(xml, 'call');
  const params = (root.first('params')?.all('param') ?? []).map((p) => {
    const value = p.first('value');
    const typed = value?.children[0];
    return typed ? `${typed.name}:${typed.text}` : `string:${value?.text ?? ''}`;
  });
  return { method: root.textOf('methodName'), params };
}

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const call = describeParams(body);
      calls.push(call);
      const handler = handlers[call.method];
      res.end(handler ? handler(call.params) : fail(`no handler for ${call.method}`, 4096));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/RPC2`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});
beforeEach(() => {
  calls.length = 0;
  handlers = {
    'one.user.info': (p) => (p[0] === 'string:oneadmin:right' ? ok(USER('oneadmin')) : fail("[one.user.info] User couldn't be authenticated, aborting call.", 256)),
  };
});

async function connect(): Promise<OneClient> {
  return OneClient.connect({ endpoint, secret: 'oneadmin:right', env: {} });
}

describe('OneClient.connect', () => {
  it('checks the credentials with one.user.info(-1)', async () => {
    const client = await connect();
    assert.equal(client.user.name, 'oneadmin');
    assert.equal(client.user.isAdmin, true);
    assert.equal(client.endpoint, endpoint);
    assert.deepEqual(calls, [{ method: 'one.user.info', params: ['string:oneadmin:right', 'int:-1', 'boolean:0'] }]);
    client.close();
  });

  it('refuses bad credentials with an auth error that names the user, not the password', async () => {
    await assert.rejects(OneClient.connect({ endpoint, secret: 'oneadmin:wrong-secret', env: {} }), (e: unknown) => {
      assert.ok(e instanceof OneApiError);
      assert.equal(e.kind, 'auth');
      assert.equal(e.code, 256);
      assert.equal(e.message, `OpenNebula at ${endpoint} refused the credentials of user oneadmin: [one.user.info] User couldn't be authenticated, aborting call.`);
      assert.ok(!`${e.message} ${e.hint}`.includes('wrong-secret'));
      return true;
    });
  });
});

describe('OneClient methods put every parameter on the wire', () => {
  const cases: [string, (c: OneClient) => Promise<unknown>, string, string[], string][] = [
    ['version', (c) => c.version(), 'one.system.version', [], ok('7.4.0')],
    ['datastore', (c) => c.datastore(100), 'one.datastore.info', ['int:100', 'boolean:0'], ok('<DATASTORE><ID>100</ID><NAME>d</NAME></DATASTORE>')],
    ['datastores', (c) => c.datastores(), 'one.datastorepool.info', [], ok('<DATASTORE_POOL/>')],
    ['imageAllocate', (c) => c.imageAllocate(Template.of({ NAME: 'a&b', SIZE: 10 }), 1), 'one.image.allocate', ['string:<TEMPLATE><NAME>a&amp;b</NAME><SIZE>10</SIZE></TEMPLATE>', 'int:1', 'boolean:0'], ok(5)],
    ['imageAllocate skip', (c) => c.imageAllocate(Template.of({ NAME: 'x' }), 1, true), 'one.image.allocate', ['string:<TEMPLATE><NAME>x</NAME></TEMPLATE>', 'int:1', 'boolean:1'], ok(5)],
    ['image', (c) => c.image(5), 'one.image.info', ['int:5', 'boolean:0'], ok(IMAGE(5, 1))],
    ['imageDelete', (c) => c.imageDelete(5), 'one.image.delete', ['int:5', 'boolean:0'], ok(5)],
    ['imageDelete force', (c) => c.imageDelete(5, true), 'one.image.delete', ['int:5', 'boolean:1'], ok(5)],
    ['imageUpdate merge', (c) => c.imageUpdate(5, Template.of({ K: 'v' }), 'merge'), 'one.image.update', ['int:5', 'string:<TEMPLATE><K>v</K></TEMPLATE>', 'int:1'], ok(5)],
    ['imageUpdate replace', (c) => c.imageUpdate(5, Template.of({ K: 'v' }), 'replace'), 'one.image.update', ['int:5', 'string:<TEMPLATE><K>v</K></TEMPLATE>', 'int:0'], ok(5)],
    ['imagePersistent', (c) => c.imagePersistent(5, true), 'one.image.persistent', ['int:5', 'boolean:1'], ok(5)],
    ['imageChown', (c) => c.imageChown(5, 2, -1), 'one.image.chown', ['int:5', 'int:2', 'int:-1'], ok(5)],
    ['imageChtype', (c) => c.imageChtype(5, 'DATABLOCK'), 'one.image.chtype', ['int:5', 'string:DATABLOCK'], ok(5)],
    ['templateAllocate', (c) => c.templateAllocate(Template.of({ NAME: 't' })), 'one.template.allocate', ['string:<TEMPLATE><NAME>t</NAME></TEMPLATE>'], ok(4)],
    ['template', (c) => c.template(4), 'one.template.info', ['int:4', 'boolean:0', 'boolean:0'], ok('<VMTEMPLATE><ID>4</ID><NAME>t</NAME></VMTEMPLATE>')],
    ['template extended', (c) => c.template(4, true), 'one.template.info', ['int:4', 'boolean:1', 'boolean:0'], ok('<VMTEMPLATE><ID>4</ID><NAME>t</NAME></VMTEMPLATE>')],
    ['templateDelete', (c) => c.templateDelete(4), 'one.template.delete', ['int:4', 'boolean:0'], ok(4)],
    ['templateInstantiate defaults', (c) => c.templateInstantiate(4), 'one.template.instantiate', ['int:4', 'string:', 'boolean:0', 'string:', 'boolean:0'], ok(9)],
    [
      'templateInstantiate all',
      (c) => c.templateInstantiate(4, { name: 'vm', hold: true, extra: Template.of({ MEMORY: 512 }), persistent: true }),
      'one.template.instantiate',
      ['int:4', 'string:vm', 'boolean:1', 'string:<TEMPLATE><MEMORY>512</MEMORY></TEMPLATE>', 'boolean:1'],
      ok(9),
    ],
    ['templateChown', (c) => c.templateChown(4, 2, 1), 'one.template.chown', ['int:4', 'int:2', 'int:1'], ok(4)],
    ['vmInfo', (c) => c.vmInfo(9), 'one.vm.info', ['int:9', 'boolean:0'], ok('<VM><ID>9</ID><NAME>v</NAME></VM>')],
    ['vms', (c) => c.vms(), 'one.vmpool.info', ['int:-2', 'int:0', 'int:-500', 'int:-1'], ok('<VM_POOL/>')],
    ['vmAction', (c) => c.vmAction('terminate-hard', 9), 'one.vm.action', ['string:terminate-hard', 'int:9'], ok(9)],
    ['vnet', (c) => c.vnet(3), 'one.vn.info', ['int:3', 'boolean:0'], ok('<VNET><ID>3</ID><NAME>n</NAME></VNET>')],
    ['vnets', (c) => c.vnets(), 'one.vnpool.info', ['int:-2', 'int:0', 'int:-500'], ok('<VNET_POOL/>')],
    ['vnetAddAr', (c) => c.vnetAddAr(3, Template.of({ AR: { TYPE: 'ETHER', MAC: '00:50:56:aa:bb:cc', SIZE: 1 } })), 'one.vn.add_ar', ['int:3', 'string:<TEMPLATE><AR><TYPE>ETHER</TYPE><MAC>00:50:56:aa:bb:cc</MAC><SIZE>1</SIZE></AR></TEMPLATE>'], ok(3)],
    ['vnetRemoveAr', (c) => c.vnetRemoveAr(3, 1), 'one.vn.rm_ar', ['int:3', 'int:1'], ok(3)],
    ['systemConfig', (c) => c.systemConfig(), 'one.system.config', [], ok('<OPENNEBULA_CONFIGURATION/>')],
    ['whoami', (c) => c.whoami(), 'one.user.info', ['int:-1', 'boolean:0'], ok(USER('oneadmin'))],
  ];
  for (const [label, run, method, params, reply] of cases) {
    it(label, async () => {
      const client = await connect();
      const prior = handlers[method];
      handlers[method] = (p) => (method === 'one.user.info' && prior ? prior(p) : reply);
      calls.length = 0;
      try {
        await run(client);
      } finally {
        client.close();
      }
      assert.deepEqual(calls, [{ method, params: ['string:oneadmin:right', ...params] }]);
    });
  }
});

describe('OneClient behaviour', () => {
  it('pages through large pools and stops at a short page', async () => {
    const pool = (from: number, count: number) => ok(`<IMAGE_POOL>${Array.from({ length: count }, (_, i) => IMAGE(from + i, 1)).join('')}</IMAGE_POOL>`);
    handlers['one.imagepool.info'] = (p) => (p[2] === 'int:0' ? pool(0, 500) : pool(500, 20));
    const client = await connect();
    calls.length = 0;
    const images = await client.images();
    client.close();
    assert.equal(images.length, 520);
    assert.deepEqual(calls.map((c) => c.params.slice(1)), [['int:-2', 'int:0', 'int:-500'], ['int:-2', 'int:500', 'int:-500']]);
  });

  it('stops paging when a server ignores paging and repeats itself', async () => {
    handlers['one.imagepool.info'] = () => ok(`<IMAGE_POOL>${Array.from({ length: 500 }, (_, i) => IMAGE(i, 1)).join('')}</IMAGE_POOL>`);
    const client = await connect();
    assert.equal((await client.images()).length, 500);
    client.close();
  });

  it('waits for an image through LOCKED to READY', async () => {
    let polls = 0;
    handlers['one.image.info'] = () => ok(IMAGE(5, ++polls < 3 ? 4 : 1));
    const client = await connect();
    const image = await client.waitForImage(5, { pollMs: 10 });
    client.close();
    assert.equal(image.stateName, 'READY');
    assert.equal(polls, 3);
  });

  it('throws the driver message when the image goes to ERROR', async () => {
    handlers['one.image.info'] = () => ok(IMAGE(5, 5, 'Mon Nov 20 : Error copying image in the datastore: disk0 unreadable'));
    const client = await connect();
    await assert.rejects(client.waitForImage(5, { pollMs: 10 }), (e: unknown) => {
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, 'remote');
      assert.equal(e.message, 'image 5 (img5) failed in datastore 1: Mon Nov 20 : Error copying image in the datastore: disk0 unreadable');
      return true;
    });
    client.close();
  });

  it('times out clearly, and stops when cancelled', async () => {
    handlers['one.image.info'] = () => ok(IMAGE(5, 4));
    const client = await connect();
    await assert.rejects(client.waitForImage(5, { pollMs: 10, timeoutMs: 50 }), /image 5 \(img5\) is still LOCKED after 0 s, waiting for READY/);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(client.waitForImage(5, { pollMs: 10, signal: controller.signal }), (e: unknown) => e instanceof OneswapError && e.kind === 'interrupted');
    client.close();
  });

  it('turns oned failures into OneApiErrors with oned\'s message', async () => {
    handlers['one.image.allocate'] = () => fail('[one.image.allocate] Error allocating a new image. NAME is already taken by IMAGE 12.', 16384);
    const client = await connect();
    await assert.rejects(client.imageAllocate(Template.of({ NAME: 'x' }), 1), (e: unknown) => {
      assert.ok(e instanceof OneApiError);
      assert.equal(e.kind, 'conflict');
      assert.equal(e.method, 'one.image.allocate');
      assert.equal(e.message, '[one.image.allocate] Error allocating a new image. NAME is already taken by IMAGE 12.');
      return true;
    });
    client.close();
  });
});
