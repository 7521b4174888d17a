import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSoapResponse } from '../../lib/vsphere/soap-envelope.js';
import { bool, field, int, list, moRef, text, typeName, type VimValue } from '../../lib/vsphere/vim-value.js';
import { parseXml, XSI_NS } from '../../lib/vsphere/xml-tree.js';

const ENV_OPEN =
  '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" ' +
  'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" ' +
  'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>';
const ENV_CLOSE = '</soapenv:Body></soapenv:Envelope>';
const VCSIM_XSI = 'xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance"';

function retrieveResult(objects: string): VimValue | undefined {
  const r = parseSoapResponse(`${ENV_OPEN}<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>${objects}</returnval></RetrievePropertiesExResponse>${ENV_CLOSE}`);
  assert.equal(r.kind, 'result');
  return r.kind === 'result' ? r.returnvals[0] : undefined;
}

function propOf(rv: VimValue | undefined, name: string): VimValue | undefined {
  const objects = list(rv, 'objects');
  for (const o of objects) for (const p of list(o, 'propSet')) if (text(p, 'name') === name) return field(p, 'val');
  return undefined;
}

describe('namespace-aware XML', () => {
  it('resolves xsi:type through any prefix bound to the XMLSchema-instance namespace', () => {
    const xml = `<root xmlns="urn:vim25" xmlns:i="${XSI_NS}" xmlns:t="urn:vim25"><a i:type="VirtualDisk"/><b i:type="t:VirtualCdrom"/><c xsi:type="Nope"/></root>`;
    const root = parseXml(xml);
    assert.equal(root.children[0]?.xsiType?.name, 'VirtualDisk');
    assert.equal(root.children[1]?.xsiType?.name, 'VirtualCdrom');
    // An undeclared prefix named "xsi" is not the XMLSchema-instance namespace.
    assert.equal(root.children[2]?.xsiType, undefined);
  });

  it('takes a per-element xmlns declaration and inherits it into children (vcsim style)', () => {
    const rv = retrieveResult(
      `<objects><obj type="VirtualMachine">vm-57</obj><propSet><name>config.hardware</name><val ${VCSIM_XSI} XMLSchema-instance:type="VirtualHardware">` +
        `<numCPU>2</numCPU><device XMLSchema-instance:type="ParaVirtualSCSIController"><key>202</key><busNumber>0</busNumber></device>` +
        `<device XMLSchema-instance:type="VirtualDisk"><key>255511522</key><backing XMLSchema-instance:type="VirtualDiskFlatVer2BackingInfo"><fileName>[LocalDS_0] vm/disk1.vmdk</fileName></backing></device>` +
        `</val></propSet></objects>`,
    );
    const hw = propOf(rv, 'config.hardware');
    assert.equal(typeName(hw), 'VirtualHardware');
    const devices = list(hw, 'device');
    assert.equal(devices.length, 2);
    assert.equal(typeName(devices[0]), 'ParaVirtualSCSIController');
    assert.equal(typeName(devices[1]), 'VirtualDisk');
    assert.equal(typeName(devices[1], 'backing'), 'VirtualDiskFlatVer2BackingInfo');
    assert.equal(text(devices[1], 'key'), '255511522');
  });

  it('treats xsi:type and XMLSchema-instance:type alike', () => {
    const a = retrieveResult(`<objects><obj type="VirtualMachine">vm-1</obj><propSet><name>p</name><val xsi:type="VirtualMachineBootOptions"><efiSecureBootEnabled>true</efiSecureBootEnabled></val></propSet></objects>`);
    const b = retrieveResult(`<objects><obj type="VirtualMachine">vm-1</obj><propSet><name>p</name><val ${VCSIM_XSI} XMLSchema-instance:type="VirtualMachineBootOptions"><efiSecureBootEnabled>true</efiSecureBootEnabled></val></propSet></objects>`);
    assert.deepEqual(propOf(a, 'p'), propOf(b, 'p'));
    assert.equal(bool(propOf(a, 'p'), 'efiSecureBootEnabled'), true);
  });

  it('unwraps ArrayOfX and reads bare repeated elements as the same list', () => {
    const rv = retrieveResult(
      `<objects><obj type="ClusterComputeResource">c-1</obj>` +
        `<propSet><name>host</name><val ${VCSIM_XSI} XMLSchema-instance:type="ArrayOfManagedObjectReference"><ManagedObjectReference type="HostSystem">host-34</ManagedObjectReference><ManagedObjectReference type="HostSystem">host-42</ManagedObjectReference></val></propSet>` +
        `<propSet><name>one</name><val xsi:type="ArrayOfManagedObjectReference"><ManagedObjectReference type="HostSystem">host-1</ManagedObjectReference></val></propSet>` +
        `<propSet><name>empty</name><val xsi:type="ArrayOfTag"></val></propSet>` +
        `<propSet><name>bare</name><val xsi:type="Holder"><item>a</item><item>b</item></val></propSet>` +
        `<propSet><name>single</name><val xsi:type="Holder"><item>a</item></val></propSet>` +
        `</objects>`,
    );
    assert.deepEqual(list(propOf(rv, 'host')).map((v) => moRef(v)), [
      { type: 'HostSystem', value: 'host-34' },
      { type: 'HostSystem', value: 'host-42' },
    ]);
    assert.equal(list(propOf(rv, 'one')).length, 1);
    assert.deepEqual(list(propOf(rv, 'empty')), []);
    assert.deepEqual(list(propOf(rv, 'bare'), 'item'), ['a', 'b']);
    assert.deepEqual(list(propOf(rv, 'single'), 'item'), ['a']);
  });

  it('keeps morefs, keys and changeIds as strings, opaque', () => {
    const rv = retrieveResult(
      `<objects><obj type="Datastore">/tmp/govcsim-DC0-LocalDS_0-1@folder-5</obj><propSet><name>changeId</name><val xsi:type="xsd:string">52 8f 0c 11 a4 5e 39 02-6d 77 c1 e0 9b 3a 12 f4/1</val></propSet>` +
        `<propSet><name>key</name><val xsi:type="xsd:int">000123</val></propSet></objects>`,
    );
    assert.deepEqual(moRef(list(rv, 'objects')[0], 'obj'), { type: 'Datastore', value: '/tmp/govcsim-DC0-LocalDS_0-1@folder-5' });
    assert.equal(propOf(rv, 'changeId'), '52 8f 0c 11 a4 5e 39 02-6d 77 c1 e0 9b 3a 12 f4/1');
    assert.equal(propOf(rv, 'key'), '000123');
    assert.equal(int(propOf(rv, 'key')), 123);
  });

  it('decodes entities and numeric character references once, and keeps white space', () => {
    const rv = retrieveResult(
      `<objects><obj type="VirtualMachine">vm-1</obj><propSet><name>config.annotation</name><val xsi:type="xsd:string">  a &amp; b &lt;c&gt;&#10;line2 &amp;lt; </val></propSet></objects>`,
    );
    assert.equal(propOf(rv, 'config.annotation'), '  a & b <c>\nline2 &lt; ');
  });

  it('reads an empty typed element as an empty object, an empty untyped one as ""', () => {
    const rv = retrieveResult(
      `<objects><obj type="VirtualMachine">vm-1</obj><propSet><name>config.bootOptions</name><val ${VCSIM_XSI} XMLSchema-instance:type="VirtualMachineBootOptions"></val></propSet>` +
        `<propSet><name>s</name><val xsi:type="xsd:string"></val></propSet></objects>`,
    );
    assert.deepEqual(propOf(rv, 'config.bootOptions'), { $type: 'VirtualMachineBootOptions' });
    assert.equal(propOf(rv, 's'), '');
  });

  it('reads an enum value that carries its own xsi:type as text', () => {
    const rv = retrieveResult(`<objects><obj type="HostSystem">host-1</obj><propSet><name>runtime.connectionState</name><val ${VCSIM_XSI} XMLSchema-instance:type="HostSystemConnectionState">connected</val></propSet></objects>`);
    assert.equal(propOf(rv, 'runtime.connectionState'), 'connected');
  });

  it('refuses integers that would lose precision', () => {
    assert.throws(() => int('9007199254740993'), RangeError);
    assert.equal(int('9007199254740991'), Number.MAX_SAFE_INTEGER);
  });
});
