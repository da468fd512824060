import { ConditionFailed, type Store } from '../lib/store';

/**
 * A lease in the store: one item per name in the `leases` table, held by one replica until `until` (epoch ms).
 * Taking or renewing it is a single conditional write at the version that was read (lib/store's `mutate`), so of
 * N replicas that try at once exactly one wins; the others see a live lease of someone else and step back. Expiry is
 * judged by the clock of the replica that reads the item: a holder that dies is replaced once its lease runs out.
 */

export const LEASES_TABLE = 'leases' as const;

export interface Lease {
  id: string;
  holder: string;
  until: number;
  seq: number;
}

const key = (name: string) => `lease#${name}`;

/** Takes the lease or renews it for `ttlMs`; false when another holder's lease is still live. */
export async function holdLease(store: Store, name: string, holder: string, ttlMs: number, now = Date.now): Promise<boolean> {
  try {
    const lease = await store.mutate<Lease>(LEASES_TABLE, key(name), (current) =>
      current && current.holder !== holder && current.until > now() ? undefined : { id: key(name), holder, until: now() + ttlMs }, 3);
    return lease?.holder === holder;
  } catch (err) {
    // Lost the race to another replica three times over: it holds the lease.
    if (err instanceof ConditionFailed) return false;
    throw err;
  }
}

/** Gives the lease up (if still ours), so another replica takes it at once instead of after it expires. */
export async function releaseLease(store: Store, name: string, holder: string): Promise<void> {
  const current = await store.get<Lease>(LEASES_TABLE, key(name));
  if (current?.holder !== holder) return;
  try {
    await store.remove(LEASES_TABLE, key(name), current.seq);
  } catch (err) {
    if (!(err instanceof ConditionFailed)) throw err;
  }
}
