// The typed layer between vim25 method calls and SOAP text. Arguments are written in the order the
// caller gives them because vim25 declares sequences: callers list fields in WSDL order.

import { escapeXml } from '../xml/index.js';
import type { MoRef } from './types.js';
import { decodeElement, type VimObject, type VimValue } from './vim-value.js';
import { childElement, parseXml, SOAP_ENV_NS, type XmlElement } from './xml-tree.js';

/** A managed object reference argument: written as `<name type="T">value</name>`. */
export interface SoapRef {
  readonly $ref: MoRef;
}

/** A data object argument; `$type` becomes its xsi:type (needed where the field is polymorphic). */
export interface SoapObject {
  readonly $type?: string;
  readonly [field: string]: SoapValue;
}

export type SoapValue = string | number | boolean | SoapRef | SoapObject | readonly SoapValue[] | undefined;

/** Named arguments of a method, in WSDL order. */
export type SoapArgs = readonly (readonly [string, SoapValue])[];

export function ref(moref: MoRef): SoapRef {
  return { $ref: moref };
}

export function buildEnvelope(method: string, thisRef: MoRef, args: SoapArgs): string {
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"',
    ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
    `<soapenv:Body><${method} xmlns="urn:vim25">`,
  ];
  writeValue(out, '_this', ref(thisRef));
  for (const [name, value] of args) writeValue(out, name, value);
  out.push(`</${method}></soapenv:Body></soapenv:Envelope>`);
  return out.join('');
}

function writeValue(out: string[], name: string, value: SoapValue): void {
  if (value === undefined) return;
  if (Array.isArray(value)) {
    for (const item of value as readonly SoapValue[]) writeValue(out, name, item);
    return;
  }
  if (typeof value === 'string') {
    out.push(`<${name}>${escapeXml(value)}</${name}>`);
  } else if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new RangeError(`SOAP argument ${name} is not a finite number`);
    out.push(`<${name}>${String(value)}</${name}>`);
  } else if (typeof value === 'boolean') {
    out.push(`<${name}>${value ? 'true' : 'false'}</${name}>`);
  } else if ('$ref' in value) {
    const r = (value as SoapRef).$ref;
    out.push(`<${name} type="${escapeXml(r.type)}">${escapeXml(r.value)}</${name}>`);
  } else {
    const obj = value as SoapObject;
    out.push(obj.$type === undefined ? `<${name}>` : `<${name} xsi:type="${escapeXml(obj.$type)}">`);
    for (const [field, v] of Object.entries(obj)) if (field !== '$type') writeValue(out, field, v);
    out.push(`</${name}>`);
  }
}

/** A fault as the server described it, before it is turned into an error. */
export interface FaultInfo {
  /** vim25 fault type, e.g. "InvalidLogin", "NotAuthenticated", "ManagedObjectNotFound". */
  readonly type: string;
  readonly message: string;
  readonly detail: VimObject | undefined;
}

export type SoapResponse =
  | { readonly kind: 'result'; readonly returnvals: readonly VimValue[] }
  | { readonly kind: 'fault'; readonly fault: FaultInfo };

/** Reads a SOAP response body; throws a plain Error when it is not a SOAP envelope. */
export function parseSoapResponse(xml: string): SoapResponse {
  const envelope = parseXml(xml);
  if (envelope.name !== 'Envelope' || envelope.ns !== SOAP_ENV_NS) throw new Error(`not a SOAP envelope (root <${envelope.name}>)`);
  const body = childElement(envelope, 'Body', SOAP_ENV_NS);
  if (body === undefined) throw new Error('SOAP envelope has no Body');
  const first = body.children[0];
  if (first === undefined) throw new Error('SOAP Body is empty');
  if (first.name === 'Fault' && first.ns === SOAP_ENV_NS) return { kind: 'fault', fault: readSoapFault(first) };
  return { kind: 'result', returnvals: first.children.filter((c) => c.name === 'returnval').map(decodeElement) };
}

function readSoapFault(fault: XmlElement): FaultInfo {
  const faultstring = childElement(fault, 'faultstring')?.text.trim() ?? '';
  const faultcode = childElement(fault, 'faultcode')?.text.trim() ?? '';
  const detailEl = childElement(fault, 'detail')?.children[0];
  if (detailEl === undefined) return { type: faultcode || 'SOAPFault', message: faultstring, detail: undefined };
  // <detail><InvalidLoginFault xsi:type="InvalidLogin">: the xsi:type is authoritative; the element
  // name minus "Fault" is the fallback for servers that omit it.
  const type = detailEl.xsiType?.name ?? detailEl.name.replace(/Fault$/, '');
  const decoded = decodeElement(detailEl);
  return { type, message: faultstring, detail: typeof decoded === 'object' && !Array.isArray(decoded) ? (decoded as VimObject) : undefined };
}

/** Reads a LocalizedMethodFault (task errors, missingSet entries). */
export function readLocalizedFault(v: VimValue | undefined): FaultInfo | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const obj = v as VimObject;
  const inner = obj.fault;
  const message = typeof obj.localizedMessage === 'string' ? obj.localizedMessage : '';
  if (typeof inner === 'object' && inner !== null && !Array.isArray(inner)) {
    const detail = inner as VimObject;
    return { type: detail.$type ?? 'MethodFault', message, detail };
  }
  return { type: obj.$type ?? 'MethodFault', message, detail: obj };
}
