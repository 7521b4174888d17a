// oned's failures as OneswapErrors. A failed call answers `[false, message, code, resp_id, i8]`
// (reference §2.2, §2.3); a call of the wrong shape answers an XML-RPC fault instead.

import { OneswapError, type ErrorKind } from '../errors/index.js';
import type { XmlRpcResponse, XmlRpcValue } from './xmlrpc.js';

/** Request::ErrorCode of oned. */
export const OneErrorCode = {
  AUTHENTICATION: 0x0100,
  AUTHORIZATION: 0x0200,
  NO_EXISTS: 0x0400,
  ACTION: 0x0800,
  XML_RPC_API: 0x1000,
  INTERNAL: 0x2000,
  ALLOCATE: 0x4000,
  LOCKED: 0x8000,
  REPLICATION: 0x10000,
} as const;

/** xmlrpc-c fault codes that mean "this call does not fit the server's method": our bug or a version we do not know. */
const SHAPE_FAULTS = new Set([-501, -502, -506]);

/** A call oned (or its XML-RPC layer) refused. `message` is oned's own text, on one line. */
export class OneApiError extends OneswapError {
  /** The XML-RPC method, e.g. `one.image.allocate`. */
  readonly method: string;
  /** oned's error code (256, 512, …), or the XML-RPC fault code (negative) for faults. */
  readonly code: number;
  /** What oned said, verbatim (it may span lines). */
  readonly remoteMessage: string;
  /** The object id oned named in the failure (resp_id); undefined when it gave −1 or none. */
  readonly objectId: number | undefined;

  constructor(init: {
    kind: ErrorKind;
    message: string;
    method: string;
    code: number;
    remoteMessage: string;
    objectId?: number | undefined;
    hint?: string | undefined;
  }) {
    super(init.kind, init.message, init.hint === undefined ? undefined : { hint: init.hint });
    this.name = 'OneApiError';
    this.method = init.method;
    this.code = init.code;
    this.remoteMessage = init.remoteMessage;
    this.objectId = init.objectId;
  }
}

/** The success value of a reply, or the OneApiError its failure means. */
export function replyValue(method: string, response: XmlRpcResponse): XmlRpcValue {
  if (response.fault) throw faultError(method, response.code, response.message);
  const reply = response.value;
  if (!Array.isArray(reply) || typeof reply[0] !== 'boolean') {
    throw new OneswapError('remote', `OpenNebula answered ${method} with something other than [ok, value, code]`);
  }
  if (reply[0]) return reply[1] ?? null;
  throw failureError(method, reply);
}

export function failureError(method: string, reply: readonly XmlRpcValue[]): OneApiError {
  const remoteMessage = typeof reply[1] === 'string' ? reply[1] : `${method} failed`;
  const code = typeof reply[2] === 'number' ? reply[2] : 0;
  const objectId = typeof reply[3] === 'number' && reply[3] >= 0 ? reply[3] : undefined;
  const { kind, hint } = classify(code, remoteMessage);
  return new OneApiError({ kind, message: oneLine(remoteMessage), method, code, remoteMessage, objectId, hint });
}

export function faultError(method: string, code: number, faultString: string): OneApiError {
  if (SHAPE_FAULTS.has(code)) {
    return new OneApiError({
      kind: 'internal',
      message: `client bug or unsupported OpenNebula version: ${method} ${oneLine(faultString)}`,
      method,
      code,
      remoteMessage: faultString,
    });
  }
  return new OneApiError({
    kind: 'remote',
    message: `${method} failed with XML-RPC fault ${code}: ${oneLine(faultString)}`,
    method,
    code,
    remoteMessage: faultString,
  });
}

function classify(code: number, message: string): { kind: ErrorKind; hint?: string } {
  switch (code) {
    case OneErrorCode.AUTHENTICATION:
      return { kind: 'auth', hint: 'check the user:password in ONE_AUTH (default ~/.one/one_auth)' };
    case OneErrorCode.AUTHORIZATION:
      return { kind: 'auth', hint: 'not authorized: ACLs, an admin-only attribute or a quota stands in the way' };
    case OneErrorCode.NO_EXISTS:
      return { kind: 'not-found' };
    case OneErrorCode.ACTION:
      return { kind: /not enough space/i.test(message) ? 'capacity' : 'conflict' };
    case OneErrorCode.ALLOCATE:
      return { kind: /already taken/i.test(message) ? 'conflict' : 'remote' };
    case OneErrorCode.LOCKED:
      return { kind: 'conflict', hint: 'the object carries a lock (onelock); unlock it first' };
    default:
      return { kind: 'remote' };
  }
}

/** OneswapError messages are one line; oned's (driver stderr, parse errors) may not be. */
export function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}
