// Datastore file access over vCenter's /folder HTTP interface: URL building, HEAD, small text
// reads (VMDK descriptors) and single-range byte streams for the copy engine. Every request
// carries the SOAP session cookie; a 401 re-logs in once. The cookie is only ever sent to the
// vCenter the client connected to.

import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import { OneswapError } from '../errors/index.js';
import { endpointLabel, endpointOrigin, timeoutError, toConnectionError, type Endpoint } from './endpoint.js';
import type { SoapTransport } from './soap.js';

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
    const call = `${method} ${describeDatastoreUrl(target)}`;
    return new Promise<IncomingMessage>((resolve, reject) => {
      let timedOut = false;
      const req = https.request(
        {
          host: this.endpoint.host,
          port: this.endpoint.port,
          path: target.pathname + target.search,
          method,
          agent: this.agent,
          ...(signal === undefined ? {} : { signal }),
          headers: { ...headers, ...(this.transport.cookie === undefined ? {} : { Cookie: this.transport.cookie }) },
        },
        (res) => {
          clearTimeout(timer);
          resolve(res);
        },
      );
      const timer = setTimeout(() => {
        timedOut = true;
        req.destroy();
      }, this.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        if (timedOut) reject(timeoutError(this.endpoint, call, this.timeoutMs));
        else if (signal?.aborted) reject(new OneswapError('interrupted', `${call} on vCenter ${endpointLabel(this.endpoint)} was cancelled`, { cause: err }));
        else reject(toConnectionError(err, this.endpoint, call));
      });
      req.end();
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
