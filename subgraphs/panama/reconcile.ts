import { log } from '../../lib/log';
import type { Store } from '../../lib/store';
import { checkLedger, forgetLostContainers, instancesOfRelease, listInstances, placeInstances, removeInstance, respecInstance, type Instance } from '../ark';
import { mustGetProduct, type Product } from './products';
import { advanceUpgrade, isActive } from './upgrades';
import {
  constraintsOf, desiredSpec, finishDeletions, getRelease, listReleases, statusOf, unplacedInstances, type Release,
} from './releases';

/**
 * One pass of the release reconciler, run by the periodic tick (and safe to run at any time, twice, or after a crash
 * between any two steps): converges every release, then removes instances whose release is gone (a refused deploy
 * undone while a reconcile placed, a crash mid-way), then repairs the hosts' books: what a placement or removal
 * killed between its two writes left held on a host is freed once it is older than a placement takes.
 */
export async function reconcileReleases(store: Store, now = new Date()): Promise<void> {
  const releases = await listReleases(store);
  for (const release of releases) {
    try {
      await reconcileRelease(store, release.id, now);
    } catch (err) {
      log.warn({ releaseId: release.id, err: err instanceof Error ? err.message : String(err) }, 'could not reconcile release');
    }
  }
  const known = new Set(releases.map((r) => r.id));
  for (const instance of await listInstances(store)) {
    // An instance is written after its release, so a release absent now (read again) is gone for good.
    if (known.has(instance.releaseId) || await getRelease(store, instance.releaseId)) continue;
    log.info({ instanceId: instance.id, releaseId: instance.releaseId }, 'removing an instance whose release is gone');
    await removeInstance(store, instance);
  }
  for (const drift of await checkLedger(store, true)) log.warn({ ...drift }, 'host books drifted from its instances');
}

/**
 * Makes the instances of one release what its desired state says, level-triggered: removes those above the count,
 * places the missing ones, gives the others the spec the release implies (outside an upgrade, which moves them
 * batch by batch itself), advances an upgrade, and finishes a deletion. Every mutation of a release runs it at once;
 * the tick runs it for every release.
 */
export async function reconcileRelease(store: Store, id: string, now = new Date()): Promise<void> {
  const release = await getRelease(store, id);
  if (!release) return;
  if (release.phase === 'DELETING') {
    for (const instance of await instancesOfRelease(store, release.id)) await removeInstance(store, instance);
    // A DOWN host's runner cannot report its containers gone: the deletion does not wait for it.
    await forgetLostContainers(store, release.id);
    await finishDeletions(store, [release.id]);
    return;
  }
  if (release.phase === 'WAITING') {
    const blocker = await firstBlockingDependency(store, release);
    if (blocker) return void await note(store, release, blocker);
  }
  const product = await mustGetProduct(store, release.product);
  const instances = await instancesOfRelease(store, release.id);
  // Read after the instances: every instance listed was wanted by this version of the release or an older one, so a
  // racing scale-up's new instances are never taken for extras.
  const latest = await getRelease(store, release.id);
  if (!latest || latest.phase !== release.phase) return;
  await converge(store, latest, product, instances, now);
}

async function converge(store: Store, release: Release, product: Product, instances: Instance[], now: Date) {
  for (const extra of instances.filter((i) => i.ordinal >= release.replicas).reverse()) await removeInstance(store, extra);
  const placed = new Set(instances.map((i) => i.ordinal));
  const missing = Array.from({ length: release.replicas }, (_, n) => n).filter((n) => !placed.has(n));
  let placementError: string | null = null;
  if (missing.length) {
    try {
      await placeInstances(store, unplacedInstances(release, product, missing, now), constraintsOf(release), now);
    } catch (err) {
      placementError = `cannot be placed yet: ${err instanceof Error ? err.message : String(err)}`;
    }
    const after = await getRelease(store, release.id);
    // Deleted or discarded while this placed: what it placed goes too (the next pass, or the sweep, finishes it).
    if (!after || after.phase === 'DELETING') {
      for (const instance of await instancesOfRelease(store, release.id)) await removeInstance(store, instance);
      return;
    }
  }
  if (!isActive(release.upgrade)) {
    for (const instance of instances.filter((i) => i.ordinal < release.replicas)) {
      await respecInstance(store, instance.id, desiredSpec(release, product, instance));
    }
  }
  await advanceUpgrade(store, (await getRelease(store, release.id)) ?? release, now);
  if (placementError) return void await note(store, release, placementError);
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
