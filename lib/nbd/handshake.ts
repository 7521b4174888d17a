// The option haggling before transmission (fixed newstyle): structured replies (required), the
// "base:allocation" meta context (optional: a server without it still serves reads and writes),
// then NBD_OPT_GO with the export's size, transmission flags and block size constraints.

import type { Socket } from 'node:net';
import type { ByteQueue } from './byte-queue.js';
import {
  ALLOCATION_CONTEXT,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  NBDMAGIC,
  NbdError,
  OPT_GO,
  OPT_REPLY_MAGIC,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  OPTION_ERRORS,
  REP_ACK,
  REP_INFO,
  REP_META_CONTEXT,
} from './protocol.js';

/** What the handshake settled. */
export interface Negotiated {
  readonly size: number;
  /** Transmission flags (TFLAG_*). */
  readonly flags: number;
  /** The id of "base:allocation", when the server offers it. */
  readonly contextId: number | undefined;
  readonly minBlock: number;
  readonly preferredBlock: number;
  readonly maxRequest: number;
}

/** Largest request when the server states no maximum block size: proto.md's default. */
const DEFAULT_MAX_REQUEST = 32 * 1024 * 1024;

/** The option haggling before transmission, read with awaits (it is short and sequential). */
export class Handshake {
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

  async run(exportName: string): Promise<Negotiated> {
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
    let minBlock = 1;
    let preferredBlock = 4096;
    let maxRequest = DEFAULT_MAX_REQUEST;
    const goReply = await this.option(OPT_GO, go, (type, data) => {
      if (type !== REP_INFO || data.length < 2) return;
      const info = data.readUInt16BE(0);
      if (info === INFO_EXPORT && data.length >= 12) {
        size = Number(data.readBigUInt64BE(2));
        flags = data.readUInt16BE(10);
      } else if (info === INFO_BLOCK_SIZE && data.length >= 14) {
        minBlock = data.readUInt32BE(2);
        preferredBlock = data.readUInt32BE(6);
        maxRequest = Math.min(maxRequest, data.readUInt32BE(10));
      }
    });
    if (!goReply.ok) throw new NbdError('ENOENT', `the NBD server could not open the export: ${goReply.error}`);
    if (size === undefined) throw new NbdError('EPROTO', 'the NBD server did not say the export size');
    return { size, flags, contextId, minBlock, preferredBlock, maxRequest };
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
