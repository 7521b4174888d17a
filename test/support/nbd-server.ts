// Real NBD servers on a private Unix socket, for the NBD client and reader tests: nbdkit (memory,
// file, data plugins, the error filter) and qemu-nbd (raw and qcow2 files, persistent so a probe
// connection does not end it). Each call starts its own server; stop() ends only that process.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface NbdServer {
  readonly socket: string;
  readonly process: ChildProcess;
  stderr(): string;
  stop(): Promise<void>;
}

/** `nbdkit --unix SOCK -f <args>`; resolves once the socket accepts connections. */
export function startNbdkit(args: readonly string[]): Promise<NbdServer> {
  return startServer('nbdkit', (socket) => ['--unix', socket, '-f', ...args]);
}

/** `qemu-nbd --socket SOCK --persistent <args>`; resolves once the socket accepts connections. */
export function startQemuNbd(args: readonly string[]): Promise<NbdServer> {
  return startServer('qemu-nbd', (socket) => [`--socket=${socket}`, '--persistent', ...args]);
}

async function startServer(program: string, argv: (socket: string) => string[]): Promise<NbdServer> {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-nbdtest-'));
  const socket = join(dir, 'nbd.sock');
  const args = argv(socket);
  const child = spawn(program, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break;
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(socket);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return { socket, process: child, stderr: () => err, stop };
    await sleep(25);
  }
  await stop();
  throw new Error(`${program} ${args.join(' ')} did not start: ${err}`);
}
