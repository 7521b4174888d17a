import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { parseTemplateText, Template, templateFromXml } from '../../lib/one/template.js';
import { parseXml } from '../../lib/one/xml.js';

const isKind = (kind: string) => (e: unknown) => e instanceof OneswapError && e.kind === kind;

const tricky = 'say "hi" & <b>bye</b>\nsecond line\ttab C:\\path\\ x';

function sample(): Template {
  return Template.of({
    name: 'web01',
    CPU: 2,
    DESCRIPTION: tricky,
    DISK: [{ IMAGE_ID: 41, DEV_PREFIX: 'vd' }, { image_id: '42', TARGET: 'vdb' }],
    NIC: { NETWORK_ID: '3', MAC: '00:50:56:aa:bb:cc' },
  });
}

describe('Template model', () => {
  it('keeps order and repeated names, upper-cases names', () => {
    const t = sample();
    assert.deepEqual(
      t.attributes.map((a) => a.name),
      ['NAME', 'CPU', 'DESCRIPTION', 'DISK', 'DISK', 'NIC'],
    );
    assert.equal(t.get('name'), 'web01');
    assert.equal(t.get('CPU'), '2');
    assert.equal(t.vectors('DISK').length, 2);
    assert.equal(t.vectors('DISK')[1]?.get('IMAGE_ID'), '42');
    assert.equal(t.get('DISK'), undefined, 'get() reads single values only');
  });

  it('set replaces every attribute of a name in place; remove drops them', () => {
    const t = sample().set('disk', { IMAGE_ID: 7 });
    assert.deepEqual(t.attributes.map((a) => a.name), ['NAME', 'CPU', 'DESCRIPTION', 'DISK', 'NIC']);
    assert.equal(t.vector('DISK')?.get('IMAGE_ID'), '7');
    t.remove('nic');
    assert.deepEqual(t.attributes.map((a) => a.name), ['NAME', 'CPU', 'DESCRIPTION', 'DISK']);
  });

  it('refuses invalid names, empty vectors and non-finite numbers', () => {
    assert.throws(() => new Template().add('BAD-NAME', 'x'), isKind('internal'));
    assert.throws(() => new Template().add('1ST', 'x'), isKind('internal'));
    assert.throws(() => new Template().add('V', { 'A B': 'x' }), isKind('internal'));
    assert.throws(() => new Template().add('V', {}), isKind('internal'));
    assert.throws(() => new Template().add('N', Number.NaN), isKind('internal'));
  });
});

describe('Template XML syntax', () => {
  it('renders upper-case elements with & < > escaped and control characters stripped', () => {
    const xml = Template.of({ d: 'a & b <c> "q" \u0001\u001fend\r', DISK: { image_id: 1 } }).toXml();
    assert.equal(xml, '<TEMPLATE><D>a &amp; b &lt;c&gt; "q" end&#13;</D><DISK><IMAGE_ID>1</IMAGE_ID></DISK></TEMPLATE>');
  });

  it('round-trips through an info document, escaped or in CDATA', () => {
    const t = sample();
    const back = templateFromXml(parseXml(t.toXml(), 'test'));
    assert.deepEqual(back.attributes, t.attributes);
    const cdata = parseXml(
      '<TEMPLATE><DESCRIPTION><![CDATA[a & <b>]]></DESCRIPTION><DISK><IMAGE_ID><![CDATA[4]]></IMAGE_ID><DRIVER>raw</DRIVER></DISK><EMPTY/></TEMPLATE>',
      'test',
    );
    const parsed = templateFromXml(cdata);
    assert.equal(parsed.get('DESCRIPTION'), 'a & <b>');
    assert.deepEqual([...(parsed.vector('DISK') ?? [])], [['IMAGE_ID', '4'], ['DRIVER', 'raw']]);
    assert.equal(parsed.get('EMPTY'), '');
  });

  it('keeps a value with a trailing backslash in XML', () => {
    const t = Template.of({ P: 'C:\\dir\\' });
    assert.equal(templateFromXml(parseXml(t.toXml(), 'test')).get('P'), 'C:\\dir\\');
  });

  it('refuses "]]>", which would break the CDATA oned writes back', () => {
    assert.throws(() => Template.of({ D: 'x ]]> y' }).toXml(), isKind('data'));
    assert.throws(() => Template.of({ D: 'x ]]> y' }).toText(), isKind('data'));
  });
});

describe('Template text syntax', () => {
  it('renders KEY = "value" with \\" escapes and multi-line vectors', () => {
    const text = Template.of({ NAME: 'web01', DESCRIPTION: 'say "hi"\nnext', DISK: { IMAGE_ID: 41, DEV_PREFIX: 'vd' } }).toText();
    assert.equal(text, 'NAME = "web01"\nDESCRIPTION = "say \\"hi\\"\nnext"\nDISK = [\n  IMAGE_ID = "41",\n  DEV_PREFIX = "vd" ]\n');
  });

  it('round-trips & < newlines, tabs and inner backslashes', () => {
    const t = sample();
    assert.deepEqual(parseTemplateText(t.toText()).attributes, t.attributes);
  });

  it('keeps a backslash right before a quote', () => {
    const t = Template.of({ D: 'a\\"b' });
    assert.equal(t.toText(), 'D = "a\\\\"b"\n');
    assert.equal(parseTemplateText(t.toText()).get('D'), 'a\\"b');
  });

  it('fails loudly on a trailing backslash, which the syntax cannot hold', () => {
    assert.throws(() => Template.of({ PATH: 'C:\\dir\\' }).toText(), (e: unknown) => {
      assert.ok(e instanceof OneswapError);
      assert.equal(e.kind, 'data');
      assert.match(e.message, /PATH ends with a backslash/);
      return true;
    });
    assert.throws(() => Template.of({ V: { K: 'x\\' } }).toText(), /V\/K ends with a backslash/);
  });

  it('reads what people write: bare values, comments, lower-case names, one-line vectors', () => {
    const t = parseTemplateText(`
      # a comment
      name = web01   # trailing comment
      MEMORY=4096
      DISK = [ IMAGE_ID = "41", dev_prefix = vd ]
      DISK=[IMAGE_ID="42"]
      DESCRIPTION = "has # and = and , inside"
    `);
    assert.deepEqual(t.attributes.map((a) => a.name), ['NAME', 'MEMORY', 'DISK', 'DISK', 'DESCRIPTION']);
    assert.equal(t.get('NAME'), 'web01');
    assert.equal(t.get('MEMORY'), '4096');
    assert.equal(t.vectors('DISK')[0]?.get('DEV_PREFIX'), 'vd');
    assert.equal(t.get('DESCRIPTION'), 'has # and = and , inside');
  });

  it('reports syntax errors with a line number', () => {
    assert.throws(() => parseTemplateText('A = "x"\nB = "unterminated'), /line 2: unterminated/);
    assert.throws(() => parseTemplateText('A "x"'), /expected "="/);
    assert.throws(() => parseTemplateText('V = [ ]'), /expected an attribute name/);
    assert.throws(() => parseTemplateText('V = [ A = "x" B = "y" ]'), /expected "," or "]"/);
  });
});
