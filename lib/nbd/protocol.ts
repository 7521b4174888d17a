// The NBD protocol's numbers (docs/proto.md of the NBD project, names as there) and its errors:
// what the handshake and the transmission phase of client.ts share.

/** An error the NBD server reported, or a broken conversation. */
export class NbdError extends Error {
  /**
   * Errno name for server errors ("EIO", "ENOSPC"), "ECONNRESET" when the connection went away,
   * "EPROTO" for a broken reply, "ENOTSUP"/"EPERM" for what the export does not allow.
   */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NbdError';
    this.code = code;
  }
}

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;

export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_SET_META_CONTEXT = 10;
export const REP_ACK = 1;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
export const INFO_EXPORT = 0;
export const INFO_BLOCK_SIZE = 3;

// Transmission flags: what the export allows, sent with NBD_INFO_EXPORT.
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_FUA = 1 << 3;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;
export const TFLAG_SEND_FAST_ZERO = 1 << 11;

export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_BLOCK_STATUS = 7;
export const CMD_WRITE_ZEROES = 6;

export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_FAST_ZERO = 1 << 4;

export const REPLY_FLAG_DONE = 1;
export const REPLY_NONE = 0;
export const REPLY_OFFSET_DATA = 1;
export const REPLY_OFFSET_HOLE = 2;
export const REPLY_BLOCK_STATUS = 5;
export const REPLY_ERROR_BIT = 1 << 15;

export const STATE_HOLE = 1;
export const STATE_ZERO = 2;

export const ALLOCATION_CONTEXT = 'base:allocation';

export const OPTION_ERRORS: Record<number, string> = {
  1: 'the option is not supported (NBD_REP_ERR_UNSUP)',
  2: 'refused by server policy (NBD_REP_ERR_POLICY)',
  3: 'invalid option (NBD_REP_ERR_INVALID)',
  4: 'not supported on this platform (NBD_REP_ERR_PLATFORM)',
  5: 'TLS required (NBD_REP_ERR_TLS_REQD)',
  6: 'the export is not available (NBD_REP_ERR_UNKNOWN)',
  7: 'the server is shutting down (NBD_REP_ERR_SHUTDOWN)',
  8: 'block size negotiation required (NBD_REP_ERR_BLOCK_SIZE_REQD)',
  9: 'request too big (NBD_REP_ERR_TOO_BIG)',
};

// The protocol's error values are Linux errno numbers; the last three are not in proto.md's list
// but some servers pass the storage's errno through (qemu folds EDQUOT and EFBIG into ENOSPC).
const SERVER_ERRORS: Record<number, [string, string]> = {
  1: ['EPERM', 'operation not permitted'],
  5: ['EIO', 'input/output error'],
  12: ['ENOMEM', 'out of memory'],
  22: ['EINVAL', 'invalid argument'],
  28: ['ENOSPC', 'no space left'],
  75: ['EOVERFLOW', 'value too large'],
  95: ['ENOTSUP', 'operation not supported'],
  108: ['ESHUTDOWN', 'the server is shutting down'],
  27: ['EFBIG', 'file too large'],
  30: ['EROFS', 'read-only storage'],
  122: ['EDQUOT', 'quota exceeded'],
};

/** The server's error code as an NbdError, with its message when it sent one. */
export function serverError(errno: number, what: string, message?: string): NbdError {
  const [code, text] = SERVER_ERRORS[errno] ?? [`E${errno}`, `error ${errno}`];
  return new NbdError(code, `${what}: ${message ? `${message} (${text})` : text}`);
}
