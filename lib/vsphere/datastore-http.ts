// Datastore file access over vCenter's /folder HTTP interface: URL building, HEAD, small text
// reads (VMDK descriptors) and single-range byte streams for the copy engine. Every request
// carries the SOAP session cookie; a 401 re-logs in once. The cookie is only ever sent to the
// vCenter the client connected to.
//
// Range reads carry nearly every byte of a migration, so they have a path of their own: the
// request is written on a pooled TLS socket of the policy agent and the body's TLS records go to
// the reader as they are, without Node's HTTP client in between (its parser and stream layers
// cost about a third of the CPU a copy uses). That path only ever takes the answer it expects,
// a 206 with exactly the range asked for and its length; anything else (401, 404, 416, a 200,
// chunked bodies) is asked again through Node's HTTP client, which handles re-login and errors.

import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { Readable, Transform } from 'node:stream';
import { OneswapError } from '../errors/index.js';
import { endpointLabel, endpointOrigin, sendRequest, timeoutError, toConnectionError, type Endpoint } from './endpoint.js';
import type { SoapTransport } from './soap.js';
import { PolicyAgent, type RawLease } from './tls-agent.js';

/** Builds `https://host/folder/<path>?dcPath=<dc>&dsName=<ds>`, every part percent-encoded. */
export function buildDatastoreUrl(origin: string, dcPath: string, dsName: string, path: string): string {
  const encodedPath = path.replace(/^\/+/, '').split('/').map(encodeURIComponent).join('/');
  const dc = dcPath.replace(/^\/+/, '');
  return `${origin}/folder/${encodedPath}?dcPath=${encodeURIComponent(dc)}&dsName=${encodeURIComponent(dsName)}`;
}

/** "[LocalDS_0] vm/disk.vmdk" for messages, from a /folder URL. */
export function describeDatastoreUrl(url: URL): string {
  const ds = url.searchParams.get('dsName') ?? '?';
  let path = url.pathname.replace(/^\/folder\/?/, '');
  try {
    path = decodeURIComponent(path);
  } catch {
    // keep the encoded form
  }
  return `[${ds}] ${path}`;
}

/** Checks a Content-Range header against the range asked for. */
export function contentRangeMatches(header: string | undefined, start: number, endExclusive: number): boolean {
  const m = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(header?.trim() ?? '');
  if (m === null) return false;
  return Number(m[1]) === start && Number(m[2]) === endExclusive - 1 && (m[3] === '*' || Number(m[3]) >= endExclusive);
}

export interface DatastoreHttpOptions {
  readonly transport: SoapTransport;
  /** A pool of its own: long range streams must not queue SOAP calls (keep-alive, task polls). */
  readonly agent: https.Agent;
  /** Bound on waiting for response headers, and on a stalled body. */
  readonly timeoutMs: number;
}

/** Descriptors are a few hundred bytes; anything large is a data extent read by mistake. */
const MAX_TEXT_BYTES = 1024 * 1024;

// The copy engine's direct-chunk protocol (lib/copy/engine.ts, DIRECT_CHUNKS), by its global
// symbol so this client does not depend on the engine: called once instead of reading the
// Readable, it hands each chunk to sink.data synchronously (valid during the call only), calls
// sink.end after the last one, and returns the function that resumes after data returned false.
const DIRECT_CHUNKS = Symbol.for('oneswap.directChunks');
interface DirectChunkSink {
  data(chunk: Uint8Array): boolean;
  end(): void;
}
type DirectChunks = (sink: DirectChunkSink) => () => void;

export class DatastoreHttp {
  private readonly transport: SoapTransport;
  private readonly agent: https.Agent;
  private readonly timeoutMs: number;
  private readonly endpoint: Endpoint;

  constructor(options: DatastoreHttpOptions) {
    this.transport = options.transport;
    this.agent = options.agent;
    this.timeoutMs = options.timeoutMs;
    this.endpoint = options.transport.endpoint;
  }

  url(dcPath: string, dsName: string, path: string): string {
    return buildDatastoreUrl(endpointOrigin(this.endpoint), dcPath, dsName, path);
  }

  async head(url: string): Promise<{ size: number }> {
    const target = this.target(url);
    const res = await this.send('HEAD', target, {});
    res.resume();
    if (res.statusCode !== 200) throw this.statusError(res, 'HEAD', target);
    const size = Number(res.headers['content-length']);
    if (!Number.isSafeInteger(size)) {
      throw new OneswapError('remote', `vCenter ${endpointLabel(this.endpoint)} gave no size for ${describeDatastoreUrl(target)} (HEAD without Content-Length); check the datastore`);
    }
    return { size };
  }

  async getText(url: string): Promise<string> {
    const target = this.target(url);
    const res = await this.send('GET', target, {});
    if (res.statusCode !== 200) {
      res.resume();
      throw this.statusError(res, 'GET', target);
    }
    const declared = Number(res.headers['content-length'] ?? '0');
    if (declared > MAX_TEXT_BYTES) {
      res.destroy();
      throw tooLarge(target);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > MAX_TEXT_BYTES) {
          res.destroy();
          throw tooLarge(target);
        }
        chunks.push(chunk);
      }
    } catch (err) {
      throw err instanceof OneswapError ? err : toConnectionError(err, this.endpoint, `GET ${describeDatastoreUrl(target)}`);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /**
   * Streams bytes [start, endExclusive) of a datastore file. Only a 206 whose Content-Range is
   * exactly that range is accepted: a server that ignores Range sends the whole file with 200,
   * which read as the range would corrupt the copy. The stream fails with a 'data' error if the
   * body is shorter or longer than the range.
   */
  async openRange(url: string, start: number, endExclusive: number, signal?: AbortSignal): Promise<Readable> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(endExclusive) || start < 0 || endExclusive <= start) {
      throw new OneswapError('internal', `openRange called with an empty or invalid range [${start}, ${endExclusive})`);
    }
    const target = this.target(url);
    const file = describeDatastoreUrl(target);
    if (this.agent instanceof PolicyAgent) {
      const body = await this.rawRange(this.agent, target, start, endExclusive, file, signal);
      if (body !== undefined) return body;
    }
    const res = await this.send('GET', target, { Range: `bytes=${start}-${endExclusive - 1}` }, signal);
    if (res.statusCode === 206 && contentRangeMatches(res.headers['content-range'], start, endExclusive)) {
      return this.guardBody(res, endExclusive - start, file, signal);
    }
    res.resume();
    if (res.statusCode === 206) {
      throw new OneswapError('remote', `vCenter ${endpointLabel(this.endpoint)} answered bytes ${start}-${endExclusive - 1} of ${file} with Content-Range "${res.headers['content-range'] ?? ''}"; the range reader cannot use this server`);
    }
    if (res.statusCode === 200) {
      throw new OneswapError('remote', `vCenter ${endpointLabel(this.endpoint)} ignored the Range request for bytes ${start}-${endExclusive - 1} of ${file} and sent the whole file (HTTP 200); ranged reads are required: use another disk reader`);
    }
    if (res.statusCode === 416) {
      throw new OneswapError('data', `bytes ${start}-${endExclusive - 1} lie beyond the end of ${file} (HTTP 416); the disk is smaller than its descriptor says`);
    }
    throw this.statusError(res, 'GET', target);
  }

  /**
   * The range over a raw pooled socket, or undefined when the answer is not a plain 206 of exactly
   * this range (then nothing was read from it and the caller asks again through Node's client).
   * A kept-alive socket the server closed meanwhile is replaced silently.
   */
  private async rawRange(agent: PolicyAgent, target: URL, start: number, endExclusive: number, file: string, signal: AbortSignal | undefined): Promise<Readable | undefined> {
    const call = `GET ${file}`;
    // Each stale socket is destroyed, so this ends at a fresh connection at the latest.
    for (;;) {
      let lease: RawLease;
      try {
        lease = await agent.acquireRaw(signal);
      } catch (err) {
        if (signal?.aborted) throw new OneswapError('interrupted', `${call} on vCenter ${endpointLabel(this.endpoint)} was cancelled`, { cause: err });
        throw toConnectionError(err, this.endpoint, call);
      }
      const head = await this.rawHead(agent, lease, target, start, endExclusive, call, signal);
      if (head === 'stale' && lease.reused) continue;
      if (head === 'stale') throw new OneswapError('connection', `vCenter ${endpointLabel(this.endpoint)} closed the connection without answering ${call}; the read will be retried`);
      if (head === undefined) return undefined;
      return this.rawBody(agent, lease, head.held, head.keepAlive, endExclusive - start, file, signal);
    }
  }

  /**
   * Sends the GET and reads the response head. Resolves with the body bytes that came with it and
   * the socket stopped, 'stale' (closed before answering), or undefined (not the answer the raw
   * path takes); the socket is given back in the last two cases.
   */
  private rawHead(
    agent: PolicyAgent,
    lease: RawLease,
    target: URL,
    start: number,
    endExclusive: number,
    call: string,
    signal: AbortSignal | undefined,
  ): Promise<{ held: Buffer[]; keepAlive: boolean } | 'stale' | undefined> {
    const { socket } = lease;
    const { host, port } = this.endpoint;
    const hostHeader = (isIP(host) === 6 ? `[${host}]` : host) + (port === 443 ? '' : `:${port}`);
    const cookie = this.transport.cookie === undefined ? '' : `Cookie: ${this.transport.cookie}\r\n`;
    const request = `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${hostHeader}\r\nRange: bytes=${start}-${endExclusive - 1}\r\n${cookie}Connection: keep-alive\r\n\r\n`;
    return new Promise((resolve, reject) => {
      let received = Buffer.alloc(0);
      let settled = false;
      const settle = (outcome: 'stale' | 'fallback' | { held: Buffer[]; keepAlive: boolean } | Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        unwatch();
        if (outcome instanceof Error || outcome === 'stale' || outcome === 'fallback') {
          agent.releaseRaw(lease, false);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome === 'stale' ? 'stale' : undefined);
        } else resolve(outcome);
      };
      // Returns false (the socket stops reading) once the head is complete.
      const onChunk = (chunk: Buffer): boolean => {
        received = Buffer.concat([received, chunk]); // heads are small; chunk is only lent
        const end = received.indexOf('\r\n\r\n');
        if (end < 0) {
          if (received.length > 65536) settle('fallback');
          return !settled;
        }
        const head = parseHead(received.subarray(0, end).toString('latin1'));
        const usable =
          head !== undefined &&
          head.status === 206 &&
          contentRangeMatches(head.headers.get('content-range'), start, endExclusive) &&
          head.headers.get('content-length') === String(endExclusive - start) &&
          (head.headers.get('transfer-encoding') ?? 'identity').toLowerCase() === 'identity';
        if (!usable) settle('fallback');
        else {
          // Body bytes that came with the head, and copies of any record Node still hands over
          // after the socket was told to stop, wait for the body's reader.
          const held = received.length > end + 4 ? [received.subarray(end + 4)] : [];
          lease.read((more) => {
            held.push(Buffer.from(more));
            return false;
          });
          settle({ held, keepAlive: head.keepAlive });
        }
        return false;
      };
      const gone = (err: Error): void => settle(received.length === 0 ? 'stale' : toConnectionError(err, this.endpoint, call));
      const onGone = (): void => gone(Object.assign(new Error('closed'), { code: 'ECONNRESET' }));
      const onError = (err: Error): void => gone(err);
      const onAbort = (): void => settle(new OneswapError('interrupted', `${call} on vCenter ${endpointLabel(this.endpoint)} was cancelled`));
      const timer = setTimeout(() => settle(timeoutError(this.endpoint, call, this.timeoutMs)), this.timeoutMs);
      const unwatch = watchLease(lease, signal, { gone: onGone, error: onError, abort: onAbort });
      lease.read(onChunk);
      if (signal?.aborted) {
        onAbort();
        return;
      }
      socket.write(request);
      socket.resume();
    });
  }

  /**
   * The body: exactly `expected` bytes, then the socket goes back to the pool. Read as a Readable
   * (each chunk copied), or through the copy engine's direct-chunk protocol (each chunk lent from
   * the socket's read buffer: no copy, no allocation). A cut, an overlong body, a stall or the
   * signal fail the stream.
   */
  private rawBody(agent: PolicyAgent, lease: RawLease, held: Buffer[], keepAlive: boolean, expected: number, file: string, signal: AbortSignal | undefined): Readable {
    const { socket } = lease;
    const where = `vCenter ${endpointLabel(this.endpoint)}`;
    let received = 0;
    let released = false;
    let wanted = false; // the consumer takes data now (else chunks are held and the socket stops)
    let sink: DirectChunkSink | undefined;
    const release = (reusable: boolean): void => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      unwatch();
      agent.releaseRaw(lease, reusable);
    };
    const fail = (err: Error): void => {
      release(false);
      out.destroy(err);
    };
    // Hands one chunk to the consumer; returns whether it takes more now.
    const deliver = (chunk: Buffer, lent: boolean): boolean => {
      received += chunk.length;
      if (received > expected) {
        fail(new OneswapError('data', `${where} sent more than the ${expected} bytes asked for from ${file}; the range reader cannot trust this server`));
        return false;
      }
      // A Readable keeps what it is given: it gets a copy of a lent chunk.
      const more = sink !== undefined ? sink.data(chunk) : out.push(lent ? Buffer.from(chunk) : chunk);
      if (received === expected) {
        // Held bytes past the end would be a server overrunning its length: not reusable.
        release(keepAlive && held.length === 0);
        if (sink !== undefined) sink.end();
        else out.push(null);
        return false;
      }
      return more;
    };
    // A chunk lent by the socket: straight on when the consumer takes it, else held (copied).
    const onChunk = (chunk: Buffer): boolean => {
      if (released) return true;
      if (!wanted || held.length > 0) {
        held.push(Buffer.from(chunk));
        return false;
      }
      wanted = deliver(chunk, true);
      return wanted || released;
    };
    // The consumer wants data: held chunks first, then the socket.
    const start = (): void => {
      wanted = true;
      for (let c = held.shift(); c !== undefined && !released; c = held.shift()) {
        wanted = deliver(c, false);
        if (!wanted) return;
      }
      if (!released) socket.resume();
    };
    const out = new Readable({
      // Room for a few TLS records while the reader writes a buffer out; then the socket stops.
      highWaterMark: 256 * 1024,
      read: () => {
        if (sink === undefined) start();
      },
      destroy: (err, callback) => {
        release(false);
        callback(err);
      },
    });
    const direct: DirectChunks = (s) => {
      sink = s;
      start();
      return start;
    };
    Object.defineProperty(out, DIRECT_CHUNKS, { value: direct });
    const onGone = (): void => fail(new OneswapError('connection', `${where} closed the connection after ${received} of ${expected} bytes of ${file}; the read will be retried`));
    const onError = (err: Error): void => fail(toConnectionError(err, this.endpoint, `GET ${file}`));
    const onAbort = (): void => fail(new OneswapError('interrupted', `GET ${file} on ${where} was cancelled`));
    // A stall: the socket is reading, nobody holds it back, and nothing came for timeoutMs.
    let seen = -1;
    const check = (): void => {
      if (released) return;
      if (received === seen && wanted) {
        fail(new OneswapError('connection', `${where} stopped sending ${file} for ${Math.round(this.timeoutMs / 1000)} s; the read will be retried`));
        return;
      }
      seen = received;
      timer = setTimeout(check, this.timeoutMs).unref();
    };
    let timer = setTimeout(check, 0).unref();
    const unwatch = watchLease(lease, signal, { gone: onGone, error: onError, abort: onAbort });
    lease.read(onChunk);
    if (signal?.aborted) onAbort();
    return out;
  }

  private target(url: string): URL {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      throw new OneswapError('usage', `"${url}" is not a datastore URL; build it with datastoreUrl()`);
    }
    const port = target.port === '' ? 443 : Number(target.port);
    const host = target.hostname.replace(/^\[|\]$/g, '');
    if (target.protocol !== 'https:' || host.toLowerCase() !== this.endpoint.host.toLowerCase() || port !== this.endpoint.port) {
      throw new OneswapError('usage', `refusing to send the vCenter session to ${target.host}: datastore URLs must point at vCenter ${endpointLabel(this.endpoint)}`);
    }
    return target;
  }

  private statusError(res: IncomingMessage, method: string, target: URL): OneswapError {
    const status = res.statusCode ?? 0;
    const file = describeDatastoreUrl(target);
    if (status === 404) {
      return new OneswapError('not-found', `vCenter ${endpointLabel(this.endpoint)} has no file ${file} (HTTP 404 on ${method}); check the datastore name, the datacenter path and the file path`);
    }
    if (status === 401 || status === 403) {
      return new OneswapError('auth', `vCenter ${endpointLabel(this.endpoint)} refused ${method} of ${file} (HTTP ${status}) even after a fresh login; give the user the Datastore.Browse privilege`);
    }
    return new OneswapError('remote', `vCenter ${endpointLabel(this.endpoint)} answered HTTP ${status} to ${method} of ${file}; retry later or check the datastore`);
  }

  /** Sends a request; on 401 logs in again and resends once. */
  private async send(method: string, target: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<IncomingMessage> {
    const sentCookie = this.transport.cookie;
    const res = await this.sendOnce(method, target, headers, signal);
    if (res.statusCode !== 401 || this.transport.reauthenticate === undefined) return res;
    res.resume();
    await this.transport.reauthenticate(sentCookie);
    return this.sendOnce(method, target, headers, signal);
  }

  private sendOnce(method: string, target: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<IncomingMessage> {
    return sendRequest({
      endpoint: this.endpoint,
      agent: this.agent,
      method,
      path: target.pathname + target.search,
      headers: { ...headers, ...(this.transport.cookie === undefined ? {} : { Cookie: this.transport.cookie }) },
      timeoutMs: this.timeoutMs,
      call: `${method} ${describeDatastoreUrl(target)}`,
      ...(signal === undefined ? {} : { signal }),
    });
  }

  /** Counts the body against the range length, maps errors, and fails a stalled transfer. */
  private guardBody(res: IncomingMessage, expected: number, file: string, signal: AbortSignal | undefined): Readable {
    const where = `vCenter ${endpointLabel(this.endpoint)}`;
    let received = 0;
    const out = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        received += chunk.length;
        if (received > expected) callback(new OneswapError('data', `${where} sent more than the ${expected} bytes asked for from ${file}; the range reader cannot trust this server`));
        else callback(null, chunk);
      },
      flush(callback) {
        if (received !== expected) callback(new OneswapError('data', `${where} sent ${received} of ${expected} bytes from ${file} before the body ended; the read will be retried`));
        else callback();
      },
    });
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        // A slow consumer pauses the body; only a server that stops sending is a stall.
        if (res.isPaused() || out.writableNeedDrain) arm();
        else out.destroy(new OneswapError('connection', `${where} stopped sending ${file} for ${Math.round(this.timeoutMs / 1000)} s; the read will be retried`));
      }, this.timeoutMs);
      timer.unref();
    };
    arm();
    res.on('data', arm);
    res.on('error', (err) => {
      if (signal?.aborted) out.destroy(new OneswapError('interrupted', `GET ${file} on ${where} was cancelled`, { cause: err }));
      else out.destroy(err instanceof OneswapError ? err : toConnectionError(err, this.endpoint, `GET ${file}`));
    });
    res.on('close', () => {
      if (!res.complete) out.destroy(new OneswapError('connection', `${where} closed the connection after ${received} of ${expected} bytes of ${file}; the read will be retried`));
    });
    out.on('close', () => {
      clearTimeout(timer);
      if (!res.complete) res.destroy();
    });
    res.pipe(out);
    return out;
  }
}

function tooLarge(target: URL): OneswapError {
  return new OneswapError('data', `${describeDatastoreUrl(target)} is larger than ${MAX_TEXT_BYTES} bytes, so it is not a VMDK descriptor; read it with a range reader`);
}

/** Status and headers of an HTTP/1.x response head (without the blank line), or undefined. */
function parseHead(text: string): { status: number; headers: Map<string, string>; keepAlive: boolean } | undefined {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (m === null) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)!}, ${value}` : value);
  }
  const connection = (headers.get('connection') ?? '').toLowerCase();
  const keepAlive = m[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
  return { status: Number(m[2]), headers, keepAlive };
}

/**
 * Ties the end, close and error of a leased socket, and the caller's abort, to the handlers of
 * one raw read (its head or its body); returns what unties them, once the read lets go of the
 * socket.
 */
function watchLease(lease: RawLease, signal: AbortSignal | undefined, on: { gone: () => void; error: (err: Error) => void; abort: () => void }): () => void {
  const { socket } = lease;
  socket.once('end', on.gone);
  socket.once('close', on.gone);
  socket.once('error', on.error);
  signal?.addEventListener('abort', on.abort, { once: true });
  return () => {
    socket.off('end', on.gone);
    socket.off('close', on.gone);
    socket.off('error', on.error);
    signal?.removeEventListener('abort', on.abort);
  };
}
