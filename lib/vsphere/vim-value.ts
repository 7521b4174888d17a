// vim25 data decoded without a schema. Without the WSDL the decoder cannot know which fields are
// arrays, so a field seen once is a scalar and a field seen several times is an array; readers go
// through `list()` wherever vim25 declares an array. Every leaf stays a string: morefs, device
// keys and changeIds are identities, and numbers are converted only where a reader asks.

import type { MoRef } from './types.js';
import { XSD_NS, type XmlElement } from './xml-tree.js';

export type VimValue = string | VimObject | VimArray;
export interface VimArray extends ReadonlyArray<VimValue> {}
export interface VimObject {
  /** Local name of the xsi:type, when the server sent one. */
  readonly $type?: string;
  readonly [field: string]: VimValue | undefined;
}

const XSD_PRIMITIVES = new Set([
  'string', 'boolean', 'byte', 'short', 'int', 'long', 'unsignedByte', 'unsignedShort', 'unsignedInt',
  'unsignedLong', 'float', 'double', 'dateTime', 'base64Binary', 'anyURI', 'anyType',
]);

export function decodeElement(el: XmlElement): VimValue {
  const type = el.xsiType;
  // Path retrieval of an array property wraps the items: <val xsi:type="ArrayOfVirtualDevice">.
  if (type !== undefined && type.name.startsWith('ArrayOf')) return el.children.map(decodeElement);

  const moType = el.attrs.get('type');
  if (moType !== undefined && el.children.length === 0) {
    return { $type: 'ManagedObjectReference', type: moType, value: el.text.trim() };
  }

  const primitive = type !== undefined && (type.ns === XSD_NS || (type.ns === '' && XSD_PRIMITIVES.has(type.name)));
  if (el.children.length === 0) {
    if (primitive || type === undefined || el.text !== '') return el.text;
    return { $type: type.name };
  }

  const fields: Record<string, VimValue> = {};
  const counts = new Map<string, number>();
  for (const child of el.children) counts.set(child.name, (counts.get(child.name) ?? 0) + 1);
  for (const child of el.children) {
    const value = decodeElement(child);
    if ((counts.get(child.name) ?? 0) > 1) {
      const existing = fields[child.name];
      if (Array.isArray(existing)) (existing as VimValue[]).push(value);
      else fields[child.name] = [value];
    } else {
      fields[child.name] = value;
    }
  }
  if (type !== undefined) fields.$type = type.name;
  return fields;
}

export function isVimObject(v: VimValue | undefined): v is VimObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Follows a dotted path through nested objects. */
export function field(v: VimValue | undefined, path: string): VimValue | undefined {
  let cur: VimValue | undefined = v;
  for (const part of path.split('.')) {
    if (!isVimObject(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

function at(v: VimValue | undefined, path: string | undefined): VimValue | undefined {
  return path === undefined ? v : field(v, path);
}

export function text(v: VimValue | undefined, path?: string): string | undefined {
  const x = at(v, path);
  return typeof x === 'string' ? x : undefined;
}

/** Integer value; vim25 longs beyond 2^53 would lose precision, so they are refused. */
export function int(v: VimValue | undefined, path?: string): number | undefined {
  const s = text(v, path)?.trim();
  if (s === undefined || s === '' || !/^-?\d+$/.test(s)) return undefined;
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new RangeError(`integer ${s} is too large to be exact`);
  return n;
}

export function bool(v: VimValue | undefined, path?: string): boolean | undefined {
  const s = text(v, path)?.trim();
  if (s === 'true' || s === '1') return true;
  if (s === 'false' || s === '0') return false;
  return undefined;
}

/** A field vim25 declares as an array, whatever form it arrived in. */
export function list(v: VimValue | undefined, path?: string): readonly VimValue[] {
  const x = at(v, path);
  if (x === undefined || x === '') return [];
  return Array.isArray(x) ? (x as VimArray) : [x];
}

export function moRef(v: VimValue | undefined, path?: string): MoRef | undefined {
  const x = at(v, path);
  if (!isVimObject(x)) return undefined;
  const type = x.type;
  const value = x.value;
  if (x.$type !== 'ManagedObjectReference' || typeof type !== 'string' || typeof value !== 'string') return undefined;
  return { type, value };
}

export function typeName(v: VimValue | undefined, path?: string): string | undefined {
  const x = at(v, path);
  return isVimObject(x) ? x.$type : undefined;
}

export function refKey(ref: MoRef): string {
  return `${ref.type}:${ref.value}`;
}
