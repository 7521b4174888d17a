// Namespace-resolved XML elements on top of fast-xml-parser, which only reports prefixed names.
// vSphere servers disagree on prefixes (vcsim declares `XMLSchema-instance` per element where
// vCenter uses `xsi` once), so names are resolved against the in-scope xmlns declarations and
// compared by namespace URI, never by prefix.

import { XMLParser } from 'fast-xml-parser';

export const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';
export const XSD_NS = 'http://www.w3.org/2001/XMLSchema';
export const SOAP_ENV_NS = 'http://schemas.xmlsoap.org/soap/envelope/';

export interface QName {
  readonly ns: string;
  readonly name: string;
}

export interface XmlElement {
  /** Local name, without prefix. */
  readonly name: string;
  /** Namespace URI, '' when the element is in no namespace. */
  readonly ns: string;
  /** Unqualified attributes (the only ones vim25 uses besides xsi:type), by local name. */
  readonly attrs: ReadonlyMap<string, string>;
  /** The resolved xsi:type, when present. */
  readonly xsiType: QName | undefined;
  readonly children: readonly XmlElement[];
  /** Concatenated character data of this element (not of its children). */
  readonly text: string;
}

type RawNode = Record<string, unknown>;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  // Identity-bearing values (morefs, keys, changeIds, UUIDs) must stay strings.
  parseTagValue: false,
  parseAttributeValue: false,
  // Annotations and descriptions keep their leading and trailing white space.
  trimValues: false,
  processEntities: true,
  // Decodes numeric character references (&#10;) as well; XML has no other named entities.
  htmlEntities: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  removeNSPrefix: false,
});

/** Parses a document and returns its root element. Throws a plain Error on malformed XML. */
export function parseXml(xml: string): XmlElement {
  const nodes = parser.parse(xml) as unknown;
  if (!Array.isArray(nodes)) throw new Error('XML parser returned no node list');
  const root = build(nodes as RawNode[], new Map([['xml', 'http://www.w3.org/XML/1998/namespace']]), '');
  const first = root.elements[0];
  if (first === undefined) throw new Error('XML document has no root element');
  return first;
}

function build(
  nodes: readonly RawNode[],
  scope: ReadonlyMap<string, string>,
  defaultNs: string,
): { elements: XmlElement[]; text: string } {
  const elements: XmlElement[] = [];
  let text = '';
  for (const node of nodes) {
    for (const key of Object.keys(node)) {
      if (key === ':@') continue;
      const value = node[key];
      if (key === '#text') {
        text += String(value);
        continue;
      }
      if (key.startsWith('#') || key.startsWith('?') || key.startsWith('!')) continue;
      elements.push(element(key, (value as RawNode[] | undefined) ?? [], node[':@'] as Record<string, string> | undefined, scope, defaultNs));
    }
  }
  return { elements, text };
}

function element(
  qname: string,
  body: readonly RawNode[],
  rawAttrs: Record<string, string> | undefined,
  parentScope: ReadonlyMap<string, string>,
  parentDefaultNs: string,
): XmlElement {
  let scope = parentScope;
  let defaultNs = parentDefaultNs;
  const attrs = new Map<string, string>();
  const prefixed: [string, string][] = [];
  if (rawAttrs) {
    for (const [name, value] of Object.entries(rawAttrs)) {
      if (name === 'xmlns') {
        defaultNs = value;
      } else if (name.startsWith('xmlns:')) {
        if (scope === parentScope) scope = new Map(parentScope);
        (scope as Map<string, string>).set(name.slice(6), value);
      } else if (name.includes(':')) {
        prefixed.push([name, value]);
      } else {
        attrs.set(name, value);
      }
    }
  }

  let xsiType: QName | undefined;
  for (const [name, value] of prefixed) {
    const [prefix, local] = splitQName(name);
    if (local === 'type' && prefix !== undefined && scope.get(prefix) === XSI_NS) {
      xsiType = resolveQName(value, scope, defaultNs);
    }
  }

  const [prefix, local] = splitQName(qname);
  const ns = prefix === undefined ? defaultNs : (scope.get(prefix) ?? '');
  const inner = build(body, scope, defaultNs);
  return { name: local, ns, attrs, xsiType, children: inner.elements, text: inner.text };
}

function splitQName(qname: string): [string | undefined, string] {
  const colon = qname.indexOf(':');
  return colon < 0 ? [undefined, qname] : [qname.slice(0, colon), qname.slice(colon + 1)];
}

/** Resolves a QName-valued attribute (like xsi:type="xsd:string") against the element's scope. */
function resolveQName(value: string, scope: ReadonlyMap<string, string>, defaultNs: string): QName {
  const [prefix, local] = splitQName(value.trim());
  if (prefix === undefined) return { ns: defaultNs, name: local };
  return { ns: scope.get(prefix) ?? '', name: local };
}

export function childElement(el: XmlElement, name: string, ns?: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name && (ns === undefined || c.ns === ns));
}
