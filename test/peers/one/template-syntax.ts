/**
 * OpenNebula templates (reference §2.5): the text syntax of
 * src/parsers/template_parser.l / template_syntax.y and the XML form
 * (Template::parse_str_or_xml). Attributes are kept like oned's
 * std::multimap (emitted sorted by name) with vector attributes as
 * std::map (sub-attributes sorted by name, first definition wins).
 */
import { XmlSyntaxError, cdata, elementChildren, escapeXml, parseXml, textOf } from './xml.js';

export type Attribute = { name: string; value: string; vector?: undefined } | { name: string; vector: Map<string, string>; value?: undefined };

export class TemplateParseError extends Error {}

/** Decides per value whether it is written as CDATA: `path` is `NAME` or `VECTOR/NAME`. */
export type CdataPolicy = (path: string) => boolean;

export class Template {
  attrs: Attribute[] = [];

  clone(): Template {
    const t = new Template();
    t.attrs = this.attrs.map((a) => (a.vector ? { name: a.name, vector: new Map(a.vector) } : { name: a.name, value: a.value ?? '' }));
    return t;
  }

  /** First single value of NAME (oned get()). */
  get(name: string): string | undefined {
    for (const a of this.attrs) if (a.name === name && a.vector === undefined) return a.value;
    return undefined;
  }

  has(name: string): boolean {
    return this.attrs.some((a) => a.name === name);
  }

  vectors(name: string): Map<string, string>[] {
    return this.attrs.filter((a) => a.name === name && a.vector).map((a) => a.vector as Map<string, string>);
  }

  add(name: string, value: string): void {
    this.attrs.push({ name, value });
  }

  addVector(name: string, vector: Map<string, string>): void {
    this.attrs.push({ name, vector });
  }

  /** Replaces every attribute NAME by one single value. */
  set(name: string, value: string): void {
    this.erase(name);
    this.add(name, value);
  }

  /** Removes every attribute NAME; returns the first single value removed. */
  erase(name: string): string | undefined {
    let first: string | undefined;
    this.attrs = this.attrs.filter((a) => {
      if (a.name !== name) return true;
      if (first === undefined && a.vector === undefined) first = a.value;
      return false;
    });
    return first;
  }

  /** update with append=1: attributes named in `other` replace ours, others stay. */
  merge(other: Template): void {
    const names = new Set(other.attrs.map((a) => a.name));
    this.attrs = this.attrs.filter((a) => !names.has(a.name));
    this.attrs.push(...other.clone().attrs);
  }

  /** The attributes sorted like std::multimap (stable by name). */
  sorted(): Attribute[] {
    return [...this.attrs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  toXml(root = 'TEMPLATE', cdataFor: CdataPolicy = () => false): string {
    const enc = (path: string, v: string): string => (cdataFor(path) ? cdata(v) : escapeXml(v));
    let out = `<${root}>`;
    for (const a of this.sorted()) {
      if (a.vector) {
        out += `<${a.name}>`;
        for (const [k, v] of [...a.vector.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
          out += `<${k}>${enc(`${a.name}/${k}`, v)}</${k}>`;
        }
        out += `</${a.name}>`;
      } else {
        out += `<${a.name}>${enc(a.name, a.value ?? '')}</${a.name}>`;
      }
    }
    return out + `</${root}>`;
  }

  /** Text syntax, with `"` escaped as `\"`. */
  toText(): string {
    const q = (v: string): string => `"${v.replace(/"/g, '\\"')}"`;
    return this.sorted()
      .map((a) =>
        a.vector
          ? `${a.name}=[\n` + [...a.vector.entries()].map(([k, v]) => `  ${k}=${q(v)}`).join(',\n') + ' ]'
          : `${a.name}=${q(a.value ?? '')}`,
      )
      .join('\n');
  }
}

/** Template::parse_str_or_xml: XML when the string starts with `<` (after blanks). */
export function parseTemplate(src: string): Template {
  if (/^\s*</.test(src)) return parseXmlTemplate(src);
  return parseTextTemplate(src);
}

export function parseXmlTemplate(src: string): Template {
  let root;
  try {
    root = parseXml(src);
  } catch (e) {
    throw new TemplateParseError(`Error parsing XML Template: ${e instanceof XmlSyntaxError ? e.message : String(e)}`);
  }
  return templateFromElement(root);
}

/** Children of an element as template attributes, names as written (not upper-cased). */
export function templateFromElement(root: import('./xml.js').XmlElement): Template {
  const t = new Template();
  for (const el of elementChildren(root)) {
    const kids = elementChildren(el);
    if (kids.length > 0) {
      const m = new Map<string, string>();
      for (const k of kids) if (!m.has(k.name)) m.set(k.name, textOf(k));
      t.addVector(el.name, m);
    } else {
      t.add(el.name, textOf(el));
    }
  }
  return t;
}

// ------------------------------------------------------------------ text syntax

type Tok =
  | { k: 'VAR'; v: string; line: number; col: number }
  | { k: 'STR'; v: string; line: number; col: number }
  | { k: 'EQ' | 'EQ_EMPTY' | 'OB' | 'CB' | 'COMMA' | 'EOF'; v: string; line: number; col: number };

function lex(src: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  let afterEq = false; // VALUE state: what follows '=' (outside of a vector opener)
  const n = src.length;
  const col = (): number => i - lineStart + 1;
  const fail = (what: string): never => {
    throw new TemplateParseError(`Parse error: syntax error, unexpected ${what} at line ${line}, columns ${col()}:${col() + 1}`);
  };
  while (i < n) {
    const c = src[i] as string;
    if (c === '\n') {
      line++;
      i++;
      lineStart = i;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r') {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < n && src[i] !== '\n') i++;
      continue;
    }
    const start = { line, col: col() };
    if (c === '=') {
      // EQUAL_EMPTY: '=' followed only by blanks up to the end of the line
      let j = i + 1;
      while (j < n && (src[j] === ' ' || src[j] === '\t' || src[j] === '\r')) j++;
      if (j >= n || src[j] === '\n' || src[j] === '#') {
        toks.push({ k: 'EQ_EMPTY', v: '=', ...start });
        i = j;
        afterEq = false;
        continue;
      }
      toks.push({ k: 'EQ', v: '=', ...start });
      i++;
      afterEq = true;
      continue;
    }
    if (c === '[') {
      toks.push({ k: 'OB', v: '[', ...start });
      i++;
      afterEq = false;
      continue;
    }
    if (c === ']') {
      toks.push({ k: 'CB', v: ']', ...start });
      i++;
      afterEq = false;
      continue;
    }
    if (c === ',') {
      toks.push({ k: 'COMMA', v: ',', ...start });
      i++;
      afterEq = false;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      let v = '';
      while (j < n && src[j] !== '"') {
        if (src[j] === '\\' && src[j + 1] === '"') {
          v += '"';
          j += 2;
          continue;
        }
        if (src[j] === '\n') {
          line++;
          lineStart = j + 1;
        }
        v += src[j];
        j++;
      }
      if (j >= n) fail('end of file inside a quoted string');
      toks.push({ k: 'STR', v, ...start });
      i = j + 1;
      afterEq = false;
      continue;
    }
    if (afterEq) {
      let j = i;
      while (j < n && !/[=#\s,[\]"]/.test(src[j] as string)) j++;
      toks.push({ k: 'STR', v: src.slice(i, j), ...start });
      i = j;
      afterEq = false;
      continue;
    }
    if (/[A-Za-z0-9_]/.test(c)) {
      let j = i;
      while (j < n && /[A-Za-z0-9_]/.test(src[j] as string)) j++;
      toks.push({ k: 'VAR', v: src.slice(i, j).toUpperCase(), ...start });
      i = j;
      continue;
    }
    fail(`'${c}'`);
  }
  toks.push({ k: 'EOF', v: '', line, col: col() });
  return toks;
}

export function parseTextTemplate(src: string): Template {
  const toks = lex(src);
  const t = new Template();
  let p = 0;
  const peek = (): Tok => toks[p] ?? (toks[toks.length - 1] as Tok);
  const fail = (tok: Tok, expecting: string): never => {
    const what = tok.k === 'EOF' ? 'end of file' : tok.k === 'VAR' ? 'VARIABLE' : tok.k === 'STR' ? 'STRING' : `'${tok.v}'`;
    throw new TemplateParseError(
      `Parse error: syntax error, unexpected ${what}, expecting ${expecting} at line ${tok.line}, columns ${tok.col}:${tok.col + Math.max(tok.v.length, 1)}`,
    );
  };
  const expect = (k: Tok['k'], expecting: string): Tok => {
    const tok = peek();
    if (tok.k !== k) fail(tok, expecting);
    p++;
    return tok;
  };
  while (peek().k !== 'EOF') {
    const name = expect('VAR', 'VARIABLE').v;
    const eq = peek();
    if (eq.k === 'EQ_EMPTY') {
      p++;
      t.add(name, '');
      continue;
    }
    expect('EQ', 'EQUAL or EQUAL_EMPTY');
    const val = peek();
    if (val.k === 'STR') {
      p++;
      t.add(name, val.v);
      continue;
    }
    if (val.k !== 'OB') fail(val, 'STRING or OBRACKET');
    p++;
    const m = new Map<string, string>();
    for (;;) {
      const k = expect('VAR', 'VARIABLE').v;
      expect('EQ', 'EQUAL');
      const v = peek();
      if (v.k !== 'STR') fail(v, 'STRING');
      p++;
      if (!m.has(k)) m.set(k, v.v);
      const sep = peek();
      if (sep.k === 'COMMA') {
        p++;
        continue;
      }
      if (sep.k === 'CB') {
        p++;
        break;
      }
      fail(sep, 'COMMA or CBRACKET');
    }
    t.addVector(name, m);
  }
  return t;
}
