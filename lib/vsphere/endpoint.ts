// Where the client connects and how network failures are reported about it.

import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { OneswapError } from '../errors/index.js';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** "vc.example.com", "vc:8443", "https://vc/sdk", "[fe80::1]:443" → host and port (443 by default). */
export function parseEndpoint(spec: string, what: string): Endpoint {
  const m = /^(?:https?:\/\/)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?(?:sdk)?$/.exec(spec.trim());
  if (!m) throw new OneswapError('usage', `${what} "${spec}" is not a host name or host:port`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 443 };
}

/** "vc.example.com:443", "[fe80::1]:443". */
export function endpointLabel(e: Endpoint): string {
  return isIP(e.host) === 6 ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

export function endpointOrigin(e: Endpoint): string {
  return `https://${endpointLabel(e)}`;
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNABORTED: 'connection aborted',
  EPROTO: 'TLS protocol error',
};

/**
 * Maps what Node's network stack throws to a one-line 'connection' error. OneswapErrors (TLS
 * policy refusals) pass through unchanged.
 */
export function toConnectionError(err: unknown, e: Endpoint, call: string): OneswapError {
  if (err instanceof OneswapError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const reason = typeof code === 'string' ? (REASONS[code] ?? code) : err instanceof Error ? err.message.split('\n')[0] : String(err);
  return new OneswapError('connection', `cannot reach vCenter ${endpointLabel(e)} (${reason}) during ${call}; check the host name, the port and the firewall`, { cause: err });
}

export function timeoutError(e: Endpoint, call: string, timeoutMs: number): OneswapError {
  return new OneswapError('connection', `vCenter ${endpointLabel(e)} did not answer ${call} within ${formatSeconds(timeoutMs)}; check the network or raise the timeout`);
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

export interface RequestSpec {
  /** Where the request goes (and what errors name). */
  readonly endpoint: Endpoint;
  readonly agent: https.Agent;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  /** Bound on waiting for the response head. */
  readonly timeoutMs: number;
  /** For messages: "GET [LocalDS_0] vm/disk.vmdk". */
  readonly call: string;
  readonly signal?: AbortSignal;
  /** What the server is, for messages; default "vCenter". */
  readonly server?: string;
}

/** Sends a request without a body; resolves with the response head, errors told as connection, timeout or cancel. */
export function sendRequest(spec: RequestSpec): Promise<IncomingMessage> {
  const { endpoint, signal, call } = spec;
  return new Promise<IncomingMessage>((resolve, reject) => {
    let timedOut = false;
    const req = https.request(
      {
        host: endpoint.host,
        port: endpoint.port,
        path: spec.path,
        method: spec.method,
        agent: spec.agent,
        ...(signal === undefined ? {} : { signal }),
        headers: spec.headers,
      },
      (res) => {
        clearTimeout(timer);
        resolve(res);
      },
    );
    const timer = setTimeout(() => {
      timedOut = true;
      req.destroy();
    }, spec.timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      if (timedOut) reject(timeoutError(endpoint, call, spec.timeoutMs));
      else if (signal?.aborted) reject(new OneswapError('interrupted', `${call} on ${spec.server ?? 'vCenter'} ${endpointLabel(endpoint)} was cancelled`, { cause: err }));
      else reject(toConnectionError(err, endpoint, call));
    });
    req.end();
  });
}
