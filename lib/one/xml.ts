// XML reading and escaping shared by the XML-RPC codec, the info documents and the template model.
//
// Documents are read with lib/xml's ordered element tree: a template keeps the order and repetition
// of its attributes (DISK, NIC, DISK …). Values are never converted (ids, MACs and sizes stay text
// until a typed reader asks for a number).

import { parseElementTree, type Element } from '../xml/index.js';

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

/** Parses a whole document and returns its root element; malformed XML throws kind 'data'. */
export function parseXml(xml: string, what: string): XmlElement {
  return fromTree(parseElementTree(xml, what));
}

// OpenNebula's documents carry no attributes and no namespaces: the name as written and the text
// are all there is to keep.
function fromTree(el: Element): XmlElement {
  return new XmlElement(el.qname, el.children.map(fromTree), el.text);
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
