// A TCP proxy on 127.0.0.1 for tests and benchmarks: counts the bytes each way (TLS passes through
// untouched), and can throttle or cut connections to make network faults happen on purpose.

import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ProxyFaults {
  /** Cut every new connection after it has carried this many bytes towards the client. */
  cutAfterBytes?: number;
  /** Only the first N connections that reach cutAfterBytes are cut. */
  cutCount?: number;
  /** Refuse (close at once) all new connections. */
  refuse?: boolean;
  /** Bytes per second towards the client, per connection. */
  throttleBytesPerSecond?: number;
}

export interface TcpProxy {
  readonly port: number;
  /** Bytes sent from the upstream to clients, and from clients upstream. */
  readonly counters: { down: number; up: number; connections: number; cuts: number };
  faults: ProxyFaults;
  reset(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(upstreamPort: number, upstreamHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const counters = { down: 0, up: 0, connections: 0, cuts: 0 };
  const proxy: { faults: ProxyFaults } = { faults: {} };

  const server: Server = createServer((client) => {
    counters.connections++;
    if (proxy.faults.refuse) {
      client.destroy();
      return;
    }
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
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    port: address.port,
    counters,
    get faults() {
      return proxy.faults;
    },
    set faults(f: ProxyFaults) {
      proxy.faults = f;
    },
    reset() {
      counters.down = 0;
      counters.up = 0;
      counters.connections = 0;
      counters.cuts = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
