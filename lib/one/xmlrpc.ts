// A small XML-RPC client of our own on node:http / node:https.
//
// Why not the npm `xmlrpc` package (what FireEdge uses): it has no timeout and no way to abort a
// call, so a stalled oned would hang a migration forever; it is unmaintained since 2016. Here every
// call runs under an AbortController (timeout and caller cancellation), the socket is destroyed on
// abort, and idle connections are kept alive between calls.
//
// Value mapping. Sent: JS integers → <int> (outside the 32-bit range → <i8>), other numbers →
// <double>, bigint → <i8>, booleans → <boolean>, strings → <string> (escaped, XML-illegal control
// characters stripped), arrays → <array>, Buffers → <base64>, plain objects → <struct>.
// Received: <string> and untyped values → string, <int>/<i4> → number, <i8> → **string** (oned's
// replication index may exceed 2^53; like the npm package, and never compared as a number),
// <boolean> → boolean, <double> → number, <nil/> → null, <base64> → Buffer,
// <dateTime.iso8601> → its text, arrays and structs → arrays and plain objects.

import * as http from 'node:http';
import * as https from 'node:https';
import { OneswapError } from '../errors/index.js';
import { escapeXmlText, parseXml, type XmlElement } from './xml.js';

export type XmlRpcParam =
  | string
  | number
  | bigint
  | boolean
  | Buffer
  | readonly XmlRpcParam[]
  | { readonly [member: string]: XmlRpcParam };

export type XmlRpcValue = string | number | boolean | null | Buffer | XmlRpcValue[] | { [member: string]: XmlRpcValue };

export type XmlRpcResponse =
  | { readonly fault: false; readonly value: XmlRpcValue }
  | { readonly fault: true; readonly code: number; readonly message: string };

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

export function encodeCall(method: string, params: readonly XmlRpcParam[]): string {
  const encoded = params.map((p) => `<param>${encodeValue(p)}</param>`).join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<methodCall><methodName>${escapeXmlText(method)}</methodName><params>${encoded}</params></methodCall>\n`;
}

function encodeValue(value: XmlRpcParam): string {
  if (typeof value === 'string') return `<value><string>${escapeXmlText(value)}</string></value>`;
  if (typeof value === 'boolean') return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (typeof value === 'bigint') return `<value><i8>${value}</i8></value>`;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new OneswapError('internal', `cannot send ${value} over XML-RPC`);
    if (!Number.isInteger(value)) return `<value><double>${value}</double></value>`;
    if (value < INT32_MIN || value > INT32_MAX) return `<value><i8>${BigInt(value)}</i8></value>`;
    return `<value><int>${value}</int></value>`;
  }
  if (value === undefined || value === null) {
    // Only reachable from untyped callers; a clear error beats sending a guessed value.
    throw new OneswapError('internal', `cannot send ${String(value)} over XML-RPC`);
  }
  if (Buffer.isBuffer(value)) return `<value><base64>${value.toString('base64')}</base64></value>`;
  if (Array.isArray(value)) {
    return `<value><array><data>${(value as readonly XmlRpcParam[]).map(encodeValue).join('')}</data></array></value>`;
  }
  const members = Object.entries(value as { readonly [member: string]: XmlRpcParam })
    .map(([name, v]) => `<member><name>${escapeXmlText(name)}</name>${encodeValue(v)}</member>`)
    .join('');
  return `<value><struct>${members}</struct></value>`;
}

/** Decodes a methodResponse; anything that is not one throws kind 'data'. */
export function decodeResponse(xml: string): XmlRpcResponse {
  const root = parseXml(xml, 'the reply');
  if (root.name !== 'methodResponse') throw notXmlRpc(`root element is <${root.name}>`);
  const fault = root.first('fault');
  if (fault !== undefined) {
    const struct = decodeValue(only(fault, 'value'));
    if (struct === null || typeof struct !== 'object' || Array.isArray(struct) || Buffer.isBuffer(struct)) {
      throw notXmlRpc('the fault holds no struct');
    }
    const code = struct['faultCode'];
    const message = struct['faultString'];
    return {
      fault: true,
      code: typeof code === 'number' ? code : Number(code),
      message: typeof message === 'string' ? message : String(message ?? ''),
    };
  }
  const params = root.first('params');
  if (params === undefined) throw notXmlRpc('no <params> and no <fault>');
  return { fault: false, value: decodeValue(only(only(params, 'param'), 'value')) };
}

function only(parent: XmlElement, name: string): XmlElement {
  const child = parent.first(name);
  if (child === undefined) throw notXmlRpc(`<${parent.name}> holds no <${name}>`);
  return child;
}

function notXmlRpc(detail: string): OneswapError {
  return new OneswapError('data', `not an XML-RPC reply: ${detail}`);
}

function decodeValue(value: XmlElement): XmlRpcValue {
  const typed = value.children[0];
  if (typed === undefined) return value.text;
  const text = typed.text;
  // xmlrpc-c writes its extensions with an `ex:` prefix when asked to; accept both spellings.
  switch (typed.name.replace(/^ex:/, '')) {
    case 'string':
      return text;
    case 'int':
    case 'i4':
      return decodeInt(text);
    case 'i8':
      if (!/^\s*[+-]?\d+\s*$/.test(text)) throw notXmlRpc(`bad <i8> "${text}"`);
      return text.trim().replace(/^\+/, '');
    case 'boolean': {
      const t = text.trim();
      if (t === '1' || t === 'true') return true;
      if (t === '0' || t === 'false') return false;
      throw notXmlRpc(`bad <boolean> "${t}"`);
    }
    case 'double': {
      const n = Number(text.trim());
      if (Number.isNaN(n) || text.trim() === '') throw notXmlRpc(`bad <double> "${text}"`);
      return n;
    }
    case 'nil':
      return null;
    case 'base64':
      return Buffer.from(text.replace(/\s+/g, ''), 'base64');
    case 'dateTime.iso8601':
      return text.trim();
    case 'array':
      return only(typed, 'data').all('value').map(decodeValue);
    case 'struct': {
      const out: { [member: string]: XmlRpcValue } = {};
      for (const member of typed.all('member')) {
        Object.defineProperty(out, only(member, 'name').text, {
          value: decodeValue(only(member, 'value')),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    default:
      throw notXmlRpc(`unknown value type <${typed.name}>`);
  }
}

function decodeInt(text: string): number {
  if (!/^\s*[+-]?\d+\s*$/.test(text)) throw notXmlRpc(`bad <int> "${text}"`);
  return Number(text.trim());
}

// oned serves at most MAX_CONN (default 15) connections at once, shared with Sunstone and every
// other client: parallel calls beyond this queue here rather than pile up in oned's backlog.
const AGENT_OPTIONS = { keepAlive: true, maxSockets: 8 } as const;

export interface XmlRpcClientOptions {
  readonly endpoint: string;
  readonly timeoutMs: number;
  /** For https endpoints: extra CAs and certificate checking (ONE_CERT_DIR, ONE_DISABLE_SSL_VERIFY). */
  readonly tls?: { readonly ca?: readonly string[]; readonly rejectUnauthorized?: boolean };
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

export class XmlRpcClient {
  /** The endpoint as shown in messages: without user:password@. */
  readonly displayEndpoint: string;
  readonly #url: URL;
  readonly #timeoutMs: number;
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;

  constructor(options: XmlRpcClientOptions) {
    let url: URL;
    try {
      url = new URL(options.endpoint);
    } catch {
      throw new OneswapError('usage', `invalid OpenNebula endpoint "${options.endpoint}" (expected e.g. http://localhost:2633/RPC2)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new OneswapError('usage', `invalid OpenNebula endpoint "${options.endpoint}": only http:// and https:// are supported`);
    }
    const shown = new URL(url.href);
    shown.username = '';
    shown.password = '';
    this.displayEndpoint = shown.href;
    this.#url = url;
    this.#timeoutMs = options.timeoutMs;
    if (url.protocol === 'https:') {
      this.#agent = new https.Agent({
        ...AGENT_OPTIONS,
        ...(options.tls?.ca ? { ca: [...options.tls.ca] } : {}),
        ...(options.tls?.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      });
      this.#request = https.request;
    } else {
      this.#agent = new http.Agent(AGENT_OPTIONS);
      this.#request = http.request;
    }
  }

  async call(method: string, params: readonly XmlRpcParam[], options: CallOptions = {}): Promise<XmlRpcResponse> {
    const body = encodeCall(method, params);
    const xml = await this.#post(method, body, options);
    try {
      return decodeResponse(xml);
    } catch (err) {
      if (err instanceof OneswapError && err.kind === 'data') {
        throw new OneswapError('connection', `OpenNebula at ${this.displayEndpoint} answered ${method} with ${err.message}`, {
          hint: 'check the endpoint: it should be oned\'s XML-RPC URL, usually http://<frontend>:2633/RPC2',
          cause: err,
        });
      }
      throw err;
    }
  }

  /** Closes idle keep-alive connections; calls still running go on. */
  close(): void {
    this.#agent.destroy();
  }

  async #post(method: string, body: string, options: CallOptions): Promise<string> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    // One controller for both causes, wired by hand: AbortSignal.any() on a long-lived caller
    // signal (one per migration, thousands of calls) has leaked listeners in Node 20 releases.
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, timeoutMs);
    const onCallerAbort = (): void => abort.abort();
    if (options.signal?.aborted) abort.abort();
    options.signal?.addEventListener('abort', onCallerAbort, { once: true });
    const signal = abort.signal;
    try {
      // A kept-alive socket may have been closed by the server (oned's KEEPALIVE_TIMEOUT) just as we
      // reuse it; the request never reached oned then, so one retry on a fresh socket is safe.
      try {
        return await this.#postOnce(body, signal);
      } catch (err) {
        if (!(err instanceof StaleSocket)) throw err;
        return await this.#postOnce(body, signal);
      }
    } catch (err) {
      if (timedOut) {
        throw new OneswapError('connection', `OpenNebula at ${this.displayEndpoint} did not answer ${method} within ${timeoutMs / 1000} s`, {
          hint: 'oned may be overloaded or stuck; ONE_XMLRPC_TIMEOUT (seconds) raises the limit',
        });
      }
      if (options.signal?.aborted) {
        throw new OneswapError('interrupted', `${method} to OpenNebula at ${this.displayEndpoint} was cancelled`);
      }
      if (err instanceof OneswapError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      const detail = code && !(err as Error).message.includes(code) ? `${code}: ${(err as Error).message}` : (err as Error).message;
      throw new OneswapError('connection', `cannot reach OpenNebula at ${this.displayEndpoint}: ${detail}`, { cause: err });
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onCallerAbort);
    }
  }

  #postOnce(body: string, signal: AbortSignal): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const req = this.#request(this.#url, {
        method: 'POST',
        agent: this.#agent,
        headers: {
          'Content-Type': 'text/xml',
          'Content-Length': Buffer.byteLength(body),
          'User-Agent': 'oneswap',
        },
      });
      let settled = false;
      let answered = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        req.destroy();
        reject(err);
      };
      const onAbort = (): void => fail(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (!answered && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) fail(new StaleSocket());
        else fail(err);
      });
      req.on('response', (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', fail);
        res.on('aborted', () => fail(new Error('connection closed in the middle of the reply')));
        res.on('end', () => {
          if (settled) return;
          const status = res.statusCode ?? 0;
          if (status === 404) {
            fail(
              new OneswapError('connection', `no XML-RPC service at ${this.displayEndpoint} (check the endpoint path, usually /RPC2)`),
            );
            return;
          }
          if (status < 200 || status >= 300) {
            fail(new OneswapError('connection', `OpenNebula at ${this.displayEndpoint} answered HTTP ${status} ${res.statusMessage ?? ''}`.trimEnd()));
            return;
          }
          settled = true;
          signal.removeEventListener('abort', onAbort);
          resolve(Buffer.concat(chunks).toString('utf8'));
        });
      });
      req.end(body);
    });
  }
}

class StaleSocket extends Error {}
