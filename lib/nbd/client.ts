// A small NBD client (docs/proto.md of the NBD project) over a Unix socket, enough to read a disk
// that nbdkit serves and to write an image that qemu-nbd serves: the fixed newstyle handshake
// (handshake.ts) with structured replies and the "base:allocation" meta context, then READ,
// BLOCK_STATUS, WRITE, WRITE_ZEROES, TRIM, FLUSH and DISC. Many requests may be in flight on one
// connection; replies are matched by cookie. A read is delivered into one buffer of its own size
// and a write is sent from the caller's buffer without a copy, so memory is bounded by what the
// caller has in flight (keep requests to a few MiB).
//
// No dependency (libnbd has no Node binding) and no TLS: the server is one we started, on a
// socket in a private directory.

import { connect as netConnect, type Socket } from 'node:net';
import { ByteQueue } from './byte-queue.js';
import { Handshake, type Negotiated } from './handshake.js';
import {
  CMD_BLOCK_STATUS,
  CMD_DISC,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  NbdError,
  REPLY_BLOCK_STATUS,
  REPLY_ERROR_BIT,
  REPLY_FLAG_DONE,
  REPLY_NONE,
  REPLY_OFFSET_DATA,
  REPLY_OFFSET_HOLE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STATE_HOLE,
  STATE_ZERO,
  STRUCTURED_REPLY_MAGIC,
  TFLAG_CAN_MULTI_CONN,
  TFLAG_READ_ONLY,
  TFLAG_SEND_FAST_ZERO,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
  serverError,
} from './protocol.js';

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

export interface NbdZeroOptions {
  /**
   * NBD_CMD_FLAG_NO_HOLE: the area must stay allocated (written zeros). Without it the server may
   * deallocate (punch a hole, discard), which is what a sparse target wants.
   */
  readonly noHole?: boolean;
  /** NBD_CMD_FLAG_FAST_ZERO: fail with ENOTSUP rather than zero slowly (only where canFastZero). */
  readonly fast?: boolean;
  /** NBD_CMD_FLAG_FUA: on stable storage when the reply comes (only where canFua). */
  readonly fua?: boolean;
}

type Command = 'read' | 'block status' | 'write' | 'write zeroes' | 'trim' | 'flush';
const COMMANDS: Record<number, Command> = {
  [CMD_READ]: 'read',
  [CMD_BLOCK_STATUS]: 'block status',
  [CMD_WRITE]: 'write',
  [CMD_WRITE_ZEROES]: 'write zeroes',
  [CMD_TRIM]: 'trim',
  [CMD_FLUSH]: 'flush',
};

interface Pending {
  readonly command: Command;
  readonly offset: number;
  readonly length: number;
  /** READ: the buffer being filled; holes are zeroed as they are reported. */
  readonly buffer?: Buffer;
  covered: number;
  readonly extents?: NbdExtent[];
  error?: NbdError;
  readonly resolve: (value: Buffer | NbdExtent[] | undefined) => void;
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
  /** Requests should be multiples of this (the server may refuse others) ... */
  readonly minBlock: number;
  /** ... and preferably of this (smaller or unaligned ones may cost a read-modify-write). */
  readonly preferredBlock: number;
  /** The export takes NBD_CMD_FLUSH. */
  readonly canFlush: boolean;
  /** The export takes NBD_CMD_FLAG_FUA on writes. */
  readonly canFua: boolean;
  /** The export takes NBD_CMD_TRIM (a trimmed area need not read back as zeros). */
  readonly canTrim: boolean;
  /** The export takes NBD_CMD_WRITE_ZEROES. */
  readonly canWriteZeroes: boolean;
  /** The export takes NBD_CMD_FLAG_FAST_ZERO. */
  readonly canFastZero: boolean;

  private readonly contextId: number | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextHandle = 1;
  private state: ReplyState = { step: 'magic' };
  private failure: NbdError | undefined;
  private readonly ended: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    private readonly queue: ByteQueue,
    info: Negotiated,
  ) {
    this.size = info.size;
    this.readOnly = (info.flags & TFLAG_READ_ONLY) !== 0;
    this.canMultiConn = (info.flags & TFLAG_CAN_MULTI_CONN) !== 0;
    this.hasBlockStatus = info.contextId !== undefined;
    this.contextId = info.contextId;
    this.maxRequest = info.maxRequest;
    this.minBlock = info.minBlock;
    this.preferredBlock = info.preferredBlock;
    const writable = !this.readOnly;
    this.canFlush = writable && (info.flags & TFLAG_SEND_FLUSH) !== 0;
    this.canFua = writable && (info.flags & TFLAG_SEND_FUA) !== 0;
    this.canTrim = writable && (info.flags & TFLAG_SEND_TRIM) !== 0;
    this.canWriteZeroes = writable && (info.flags & TFLAG_SEND_WRITE_ZEROES) !== 0;
    this.canFastZero = this.canWriteZeroes && (info.flags & TFLAG_SEND_FAST_ZERO) !== 0;
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
   * Writes all of `data` at `offset` (at most maxRequest bytes). `data` is sent as it is, without
   * a copy: it must not change until the promise settles. There is no abort: once sent, a write
   * is only over when the server answers, and the caller's buffer is in use until then.
   */
  write(offset: number, data: Uint8Array, options: { readonly fua?: boolean } = {}): Promise<void> {
    if (data.length === 0) return Promise.resolve();
    const refused = this.refuse('write', true) ?? this.tooLong('write', data.length);
    if (refused) return Promise.reject(refused);
    return this.request(CMD_WRITE, options.fua && this.canFua ? CMD_FLAG_FUA : 0, offset, data.length, undefined, undefined, data) as Promise<void>;
  }

  /** Makes [offset, offset + length) read as zeros; see NbdZeroOptions for holes. */
  writeZeroes(offset: number, length: number, options: NbdZeroOptions = {}): Promise<void> {
    if (length === 0) return Promise.resolve();
    const refused = this.refuse('write zeroes', this.canWriteZeroes) ?? this.tooLong('write zeroes', length, 0xffffffff);
    if (refused) return Promise.reject(refused);
    if (options.fast && !this.canFastZero) return Promise.reject(new NbdError('ENOTSUP', 'the NBD server offers no fast zeroing'));
    const flags = (options.noHole ? CMD_FLAG_NO_HOLE : 0) | (options.fast ? CMD_FLAG_FAST_ZERO : 0) | (options.fua && this.canFua ? CMD_FLAG_FUA : 0);
    return this.request(CMD_WRITE_ZEROES, flags, offset, length, undefined) as Promise<void>;
  }

  /** Tells the server the area's contents are no longer needed; it need not read back as zeros. */
  trim(offset: number, length: number): Promise<void> {
    if (length === 0) return Promise.resolve();
    const refused = this.refuse('trim', this.canTrim) ?? this.tooLong('trim', length, 0xffffffff);
    if (refused) return Promise.reject(refused);
    return this.request(CMD_TRIM, 0, offset, length, undefined) as Promise<void>;
  }

  /** Every write this connection has had answered is on stable storage when this resolves. */
  flush(): Promise<void> {
    const refused = this.refuse('flush', this.canFlush);
    if (refused) return Promise.reject(refused);
    return this.request(CMD_FLUSH, 0, 0, 0, undefined) as Promise<void>;
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

  /** Why a command cannot be sent on this export, if it cannot. */
  private refuse(command: Command, offered: boolean): NbdError | undefined {
    if (this.readOnly) return new NbdError('EPERM', `NBD ${command}: the export is read-only`);
    if (!offered) return new NbdError('ENOTSUP', `NBD ${command}: the server does not offer it for this export`);
    return undefined;
  }

  private tooLong(command: Command, length: number, max = this.maxRequest): NbdError | undefined {
    return length > max ? new NbdError('EINVAL', `NBD ${command} of ${length} bytes: longer than the ${max} bytes a request may have`) : undefined;
  }

  private request(
    type: number,
    flags: number,
    offset: number,
    length: number,
    signal: AbortSignal | undefined,
    buffer?: Buffer,
    payload?: Uint8Array,
  ): Promise<Buffer | NbdExtent[] | undefined> {
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
        command: COMMANDS[type]!,
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
      const header = this.header(type, flags, handle, offset, length);
      if (payload) {
        // One segment on the wire for the header and its data; the data is not copied.
        this.socket.cork();
        this.socket.write(header);
        this.socket.write(payload);
        this.socket.uncork();
      } else this.socket.write(header);
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
          } else if (!p.extents) {
            // Commands without reply data may be answered simply, structured replies or not.
            this.pending.delete(handle);
            p.resolve(undefined);
            this.state = { step: 'magic' };
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
    if (p.extents) {
      if (p.extents.length === 0) return p.reject(new NbdError('EPROTO', `${this.describe(p)}: no block status in the reply`));
      return p.resolve(p.extents);
    }
    p.resolve(undefined);
  }

  private describe(p: Pending): string {
    return p.command === 'flush' ? 'NBD flush' : `NBD ${p.command} of [${p.offset}, ${p.offset + p.length})`;
  }

  private fail(err: NbdError): void {
    if (this.failure === undefined) this.failure = err;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
    this.socket.destroy();
  }
}

