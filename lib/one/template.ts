// The OpenNebula template: an ordered list of attributes where a name may repeat (DISK, NIC …),
// each a string or a vector (an ordered key → string map; oned has no deeper nesting).
//
// Two syntaxes (reference §2.5). XML is what oneswap sends: it carries any text, needs only
// `& < >` escaped, and keeps names as written, so names are upper-cased here. The text syntax
// (`KEY = "value"`, `KEY = [ A = "x" ]`) is for files a person reads or feeds to `onetemplate
// create`; its only escape is `\"`, so a value ending in a backslash cannot be written and is
// refused rather than silently changed.

import { OneswapError } from '../errors/index.js';
import { escapeXmlText, stripIllegalXmlChars, type XmlElement } from './xml.js';

export type TemplateVector = ReadonlyMap<string, string>;
export type TemplateValue = string | TemplateVector;

export interface TemplateAttribute {
  readonly name: string;
  readonly value: TemplateValue;
}

/** What `add`/`set` accept: numbers become their decimal text, records become vectors. */
export type TemplateInput = string | number | TemplateVector | Readonly<Record<string, string | number>>;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export class Template {
  readonly #attributes: TemplateAttribute[] = [];

  constructor(attributes: Iterable<readonly [string, TemplateInput]> = []) {
    for (const [name, value] of attributes) this.add(name, value);
  }

  /** A template from a record; an array value adds one attribute per element (several DISKs). */
  static of(record: Readonly<Record<string, TemplateInput | readonly TemplateInput[]>>): Template {
    const template = new Template();
    for (const [name, value] of Object.entries(record)) {
      if (Array.isArray(value)) for (const v of value as readonly TemplateInput[]) template.add(name, v);
      else template.add(name, value as TemplateInput);
    }
    return template;
  }

  get attributes(): readonly TemplateAttribute[] {
    return this.#attributes;
  }

  get size(): number {
    return this.#attributes.length;
  }

  /** Appends an attribute, after any others of the same name. */
  add(name: string, value: TemplateInput): this {
    this.#attributes.push({ name: attributeName(name), value: toValue(name, value) });
    return this;
  }

  /** Replaces every attribute called `name` by one, at the place of the first. */
  set(name: string, value: TemplateInput): this {
    const upper = attributeName(name);
    const attribute = { name: upper, value: toValue(name, value) };
    const at = this.#attributes.findIndex((a) => a.name === upper);
    this.remove(upper);
    this.#attributes.splice(at < 0 ? this.#attributes.length : at, 0, attribute);
    return this;
  }

  remove(name: string): this {
    const upper = name.toUpperCase();
    for (let i = this.#attributes.length - 1; i >= 0; i--) {
      if (this.#attributes[i]?.name === upper) this.#attributes.splice(i, 1);
    }
    return this;
  }

  /** The first single (non-vector) value called `name`. */
  get(name: string): string | undefined {
    const upper = name.toUpperCase();
    for (const a of this.#attributes) if (a.name === upper && typeof a.value === 'string') return a.value;
    return undefined;
  }

  /** Every vector called `name`, in order. */
  vectors(name: string): TemplateVector[] {
    const upper = name.toUpperCase();
    return this.#attributes.filter((a) => a.name === upper && typeof a.value !== 'string').map((a) => a.value as TemplateVector);
  }

  vector(name: string): TemplateVector | undefined {
    return this.vectors(name)[0];
  }

  /** `<TEMPLATE>…</TEMPLATE>`, the form oneswap sends to oned. */
  toXml(): string {
    const body = this.#attributes
      .map(({ name, value }) => {
        if (typeof value === 'string') return `<${name}>${xmlValue(name, value)}</${name}>`;
        const inner = [...value].map(([key, v]) => `<${key}>${xmlValue(`${name}/${key}`, v)}</${key}>`).join('');
        return `<${name}>${inner}</${name}>`;
      })
      .join('');
    return `<TEMPLATE>${body}</TEMPLATE>`;
  }

  /** The text syntax, one attribute per line (vectors over several), for people and `onetemplate create`. */
  toText(): string {
    return this.#attributes
      .map(({ name, value }) => {
        if (typeof value === 'string') return `${name} = ${textValue(name, value)}\n`;
        const entries = [...value].map(([key, v]) => `  ${key} = ${textValue(`${name}/${key}`, v)}`);
        return `${name} = [\n${entries.join(',\n')} ]\n`;
      })
      .join('');
  }
}

function attributeName(name: string): string {
  if (!NAME.test(name)) throw new OneswapError('internal', `"${name}" is not a valid OpenNebula template attribute name`);
  return name.toUpperCase();
}

function toValue(name: string, input: TemplateInput): TemplateValue {
  if (typeof input === 'string') return input;
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) throw new OneswapError('internal', `template attribute ${name} is ${input}`);
    return String(input);
  }
  const entries = input instanceof Map ? [...(input as TemplateVector)] : Object.entries(input as Record<string, string | number>);
  if (entries.length === 0) throw new OneswapError('internal', `template vector ${name} is empty; OpenNebula cannot hold that`);
  const vector = new Map<string, string>();
  for (const [key, v] of entries) vector.set(attributeName(key), typeof v === 'number' ? String(toValue(`${name}/${key}`, v)) : v);
  return vector;
}

// oned 7.4 writes template values back inside CDATA sections: a `]]>` would end the section early
// and corrupt every info document of the object. Refuse it in both syntaxes.
function checkStorable(where: string, value: string): void {
  if (value.includes(']]>')) {
    throw new OneswapError('data', `template attribute ${where} contains "]]>", which OpenNebula cannot store`);
  }
}

function xmlValue(where: string, value: string): string {
  checkStorable(where, value);
  return escapeXmlText(value);
}

function textValue(where: string, raw: string): string {
  const value = stripIllegalXmlChars(raw);
  checkStorable(where, value);
  if (value.endsWith('\\')) {
    throw new OneswapError(
      'data',
      `template attribute ${where} ends with a backslash, which the OpenNebula template text syntax cannot hold (use the XML form)`,
    );
  }
  return `"${value.replace(/"/g, '\\"')}"`;
}

/** The attributes of a `<TEMPLATE>` element of an info document (or any element shaped like one). */
export function templateFromXml(element: XmlElement): Template {
  const template = new Template();
  for (const child of element.children) {
    // Only an XML template can create names outside oned's own syntax; they could not be written back.
    if (!NAME.test(child.name)) continue;
    if (child.children.length === 0) {
      template.add(child.name, child.text);
      continue;
    }
    const vector = new Map<string, string>();
    for (const entry of child.children) if (NAME.test(entry.name)) vector.set(entry.name.toUpperCase(), entry.text);
    template.add(child.name, vector);
  }
  return template;
}

/**
 * Reads the text syntax as oned's lexer does: names upper-cased, `"…"` values with `\"` as the only
 * escape and newlines allowed, bare values without blanks or `= # , [ ]`, `#` comments.
 */
export function parseTemplateText(text: string): Template {
  const template = new Template();
  const lexer = new TextLexer(text);
  for (let token = lexer.next(); token !== undefined; token = lexer.next()) {
    const name = lexer.expectName(token);
    lexer.expect('=');
    const value = lexer.next();
    if (value?.kind === '[') {
      const vector = new Map<string, string>();
      for (;;) {
        const key = lexer.expectName(lexer.next());
        lexer.expect('=');
        vector.set(key, lexer.expectValue(lexer.next()));
        const after = lexer.next();
        if (after?.kind === ']') break;
        if (after?.kind !== ',') lexer.fail(`expected "," or "]" in vector ${name}`);
      }
      template.add(name, vector);
    } else {
      template.add(name, lexer.expectValue(value));
    }
  }
  return template;
}

type Token = { kind: 'word' | 'string'; text: string } | { kind: '=' | '[' | ']' | ',' };

class TextLexer {
  #pos = 0;
  constructor(readonly source: string) {}

  next(): Token | undefined {
    const s = this.source;
    for (;;) {
      while (this.#pos < s.length && /\s/.test(s[this.#pos] ?? '')) this.#pos++;
      if (s[this.#pos] !== '#') break;
      while (this.#pos < s.length && s[this.#pos] !== '\n') this.#pos++;
    }
    const c = s[this.#pos];
    if (c === undefined) return undefined;
    if (c === '=' || c === '[' || c === ']' || c === ',') {
      this.#pos++;
      return { kind: c };
    }
    if (c === '"') {
      let out = '';
      for (let i = this.#pos + 1; i < s.length; i++) {
        if (s[i] === '\\' && s[i + 1] === '"') {
          out += '"';
          i++;
        } else if (s[i] === '"') {
          this.#pos = i + 1;
          return { kind: 'string', text: out };
        } else {
          out += s[i];
        }
      }
      this.fail('unterminated quoted value');
    }
    const word = /^[^\s=#,[\]"]+/.exec(s.slice(this.#pos))?.[0] ?? '';
    this.#pos += word.length;
    return { kind: 'word', text: word };
  }

  expect(kind: '='): void {
    if (this.next()?.kind !== kind) this.fail(`expected "${kind}"`);
  }

  expectName(token: Token | undefined): string {
    if (token?.kind !== 'word' || !NAME.test(token.text)) this.fail('expected an attribute name');
    return token.text.toUpperCase();
  }

  expectValue(token: Token | undefined): string {
    if (token?.kind !== 'word' && token?.kind !== 'string') this.fail('expected a value');
    return token.text;
  }

  fail(what: string): never {
    const line = this.source.slice(0, this.#pos).split('\n').length;
    throw new OneswapError('usage', `template text, line ${line}: ${what}`);
  }
}
