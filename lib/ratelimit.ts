import { AppError } from './errors';
import { store, type Store } from './store';

/**
 * Fixed-window counters, one item per (entry point, principal, kind), so every replica and Lambda instance counts
 * against the same limit: one conditional write per call while the window is open. A refused call writes nothing.
 */
const WINDOW_MS = 60_000;

export async function consume(key: string, perMinute: number, now = Date.now(), db: Store = store()): Promise<void> {
  const refusedUntil = await db.countInWindow('ratelimits', key, perMinute, WINDOW_MS, now);
  if (refusedUntil !== null) {
    const retryAfterSeconds = Math.max(1, Math.ceil((refusedUntil - now) / 1000));
    throw new AppError('RATE_LIMITED', `more than ${perMinute} calls of this kind a minute from this credential: retry in ${retryAfterSeconds} s`, { retryAfterSeconds });
  }
}
