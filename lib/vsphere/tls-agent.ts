// A keep-alive HTTPS agent that applies the TLS policy itself. Node's own verification either
// rejects without showing the certificate (so the error could not print the thumbprint to pin) or
// does not verify at all; here the handshake completes, the policy judges the peer certificate,
// and only then is the socket handed to the HTTP layer, so no request byte (no cookie, no
// password) reaches a server the policy refuses.

import https from 'node:https';
import { isIP } from 'node:net';
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
}

type Checker = (socket: TLSSocket) => OneswapError | undefined;

export class PolicyAgent extends https.Agent {
  private readonly settings: AgentSettings;
  private readonly check: Checker;

  constructor(settings: AgentSettings) {
    super({ keepAlive: true, maxSockets: settings.maxSockets, scheduling: 'lifo' });
    this.settings = settings;
    this.check = peerChecker(settings.endpoint, settings.tls);
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const { endpoint, tls: policy, handshakeTimeoutMs } = this.settings;
    const host = typeof options.host === 'string' && options.host !== '' ? options.host : endpoint.host;
    const port = typeof options.port === 'number' ? options.port : Number(options.port ?? endpoint.port);
    const socket = tls.connect({
      host,
      port,
      // SNI must not carry an IP address.
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ...(policy.kind === 'verify' && policy.ca !== undefined ? { ca: policy.ca } : {}),
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    let settled = false;
    const settle = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('error', onError);
      if (err !== null) socket.destroy();
      callback?.(err, socket);
    };
    const onError = (err: Error): void => settle(err);
    const timer = setTimeout(() => {
      settle(Object.assign(new Error(`TLS handshake with ${endpointLabel(endpoint)} timed out`), { code: 'ETIMEDOUT' }));
    }, handshakeTimeoutMs);
    socket.once('error', onError);
    socket.once('secureConnect', () => settle(this.check(socket) ?? null));
    // Returning nothing makes the agent wait for the callback, i.e. for the policy's verdict.
    return undefined;
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
