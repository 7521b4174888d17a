// One ordered element tree instead of fast-xml-parser's object mode with an `isArray` list: an
// OpenNebula template keeps the order and repetition of its attributes (DISK, NIC, DISK …), and no
// element can come back as a single object where a list was expected.

import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { OneswapError } from '../errors/index.js';

export interface Element {
  /** Local name (any prefix removed). */
  readonly name: string;
  /** The name as written, prefix included. */
  readonly qname: string;
  /** Attributes by local name; xmlns declarations left out. The first of equal local names wins. */
  readonly attrs: ReadonlyMap<string, string>;
  /** Namespace declarations made on this element: prefix ("" for the default) → URI. */
  readonly decls: ReadonlyMap<string, string>;
  readonly children: readonly Element[];
  /** Character data directly inside the element (text and CDATA, in order), entities decoded. */
  readonly text: string;
}

// Entities are decoded by us (processEntities: false) so that CDATA, which the parser keeps apart
// under `#cdata`, is never decoded, numeric references work without fast-xml-parser's deprecated
// htmlEntities switch, and a DOCTYPE can never define entities that expand.
const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: false,
  cdataPropName: '#cdata',
  ignoreDeclaration: true,
  ignorePiTags: true,
  // fast-xml-parser refuses tags named like Object.prototype members ("constructor", "prototype");
  // a '.' prefix (impossible at the start of an XML name) sidesteps that and is stripped again.
  // Self-closing tags get the transform twice, hence stripping every leading dot.
  transformTagName: (name) => `.${name}`,
});

type RawNode = Record<string, unknown>;

/** Parses a whole document and returns its root element; malformed XML throws kind 'data'. */
export function parseElementTree(xml: string, what: string): Element {
  const body = xml.charCodeAt(0) === 0xfeff ? xml.slice(1) : xml;
  const valid = XMLValidator.validate(body);
  if (valid !== true) throw new OneswapError('data', `${what} is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
  let nodes: RawNode[];
  try {
    nodes = parser.parse(body) as RawNode[];
  } catch (err) {
    throw new OneswapError('data', `${what} is not well-formed XML: ${(err as Error).message.split('\n')[0]}`);
  }
  const root = toChildren(nodes)[0];
  if (root === undefined) throw new OneswapError('data', `${what} holds no XML element`);
  return root;
}

function toChildren(nodes: readonly RawNode[]): Element[] {
  const out: Element[] = [];
  for (const node of nodes) {
    for (const [key, value] of Object.entries(node)) {
      if (key.startsWith('.')) out.push(toElement(key.replace(/^\.+/, ''), value as RawNode[], node[':@'] as Record<string, string> | undefined));
    }
  }
  return out;
}

function toElement(qname: string, content: readonly RawNode[], rawAttrs: Record<string, string> | undefined): Element {
  let text = '';
  for (const node of content) {
    if (typeof node['#text'] === 'string') text += decodeEntities(node['#text']);
    const cdata = node['#cdata'];
    if (Array.isArray(cdata)) for (const part of cdata as RawNode[]) if (typeof part['#text'] === 'string') text += part['#text'];
  }
  const attrs = new Map<string, string>();
  const decls = new Map<string, string>();
  for (const [name, value] of Object.entries(rawAttrs ?? {})) {
    if (name === 'xmlns' || name.startsWith('xmlns:')) {
      decls.set(name === 'xmlns' ? '' : name.slice(6), decodeEntities(String(value)));
      continue;
    }
    const local = localName(name);
    if (!attrs.has(local)) attrs.set(local, decodeEntities(String(value)));
  }
  return { name: localName(qname), qname, attrs, decls, children: toChildren(content), text };
}

/** A name without its prefix. */
export function localName(qname: string): string {
  const colon = qname.indexOf(':');
  return colon < 0 ? qname : qname.slice(colon + 1);
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
