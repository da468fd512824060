import { config } from './config';
import { ConditionFailed, type Store, type Table, type Versioned } from './store';

/**
 * A claim is one item whose conditional create decides who owns a name, a key or a cause. A holder that crashed
 * before finishing what it claimed for leaves a claim behind; `isStale` says when the holder is known to be gone (what
 * it points at does not exist and the claim is older than a lease), and then the claim is taken over by a
 * conditional delete at the version read, so two takers cannot both win.
 */
export async function claim<T extends { key: string }>(
  store: Store, table: Table, item: T, isStale: (holder: T & Versioned) => Promise<boolean>,
): Promise<{ won: true } | { won: false; holder: T & Versioned }> {
  for (let attempt = 0; attempt < 10; attempt++) {
    if (await store.create(table, item)) return { won: true };
    const holder = await store.get<T & Versioned>(table, item.key);
    if (!holder) continue;
    if (!(await isStale(holder))) return { won: false, holder };
    try {
      await store.remove(table, item.key, holder.seq);
    } catch (err) {
      if (!(err instanceof ConditionFailed)) throw err;
    }
  }
  throw new ConditionFailed(table, item.key);
}

/** Removes the claim if `owns` says it is still ours, by a conditional delete at the version read. */
export async function dropClaim<T>(store: Store, table: Table, key: string, owns: (holder: T) => boolean): Promise<void> {
  const holder = await store.get<T & Versioned>(table, key);
  if (!holder || !owns(holder)) return;
  try {
    await store.remove(table, key, holder.seq);
  } catch (err) {
    if (!(err instanceof ConditionFailed)) throw err;
  }
}

/** A claim whose holder left nothing behind counts as abandoned by a crash once it is older than `claimLeaseSeconds`. */
export const olderThanLease = (claimedAt: string | undefined, now = new Date()) =>
  !claimedAt || now.getTime() - Date.parse(claimedAt) > config().claimLeaseSeconds * 1000;
