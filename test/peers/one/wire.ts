/**
 * XML-RPC wire format, server side, with xmlrpc-c semantics (what oned uses):
 * request parsing (typed and untyped values, CDATA, entities), replies
 * (`[true, value, 0]` / `[false, msg, code, resp_id, <i8>idx</i8>]`) and faults
 * (-501 type, -502 index, -503 parse, -506 no such method).
 */
import { XmlElement, XmlSyntaxError, elementChildren, parseXml, textOf, escapeText } from './xml.js';

export type XrValue =
  | { type: 'string'; value: string }
  | { type: 'int'; value: number }
  | { type: 'i8'; value: bigint }
  | { type: 'boolean'; value: boolean }
  | { type: 'double'; value: number }
  | { type: 'base64'; value: Buffer }
  | { type: 'dateTime'; value: string }
  | { type: 'nil' }
  | { type: 'array'; value: XrValue[] }
  | { type: 'struct'; value: Map<string, XrValue> };

export interface MethodCall {
  method: string;
  params: XrValue[];
}

export const FAULT_TYPE = -501;
export const FAULT_INDEX = -502;
export const FAULT_PARSE = -503;
export const FAULT_NO_SUCH_METHOD = -506;

export class XmlRpcFault extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

function parseValue(el: XmlElement): XrValue {
  if (el.name !== 'value') throw new XmlRpcFault(FAULT_PARSE, `expected <value>, got <${el.name}>`);
  const kids = elementChildren(el);
  const typed = kids[0];
  if (!typed) return { type: 'string', value: textOf(el) }; // untyped value = string
  if (kids.length > 1) throw new XmlRpcFault(FAULT_PARSE, '<value> has more than one child');
  const text = textOf(typed);
  switch (typed.name) {
    case 'string':
      return { type: 'string', value: text };
    case 'int':
    case 'i4': {
      const t = text.trim();
      if (!/^[-+]?\d+$/.test(t)) throw new XmlRpcFault(FAULT_PARSE, `bad integer "${t}"`);
      const v = Number(t);
      if (v > 2147483647 || v < -2147483648) throw new XmlRpcFault(FAULT_PARSE, `integer out of range "${t}"`);
      return { type: 'int', value: v };
    }
    case 'i8': {
      const t = text.trim();
      if (!/^[-+]?\d+$/.test(t)) throw new XmlRpcFault(FAULT_PARSE, `bad i8 "${t}"`);
      return { type: 'i8', value: BigInt(t) };
    }
    case 'boolean': {
      const t = text.trim();
      if (t !== '0' && t !== '1') throw new XmlRpcFault(FAULT_PARSE, `bad boolean "${t}"`);
      return { type: 'boolean', value: t === '1' };
    }
    case 'double': {
      const v = Number(text.trim());
      if (Number.isNaN(v)) throw new XmlRpcFault(FAULT_PARSE, `bad double "${text}"`);
      return { type: 'double', value: v };
    }
    case 'base64':
      return { type: 'base64', value: Buffer.from(text.replace(/\s+/g, ''), 'base64') };
    case 'dateTime.iso8601':
      return { type: 'dateTime', value: text.trim() };
    case 'nil':
    case 'ex:nil':
      return { type: 'nil' };
    case 'array': {
      const data = elementChildren(typed)[0];
      if (!data || data.name !== 'data') throw new XmlRpcFault(FAULT_PARSE, '<array> without <data>');
      return { type: 'array', value: elementChildren(data).map(parseValue) };
    }
    case 'struct': {
      const m = new Map<string, XrValue>();
      for (const member of elementChildren(typed)) {
        const nameEl = elementChildren(member).find((c) => c.name === 'name');
        const valEl = elementChildren(member).find((c) => c.name === 'value');
        if (!nameEl || !valEl) throw new XmlRpcFault(FAULT_PARSE, 'bad struct member');
        m.set(textOf(nameEl), parseValue(valEl));
      }
      return { type: 'struct', value: m };
    }
    default:
      throw new XmlRpcFault(FAULT_PARSE, `unknown value type <${typed.name}>`);
  }
}

export function parseMethodCall(body: string): MethodCall {
  let root: XmlElement;
  try {
    root = parseXml(body);
  } catch (e) {
    const msg = e instanceof XmlSyntaxError ? e.message : String(e);
    throw new XmlRpcFault(FAULT_PARSE, `XML-RPC parse error: ${msg}`);
  }
  if (root.name !== 'methodCall') throw new XmlRpcFault(FAULT_PARSE, 'XML-RPC parse error: root is not <methodCall>');
  const nameEl = elementChildren(root).find((c) => c.name === 'methodName');
  if (!nameEl) throw new XmlRpcFault(FAULT_PARSE, 'XML-RPC parse error: no <methodName>');
  const paramsEl = elementChildren(root).find((c) => c.name === 'params');
  const params: XrValue[] = [];
  if (paramsEl) {
    for (const p of elementChildren(paramsEl)) {
      const v = elementChildren(p)[0];
      if (p.name !== 'param' || !v) throw new XmlRpcFault(FAULT_PARSE, 'XML-RPC parse error: bad <param>');
      params.push(parseValue(v));
    }
  }
  return { method: textOf(nameEl).trim(), params };
}

// ---------------------------------------------------------------- signatures

const TYPE_CODES: Record<string, XrValue['type']> = {
  s: 'string',
  i: 'int',
  b: 'boolean',
  d: 'double',
  A: 'array',
  S: 'struct',
  '8': 'i8',
  '6': 'base64',
  t: 'dateTime',
  n: 'nil',
};

const TYPE_WORDS: Partial<Record<XrValue['type'], string>> = {
  string: 'a string',
  int: 'integer',
  boolean: 'boolean',
  double: 'floating point number',
  i8: '64-bit integer',
  array: 'an array',
  struct: 'a structure',
  base64: 'a byte string',
};

/**
 * Checks parameters against an xmlrpc-c signature such as `A:ssib`.
 * `required` = how many parameters (session included) must be present; the
 * others are optional trailing ones. Extra parameters are ignored (xmlrpc-c
 * does not complain about them).
 */
export function checkSignature(params: XrValue[], signature: string, required: number): void {
  const codes = signature.split(':')[1] ?? '';
  if (params.length < required) throw new XmlRpcFault(FAULT_INDEX, 'Not enough parameters');
  for (let k = 0; k < codes.length && k < params.length; k++) {
    const want = TYPE_CODES[codes[k] ?? ''];
    const got = params[k];
    if (want && got && got.type !== want) {
      throw new XmlRpcFault(FAULT_TYPE, `Parameter that is supposed to be ${TYPE_WORDS[want] ?? want} is not`);
    }
  }
}

// ---------------------------------------------------------------- responses

export type XrOut = string | number | boolean | { i8: bigint | number | string } | { double: number } | XrOut[] | { struct: Record<string, XrOut> };

export function serializeValue(v: XrOut): string {
  if (typeof v === 'string') return `<value><string>${escapeText(v)}</string></value>`;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return `<value><double>${v}</double></value>`;
    return `<value><i4>${v}</i4></value>`;
  }
  if (typeof v === 'boolean') return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
  if (Array.isArray(v)) return `<value><array><data>\n${v.map(serializeValue).join('\n')}\n</data></array></value>`;
  if ('i8' in v) return `<value><i8>${String(v.i8)}</i8></value>`;
  if ('double' in v) return `<value><double>${v.double}</double></value>`;
  const members = Object.entries(v.struct)
    .map(([k, x]) => `<member><name>${escapeText(k)}</name>\n${serializeValue(x)}</member>`)
    .join('\n');
  return `<value><struct>\n${members}\n</struct></value>`;
}

const HEAD = '<?xml version="1.0" encoding="UTF-8"?>\r\n';

export function responseXml(value: XrOut): string {
  return `${HEAD}<methodResponse>\r\n<params>\r\n<param>${serializeValue(value)}</param>\r\n</params>\r\n</methodResponse>\r\n`;
}

export function faultXml(code: number, message: string): string {
  return (
    `${HEAD}<methodResponse>\r\n<fault>\r\n` +
    serializeValue({ struct: { faultCode: code, faultString: message } }) +
    `\r\n</fault>\r\n</methodResponse>\r\n`
  );
}

/** oned success reply: `[true, value, 0]`. */
export function successReply(value: string | number | boolean): XrOut {
  return [true, value, 0];
}

/** oned failure reply: `[false, message, code, resp_id, <i8>replication_idx</i8>]`. */
export function failureReply(message: string, code: number, respId: number, replicationIdx = -1): XrOut {
  return [false, message, code, respId, { i8: replicationIdx }];
}

// ---------------------------------------------------------------- accessors

export function str(p: XrValue[], i: number, dflt = ''): string {
  const v = p[i];
  return v && v.type === 'string' ? v.value : dflt;
}
export function int(p: XrValue[], i: number, dflt = 0): number {
  const v = p[i];
  return v && v.type === 'int' ? v.value : dflt;
}
export function bool(p: XrValue[], i: number, dflt = false): boolean {
  const v = p[i];
  return v && v.type === 'boolean' ? v.value : dflt;
}
