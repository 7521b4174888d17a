// A keep-alive HTTPS agent that applies the TLS policy itself. Node's own verification either
// rejects without showing the certificate (so the error could not print the thumbprint to pin) or
// does not verify at all; here the handshake completes, the policy judges the peer certificate,
// and only then is the socket handed to the HTTP layer, so no request byte (no cookie, no
// password) reaches a server the policy refuses.

import https from 'node:https';
import { isIP, type OnReadOpts } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { OneswapError } from '../errors/index.js';
import { endpointLabel, type Endpoint } from './endpoint.js';
import { formatThumbprint, normalizeHex, parseThumbprint, thumbprintMatches, type Thumbprint } from './thumbprint.js';
import type { TlsPolicy } from './types.js';

export interface AgentSettings {
  readonly endpoint: Endpoint;
  readonly tls: TlsPolicy;
  readonly maxSockets: number;
  /** Bound on TCP connect + TLS handshake. */
  readonly handshakeTimeoutMs: number;
  /** Judges the peer certificate instead of `tls` (an export lease pins the SHA-1 its device URL names). */
  readonly check?: PeerChecker;
}

/** The verdict on a connected socket's certificate: undefined to go on, else the error to fail with. */
export type PeerChecker = (socket: TLSSocket) => OneswapError | undefined;
type Checker = PeerChecker;

/**
 * Receives a raw socket's bytes. The chunk lives in the socket's reused read buffer, so it is
 * valid only during the call: copy what must outlive it. Returning false pauses the socket.
 */
export type RawReader = (chunk: Buffer) => boolean | void;

/** A socket lent by `PolicyAgent.acquireRaw`. */
export interface RawLease {
  readonly socket: TLSSocket;
  /** True when it carried a request before (the server may have closed it meanwhile). */
  readonly reused: boolean;
  /** Where the socket's bytes go from now on (undefined: bytes are an error, the socket is dropped). */
  read(reader: RawReader | undefined): void;
}

/** An idle raw socket is closed after this long (servers drop idle keep-alive connections too). */
const RAW_IDLE_MS = 30_000;
/** A TLS record carries at most 16 KiB; Node hands decrypted data over in pieces of that size. */
const RAW_READ_BUFFER = 64 * 1024;

interface RawSocket {
  socket: TLSSocket;
  reader: RawReader | undefined;
}

export class PolicyAgent extends https.Agent {
  private readonly settings: AgentSettings;
  private readonly check: Checker;
  // Raw sockets: same TLS policy, for callers that speak HTTP/1.1 on the socket themselves (the
  // datastore range reader). Their own keep-alive pool, at most maxSockets lent at once. Each
  // reads into one buffer of its own (`onread`), not into a new buffer per TLS record.
  private readonly rawIdle: RawSocket[] = [];
  private readonly rawLeases = new WeakMap<TLSSocket, RawSocket>();
  private rawLent = 0;
  private readonly rawWaiters: Array<() => void> = [];
  private closed = false;

  constructor(settings: AgentSettings) {
    super({ keepAlive: true, maxSockets: settings.maxSockets, scheduling: 'lifo' });
    this.settings = settings;
    this.check = settings.check ?? peerChecker(settings.endpoint, settings.tls);
  }

  /**
   * Lends a connected, policy-checked TLS socket to the endpoint, paused: the idle one used last
   * when there is one, else a new one. Waits while maxSockets are lent. Give it back with
   * `releaseRaw`. Rejects with the connect or policy error, or the signal's reason.
   */
  async acquireRaw(signal?: AbortSignal): Promise<RawLease> {
    while (this.rawLent >= this.settings.maxSockets && !this.closed) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const wake = (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = (): void => {
          const i = this.rawWaiters.indexOf(wake);
          if (i >= 0) this.rawWaiters.splice(i, 1);
          reject(signal!.reason);
        };
        this.rawWaiters.push(wake);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
    signal?.throwIfAborted();
    if (this.closed) throw Object.assign(new Error('the connection pool was closed'), { code: 'ECONNABORTED' });
    this.rawLent++;
    try {
      for (let raw = this.rawIdle.pop(); raw !== undefined; raw = this.rawIdle.pop()) {
        const { socket } = raw;
        socket.off('timeout', socket.destroy);
        if (socket.destroyed || !socket.readable || !socket.writable) {
          socket.destroy();
          continue;
        }
        socket.pause();
        socket.setTimeout(0);
        socket.ref();
        raw.reader = undefined;
        return this.lease(raw, true);
      }
      const raw: RawSocket = { socket: undefined as unknown as TLSSocket, reader: undefined };
      const buffer = Buffer.allocUnsafe(RAW_READ_BUFFER);
      const onread = {
        buffer,
        callback: (n: number): boolean => {
          const reader = raw.reader;
          if (reader === undefined) {
            // Bytes nobody asked for (on an idle connection): it cannot be used any more.
            raw.socket.destroy();
            return false;
          }
          return reader(buffer.subarray(0, n)) !== false;
        },
      };
      raw.socket = await new Promise<TLSSocket>((resolve, reject) => {
        const { host, port } = this.settings.endpoint;
        this.connectChecked(host, port, { onread }, (err, socket) => (err ? reject(err) : resolve(socket)));
      });
      raw.socket.pause();
      // Errors while idle only end the connection ('close' below); a borrower listens itself.
      raw.socket.on('error', () => undefined);
      raw.socket.once('close', () => {
        const i = this.rawIdle.indexOf(raw);
        if (i >= 0) this.rawIdle.splice(i, 1);
      });
      this.rawLeases.set(raw.socket, raw);
      return this.lease(raw, false);
    } catch (err) {
      this.giveBack();
      throw err;
    }
  }

  /**
   * Takes back a lent socket: kept for the next request when `reusable` (a response was read to
   * its end on a keep-alive connection, and the borrower removed its listeners), else destroyed.
   */
  releaseRaw(lease: RawLease, reusable: boolean): void {
    this.giveBack();
    const raw = this.rawLeases.get(lease.socket);
    const { socket } = lease;
    if (raw !== undefined) raw.reader = undefined;
    if (!reusable || raw === undefined || this.closed || socket.destroyed) {
      socket.destroy();
      return;
    }
    // Reading while idle, so a server closing the connection (or any stray byte) drops it at once.
    socket.unref();
    socket.setTimeout(RAW_IDLE_MS);
    socket.once('timeout', socket.destroy);
    socket.resume();
    this.rawIdle.push(raw);
  }

  override destroy(): void {
    this.closed = true;
    for (const raw of this.rawIdle.splice(0)) raw.socket.destroy();
    for (const wake of this.rawWaiters.splice(0)) wake();
    super.destroy();
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const { endpoint } = this.settings;
    const host = typeof options.host === 'string' && options.host !== '' ? options.host : endpoint.host;
    const port = typeof options.port === 'number' ? options.port : Number(options.port ?? endpoint.port);
    this.connectChecked(host, port, {}, (err, socket) => callback?.(err, socket));
    // Returning nothing makes the agent wait for the callback, i.e. for the policy's verdict.
    return undefined;
  }

  private lease(raw: RawSocket, reused: boolean): RawLease {
    return {
      socket: raw.socket,
      reused,
      read: (reader) => {
        raw.reader = reader;
      },
    };
  }

  private giveBack(): void {
    this.rawLent--;
    this.rawWaiters.shift()?.();
  }

  /** TCP connect, TLS handshake, then the policy's verdict on the peer certificate. */
  private connectChecked(host: string, port: number, extra: { onread?: OnReadOpts }, callback: (err: Error | null, socket: TLSSocket) => void): void {
    const { endpoint, tls: policy, handshakeTimeoutMs } = this.settings;
    const socket = tls.connect({
      host,
      port,
      // SNI must not carry an IP address.
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ...(policy.kind === 'verify' && policy.ca !== undefined ? { ca: policy.ca } : {}),
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      // tls.connect takes net's onread option (Node's typings leave it out of TLS options).
      ...(extra as tls.ConnectionOptions),
    });
    let settled = false;
    const settle = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('error', onError);
      if (err !== null) socket.destroy();
      callback(err, socket);
    };
    const onError = (err: Error): void => settle(err);
    const timer = setTimeout(() => {
      settle(Object.assign(new Error(`TLS handshake with ${endpointLabel(endpoint)} timed out`), { code: 'ETIMEDOUT' }));
    }, handshakeTimeoutMs);
    socket.once('error', onError);
    socket.once('secureConnect', () => settle(this.check(socket) ?? null));
  }
}

function peerChecker(endpoint: Endpoint, policy: TlsPolicy): Checker {
  const where = `vCenter ${endpointLabel(endpoint)}`;
  switch (policy.kind) {
    case 'insecure':
      return () => undefined;
    case 'thumbprint': {
      const pin: Thumbprint = parseThumbprint(policy.thumbprint);
      return (socket) => {
        const cert = socket.getPeerCertificate();
        if (!cert?.fingerprint256) return new OneswapError('connection', `${where} presented no certificate; the pinned thumbprint cannot be checked`);
        if (thumbprintMatches(pin, cert.fingerprint256, cert.fingerprint)) return undefined;
        const shown = pin.algorithm === 'sha256' ? cert.fingerprint256 : cert.fingerprint;
        return new OneswapError(
          'connection',
          `${where} presented a certificate with ${pin.algorithm.toUpperCase()} thumbprint ${formatThumbprint(normalizeHex(shown))}, not the pinned ${formatThumbprint(pin.hex)}; make sure this is the right server, then pin the new thumbprint with --thumbprint`,
        );
      };
    }
    case 'verify':
      return (socket) => {
        if (socket.authorized) return undefined;
        const cert = socket.getPeerCertificate();
        const reason = describeVerifyError(String(socket.authorizationError ?? 'unknown reason'), endpoint.host);
        const sha256 = cert?.fingerprint256 ? formatThumbprint(cert.fingerprint256) : '(none)';
        return new OneswapError(
          'connection',
          `${where} presented a certificate that is not trusted (${reason}); its SHA-256 thumbprint is ${sha256}: if that is the right server, pin it with --thumbprint ${sha256}, or give the CA that signed it with --ca <file.pem>`,
        );
      };
  }
}

const VERIFY_ERRORS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in the chain',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'issuer unknown',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'issuer unknown',
  UNABLE_TO_GET_ISSUER_CERT: 'issuer unknown',
  CERT_HAS_EXPIRED: 'certificate expired',
  CERT_NOT_YET_VALID: 'certificate not yet valid',
};

function describeVerifyError(code: string, host: string): string {
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /altname|does not match|not in the cert/i.test(code)) {
    return `its names do not include ${host}`;
  }
  return VERIFY_ERRORS[code] ?? code;
}
