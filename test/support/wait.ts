/**
 * Polling with an explicit notion of success, so that a check cannot pass by accident:
 * - `waitUntil` succeeds only when its check returns exactly `true`; anything else it returns (a count, the routes it
 *   saw, a status) means "not yet" and is shown as what it last saw when time runs out;
 * - `waitFor` succeeds when its lookup finds an object (a record, a message, a match), never a bare string or number.
 * Errors thrown by a check count as "not yet" and are shown the same way.
 */
type Seen = boolean | string | number | null | undefined;

export async function waitUntil(what: string, check: () => Promise<Seen>, timeoutMs = 60_000, everyMs = 300): Promise<void> {
  await poll(what, async () => {
    const seen = await check();
    return seen === true ? { done: true, value: undefined } : { done: false, seen };
  }, timeoutMs, everyMs);
}

export async function waitFor<T extends object>(what: string, find: () => Promise<T | null | undefined | false>, timeoutMs = 60_000, everyMs = 300): Promise<T> {
  return poll(what, async () => {
    const found = await find();
    return typeof found === 'object' && found !== null ? { done: true, value: found } : { done: false, seen: found };
  }, timeoutMs, everyMs);
}

async function poll<T>(what: string, attempt: () => Promise<{ done: true; value: T } | { done: false; seen: unknown }>, timeoutMs: number, everyMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = 'nothing (no check finished in time)';
  for (;;) {
    try {
      const result = await attempt();
      if (result.done) return result.value;
      last = result.seen;
    } catch (err) {
      last = err;
    }
    if (Date.now() + everyMs > deadline) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}; last saw: ${describe(last)}`);
}

const describe = (value: unknown) => (value instanceof Error ? `${value.name}: ${value.message}` : value === undefined ? 'undefined' : JSON.stringify(value));
