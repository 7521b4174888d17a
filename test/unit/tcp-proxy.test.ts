// The counting proxy between the tests' clients and the vCenter simulator: what it passes on must
// arrive whole, however slowly the client reads.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTcpProxy } from '../peers/net/tcp-proxy.js';

test('tcp proxy: a body the server sent whole and closed after arrives whole at a client that reads only later', async () => {
  // More than the kernel buffers between proxy and client hold: the rest waits in the proxy.
  const total = 64 * 1024 * 1024;
  const server = createServer((s: Socket) => s.end(Buffer.alloc(total, 7)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = await startTcpProxy((server.address() as { port: number }).port);
  // Paced, the proxy writes on without waiting for the client: the queue a slow reader makes, large.
  proxy.faults = { throttleBytesPerSecond: 1024 * 1024 * 1024 };
  const served = once(server, 'connection').then(([s]) => once(s as Socket, 'close'));
  const client = connect(proxy.port, '127.0.0.1');
  client.pause();
  try {
    await served;
    // The server has closed; the proxy has the whole body once it counted it, then its end.
    while (proxy.counters.down < total) await sleep(10);
    await sleep(200);
    let received = 0;
    client.on('data', (d: Buffer) => (received += d.length));
    client.resume();
    await once(client, 'close');
    assert.equal(received, total);
  } finally {
    client.destroy();
    await proxy.close();
    server.close();
  }
});
