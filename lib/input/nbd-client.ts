// A small NBD client (docs/proto.md of the NBD project) over a Unix socket, enough to read a disk
// that nbdkit serves: fixed newstyle handshake with structured replies and the "base:allocation"
// meta context, then READ, BLOCK_STATUS and DISC. Many requests may be in flight on one
// connection; replies are matched by cookie. A read is delivered into one buffer of its own size,
// so memory is bounded by what the caller asks for at once (keep requests to a few MiB).
//
// No dependency (libnbd has no Node binding) and no TLS: the server is a local nbdkit we started.

import { connect as netConnect, type Socket } from 'node:net';

/** An error the NBD server reported, or a broken conversation. */
export class NbdError extends Error {
  /** Errno name for server errors ("EIO"), "ECONNRESET" when the connection went away, "EPROTO" for a broken reply. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NbdError';
    this.code = code;
  }
}

/** One run of the base:allocation map. */
export interface NbdExtent {
  readonly start: number;
  readonly length: number;
  /** NBD_STATE_HOLE: no storage behind it. */
  readonly hole: boolean;
  /** NBD_STATE_ZERO: reads as zeros. */
  readonly zero: boolean;
}

export interface NbdConnectOptions {
  readonly exportName?: string;
  readonly signal?: AbortSignal;
}

// Magic numbers and constants, as named in proto.md.
const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;

const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const OPT_SET_META_CONTEXT = 10;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_META_CONTEXT = 4;
const INFO_EXPORT = 0;
const INFO_BLOCK_SIZE = 3;

const TFLAG_READ_ONLY = 1 << 1;
const TFLAG_CAN_MULTI_CONN = 1 << 8;

const CMD_READ = 0;
const CMD_DISC = 2;
const CMD_BLOCK_STATUS = 7;

const REPLY_FLAG_DONE = 1;
const REPLY_NONE = 0;
const REPLY_OFFSET_DATA = 1;
const REPLY_OFFSET_HOLE = 2;
const REPLY_BLOCK_STATUS = 5;
const REPLY_ERROR_BIT = 1 << 15;

const STATE_HOLE = 1;
const STATE_ZERO = 2;

const ALLOCATION_CONTEXT = 'base:allocation';

const OPTION_ERRORS: Record<number, string> = {
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

const SERVER_ERRORS: Record<number, [string, string]> = {
  1: ['EPERM', 'operation not permitted'],
  5: ['EIO', 'input/output error'],
  12: ['ENOMEM', 'out of memory'],
  22: ['EINVAL', 'invalid argument'],
  28: ['ENOSPC', 'no space left'],
  75: ['EOVERFLOW', 'value too large'],
  95: ['ENOTSUP', 'operation not supported'],
  108: ['ESHUTDOWN', 'the server is shutting down'],
};

/** The server's error code as an NbdError, with its message when it sent one. */
function serverError(errno: number, what: string, message?: string): NbdError {
  const [code, text] = SERVER_ERRORS[errno] ?? [`E${errno}`, `error ${errno}`];
  return new NbdError(code, `${what}: ${message ? `${message} (${text})` : text}`);
}

/** Bytes received and not yet consumed. Chunks stay as they came; only small headers are joined. */
class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // consumed bytes of chunks[0]
  available = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.available += chunk.length;
  }

  /** Removes and returns n bytes (n <= available). */
  take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.skip(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyTo(out, 0, n);
    return out;
  }

  /** Moves n bytes (n <= available) into target at pos. */
  copyTo(target: Buffer | undefined, pos: number, n: number): void {
    while (n > 0) {
      const first = this.chunks[0]!;
      const k = Math.min(n, first.length - this.head);
      if (target) first.copy(target, pos, this.head, this.head + k);
      this.skip(k);
      pos += k;
      n -= k;
    }
  }

  private skip(n: number): void {
    this.available -= n;
    this.head += n;
    while (this.chunks.length > 0 && this.head >= this.chunks[0]!.length) {
      this.head -= this.chunks[0]!.length;
      this.chunks.shift();
    }
  }
}

interface Pending {
  readonly offset: number;
  readonly length: number;
  /** READ: the buffer being filled; holes are zeroed as they are reported. */
  readonly buffer?: Buffer;
  covered: number;
  readonly extents?: NbdExtent[];
  error?: NbdError;
  readonly resolve: (value: Buffer | NbdExtent[]) => void;
  readonly reject: (err: unknown) => void;
  /** The caller gave up (abort): the reply is still consumed, its result dropped. */
  abandoned: boolean;
  /** Resolves when the reply is complete (or the connection failed). */
  readonly settled: Promise<void>;
}

type ReplyState =
  | { step: 'magic' }
  | { step: 'simple' }
  | { step: 'structured' }
  | { step: 'data'; pending: Pending | undefined; pos: number; remaining: number; done: boolean; handle: number }
  // For OFFSET_DATA, `length` is its 8-byte offset field and `data` the bytes that follow it.
  | { step: 'payload'; pending: Pending | undefined; type: number; length: number; data: number; done: boolean; handle: number };

export class NbdClient {
  /** Export size in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  /** The server allows several connections to the same export (NBD_FLAG_CAN_MULTI_CONN). */
  readonly canMultiConn: boolean;
  /** "base:allocation" was negotiated: blockStatus() works. */
  readonly hasBlockStatus: boolean;
  /** Largest request the server accepts (NBD_INFO_BLOCK_SIZE), 32 MiB when it does not say. */
  readonly maxRequest: number;

  private readonly contextId: number | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextHandle = 1;
  private state: ReplyState = { step: 'magic' };
  private failure: NbdError | undefined;
  private readonly ended: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    private readonly queue: ByteQueue,
    info: { size: number; flags: number; contextId: number | undefined; maxRequest: number },
  ) {
    this.size = info.size;
    this.readOnly = (info.flags & TFLAG_READ_ONLY) !== 0;
    this.canMultiConn = (info.flags & TFLAG_CAN_MULTI_CONN) !== 0;
    this.hasBlockStatus = info.contextId !== undefined;
    this.contextId = info.contextId;
    this.maxRequest = info.maxRequest;
    this.ended = new Promise((resolve) => socket.once('close', () => resolve()));
    const parse = (): void => {
      try {
        this.parse();
      } catch (err) {
        this.fail(err instanceof NbdError ? err : new NbdError('EPROTO', `broken NBD reply: ${(err as Error).message}`));
      }
    };
    socket.on('data', (chunk: Buffer) => {
      queue.push(chunk);
      parse();
    });
    socket.on('error', (err) => this.fail(new NbdError('ECONNRESET', `NBD connection failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new NbdError('ECONNRESET', 'the NBD server closed the connection')));
    if (queue.available > 0) parse();
  }

  /** Connects and negotiates; rejects with an NbdError naming what the server refused. */
  static async connect(path: string, options: NbdConnectOptions = {}): Promise<NbdClient> {
    const socket = netConnect(path);
    const queue = new ByteQueue();
    const handshake = new Handshake(socket, queue);
    const onAbort = (): void => {
      socket.destroy(options.signal?.reason instanceof Error ? options.signal.reason : new Error('aborted'));
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      options.signal?.throwIfAborted();
      const info = await handshake.run(options.exportName ?? '');
      handshake.detach();
      return new NbdClient(socket, queue, info);
    } catch (err) {
      socket.destroy();
      if (options.signal?.aborted) throw options.signal.reason;
      throw err;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Reads [offset, offset + length) into a new buffer; holes read as zeros. */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    if (length === 0) return Promise.resolve(Buffer.alloc(0));
    return this.request(CMD_READ, 0, offset, length, signal, Buffer.allocUnsafe(length)) as Promise<Buffer>;
  }

  /**
   * The allocation map of [offset, offset + length) as the server reports it; it may cover less
   * than asked (a server answers with what it knows cheaply): callers continue from the end.
   */
  blockStatus(offset: number, length: number, signal?: AbortSignal): Promise<NbdExtent[]> {
    if (!this.hasBlockStatus) return Promise.reject(new NbdError('ENOTSUP', 'the NBD server offers no base:allocation block status'));
    return this.request(CMD_BLOCK_STATUS, 0, offset, Math.min(length, 0xffffffff), signal) as Promise<NbdExtent[]>;
  }

  /** Sends NBD_CMD_DISC once the replies in flight are in, then closes; safe to call twice. */
  async close(): Promise<void> {
    if (!this.failure) {
      // Replies still owed (also to abandoned requests) come first, but not forever.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...this.pending.values()].map((p) => p.settled)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000))),
      ]);
      clearTimeout(timer);
      if (!this.failure) {
        this.failure = new NbdError('ECONNRESET', 'the NBD connection was closed');
        this.socket.end(this.header(CMD_DISC, 0, 0, 0, 0));
        // The server closes its side after DISC; do not wait forever for one that does not.
        const timer = setTimeout(() => this.socket.destroy(), 2000);
        await this.ended;
        clearTimeout(timer);
        return;
      }
    }
    this.socket.destroy();
    await this.ended;
  }

  /** Set when the connection is unusable (dropped, protocol error, closed). */
  get broken(): NbdError | undefined {
    return this.failure;
  }

  private request(type: number, flags: number, offset: number, length: number, signal: AbortSignal | undefined, buffer?: Buffer): Promise<Buffer | NbdExtent[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (offset < 0 || length < 0 || offset + length > this.size) {
      return Promise.reject(new NbdError('EINVAL', `request [${offset}, ${offset + length}) lies outside the export (size ${this.size})`));
    }
    const handle = this.nextHandle++;
    return new Promise((resolve, reject) => {
      let settle!: () => void;
      const settled = new Promise<void>((r) => (settle = r));
      const onAbort = (): void => {
        p.abandoned = true;
        reject(signal!.reason);
      };
      const done = (): void => {
        signal?.removeEventListener('abort', onAbort);
        settle();
      };
      const p: Pending = {
        offset,
        length,
        buffer,
        covered: 0,
        extents: type === CMD_BLOCK_STATUS ? [] : undefined,
        resolve: (v) => {
          done();
          if (!p.abandoned) resolve(v);
        },
        reject: (e) => {
          done();
          if (!p.abandoned) reject(e);
        },
        abandoned: false,
        settled,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(handle, p);
      this.socket.write(this.header(type, flags, handle, offset, length));
    });
  }

  private header(type: number, flags: number, handle: number, offset: number, length: number): Buffer {
    const b = Buffer.allocUnsafe(28);
    b.writeUInt32BE(REQUEST_MAGIC, 0);
    b.writeUInt16BE(flags, 4);
    b.writeUInt16BE(type, 6);
    b.writeBigUInt64BE(BigInt(handle), 8);
    b.writeBigUInt64BE(BigInt(offset), 16);
    b.writeUInt32BE(length, 24);
    return b;
  }

  /** Consumes as many reply bytes as have arrived. */
  private parse(): void {
    const q = this.queue;
    for (;;) {
      const s = this.state;
      switch (s.step) {
        case 'magic': {
          if (q.available < 4) return;
          const magic = q.take(4).readUInt32BE(0);
          if (magic === SIMPLE_REPLY_MAGIC) this.state = { step: 'simple' };
          else if (magic === STRUCTURED_REPLY_MAGIC) this.state = { step: 'structured' };
          else throw new NbdError('EPROTO', `unexpected NBD reply magic 0x${magic.toString(16)}`);
          break;
        }
        case 'simple': {
          if (q.available < 12) return;
          const h = q.take(12);
          const errno = h.readUInt32BE(0);
          const handle = Number(h.readBigUInt64BE(4));
          const p = this.pending.get(handle);
          if (!p) throw new NbdError('EPROTO', `reply for unknown request ${handle}`);
          if (errno !== 0) {
            this.pending.delete(handle);
            p.reject(serverError(errno, this.describe(p)));
            this.state = { step: 'magic' };
          } else if (p.buffer) {
            // A simple reply to READ carries all the data, no hole information.
            this.state = { step: 'data', pending: p, pos: 0, remaining: p.length, done: true, handle };
          } else {
            this.pending.delete(handle);
            p.reject(new NbdError('EPROTO', `${this.describe(p)}: the server gave a simple reply where structured replies were negotiated`));
            this.state = { step: 'magic' };
          }
          break;
        }
        case 'structured': {
          if (q.available < 16) return;
          const h = q.take(16);
          const flags = h.readUInt16BE(0);
          const type = h.readUInt16BE(2);
          const handle = Number(h.readBigUInt64BE(4));
          const length = h.readUInt32BE(12);
          const p = this.pending.get(handle);
          if (!p) throw new NbdError('EPROTO', `reply for unknown request ${handle}`);
          const done = (flags & REPLY_FLAG_DONE) !== 0;
          if (type === REPLY_OFFSET_DATA) {
            if (length < 8) throw new NbdError('EPROTO', 'OFFSET_DATA chunk too short');
            this.state = { step: 'payload', pending: p, type, length: 8, data: length - 8, done, handle };
          } else {
            if (length > 1024 * 1024) throw new NbdError('EPROTO', `oversized reply chunk (${length} bytes)`);
            this.state = { step: 'payload', pending: p, type, length, data: 0, done, handle };
          }
          break;
        }
        case 'payload': {
          if (q.available < s.length) return;
          const payload = q.take(s.length);
          this.chunk(s, payload);
          break;
        }
        case 'data': {
          const n = Math.min(s.remaining, q.available);
          if (n === 0 && s.remaining > 0) return;
          q.copyTo(s.pending?.buffer, s.pos, n);
          s.pos += n;
          s.remaining -= n;
          if (s.pending) s.pending.covered += n;
          if (s.remaining > 0) return;
          this.state = { step: 'magic' };
          if (s.done) this.finish(s.handle);
          break;
        }
      }
    }
  }

  /** One structured reply chunk whose payload has arrived (for OFFSET_DATA: its offset field). */
  private chunk(s: Extract<ReplyState, { step: 'payload' }>, payload: Buffer): void {
    const p = s.pending!;
    this.state = { step: 'magic' };
    if (s.type === REPLY_OFFSET_DATA) {
      const at = Number(payload.readBigUInt64BE(0));
      const len = s.data;
      if (!p.buffer || at < p.offset || at + len > p.offset + p.length) {
        throw new NbdError('EPROTO', `${this.describe(p)}: data chunk [${at}, ${at + len}) outside the request`);
      }
      this.state = { step: 'data', pending: p, pos: at - p.offset, remaining: len, done: s.done, handle: s.handle };
      return;
    }
    if (s.type === REPLY_OFFSET_HOLE) {
      const at = Number(payload.readBigUInt64BE(0));
      const len = payload.readUInt32BE(8);
      if (!p.buffer || at < p.offset || at + len > p.offset + p.length) {
        throw new NbdError('EPROTO', `${this.describe(p)}: hole chunk [${at}, ${at + len}) outside the request`);
      }
      p.buffer.fill(0, at - p.offset, at - p.offset + len);
      p.covered += len;
    } else if (s.type === REPLY_BLOCK_STATUS) {
      if (p.extents && payload.readUInt32BE(0) === this.contextId) {
        let pos = p.offset;
        for (let i = 4; i + 8 <= payload.length; i += 8) {
          const len = payload.readUInt32BE(i);
          const st = payload.readUInt32BE(i + 4);
          p.extents.push({ start: pos, length: len, hole: (st & STATE_HOLE) !== 0, zero: (st & STATE_ZERO) !== 0 });
          pos += len;
        }
      }
    } else if ((s.type & REPLY_ERROR_BIT) !== 0) {
      const errno = payload.readUInt32BE(0);
      const msgLen = payload.length >= 6 ? payload.readUInt16BE(4) : 0;
      const message = payload.subarray(6, 6 + msgLen).toString('utf8');
      p.error ??= serverError(errno, this.describe(p), message);
    } else if (s.type !== REPLY_NONE) {
      // Unknown non-error chunk types may be ignored (proto.md).
    }
    if (s.done) this.finish(s.handle);
  }

  private finish(handle: number): void {
    const p = this.pending.get(handle)!;
    this.pending.delete(handle);
    if (p.error) return p.reject(p.error);
    if (p.buffer) {
      if (p.covered !== p.length) return p.reject(new NbdError('EPROTO', `${this.describe(p)}: the server sent ${p.covered} of ${p.length} bytes`));
      return p.resolve(p.buffer);
    }
    if (p.extents && p.extents.length === 0) return p.reject(new NbdError('EPROTO', `${this.describe(p)}: no block status in the reply`));
    p.resolve(p.extents ?? []);
  }

  private describe(p: Pending): string {
    return `${p.buffer ? 'NBD read' : 'NBD block status'} of [${p.offset}, ${p.offset + p.length})`;
  }

  private fail(err: NbdError): void {
    if (this.failure === undefined) this.failure = err;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    this.socket.destroy();
  }
}

/** The option haggling before transmission, read with awaits (it is short and sequential). */
class Handshake {
  private wake: (() => void) | undefined;
  private error: Error | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.queue.push(chunk);
    this.wake?.();
  };
  private readonly onError = (err: Error): void => {
    this.error ??= new NbdError('ECONNRESET', `cannot talk to the NBD server: ${err.message}`, { cause: err });
    this.wake?.();
  };
  private readonly onClose = (): void => {
    this.error ??= new NbdError('ECONNRESET', 'the NBD server closed the connection during the handshake');
    this.wake?.();
  };

  constructor(
    private readonly socket: Socket,
    private readonly queue: ByteQueue,
  ) {
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('error', this.onError);
    this.socket.off('close', this.onClose);
  }

  private async need(n: number): Promise<Buffer> {
    while (this.queue.available < n) {
      if (this.error) throw this.error;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
    return Buffer.from(this.queue.take(n));
  }

  async run(exportName: string): Promise<{ size: number; flags: number; contextId: number | undefined; maxRequest: number }> {
    const greeting = await this.need(18);
    if (greeting.readBigUInt64BE(0) !== NBDMAGIC) throw new NbdError('EPROTO', 'not an NBD server (no NBDMAGIC)');
    if (greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new NbdError('EPROTO', 'the NBD server does not speak the newstyle handshake');
    const serverFlags = greeting.readUInt16BE(16);
    if ((serverFlags & FLAG_FIXED_NEWSTYLE) === 0) throw new NbdError('EPROTO', 'the NBD server does not speak the fixed newstyle handshake');
    const clientFlags = Buffer.alloc(4);
    clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES));
    this.socket.write(clientFlags);

    const structured = await this.option(OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    if (!structured.ok) throw new NbdError('ENOTSUP', `the NBD server refused structured replies: ${structured.error}`);

    const name = Buffer.from(exportName, 'utf8');
    let contextId: number | undefined;
    const ctx = Buffer.from(ALLOCATION_CONTEXT, 'utf8');
    const meta = Buffer.alloc(4 + name.length + 4 + 4 + ctx.length);
    meta.writeUInt32BE(name.length, 0);
    name.copy(meta, 4);
    meta.writeUInt32BE(1, 4 + name.length);
    meta.writeUInt32BE(ctx.length, 8 + name.length);
    ctx.copy(meta, 12 + name.length);
    // A server without block status still serves reads: the caller then plans the whole disk.
    const metaReply = await this.option(OPT_SET_META_CONTEXT, meta, (type, data) => {
      if (type === REP_META_CONTEXT && data.subarray(4).toString('utf8') === ALLOCATION_CONTEXT) contextId = data.readUInt32BE(0);
    });
    if (!metaReply.ok) contextId = undefined;

    const go = Buffer.alloc(4 + name.length + 2 + 2);
    go.writeUInt32BE(name.length, 0);
    name.copy(go, 4);
    go.writeUInt16BE(1, 4 + name.length);
    go.writeUInt16BE(INFO_BLOCK_SIZE, 6 + name.length);
    let size: number | undefined;
    let flags = 0;
    let maxRequest = 32 * 1024 * 1024;
    const goReply = await this.option(OPT_GO, go, (type, data) => {
      if (type !== REP_INFO || data.length < 2) return;
      const info = data.readUInt16BE(0);
      if (info === INFO_EXPORT && data.length >= 12) {
        size = Number(data.readBigUInt64BE(2));
        flags = data.readUInt16BE(10);
      } else if (info === INFO_BLOCK_SIZE && data.length >= 14) {
        maxRequest = Math.min(maxRequest, data.readUInt32BE(10));
      }
    });
    if (!goReply.ok) throw new NbdError('ENOENT', `the NBD server could not open the export: ${goReply.error}`);
    if (size === undefined) throw new NbdError('EPROTO', 'the NBD server did not say the export size');
    return { size, flags, contextId, maxRequest };
  }

  /** Sends one option and reads its replies up to ACK or an error reply. */
  private async option(
    option: number,
    data: Buffer,
    onReply?: (type: number, data: Buffer) => void,
  ): Promise<{ ok: true } | { ok: false; error: string }> {
    const head = Buffer.alloc(16);
    head.writeBigUInt64BE(IHAVEOPT, 0);
    head.writeUInt32BE(option, 8);
    head.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([head, data]));
    for (;;) {
      const h = await this.need(20);
      if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new NbdError('EPROTO', 'broken option reply from the NBD server');
      if (h.readUInt32BE(8) !== option) throw new NbdError('EPROTO', 'the NBD server answered another option');
      const type = h.readUInt32BE(12);
      const length = h.readUInt32BE(16);
      if (length > 1024 * 1024) throw new NbdError('EPROTO', 'oversized option reply from the NBD server');
      const payload = length > 0 ? await this.need(length) : Buffer.alloc(0);
      if (type === REP_ACK) return { ok: true };
      if (type >= 0x80000000) {
        const base = OPTION_ERRORS[type - 0x80000000] ?? `error reply ${type - 0x80000000}`;
        const text = payload.toString('utf8').trim();
        return { ok: false, error: text ? `${text} (${base})` : base };
      }
      onReply?.(type, payload);
    }
  }
}
