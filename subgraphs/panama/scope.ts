import type { Scope } from '../../lib/auth';
import type { Store } from '../../lib/store';
import { getRelease, listReleases, releaseVisible } from './releases';

/**
 * What a key scoped to some products and releases may read of Panama's: the releases it names, the releases of the
 * products it names, and the products of both. Butler asks the same of alarms and events, which name a release only.
 */

/** Whether the release lies in the scope; null when it does not exist and the scope does not name it. */
export async function releaseInScope(store: Store, scope: Scope, id: string): Promise<boolean | null> {
  if (scope.releases.includes(id)) return true;
  const release = await getRelease(store, id);
  return release ? scope.products.includes(release.product) : null;
}

/** The ids of the releases the scope reads, among those that exist now and those it names. */
export async function releasesInScope(store: Store, scope: Scope): Promise<Set<string>> {
  const releases = await listReleases(store);
  return new Set([...scope.releases, ...releases.filter((r) => scope.products.includes(r.product)).map((r) => r.id)]);
}

export { releaseVisible };

/** The products the scope reads: those it names, and those its releases run. */
export async function productsInScope(store: Store, scope: Scope): Promise<Set<string>> {
  const named = await Promise.all(scope.releases.map((id) => getRelease(store, id)));
  return new Set([...scope.products, ...named.flatMap((r) => (r ? [r.product] : []))]);
}
