import { AppError } from './errors';
import { ConditionFailed, store, type Store, type Versioned } from './store';

/**
 * Fixed-window counters, one item per (entry point, principal, kind), so every replica and Lambda instance counts
 * against the same limit. A refused call writes nothing.
 */
interface Window extends Versioned {
  key: string;
  windowStart: number;
  count: number;
}

const WINDOW_MS = 60_000;

export async function consume(key: string, perMinute: number, now = Date.now(), db: Store = store()): Promise<void> {
  let refusedUntil = 0;
  // A counter so hot that every attempt lost its race is a busy principal, not an abusive one by proof: the call goes
  // on uncounted rather than failing (the limit is a guard, the caller's work is the point).
  await db.mutate<Window>('ratelimits', key, (current) => {
    refusedUntil = 0;
    if (!current || now >= current.windowStart + WINDOW_MS) return { key, windowStart: now, count: 1 };
    if (current.count >= perMinute) {
      refusedUntil = current.windowStart + WINDOW_MS;
      return undefined;
    }
    return { ...current, count: current.count + 1 };
  }).catch((err) => {
    if (!(err instanceof ConditionFailed)) throw err;
  });
  if (refusedUntil) {
    const retryAfterSeconds = Math.max(1, Math.ceil((refusedUntil - now) / 1000));
    throw new AppError('RATE_LIMITED', `more than ${perMinute} calls of this kind a minute from this credential: retry in ${retryAfterSeconds} s`, { retryAfterSeconds });
  }
}
