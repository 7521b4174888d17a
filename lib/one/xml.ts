// XML reading and escaping shared by the XML-RPC codec, the info documents and the template model.
//
// Everything is read into one ordered element tree instead of fast-xml-parser's object mode with an
// `isArray` list: a template keeps the order and repetition of its attributes (DISK, NIC, DISK …),
// and no element can come back as a single object where a list was expected — every child list is
// an array, whatever the tag. Values are never converted (ids, MACs and sizes stay text until a
// typed reader asks for a number).

import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { OneswapError } from '../errors/index.js';

export class XmlElement {
  constructor(
    readonly name: string,
    readonly children: readonly XmlElement[],
    /** Character data directly inside this element (text and CDATA, in order), entities decoded. */
    readonly text: string,
  ) {}

  first(name: string): XmlElement | undefined {
    return this.children.find((c) => c.name === name);
  }

  all(name: string): XmlElement[] {
    return this.children.filter((c) => c.name === name);
  }

  /** Text of the first child called `name`; '' when there is none. */
  textOf(name: string): string {
    return this.first(name)?.text ?? '';
  }
}

// Entities are decoded by us (processEntities: false) so that CDATA, which the parser keeps apart
// under `#cdata`, is never decoded, numeric references work without fast-xml-parser's deprecated
// htmlEntities switch, and a DOCTYPE can never define entities that expand.
const parser = new XMLParser({
  preserveOrder: true,
  trimValues: false,
  parseTagValue: false,
  processEntities: false,
  cdataPropName: '#cdata',
  ignoreAttributes: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  // fast-xml-parser refuses tags named like Object.prototype members ("constructor", "prototype");
  // a '.' prefix (impossible at the start of an XML name) sidesteps that and is stripped again in
  // toElement. Self-closing tags get the transform twice, hence stripping every leading dot.
  transformTagName: (name) => `.${name}`,
});

type OrderedNode = Record<string, unknown>;

/** Parses a whole document and returns its root element; malformed XML throws kind 'data'. */
export function parseXml(xml: string, what: string): XmlElement {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw new OneswapError('data', `${what} is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
  }
  const nodes = parser.parse(xml) as OrderedNode[];
  const roots = toChildren(nodes);
  const root = roots[0];
  if (root === undefined) throw new OneswapError('data', `${what} holds no XML element`);
  return root;
}

function toChildren(nodes: readonly OrderedNode[]): XmlElement[] {
  const out: XmlElement[] = [];
  for (const node of nodes) {
    for (const [key, value] of Object.entries(node)) {
      if (key.startsWith('.')) out.push(toElement(key.replace(/^\.+/, ''), value as OrderedNode[]));
    }
  }
  return out;
}

function toElement(name: string, content: readonly OrderedNode[]): XmlElement {
  let text = '';
  for (const node of content) {
    if (typeof node['#text'] === 'string') text += decodeEntities(node['#text']);
    const cdata = node['#cdata'];
    if (Array.isArray(cdata)) {
      for (const part of cdata as OrderedNode[]) {
        if (typeof part['#text'] === 'string') text += part['#text'];
      }
    }
  }
  return new XmlElement(name, toChildren(content), text);
}

const NAMED_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(/&(?:#x([0-9a-fA-F]+)|#([0-9]+)|([a-zA-Z]+));/g, (whole, hex?: string, dec?: string, named?: string) => {
    if (named !== undefined) return NAMED_ENTITIES[named] ?? whole;
    const code = hex !== undefined ? parseInt(hex, 16) : parseInt(dec ?? '', 10);
    return code <= 0x10ffff ? String.fromCodePoint(code) : whole;
  });
}

// Characters XML 1.0 cannot carry at all, not even as character references: C0 controls other than
// TAB, LF and CR, lone surrogates, U+FFFE and U+FFFF.
const ILLEGAL_XML_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export function stripIllegalXmlChars(text: string): string {
  return text.replace(ILLEGAL_XML_CHARS, '');
}

/**
 * Escapes text for element content. CR becomes a character reference because XML parsers turn a
 * literal CR (or CR LF) into LF, which would silently change a value such as a Windows-style note.
 */
export function escapeXmlText(text: string): string {
  return stripIllegalXmlChars(text)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\r/g, '&#13;');
}
