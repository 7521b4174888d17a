import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { sessionCookieFrom } from '../../lib/vsphere/session-cookie.js';
import { buildEnvelope, readLocalizedFault, ref } from '../../lib/vsphere/soap-envelope.js';
import { interpretReply } from '../../lib/vsphere/soap.js';
import { VimFaultError } from '../../lib/vsphere/vim-fault.js';
import { moRef, text } from '../../lib/vsphere/vim-value.js';
import { parseXml, XSI_NS } from '../../lib/vsphere/xml-tree.js';

const ENDPOINT = { host: 'vc.example.com', port: 443 };
const VM = { type: 'VirtualMachine', value: 'vm-57' };
const PC = { type: 'PropertyCollector', value: 'propertyCollector' };

const env = (body: string): string =>
  '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" ' +
  'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" ' +
  `xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`;

const reply = (status: number, body: string) => ({ status, headers: {}, body });

function thrown(fn: () => unknown): OneswapError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof OneswapError, `expected a OneswapError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

describe('SOAP envelopes', () => {
  it('writes _this first, then arguments in the given order, escaped', () => {
    const xml = buildEnvelope('CreateSnapshot_Task', VM, [
      ['name', 'a <b> & "c"'],
      ['description', ''],
      ['memory', false],
      ['quiesce', true],
    ]);
    assert.match(xml, /^<\?xml version="1.0" encoding="UTF-8"\?>/);
    assert.ok(
      xml.includes(
        '<CreateSnapshot_Task xmlns="urn:vim25"><_this type="VirtualMachine">vm-57</_this><name>a &lt;b&gt; &amp; &quot;c&quot;</name>' +
          '<description></description><memory>false</memory><quiesce>true</quiesce></CreateSnapshot_Task>',
      ),
      xml,
    );
    // What we write, we read back: the envelope is well-formed XML in the SOAP namespace.
    const root = parseXml(xml);
    assert.equal(root.name, 'Envelope');
  });

  it('writes morefs with a type attribute, data objects with xsi:type, arrays as repeated elements', () => {
    const xml = buildEnvelope('RetrievePropertiesEx', PC, [
      [
        'specSet',
        [
          {
            propSet: [{ type: 'VirtualMachine', all: false, pathSet: ['name', 'config.hardware.device'] }],
            objectSet: [
              {
                obj: ref({ type: 'ContainerView', value: 'session[x]&y' }),
                skip: true,
                selectSet: [{ $type: 'TraversalSpec', name: 'v', type: 'ContainerView', path: 'view', skip: false }],
              },
            ],
          },
        ],
      ],
      ['options', { maxObjects: 500 }],
      ['omitted', undefined],
    ]);
    assert.ok(xml.includes('<pathSet>name</pathSet><pathSet>config.hardware.device</pathSet>'));
    assert.ok(xml.includes('<obj type="ContainerView">session[x]&amp;y</obj>'));
    assert.ok(xml.includes('<selectSet xsi:type="TraversalSpec"><name>v</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet>'));
    assert.ok(xml.includes('<options><maxObjects>500</maxObjects></options>'));
    assert.ok(!xml.includes('omitted'));
    const selectSet = parseXml(xml).children[0]?.children[0]?.children[1]?.children[1]?.children[2];
    assert.equal(selectSet?.name, 'selectSet');
    assert.deepEqual(selectSet?.xsiType, { ns: 'urn:vim25', name: 'TraversalSpec' });
    assert.equal(XSI_NS, 'http://www.w3.org/2001/XMLSchema-instance');
  });
});

describe('SOAP replies and faults', () => {
  it('returns every returnval, none for a void method', () => {
    assert.deepEqual(interpretReply(reply(200, env('<ShutdownGuestResponse xmlns="urn:vim25"></ShutdownGuestResponse>')), 'ShutdownGuest', VM, ENDPOINT), []);
    const rvs = interpretReply(reply(200, env('<CreateSnapshot_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-68</returnval></CreateSnapshot_TaskResponse>')), 'CreateSnapshot_Task', VM, ENDPOINT);
    assert.deepEqual(moRef(rvs[0]), { type: 'Task', value: 'task-68' });
  });

  it('reads an HTTP 500 fault: type from the detail xsi:type, kind from the type', () => {
    const body = env(
      '<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Login failure</faultstring><detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></soapenv:Fault>',
    );
    const err = thrown(() => interpretReply(reply(500, body), 'Login', { type: 'SessionManager', value: 'SessionManager' }, ENDPOINT));
    assert.ok(err instanceof VimFaultError);
    assert.equal(err.faultType, 'InvalidLogin');
    assert.equal(err.kind, 'auth');
    assert.equal(err.message, 'vCenter vc.example.com:443 refused Login on SessionManager SessionManager: InvalidLogin: Login failure');
  });

  it('reads the fault type from the element name when xsi:type is missing', () => {
    const body = env(
      '<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>managed object not found: VirtualMachine:vm-nope</faultstring><detail><ManagedObjectNotFoundFault xmlns="urn:vim25"><obj type="VirtualMachine">vm-nope</obj></ManagedObjectNotFoundFault></detail></soapenv:Fault>',
    );
    const err = thrown(() => interpretReply(reply(500, body), 'PowerOffVM_Task', { type: 'VirtualMachine', value: 'vm-nope' }, ENDPOINT));
    assert.ok(err instanceof VimFaultError);
    assert.equal(err.faultType, 'ManagedObjectNotFound');
    assert.equal(err.kind, 'not-found');
    assert.match(err.message, /PowerOffVM_Task on VirtualMachine vm-nope/);
  });

  it('finds NotAuthenticated inside missingSet of an HTTP 200 RetrievePropertiesEx (vcsim)', () => {
    const body = env(
      '<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="VirtualMachine">vm-57</obj><missingSet><path>name</path><fault>' +
        '<fault xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" XMLSchema-instance:type="NotAuthenticated"><object type="VirtualMachine">vm-57</object><privilegeId>System.Read</privilegeId></fault>' +
        '</fault></missingSet></objects></returnval></RetrievePropertiesExResponse>',
    );
    const err = thrown(() => interpretReply(reply(200, body), 'RetrievePropertiesEx', PC, ENDPOINT));
    assert.ok(err instanceof VimFaultError);
    assert.equal(err.faultType, 'NotAuthenticated');
    assert.equal(err.message, 'vCenter vc.example.com:443 could not read name of VirtualMachine vm-57 (RetrievePropertiesEx): NotAuthenticated');
  });

  it('finds missingSet faults in the older RetrieveProperties shape too', () => {
    const body = env(
      '<RetrievePropertiesResponse xmlns="urn:vim25"><returnval><obj type="VirtualMachine">vm-57</obj><missingSet><path>config</path><fault><fault xsi:type="NoPermission"><privilegeId>System.Read</privilegeId></fault><localizedMessage>Permission to perform this operation was denied.</localizedMessage></fault></missingSet></returnval></RetrievePropertiesResponse>',
    );
    const err = thrown(() => interpretReply(reply(200, body), 'RetrieveProperties', PC, ENDPOINT));
    assert.ok(err instanceof VimFaultError);
    assert.equal(err.faultType, 'NoPermission');
    assert.match(err.message, /Permission to perform this operation was denied/);
  });

  it('reports non-SOAP and unexpected HTTP answers as remote errors naming the call', () => {
    const html = thrown(() => interpretReply(reply(200, '<html><body>hello</body></html>'), 'RetrieveServiceContent', VM, ENDPOINT));
    assert.equal(html.kind, 'remote');
    assert.match(html.message, /RetrieveServiceContent/);
    const unavailable = thrown(() => interpretReply(reply(503, 'Service Unavailable'), 'Login', VM, ENDPOINT));
    assert.equal(unavailable.kind, 'remote');
    assert.match(unavailable.message, /HTTP 503 to Login/);
    const broken = thrown(() => interpretReply(reply(500, '<soapenv:Envelope xmlns:soapenv="x"'), 'Login', VM, ENDPOINT));
    assert.equal(broken.kind, 'remote');
  });

  it('reads a task error (LocalizedMethodFault)', () => {
    const rv = interpretReply(
      reply(200, env('<X xmlns="urn:vim25"><returnval><fault xsi:type="InvalidPowerState"><requestedState>poweredOn</requestedState></fault><localizedMessage>The attempted operation cannot be performed in the current state (Powered off).</localizedMessage></returnval></X>')),
      'X',
      VM,
      ENDPOINT,
    );
    const fault = readLocalizedFault(rv[0]);
    assert.equal(fault?.type, 'InvalidPowerState');
    assert.match(fault?.message ?? '', /current state/);
    assert.equal(text(fault?.detail, 'requestedState'), 'poweredOn');
  });
});

describe('session cookie', () => {
  it('keeps an unquoted value (vcsim) as is', () => {
    assert.equal(sessionCookieFrom(['vmware_soap_session=9407d9d5-5956-4302-92e4-f8701fb17642; HttpOnly']), 'vmware_soap_session=9407d9d5-5956-4302-92e4-f8701fb17642');
  });

  it('keeps a quoted value (vCenter) with its quotes, even with ; inside', () => {
    assert.equal(
      sessionCookieFrom(['vmware_client=VMware; Path=/', 'vmware_soap_session="52e1b6a4-a;b"; Path=/; HttpOnly; Secure;']),
      'vmware_soap_session="52e1b6a4-a;b"',
    );
    assert.equal(sessionCookieFrom('vmware_soap_session="abc"'), 'vmware_soap_session="abc"');
  });

  it('ignores other cookies and cleared values', () => {
    assert.equal(sessionCookieFrom(['other=1']), undefined);
    assert.equal(sessionCookieFrom(['vmware_soap_session=; Max-Age=0']), undefined);
    assert.equal(sessionCookieFrom(undefined), undefined);
  });
});
