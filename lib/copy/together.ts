// Parallel tasks that succeed or fail as one: the first failure stops the others (through the
// signal each task gets), and nothing is reported until every task has settled, so no task is
// still writing a file, a journal or a log when the caller cleans up after the failure.

import { setMaxListeners } from 'node:events';

/**
 * Runs every task with a signal that aborts when the outer signal does or a task fails; resolves
 * with all results, or rejects with the cause: the outer abort reason, else the first failure
 * that is not merely a sibling being stopped.
 */
export async function together<T>(tasks: readonly ((signal: AbortSignal) => Promise<T>)[], outer: AbortSignal | undefined): Promise<T[]> {
  const stop = new AbortController();
  const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal;
  // Every task listens on it, and so may each request a task has open.
  setMaxListeners(Math.max(10, 4 * tasks.length), signal);
  const results = await Promise.allSettled(
    tasks.map((task) =>
      task(signal).catch((err: unknown) => {
        stop.abort(err);
        throw err;
      }),
    ),
  );
  const reasons = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (reasons.length > 0) {
    if (outer?.aborted) throw outer.reason ?? reasons[0];
    throw reasons.find((r) => !isAbort(r)) ?? reasons[0];
  }
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}
