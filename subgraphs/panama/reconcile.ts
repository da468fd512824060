import { log } from '../../lib/log';
import type { Store } from '../../lib/store';
import { instancesOfRelease, placeInstances, removeInstance } from '../ark';
import { mustGetProduct } from './products';
import { advanceUpgrade } from './upgrades';
import {
  constraintsOf, finishDeletions, getRelease, listReleases, statusOf, unplacedInstances, type Release,
} from './releases';

/**
 * One pass of the release reconciler, run by the periodic tick (and safe to run at any time, twice, or after a crash
 * between any two steps): places releases whose dependencies now run, re-places instances a crash left unplaced,
 * and finishes deletions.
 */
export async function reconcileReleases(store: Store, now = new Date()): Promise<void> {
  for (const release of await listReleases(store)) {
    try {
      await reconcileRelease(store, release, now);
    } catch (err) {
      log.warn({ releaseId: release.id, err: err instanceof Error ? err.message : String(err) }, 'could not reconcile release');
    }
  }
}

async function reconcileRelease(store: Store, release: Release, now: Date) {
  if (release.phase === 'DELETING') {
    for (const instance of await instancesOfRelease(store, release.id)) await removeInstance(store, instance);
    await finishDeletions(store, [release.id]);
    return;
  }
  if (release.phase === 'WAITING') {
    const blocker = await firstBlockingDependency(store, release);
    if (blocker) return note(store, release, blocker);
  }
  const placed = new Set((await instancesOfRelease(store, release.id)).map((i) => i.ordinal));
  const missing = Array.from({ length: release.replicas }, (_, n) => n).filter((n) => !placed.has(n));
  if (missing.length) {
    const product = await mustGetProduct(store, release.product);
    try {
      await placeInstances(store, unplacedInstances(release, product, missing, now), constraintsOf(release), now);
    } catch (err) {
      return note(store, release, `cannot be placed yet: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  await advanceUpgrade(store, (await getRelease(store, release.id)) ?? release, now);
  if (release.phase === 'WAITING' || release.placementError) {
    await store.mutate<Release>('releases', release.id, (r) => r && r.phase !== 'DELETING' ? { ...r, phase: 'ACTIVE', placementError: null } : undefined);
  }
}

async function firstBlockingDependency(store: Store, release: Release): Promise<string | null> {
  for (const id of release.dependsOn) {
    const dependency = await getRelease(store, id);
    if (!dependency || dependency.phase === 'DELETING') return `its dependency ${id} is gone; delete this release or deploy it again`;
    const { status } = await statusOf(store, dependency);
    if (status !== 'RUNNING') return `waiting for ${dependency.name} (${status})`;
  }
  return null;
}

/** Records why the release is not placed, so its status message says so; written only when it changed. */
const note = (store: Store, release: Release, why: string) =>
  store.mutate<Release>('releases', release.id, (r) => r && r.placementError !== why ? { ...r, placementError: why } : undefined);
