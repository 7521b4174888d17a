// A TCP proxy on 127.0.0.1 for tests and benchmarks: counts the bytes each way (TLS passes through
// untouched), and can throttle or cut connections to make network faults happen on purpose.

import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ProxyFaults {
  /** Cut every new connection after it has carried this many bytes towards the client. */
  cutAfterBytes?: number;
  /** Only the first N connections that reach cutAfterBytes are cut. */
  cutCount?: number;
  /** Bytes per second towards the client, per connection. */
  throttleBytesPerSecond?: number;
}

export interface TcpProxy {
  readonly port: number;
  /** Bytes sent from the upstream to clients, and from clients upstream. */
  readonly counters: { down: number; up: number; connections: number; cuts: number };
  faults: ProxyFaults;
  /**
   * The upstream dies, as a vCenter that is killed: every open connection is dropped and new ones
   * are refused (ECONNREFUSED) until up().
   */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  reset(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(upstreamPort: number, upstreamHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const counters = { down: 0, up: 0, connections: 0, cuts: 0 };
  const proxy: { faults: ProxyFaults } = { faults: {} };

  const server: Server = createServer((client) => {
    counters.connections++;
    const upstream = connect(upstreamPort, upstreamHost);
    sockets.add(client);
    sockets.add(upstream);
    const cutAt = proxy.faults.cutAfterBytes;
    let carried = 0;
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (d: Buffer) => {
      counters.up += d.length;
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      carried += d.length;
      counters.down += d.length;
      const rate = proxy.faults.throttleBytesPerSecond;
      if (cutAt !== undefined && carried > cutAt && (proxy.faults.cutCount === undefined || counters.cuts < proxy.faults.cutCount)) {
        counters.cuts++;
        close();
        return;
      }
      const ok = client.write(d);
      if (rate) {
        upstream.pause();
        setTimeout(() => upstream.resume(), (d.length * 1000) / rate);
      } else if (!ok) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
    // An end passes on as an end, after what is still queued for that side: destroying the client
    // when the upstream closed dropped the queue, and a client reading slowly lost the end of a
    // body the server had sent whole (an export stream "closed after 6422528 of 6472192 bytes").
    upstream.on('end', () => client.end());
    client.on('end', () => upstream.end());
    // Gone for good (an error, a reset, or both ends done): the other side goes too.
    client.on('close', close);
    upstream.on('close', (hadError) => {
      if (hadError) close();
    });
    client.on('error', close);
    upstream.on('error', close);
  });
  const listen = (port: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  const dropAll = (): void => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    port: address.port,
    counters,
    get faults() {
      return proxy.faults;
    },
    set faults(f: ProxyFaults) {
      proxy.faults = f;
    },
    down: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        dropAll();
      }),
    up: () => listen(address.port),
    reset() {
      counters.down = 0;
      counters.up = 0;
      counters.connections = 0;
      counters.cuts = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        dropAll();
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  };
}
