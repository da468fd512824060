/**
 * How long a credential found valid is taken as valid without reading it again. A query through the gateway is
 * checked again by every subgraph it calls, and every beat, sync and pushed notice of a runner presents its token:
 * each check would read the store (or verify a signature). A revocation is seen at once by the process that made it
 * (`forget`) and within this time by every other one.
 */
export const VERIFIED_MS = 1_000;

/**
 * Credentials found valid, by the hash of their secret (no secret is kept), for at most VERIFIED_MS each and at most
 * `max` of them (the oldest go first). Refusals are never kept. A check that a revocation overtook (one that began
 * before `forget` and ended after it) is not kept either: take `mark()` before reading, pass it to `remember`.
 */
export class Verified<T> {
  private readonly entries = new Map<string, { value: T; until: number }>();
  private forgotten = 0;

  constructor(private readonly max = 1_000) {}

  get(hash: string, now = Date.now()): T | undefined {
    const hit = this.entries.get(hash);
    if (hit && hit.until > now) return hit.value;
    if (hit) this.entries.delete(hash);
    return undefined;
  }

  mark(): number {
    return this.forgotten;
  }

  /** Keeps the value until `until` (at most VERIFIED_MS from `now`), unless a `forget` came after `mark`. */
  remember(hash: string, value: T, mark: number, now = Date.now(), until = now + VERIFIED_MS): void {
    if (mark !== this.forgotten) return;
    if (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(hash, { value, until: Math.min(until, now + VERIFIED_MS) });
  }

  /** Drops the entries that match, at once; checks under way when this is called are not kept. */
  forget(matches: (value: T, hash: string) => boolean): void {
    this.forgotten++;
    for (const [hash, entry] of this.entries) if (matches(entry.value, hash)) this.entries.delete(hash);
  }
}

/** One cache per store (tests and benches run several stores in one process). */
export function verifiedPerStore<S extends object, T>(max?: number): (store: S) => Verified<T> {
  const caches = new WeakMap<S, Verified<T>>();
  return (store) => {
    let cache = caches.get(store);
    if (!cache) caches.set(store, (cache = new Verified<T>(max)));
    return cache;
  };
}
