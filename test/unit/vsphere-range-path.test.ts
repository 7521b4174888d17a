// The fast range-read path of DatastoreHttp (raw pooled TLS sockets of PolicyAgent, the body's
// records handed over without Node's HTTP client) and the copy engine consuming it (Readable and
// DIRECT_CHUNKS), against adverse local HTTPS servers: split heads, tiny and huge writes,
// Connection: close, stale pooled sockets, chunked and 200 answers (fallback), overlong, cut and
// stalled bodies, 401 re-login. The server is a raw TLS server on 127.0.0.1 speaking HTTP/1.1 by
// hand so each TCP write is under the test's control. The certificate is made with openssl at
// test time; without openssl these tests are skipped (loudly).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { after, afterEach, before, describe, it } from 'node:test';
import { DIRECT_CHUNKS, type DirectChunks, type RangeSource } from '../../lib/copy/engine.js';
import { copyToFile } from '../support/copy-to-file.js';
import { OneswapError } from '../../lib/errors/index.js';
import { DatastoreHttp } from '../../lib/vsphere/datastore-http.js';
import type { SoapTransport } from '../../lib/vsphere/soap.js';
import { PolicyAgent } from '../../lib/vsphere/tls-agent.js';
import { makeFakeVcenterCert, opensslSkip } from '../support/fake-vcenter-cert.js';
import { refusal } from '../support/refusal.js';

const opensslMissing = opensslSkip('raw range-path tests of the datastore reader');

const HOST = '127.0.0.1';
const SIZE = 3 * 1024 * 1024 + 12345;
const DISK = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i++) DISK[i] = (i * 7 + (i >> 11)) % 253;
// A hole: engine must skip it but the file must still compare equal.
DISK.fill(0, 1024 * 1024, 1024 * 1024 + 65536);

interface Req {
  method: string;
  path: string;
  headers: Map<string, string>;
  /** [start, endInclusive] of the Range header, if any. */
  range: [number, number] | undefined;
  /** Index of this request on its connection (0 = first). */
  onConn: number;
  conn: number;
}

type Handler = (req: Req, sock: tls.TLSSocket) => Promise<void> | void;

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function head206(start: number, endIncl: number, extra = ''): string {
  return `HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${start}-${endIncl}/${SIZE}\r\nContent-Length: ${endIncl - start + 1}\r\n${extra}\r\n`;
}

const write = (sock: tls.TLSSocket, data: string | Buffer): Promise<void> =>
  new Promise((resolve) => {
    if (sock.destroyed) return resolve();
    sock.write(data, () => resolve());
  });

/** Writes a plain, correct 206 in one go. */
async function ok206(req: Req, sock: tls.TLSSocket): Promise<void> {
  const [s, e] = req.range!;
  await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, e + 1)]));
}

describe('datastore range reads: raw TLS path and copy engine', { skip: opensslMissing || false }, () => {
  let dir = '';
  let server: tls.Server;
  let port = 0;
  let handler: Handler = ok206;
  const requests: Req[] = [];
  const open = new Set<tls.TLSSocket>();
  let conns = 0;
  let agent: PolicyAgent;
  let http: DatastoreHttp;
  let url = '';
  let reauths = 0;
  const transport = {
    endpoint: { host: HOST, port: 0 },
    cookie: 'vmware_soap_session=s1' as string | undefined,
    reauthenticate: undefined as ((sent: string | undefined) => Promise<void>) | undefined,
  };

  const serveConnection = (sock: tls.TLSSocket): void => {
    const conn = conns++;
    open.add(sock);
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    sock.on('close', () => open.delete(sock));
    let buf = Buffer.alloc(0);
    let onConn = 0;
    let busy = false;
    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0 || sock.destroyed) return;
          const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
          buf = buf.subarray(end + 4);
          const [method = '', path = ''] = (lines[0] ?? '').split(' ');
          const headers = new Map<string, string>();
          for (const l of lines.slice(1)) {
            const c = l.indexOf(':');
            headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
          }
          const m = /^bytes=(\d+)-(\d+)$/.exec(headers.get('range') ?? '');
          const req: Req = { method, path, headers, range: m ? [Number(m[1]), Number(m[2])] : undefined, onConn: onConn++, conn };
          requests.push(req);
          await handler(req, sock);
        }
      } finally {
        busy = false;
      }
    };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      void pump();
    });
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oneswap-range-path-'));
    const { keyPem, certPem } = makeFakeVcenterCert(dir);
    server = tls.createServer({ key: keyPem, cert: certPem, ALPNProtocols: ['http/1.1'] }, serveConnection);
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
    port = (server.address() as AddressInfo).port;
    transport.endpoint = { host: HOST, port };
  });

  const fresh = (timeoutMs = 2000): void => {
    agent?.destroy();
    agent = new PolicyAgent({ endpoint: { host: HOST, port }, tls: { kind: 'insecure' }, maxSockets: 4, handshakeTimeoutMs: 5000 });
    http = new DatastoreHttp({ transport: transport as unknown as SoapTransport, agent, timeoutMs });
    url = http.url('DC0', 'ds 1', 'vm 1/disk-flat.vmdk');
  };

  const reset = (timeoutMs?: number): void => {
    handler = ok206;
    requests.length = 0;
    transport.cookie = 'vmware_soap_session=s1';
    transport.reauthenticate = undefined;
    reauths = 0;
    fresh(timeoutMs);
  };

  afterEach(async () => {
    agent.destroy();
    for (const s of open) s.destroy();
    await sleep(20);
  });

  after(async () => {
    for (const s of open) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
    await sleep(50);
    // Nothing of ours may keep the process alive: no sockets, no timers beyond node:test's own.
    const left = process.getActiveResourcesInfo().filter((r) => /TCP|TLS/.test(r));
    assert.deepEqual(left, [], `handles left open: ${left.join(', ')}`);
  });

  const read = async (start: number, end: number, signal?: AbortSignal): Promise<Buffer> =>
    Buffer.concat((await (await http.openRange(url, start, end, signal)).toArray()) as Buffer[]);

  /** copyExtents of [0, SIZE) into a temp file through DatastoreHttp; returns stats and file. */
  const copyAll = async (opts: { retries?: number; requestSize?: number; signal?: AbortSignal } = {}) => {
    const target = join(dir, `target-${Date.now()}-${Math.random()}.raw`);
    writeFileSync(target, Buffer.alloc(0));
    execFileSync('truncate', ['-s', String(SIZE), target]);
    const source: RangeSource = { name: '[ds 1] vm 1/disk-flat.vmdk', open: (s, e, signal) => http.openRange(url, s, e, signal) };
    try {
      const stats = await copyToFile({
        source,
        target,
        capacity: SIZE,
        extents: [{ start: 0, length: SIZE }],
        targetIsZero: true,
        streams: 2,
        requestSize: opts.requestSize ?? 1024 * 1024,
        bufferSize: 256 * 1024,
        retries: opts.retries ?? 0,
        retryDelayMs: 10,
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
      });
      return { stats, data: readFileSync(target) };
    } finally {
      rmSync(target, { force: true });
    }
  };

  describe('normal 206', () => {
    it('reads exact bytes on the raw path and reuses the pooled socket', async () => {
      reset();
      assert.deepEqual(await read(100, 100 + 70000), DISK.subarray(100, 70100));
      assert.deepEqual(await read(5, 6), DISK.subarray(5, 6));
      assert.equal(requests.length, 2, 'no fallback request');
      assert.equal(requests[1]!.conn, requests[0]!.conn, 'keep-alive socket reused');
      assert.equal(requests[0]!.headers.get('range'), 'bytes=100-70099');
      assert.equal(requests[0]!.headers.get('cookie'), 'vmware_soap_session=s1');
      assert.equal(requests[0]!.headers.get('host'), `${HOST}:${port}`);
      assert.equal(requests[0]!.path, '/folder/vm%201/disk-flat.vmdk?dcPath=DC0&dsName=ds%201');
    });

    it('more parallel reads than maxSockets wait for a socket and all succeed', async () => {
      reset();
      const ranges = Array.from({ length: 10 }, (_, i) => [i * 100_000, i * 100_000 + 99_000] as const);
      const got = await Promise.all(ranges.map(([s, e]) => read(s, e)));
      got.forEach((b, i) => assert.deepEqual(b, DISK.subarray(ranges[i]![0], ranges[i]![1])));
      assert.ok(new Set(requests.map((r) => r.conn)).size <= 4, 'at most maxSockets connections');
    });

    it('copies through copyExtents (DIRECT_CHUNKS) into a file with the same sha256', async () => {
      reset();
      const { stats, data } = await copyAll();
      assert.equal(sha(data), sha(DISK));
      assert.equal(stats.bytesRead, SIZE);
      assert.equal(stats.retries, 0);
      assert.equal(stats.requests, 4);
      assert.equal(requests.length, 4);
    });

    it('DIRECT_CHUNKS: lent chunks, back-pressure through the resume function, then end', async () => {
      reset();
      const body = await http.openRange(url, 0, 600_000);
      const direct = (body as unknown as Record<typeof DIRECT_CHUNKS, DirectChunks>)[DIRECT_CHUNKS];
      assert.equal(typeof direct, 'function');
      const got: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        body.once('error', reject);
        let n = 0;
        let resume: () => void = () => undefined;
        resume = direct({
          data: (chunk) => {
            got.push(Buffer.from(chunk)); // lent: copy
            // Every third chunk, ask the source to wait and resume a bit later.
            if (++n % 3 === 0) {
              setTimeout(() => resume(), 2);
              return false;
            }
            return true;
          },
          end: () => resolve(),
        });
      });
      assert.deepEqual(Buffer.concat(got), DISK.subarray(0, 600_000));
    });
  });

  describe('adverse framing', () => {
    it('response head split across several TCP writes', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        const head = head206(s, e);
        for (const piece of [head.slice(0, 5), head.slice(5, 20), head.slice(20, head.length - 3), head.slice(head.length - 3, head.length - 1), head.slice(head.length - 1)]) {
          await write(sock, piece);
          await sleep(5);
        }
        await write(sock, DISK.subarray(s, e + 1));
      };
      assert.deepEqual(await read(1000, 50000), DISK.subarray(1000, 50000));
      assert.equal(requests.length, 1);
    });

    it('head and first body bytes in one write, then the body in tiny pieces', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, s + 3)]));
        for (let p = s + 3; p <= e; p += 7) {
          await write(sock, DISK.subarray(p, Math.min(p + 7, e + 1)));
          if (p % 70 === 0) await sleep(1);
        }
      };
      assert.deepEqual(await read(10, 2010), DISK.subarray(10, 2010));
    });

    it('the whole range (head + 3 MiB body) in one huge write', async () => {
      reset();
      handler = ok206;
      assert.deepEqual(await read(0, SIZE), DISK);
      const { data, stats } = await copyAll({ requestSize: SIZE });
      assert.equal(sha(data), sha(DISK));
      assert.equal(stats.requests, 1);
    });

    it('Connection: close after the body: the bytes are fine, the socket is not reused', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e, 'Connection: close\r\n')), DISK.subarray(s, e + 1)]));
        sock.end();
      };
      assert.deepEqual(await read(0, 30000), DISK.subarray(0, 30000));
      assert.deepEqual(await read(30000, 60000), DISK.subarray(30000, 60000));
      assert.equal(requests.length, 2);
      assert.notEqual(requests[1]!.conn, requests[0]!.conn, 'a closed connection is not reused');
      await sleep(30);
      assert.equal(open.size, 0, 'server side: every connection closed');
    });

    for (const mode of ['readable', 'direct'] as const) {
      it(`Connection: close, whole body already sent, consumer starts late (${mode}): the bytes are still delivered`, async () => {
        reset();
        handler = async (req, sock) => {
          const [s, e] = req.range!;
          await write(sock, Buffer.concat([Buffer.from(head206(s, e, 'Connection: close\r\n')), DISK.subarray(s, e + 1)]));
          sock.end();
        };
        const body = await http.openRange(url, 0, 200_000);
        await sleep(150); // the server's FIN is there before anybody reads
        let got: Buffer;
        if (mode === 'readable') got = Buffer.concat((await body.toArray()) as Buffer[]);
        else {
          const direct = (body as unknown as Record<typeof DIRECT_CHUNKS, DirectChunks>)[DIRECT_CHUNKS];
          const parts: Buffer[] = [];
          got = await new Promise<Buffer>((resolve, reject) => {
            body.once('error', reject);
            direct({ data: (c) => (parts.push(Buffer.from(c)), true), end: () => resolve(Buffer.concat(parts)) });
          });
        }
        assert.deepEqual(got, DISK.subarray(0, 200_000));
      });
    }

    it('Connection: close and a consumer that holds back mid-body (engine writing): the body is complete', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e, 'Connection: close\r\n')), DISK.subarray(s, e + 1)]));
        sock.end();
      };
      const body = await http.openRange(url, 0, 1_000_000);
      const direct = (body as unknown as Record<typeof DIRECT_CHUNKS, DirectChunks>)[DIRECT_CHUNKS];
      const parts: Buffer[] = [];
      const got = await new Promise<Buffer>((resolve, reject) => {
        body.once('error', reject);
        let resume: () => void = () => undefined;
        let paused = false;
        resume = direct({
          data: (c) => {
            parts.push(Buffer.from(c));
            if (!paused) {
              // First chunk: hold the source back long enough for the server to finish and close.
              paused = true;
              setTimeout(() => resume(), 150);
              return false;
            }
            return true;
          },
          end: () => resolve(Buffer.concat(parts)),
        });
      });
      assert.deepEqual(got, DISK.subarray(0, 1_000_000));
    });

    it('a signal aborted while waiting for the head: interrupted, socket closed', async () => {
      reset(60_000);
      handler = () => undefined;
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 50);
      const err = await refusal(http.openRange(url, 0, 10, ac.signal));
      assert.equal(err.kind, 'interrupted');
      await sleep(30);
      assert.equal(open.size, 0);
    });

    it('server closes the idle pooled socket between two requests: the next request succeeds', async () => {
      reset();
      handler = async (req, sock) => {
        await ok206(req, sock);
        setTimeout(() => sock.end(), 20);
      };
      assert.deepEqual(await read(0, 1000), DISK.subarray(0, 1000));
      await sleep(100);
      assert.deepEqual(await read(1000, 2000), DISK.subarray(1000, 2000));
      assert.equal(requests.length, 2);
    });

    it('server closes a reused socket on the next request without answering (stale): retried on a new one', async () => {
      reset();
      handler = async (req, sock) => {
        if (req.onConn === 1) return void sock.destroy();
        await ok206(req, sock);
      };
      assert.deepEqual(await read(0, 1000), DISK.subarray(0, 1000));
      assert.deepEqual(await read(1000, 2000), DISK.subarray(1000, 2000));
      assert.equal(requests.length, 3);
      assert.equal(requests[1]!.conn, requests[0]!.conn);
      assert.notEqual(requests[2]!.conn, requests[0]!.conn);
    });

    it('a fresh socket closed before any answer is a retryable connection error', async () => {
      reset();
      handler = (_req, sock) => void sock.destroy();
      const err = await refusal(http.openRange(url, 0, 100));
      assert.equal(err.kind, 'connection');
    });
  });

  describe('answers the raw path does not take (fallback through Node)', () => {
    it('a chunked 206 is read again through the fallback and gives exact bytes', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        const body = DISK.subarray(s, e + 1);
        let out = `HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${s}-${e}/${SIZE}\r\nTransfer-Encoding: chunked\r\n\r\n`;
        await write(sock, out);
        for (let p = 0; p < body.length; p += 4000) {
          const c = body.subarray(p, p + 4000);
          await write(sock, Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]));
        }
        out = '0\r\n\r\n';
        await write(sock, out);
      };
      assert.deepEqual(await read(200, 20200), DISK.subarray(200, 20200));
      assert.equal(requests.length, 2, 'raw attempt + fallback');
      assert.notEqual(requests[1]!.conn, requests[0]!.conn, 'the raw socket was dropped, not reused with an unread body');
    });

    it('a 200 with the full file for a range is a remote error, not read as the range', async () => {
      reset();
      handler = async (_req, sock) => {
        await write(sock, Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${SIZE}\r\n\r\n`), DISK]));
      };
      const err = await refusal(http.openRange(url, 100, 200));
      assert.equal(err.kind, 'remote');
      assert.match(err.message, /HTTP 200/);
      assert.equal(requests.length, 2);
    });

    it('a 206 with the wrong Content-Length goes to the fallback, which fails the stream', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, `HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${s}-${e}/${SIZE}\r\nContent-Length: ${e - s}\r\n\r\n`);
        await write(sock, DISK.subarray(s, e));
      };
      const stream = await http.openRange(url, 0, 1000);
      const err = await refusal(stream.toArray());
      assert.equal(err.kind, 'data');
    });

    it('401 on the raw path: re-login once through the fallback, the new cookie is used', async () => {
      reset();
      transport.reauthenticate = async (sent) => {
        reauths++;
        assert.equal(sent, 'vmware_soap_session=s1');
        transport.cookie = 'vmware_soap_session=s2';
      };
      handler = async (req, sock) => {
        if (req.headers.get('cookie') !== 'vmware_soap_session=s2') return write(sock, 'HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
        return ok206(req, sock);
      };
      assert.deepEqual(await read(0, 5000), DISK.subarray(0, 5000));
      assert.equal(reauths, 1);
      assert.deepEqual(requests.map((r) => r.headers.get('cookie')), ['vmware_soap_session=s1', 'vmware_soap_session=s1', 'vmware_soap_session=s2']);
      // Next read goes the raw way with the new cookie.
      assert.deepEqual(await read(5000, 6000), DISK.subarray(5000, 6000));
      assert.equal(requests.length, 4);
      assert.equal(reauths, 1);
    });

    it('401 again after the re-login is an auth error, no loop', async () => {
      reset();
      transport.reauthenticate = async () => {
        reauths++;
        transport.cookie = 'vmware_soap_session=s2';
      };
      handler = (_req, sock) => write(sock, 'HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n');
      const err = await refusal(http.openRange(url, 0, 10));
      assert.equal(err.kind, 'auth');
      assert.equal(reauths, 1);
    });
  });

  describe('bad bodies', () => {
    it('an overlong body (more than Content-Length in the same write) is a data error', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, e + 1 + 500)]));
      };
      const stream = await http.openRange(url, 0, 1000);
      const err = await refusal(stream.toArray());
      assert.equal(err.kind, 'data');
      assert.match(err.message, /more than the 1000 bytes/);
    });

    it('overlong bytes arriving after the body: the range is exact, the socket is dropped, the next read works', async () => {
      reset();
      handler = async (req, sock) => {
        await ok206(req, sock);
        if (req.onConn === 0) {
          await sleep(20);
          await write(sock, Buffer.from('GARBAGE-GARBAGE'));
        }
      };
      let result: Buffer | OneswapError;
      try {
        result = await read(0, 1000);
      } catch (err) {
        result = err as OneswapError;
      }
      if (result instanceof OneswapError) assert.equal(result.kind, 'data');
      else assert.deepEqual(result, DISK.subarray(0, 1000));
      await sleep(60);
      assert.deepEqual(await read(1000, 2000), DISK.subarray(1000, 2000));
      assert.notEqual(requests.at(-1)!.conn, requests[0]!.conn, 'a socket that sent stray bytes is not reused');
    });

    it('a body cut mid-way fails the stream with a retryable connection error', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, s + (e - s) / 2)]));
        await sleep(10);
        sock.destroy();
      };
      const stream = await http.openRange(url, 0, 100_000);
      const err = await refusal(stream.toArray());
      assert.equal(err.kind, 'connection');
      assert.match(err.message, /closed the connection after \d+ of 100000 bytes/);
    });

    it('copyExtents with retries recovers from a body cut mid-way (second attempt served fully)', async () => {
      reset();
      let cuts = 0;
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        if (s === 1024 * 1024 && cuts === 0) {
          cuts++;
          await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, s + 300_000)]));
          await sleep(10);
          return void sock.destroy();
        }
        await ok206(req, sock);
      };
      const { data, stats } = await copyAll({ retries: 2 });
      assert.equal(cuts, 1);
      assert.equal(stats.retries, 1);
      assert.equal(sha(data), sha(DISK));
      // The retry resumed where the written part ended (a whole staging buffer of 256 KiB).
      const retried = requests.filter((r) => r.range![0] > 1024 * 1024 && r.range![0] < 2 * 1024 * 1024);
      assert.deepEqual(retried.map((r) => r.range![0]), [1024 * 1024 + 256 * 1024]);
    });

    it('copyExtents without retries reports the cut as a connection error', async () => {
      reset();
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, s + 1000)]));
        await sleep(10);
        sock.destroy();
      };
      const err = await refusal(copyAll({ retries: 0 }));
      assert.equal(err.kind, 'connection');
    });

    it('a stalled body times out with a connection error', async () => {
      reset(200);
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, s + 100)]));
        // then nothing
      };
      const started = Date.now();
      const stream = await http.openRange(url, 0, 10_000);
      const err = await refusal(stream.toArray());
      assert.equal(err.kind, 'connection');
      assert.match(err.message, /stopped sending/);
      assert.ok(Date.now() - started < 2000, 'the stall is detected within a few timeouts');
    });

    it('copyExtents with retries recovers from a stalled body (second attempt served fully)', async () => {
      reset(150);
      let stalls = 0;
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        if (s === 0 && stalls === 0) {
          stalls++;
          return write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, s + 1000)]));
        }
        await ok206(req, sock);
      };
      const { data, stats } = await copyAll({ retries: 2 });
      assert.equal(stalls, 1);
      assert.equal(stats.retries, 1);
      assert.equal(sha(data), sha(DISK));
    });

    it('a server that never answers the head times out with a connection error', async () => {
      reset(200);
      handler = () => undefined;
      const err = await refusal(http.openRange(url, 0, 10));
      assert.equal(err.kind, 'connection');
      assert.match(err.message, /did not answer/);
    });

    it('a stalled body is aborted cleanly by the signal (interrupted)', async () => {
      reset(60_000);
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, s + 100)]));
      };
      const ac = new AbortController();
      const stream: Readable = await http.openRange(url, 0, 10_000, ac.signal);
      setTimeout(() => ac.abort(), 50);
      const err = await refusal(stream.toArray());
      assert.equal(err.kind, 'interrupted');
      await sleep(30);
      assert.equal(open.size, 0, 'the aborted socket is closed, not pooled');
    });

    it('copyExtents on a stalled server stops on the signal and leaves nothing open', async () => {
      reset(60_000);
      handler = async (req, sock) => {
        const [s, e] = req.range!;
        await write(sock, Buffer.concat([Buffer.from(head206(s, e)), DISK.subarray(s, s + 100)]));
      };
      const ac = new AbortController();
      setTimeout(() => ac.abort(new OneswapError('interrupted', 'stopped by the test')), 80);
      const err = await refusal(copyAll({ signal: ac.signal, retries: 3 }));
      assert.equal(err.kind, 'interrupted');
      await sleep(30);
      assert.equal(open.size, 0);
    });
  });
});
