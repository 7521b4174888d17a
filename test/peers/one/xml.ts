/**
 * A tiny, namespace-free XML reader and the escaping helpers the simulator needs.
 * Used for XML-RPC request bodies, XML-syntax templates and driver payloads.
 * It keeps text exactly (no trimming), understands CDATA, comments, processing
 * instructions, attributes (ignored) and the five named entities plus &#N; / &#xN;.
 */

export interface XmlElement {
  name: string;
  children: XmlNode[];
}
export type XmlNode = XmlElement | string;

export class XmlSyntaxError extends Error {}

const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (whole, ent: string) => {
    if (ent.startsWith('#x')) return String.fromCodePoint(parseInt(ent.slice(2), 16));
    if (ent.startsWith('#')) return String.fromCodePoint(parseInt(ent.slice(1), 10));
    const v = NAMED[ent];
    if (v === undefined) throw new XmlSyntaxError(`unknown entity ${whole}`);
    return v;
  });
}

/** Parses a document and returns its root element. */
export function parseXml(src: string): XmlElement {
  let i = 0;
  const n = src.length;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;

  const addText = (t: string): void => {
    const top = stack[stack.length - 1];
    if (!top) {
      if (t.trim() !== '') throw new XmlSyntaxError('text outside the root element');
      return;
    }
    const last = top.children[top.children.length - 1];
    if (typeof last === 'string') top.children[top.children.length - 1] = last + t;
    else top.children.push(t);
  };

  while (i < n) {
    const lt = src.indexOf('<', i);
    if (lt === -1) {
      addText(decodeEntities(src.slice(i)));
      break;
    }
    if (lt > i) addText(decodeEntities(src.slice(i, lt)));
    if (src.startsWith('<!--', lt)) {
      const end = src.indexOf('-->', lt + 4);
      if (end === -1) throw new XmlSyntaxError('unterminated comment');
      i = end + 3;
    } else if (src.startsWith('<![CDATA[', lt)) {
      const end = src.indexOf(']]>', lt + 9);
      if (end === -1) throw new XmlSyntaxError('unterminated CDATA');
      if (stack.length === 0) throw new XmlSyntaxError('CDATA outside the root element');
      addText(src.slice(lt + 9, end));
      i = end + 3;
    } else if (src.startsWith('<?', lt)) {
      const end = src.indexOf('?>', lt + 2);
      if (end === -1) throw new XmlSyntaxError('unterminated processing instruction');
      i = end + 2;
    } else if (src.startsWith('<!', lt)) {
      const end = src.indexOf('>', lt + 2);
      if (end === -1) throw new XmlSyntaxError('unterminated declaration');
      i = end + 1;
    } else if (src[lt + 1] === '/') {
      const end = src.indexOf('>', lt + 2);
      if (end === -1) throw new XmlSyntaxError('unterminated end tag');
      const name = src.slice(lt + 2, end).trim();
      const top = stack.pop();
      if (!top || top.name !== name) throw new XmlSyntaxError(`mismatched end tag </${name}>`);
      i = end + 1;
    } else {
      const end = findTagEnd(src, lt + 1);
      if (end === -1) throw new XmlSyntaxError('unterminated start tag');
      let body = src.slice(lt + 1, end);
      const selfClosing = body.endsWith('/');
      if (selfClosing) body = body.slice(0, -1);
      const m = /^([A-Za-z_:][-A-Za-z0-9_.:]*)/.exec(body);
      if (!m || !m[1]) throw new XmlSyntaxError(`bad start tag <${body}>`);
      const el: XmlElement = { name: m[1], children: [] };
      const top = stack[stack.length - 1];
      if (top) top.children.push(el);
      else if (root) throw new XmlSyntaxError('more than one root element');
      else root = el;
      if (!selfClosing) stack.push(el);
      i = end + 1;
    }
  }
  if (stack.length > 0) throw new XmlSyntaxError(`unclosed element <${stack[stack.length - 1]?.name}>`);
  if (!root) throw new XmlSyntaxError('no root element');
  return root;
}

function findTagEnd(src: string, from: number): number {
  let quote: string | null = null;
  for (let j = from; j < src.length; j++) {
    const c = src[j];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '>') return j;
  }
  return -1;
}

export function elementChildren(el: XmlElement): XmlElement[] {
  return el.children.filter((c): c is XmlElement => typeof c !== 'string');
}

export function textOf(el: XmlElement): string {
  return el.children.map((c) => (typeof c === 'string' ? c : textOf(c))).join('');
}

export function child(el: XmlElement, name: string): XmlElement | undefined {
  return elementChildren(el).find((c) => c.name === name);
}

/** `a/b/c` lookup returning the text, or undefined. */
export function pathText(el: XmlElement, path: string): string | undefined {
  let cur: XmlElement | undefined = el;
  for (const part of path.split('/')) {
    if (!cur) return undefined;
    cur = child(cur, part);
  }
  return cur ? textOf(cur) : undefined;
}

/** Escapes like oned's one_util::escape_xml (the five entities). */
export function escapeXml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** Escapes only what XML-RPC string content needs. */
export function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Wraps in CDATA, splitting any `]]>` inside the value. */
export function cdata(s: string): string {
  return `<![CDATA[${s.replace(/\]\]>/g, ']]]]><![CDATA[>')}]]>`;
}

/** Removes characters that are illegal in XML 1.0. */
export function stripIllegalXmlChars(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '');
}
