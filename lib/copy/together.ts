// Parallel tasks that succeed or fail as one: the first failure stops the others (through the
// signal each task gets), and nothing is reported until every task has settled, so no task is
// still writing a file, a journal or a log when the caller cleans up after the failure.

import { setMaxListeners } from 'node:events';

/**
 * Runs every task with a signal that aborts when the outer signal does or a task fails; resolves
 * with all results, or rejects with the cause: the outer abort reason, else the failure that came
 * first in time. Whatever the stopped siblings throw afterwards (an AbortError, a request that
 * reports itself cancelled) is a consequence, never the cause: a vCenter that dies mid-copy is
 * a lost connection, not an interruption.
 */
export async function together<T>(tasks: readonly ((signal: AbortSignal) => Promise<T>)[], outer: AbortSignal | undefined): Promise<T[]> {
  const stop = new AbortController();
  const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal;
  // Every task listens on it, and so may each request a task has open.
  setMaxListeners(Math.max(10, 4 * tasks.length), signal);
  let first: { readonly reason: unknown } | undefined;
  const results = await Promise.allSettled(
    tasks.map((task) =>
      task(signal).catch((err: unknown) => {
        if (!signal.aborted) first = { reason: err };
        stop.abort(err);
        throw err;
      }),
    ),
  );
  const reasons = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  if (reasons.length > 0) {
    if (outer?.aborted) throw outer.reason ?? reasons[0];
    throw first !== undefined ? first.reason : reasons[0];
  }
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
