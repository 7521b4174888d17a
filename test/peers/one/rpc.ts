/**
 * A minimal XML-RPC client for tests of the simulator itself: it sends exactly the types given
 * (JS string → <string>, integer → <int>, boolean → <boolean>) and returns oned's reply array
 * decoded, so a test asserts the wire shape ([true, value, 0] / [false, msg, code, id, i8]) without
 * going through the product's own client in lib/one.
 */
import { XMLParser } from 'fast-xml-parser';

export type RpcParam = string | number | boolean;

export interface RpcReply {
  ok: boolean;
  /** success: the value (string or number); failure: the message */
  value: string | number | boolean;
  /** 0 on success, the ErrorCode on failure */
  code: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function param(v: RpcParam): string {
  if (typeof v === 'boolean') return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`rpc: ${v} is not an integer`);
    return `<value><int>${v}</int></value>`;
  }
  return `<value><string>${esc(v)}</string></value>`;
}

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, trimValues: false, isArray: (n) => n === 'value' });

function scalar(v: Record<string, unknown>): string | number | boolean {
  const [k, x] = Object.entries(v)[0] ?? ['string', ''];
  if (k === 'int' || k === 'i4' || k === 'i8') return Number(x);
  if (k === 'boolean') return x === '1';
  return String(x ?? '');
}

/** Calls `method(session, ...params)` on the simulator's endpoint; throws on HTTP errors and faults. */
export async function rpc(endpoint: string, session: string, method: string, ...params: RpcParam[]): Promise<RpcReply> {
  const body = `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>${[session, ...params]
    .map((p) => `<param>${param(p)}</param>`)
    .join('')}</params></methodCall>`;
  const res = await fetch(endpoint, { method: 'POST', body, headers: { 'Content-Type': 'text/xml' } });
  if (res.status !== 200) throw new Error(`rpc ${method}: HTTP ${res.status}`);
  const text = await res.text();
  const doc = parser.parse(text) as {
    methodResponse: { fault?: unknown; params?: { param: { value: { array: { data: { value: Record<string, unknown>[] } } }[] } } };
  };
  if (doc.methodResponse.fault) throw new Error(`rpc ${method}: fault ${text}`);
  const arr = doc.methodResponse.params?.param.value[0]?.array.data.value ?? [];
  const ok = scalar(arr[0] ?? {}) === true;
  return { ok, value: scalar(arr[1] ?? {}), code: Number(scalar(arr[2] ?? {})) };
}
