// Waiting for vSphere tasks. Real vCenter runs them asynchronously (snapshot consolidation can take
// hours); vcsim finishes before the first poll, which must not make the loop optional.

import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError } from '../errors/index.js';
import type { PropertyCollector } from './property-collector.js';
import { readLocalizedFault } from './soap-envelope.js';
import type { MoRef } from './types.js';
import { describeFault, VimFaultError } from './vim-fault.js';
import { text, type VimValue } from './vim-value.js';

export interface TaskWait {
  /** What the task does, for messages: "CreateSnapshot_Task on VM web01". */
  readonly what: string;
  /** Overall bound; the task keeps running in vCenter after it. */
  readonly timeoutMs: number;
  readonly firstPollMs?: number;
  readonly maxPollMs?: number;
  readonly signal?: AbortSignal;
}

/** Polls Task.info until success (returns info.result) or error (throws the task's fault). */
export async function waitForTask(pc: PropertyCollector, task: MoRef, wait: TaskWait): Promise<VimValue | undefined> {
  const deadline = Date.now() + wait.timeoutMs;
  // Short first sleeps: a snapshot of a stopped VM takes about a second, and in a cutover every
  // tenth of a second the poll oversleeps is downtime.
  let delay = wait.firstPollMs ?? 50;
  const maxDelay = wait.maxPollMs ?? 2000;
  for (;;) {
    const props = await pc.retrieveOne(task, ['info.state', 'info.result', 'info.error']);
    const state = text(props.get('info.state'));
    if (state === 'success') return props.get('info.result');
    if (state === 'error') {
      const fault = readLocalizedFault(props.get('info.error')) ?? { type: 'TaskFailed', message: '', detail: undefined };
      throw new VimFaultError(`${wait.what} failed: ${describeFault(fault)}`, fault);
    }
    if (Date.now() >= deadline) {
      throw new OneswapError('remote', `${wait.what} is still ${state ?? 'pending'} after ${Math.round(wait.timeoutMs / 1000)} s (task ${task.value}); it goes on in vCenter: check its Recent Tasks before retrying`);
    }
    if (wait.signal?.aborted) throw new OneswapError('interrupted', `stopped waiting for ${wait.what} (task ${task.value}); it goes on in vCenter`);
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
    delay = Math.min(maxDelay, Math.ceil(delay * 1.5));
  }
}
