/**
 * Request::ErrorCode and Request::failure_message (reference §2.2, §2.3).
 */
export const ErrorCode = {
  SUCCESS: 0x0000,
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
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export type ObjectKind = 'image' | 'datastore' | 'user' | 'group' | 'template' | 'vm' | 'vnet' | 'market' | 'marketapp' | 'cluster';

/** Request::object_name */
export const OBJECT_NAMES: Record<ObjectKind, string> = {
  image: 'image',
  datastore: 'datastore',
  user: 'user',
  group: 'group',
  template: 'virtual machine template',
  vm: 'virtual machine',
  vnet: 'virtual network',
  market: 'marketplace',
  marketapp: 'marketplaceapp',
  cluster: 'cluster',
};

/** PoolObjectSQL::type_to_str, used in "NAME is already taken by IMAGE 12." */
export const OBJECT_TYPE_STR: Record<ObjectKind, string> = {
  image: 'IMAGE',
  datastore: 'DATASTORE',
  user: 'USER',
  group: 'GROUP',
  template: 'TEMPLATE',
  vm: 'VM',
  vnet: 'NET',
  market: 'MARKETPLACE',
  marketapp: 'MARKETPLACEAPP',
  cluster: 'CLUSTER',
};

/** A failed request. `message` is att.resp_msg; the full text is built by formatFailure. */
export class RequestError extends Error {
  constructor(
    readonly code: ErrorCodeValue,
    message = '',
    readonly respId = -1,
    readonly object?: ObjectKind,
  ) {
    super(message);
  }
}

export function formatFailure(method: string, err: RequestError, uid: number, defaultObject: ObjectKind | undefined): string {
  const obname = OBJECT_NAMES[err.object ?? defaultObject ?? 'image'];
  let s = `[${method}]`;
  switch (err.code) {
    case ErrorCode.AUTHORIZATION:
      s += ` User [${uid}] `;
      s += err.message ? `: ${err.message}.` : `not authorized to perform action on ${obname}.`;
      break;
    case ErrorCode.AUTHENTICATION:
      s += " User couldn't be authenticated, aborting call.";
      break;
    case ErrorCode.NO_EXISTS:
      s += ` Error getting ${obname}`;
      s += err.respId !== -1 ? ` [${err.respId}].` : ' Pool.';
      break;
    case ErrorCode.ALLOCATE:
      s += ` Error allocating a new ${obname}.`;
      if (err.message) s += ` ${err.message}`;
      break;
    case ErrorCode.LOCKED:
      s += ` The resource ${obname} is locked.`;
      if (err.respId !== -1) s += ` [${err.respId}].`;
      break;
    default:
      s += ` ${err.message}`;
  }
  return s;
}

export const noExists = (object: ObjectKind, id: number): RequestError => new RequestError(ErrorCode.NO_EXISTS, '', id, object);
