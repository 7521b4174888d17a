// Peer processes (simulators, daemons) still running when the test process exits get a signal,
// so a failed or interrupted test leaves none behind.

import type { ChildProcess } from 'node:child_process';

const running = new Map<ChildProcess, NodeJS.Signals>();
let hooked = false;

/** Sends `signal` to `child` when the test process exits while it still runs. */
export function reapOnExit(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  running.set(child, signal);
  child.once('exit', () => running.delete(child));
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const [c, s] of running) c.kill(s);
  });
}
