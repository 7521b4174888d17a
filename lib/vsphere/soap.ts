// SOAP over HTTPS to /sdk: one POST per vim25 method, session cookie, per-call timeout, faults
// (HTTP 500 bodies and missingSet entries of 200 replies), one re-login and retry when the session
// expired. Request bodies are never logged or put into errors: Login carries the password.

import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { OneswapError } from '../errors/index.js';
import { endpointLabel, timeoutError, toConnectionError, type Endpoint } from './endpoint.js';
import type { VSphereLogger } from './logger.js';
import { sessionCookieFrom } from './session-cookie.js';
import { buildEnvelope, parseSoapResponse, readLocalizedFault, type SoapArgs } from './soap-envelope.js';
import type { MoRef } from './types.js';
import { describeFault, isFault, VimFaultError } from './vim-fault.js';
import { field, list, moRef, text, type VimValue } from './vim-value.js';

/** Called with the cookie the failed call sent; resolves once a fresh session exists. */
export type Reauthenticator = (staleCookie: string | undefined) => Promise<void>;

export interface CallOptions {
  readonly timeoutMs?: number;
  /** Login, Logout and RetrieveServiceContent must not trigger a re-login. */
  readonly noReauth?: boolean;
}

export interface SoapTransportOptions {
  readonly endpoint: Endpoint;
  readonly agent: https.Agent;
  readonly timeoutMs: number;
  readonly logger?: VSphereLogger;
}

interface HttpReply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** The version the first call (RetrieveServiceContent) speaks, before the server's is known. */
const BOOTSTRAP_API_VERSION = '6.5';

export class SoapTransport {
  readonly endpoint: Endpoint;
  readonly agent: https.Agent;
  readonly timeoutMs: number;
  private readonly logger: VSphereLogger | undefined;
  apiVersion = BOOTSTRAP_API_VERSION;
  /** `vmware_soap_session=<value>` exactly as the server set it. */
  cookie: string | undefined;
  reauthenticate: Reauthenticator | undefined;

  constructor(options: SoapTransportOptions) {
    this.endpoint = options.endpoint;
    this.agent = options.agent;
    this.timeoutMs = options.timeoutMs;
    this.logger = options.logger;
  }

  /** Calls a method and returns its `returnval` elements (none for void methods). */
  async call(method: string, thisRef: MoRef, args: SoapArgs = [], options: CallOptions = {}): Promise<readonly VimValue[]> {
    const sentCookie = this.cookie;
    try {
      return await this.exchange(method, thisRef, args, options);
    } catch (err) {
      if (options.noReauth || this.reauthenticate === undefined || !isFault(err, 'NotAuthenticated')) throw err;
      this.logger?.debug?.(`vSphere session expired during ${method}; logging in again`);
      await this.reauthenticate(sentCookie);
      return await this.exchange(method, thisRef, args, options);
    }
  }

  /** Calls a method that returns one value (or nothing). */
  async callOne(method: string, thisRef: MoRef, args: SoapArgs = [], options: CallOptions = {}): Promise<VimValue | undefined> {
    return (await this.call(method, thisRef, args, options))[0];
  }

  private async exchange(method: string, thisRef: MoRef, args: SoapArgs, options: CallOptions): Promise<readonly VimValue[]> {
    const envelope = buildEnvelope(method, thisRef, args);
    const started = Date.now();
    const reply = await this.post(method, envelope, options.timeoutMs ?? this.timeoutMs);
    this.logger?.debug?.(`SOAP ${method} → HTTP ${reply.status} in ${Date.now() - started} ms`);
    const cookie = sessionCookieFrom(reply.headers['set-cookie']);
    if (cookie !== undefined) this.cookie = cookie;
    return interpretReply(reply, method, thisRef, this.endpoint);
  }

  private async post(method: string, envelope: string, timeoutMs: number): Promise<HttpReply> {
    try {
      return await this.postOnce(envelope, timeoutMs);
    } catch (err) {
      // A keep-alive socket the server closed while idle fails on first use, before the server
      // saw the request: the one case where resending is safe for every method.
      if ((err as { reusedSocket?: boolean }).reusedSocket !== true) throw this.mapNetworkError(err, method, timeoutMs);
      try {
        return await this.postOnce(envelope, timeoutMs);
      } catch (again) {
        throw this.mapNetworkError(again, method, timeoutMs);
      }
    }
  }

  private mapNetworkError(err: unknown, method: string, timeoutMs: number): OneswapError {
    const e = err as { timedOut?: boolean; cause?: unknown };
    if (e.timedOut === true) return timeoutError(this.endpoint, method, timeoutMs);
    return toConnectionError(e.cause ?? err, this.endpoint, method);
  }

  private postOnce(envelope: string, timeoutMs: number): Promise<HttpReply> {
    return new Promise<HttpReply>((resolve, reject) => {
      const abort = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        abort.abort();
      }, timeoutMs);
      const body = Buffer.from(envelope, 'utf8');
      const req = https.request(
        {
          host: this.endpoint.host,
          port: this.endpoint.port,
          path: '/sdk',
          method: 'POST',
          agent: this.agent,
          signal: abort.signal,
          headers: {
            'Content-Type': 'text/xml; charset=utf-8',
            Accept: 'text/xml',
            SOAPAction: `urn:vim25/${this.apiVersion}`,
            'Content-Length': body.length,
            ...(this.cookie === undefined ? {} : { Cookie: this.cookie }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', (err) => {
            clearTimeout(timer);
            reject({ cause: err, timedOut, reusedSocket: false });
          });
          res.on('close', () => {
            clearTimeout(timer);
            if (!res.complete) reject({ cause: Object.assign(new Error('reply cut short'), { code: 'ECONNRESET' }), timedOut, reusedSocket: false });
          });
        },
      );
      req.on('error', (err) => {
        clearTimeout(timer);
        const reused = req.reusedSocket && (err as { code?: string }).code === 'ECONNRESET' && !timedOut;
        reject({ cause: err, timedOut, reusedSocket: reused });
      });
      req.end(body);
    });
  }
}

/** Turns an HTTP reply into return values or a thrown OneswapError. Exported for unit tests. */
export function interpretReply(reply: HttpReply, method: string, thisRef: MoRef, endpoint: Endpoint): readonly VimValue[] {
  const where = `vCenter ${endpointLabel(endpoint)}`;
  const looksSoap = reply.body.includes('Envelope');
  if (reply.status !== 200 && !(reply.status === 500 && looksSoap)) {
    throw new OneswapError('remote', `${where} answered HTTP ${reply.status} to ${method}; check that ${endpointLabel(endpoint)} is a vCenter or ESXi SDK endpoint and that it is healthy`);
  }
  let parsed;
  try {
    parsed = parseSoapResponse(reply.body);
  } catch (err) {
    throw new OneswapError('remote', `${where} answered ${method} with HTTP ${reply.status} but no readable SOAP (${(err as Error).message}); check that this is a vCenter or ESXi SDK endpoint`, { cause: err });
  }
  if (parsed.kind === 'fault') {
    const f = parsed.fault;
    throw new VimFaultError(`${where} refused ${method} on ${thisRef.type} ${thisRef.value}: ${describeFault(f)}`, f);
  }
  const missing = missingSetFault(parsed.returnvals);
  if (missing !== undefined) {
    const { fault, obj, path } = missing;
    throw new VimFaultError(`${where} could not read ${path} of ${obj} (${method}): ${describeFault(fault)}`, fault);
  }
  return parsed.returnvals;
}

/**
 * RetrieveProperties answers a refused read with HTTP 200 and the fault inside the object's
 * missingSet (vcsim does this for NotAuthenticated), so faults hide in successful replies too.
 */
function missingSetFault(returnvals: readonly VimValue[]) {
  for (const rv of returnvals) {
    const contents = [rv, ...list(rv, 'objects')];
    for (const content of contents) {
      for (const missing of list(content, 'missingSet')) {
        const fault = readLocalizedFault(field(missing, 'fault'));
        if (fault === undefined) continue;
        const obj = moRef(content, 'obj');
        return { fault, obj: obj === undefined ? 'an object' : `${obj.type} ${obj.value}`, path: text(missing, 'path') ?? '?' };
      }
    }
  }
  return undefined;
}
