import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { PropertyCollector, retrieveAllPages } from '../../lib/vsphere/property-collector.js';
import type { Session } from '../../lib/vsphere/session.js';
import type { SoapArgs } from '../../lib/vsphere/soap-envelope.js';
import { buildEnvelope } from '../../lib/vsphere/soap-envelope.js';
import { interpretReply, type SoapTransport } from '../../lib/vsphere/soap.js';
import type { MoRef } from '../../lib/vsphere/types.js';
import { text, type VimValue } from '../../lib/vsphere/vim-value.js';

// Recorded from a vCenter 7 answering maxObjects=2 over 5 VMs: the first page comes from
// RetrievePropertiesEx, the next ones from ContinueRetrievePropertiesEx, the last without token.
const env = (body: string): string =>
  '<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" ' +
  'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" ' +
  `xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n<soapenv:Body>\n${body}\n</soapenv:Body>\n</soapenv:Envelope>`;

const vmObject = (id: number, name: string): string =>
  `<objects><obj type="VirtualMachine">vm-${id}</obj><propSet><name>name</name><val xsi:type="xsd:string">${name}</val></propSet>` +
  `<propSet><name>runtime.powerState</name><val xsi:type="VirtualMachinePowerState">poweredOn</val></propSet></objects>`;

const PAGE_1 = env(`<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><token>52a8b1d0-1</token>${vmObject(101, 'web01')}${vmObject(102, 'web02')}</returnval></RetrievePropertiesExResponse>`);
const PAGE_2 = env(`<ContinueRetrievePropertiesExResponse xmlns="urn:vim25"><returnval><token>52a8b1d0-2</token>${vmObject(103, 'db01')}${vmObject(104, 'db02')}</returnval></ContinueRetrievePropertiesExResponse>`);
const PAGE_3 = env(`<ContinueRetrievePropertiesExResponse xmlns="urn:vim25"><returnval>${vmObject(105, 'cache01')}</returnval></ContinueRetrievePropertiesExResponse>`);
// An empty result: RetrievePropertiesEx returns no returnval at all.
const EMPTY = env('<RetrievePropertiesExResponse xmlns="urn:vim25"></RetrievePropertiesExResponse>');

const ENDPOINT = { host: 'vc.example.com', port: 443 };
const COLLECTOR: MoRef = { type: 'PropertyCollector', value: 'propertyCollector' };

/** A transport that answers from recorded bodies and records what was asked. */
function recordedTransport(bodies: string[]) {
  const calls: { method: string; args: SoapArgs; envelope: string }[] = [];
  const transport = {
    endpoint: ENDPOINT,
    async callOne(method: string, thisRef: MoRef, args: SoapArgs = []): Promise<VimValue | undefined> {
      calls.push({ method, args, envelope: buildEnvelope(method, thisRef, args) });
      const body = bodies.shift();
      if (body === undefined) throw new Error(`unexpected call ${method}`);
      return interpretReply({ status: 200, headers: {}, body }, method, thisRef, ENDPOINT)[0];
    },
  };
  return { transport: transport as unknown as SoapTransport, calls };
}

const session = { serviceContent: { propertyCollector: COLLECTOR }, generation: 1 } as unknown as Session;

describe('PropertyCollector token loop', () => {
  it('follows tokens with ContinueRetrievePropertiesEx until an answer without token', async () => {
    const { transport, calls } = recordedTransport([PAGE_1, PAGE_2, PAGE_3]);
    const pc = new PropertyCollector(transport, session, 2);
    const contents = await pc.retrieve([{ propSet: [{ type: 'VirtualMachine', pathSet: ['name', 'runtime.powerState'] }], objectSet: [{ obj: { type: 'Folder', value: 'group-d1' } }] }]);

    assert.deepEqual(calls.map((c) => c.method), ['RetrievePropertiesEx', 'ContinueRetrievePropertiesEx', 'ContinueRetrievePropertiesEx']);
    assert.ok(calls[0]?.envelope.includes('<options><maxObjects>2</maxObjects></options>'));
    assert.ok(calls[1]?.envelope.includes('<_this type="PropertyCollector">propertyCollector</_this><token>52a8b1d0-1</token>'));
    assert.ok(calls[2]?.envelope.includes('<token>52a8b1d0-2</token>'));
    assert.deepEqual(contents.map((c) => c.obj.value), ['vm-101', 'vm-102', 'vm-103', 'vm-104', 'vm-105']);
    assert.deepEqual(contents.map((c) => text(c.props.get('name'))), ['web01', 'web02', 'db01', 'db02', 'cache01']);
    assert.equal(text(contents[4]?.props.get('runtime.powerState')), 'poweredOn');
  });

  it('makes one call when the first answer has no token (vcsim never pages)', async () => {
    const { transport, calls } = recordedTransport([PAGE_3]);
    const contents = await new PropertyCollector(transport, session).retrieve([{ propSet: [{ type: 'VirtualMachine', pathSet: ['name'] }], objectSet: [] }]);
    assert.equal(calls.length, 1);
    assert.equal(contents.length, 1);
  });

  it('returns nothing for an empty result', async () => {
    const { transport } = recordedTransport([EMPTY]);
    assert.deepEqual(await new PropertyCollector(transport, session).retrieve([{ propSet: [{ type: 'VirtualMachine', pathSet: ['name'] }], objectSet: [] }]), []);
  });

  it('stops on a server that repeats a token instead of looping forever', async () => {
    const pages: (VimValue | undefined)[] = [
      { token: 't1', objects: [] },
      { token: 't1', objects: [] },
    ];
    await assert.rejects(
      retrieveAllPages(
        async () => pages.shift(),
        async () => pages.shift(),
      ),
      (err: unknown) => err instanceof OneswapError && /token t1 twice/.test(err.message),
    );
  });
});
