import { log } from '../../lib/log';
import type { Store } from '../../lib/store';
import {
  checkLedger, containersOfRelease, forgetLostContainers, instancesOfRelease, isServing, listInstances, placeInstances, removeInstance, respecInstance,
  specHash, type Instance,
} from '../ark';
import { panamaHooks } from './hooks';
import { mustGetProduct, type Product } from './products';
import { advanceUpgrade, isActive } from './upgrades';
import {
  addressesOf, constraintsOf, desiredSpec, finishDeletions, getRelease, listReleases, renderAtPlacement, rendered, statusOf, unplacedInstances,
  type Addresses, type Release,
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
      await placeInstances(store, unplacedInstances(release, product, missing, now), constraintsOf(release), now, renderAtPlacement(release, product));
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
    // Read again when some were placed: the others' files may name the new ones' addresses.
    const current = missing.length ? await instancesOfRelease(store, release.id) : instances;
    await respec(store, release, product, current.filter((i) => i.ordinal < release.replicas), now);
  }
  await advanceUpgrade(store, (await getRelease(store, release.id)) ?? release, now);
  if (placementError) return void await note(store, release, placementError);
  if (release.phase === 'WAITING' || release.placementError) {
    await store.mutate<Release>('releases', release.id, (r) => r && r.phase !== 'DELETING' ? { ...r, phase: 'ACTIVE', placementError: null } : undefined);
  }
}

/**
 * Gives the instances the spec the release implies now. A change of the release (env, replicas, product) reaches
 * every instance at once, as it always has. A change that comes only from a peer's new address (it moved to
 * another host) is rolled out like an upgrade batch of one: an instance is re-created only while every instance of
 * the release serves at its spec, so at most one is away at a time, the member that moved included (its peers
 * wait until it serves on its new host). Files that never write `ip` do not change, so nothing is re-created.
 */
async function respec(store: Store, release: Release, product: Product, instances: Instance[], now: Date): Promise<void> {
  const addresses = addressesOf(instances);
  const stale = instances.map((i) => ({ i, spec: desiredSpec(release, product, i, addresses) })).filter(({ i, spec }) => specHash(spec) !== i.specHash);
  const peerMoved = stale.filter(({ i }) => onlyPeersMoved(release, product, i));
  for (const { i, spec } of stale) if (!peerMoved.some((p) => p.i === i)) await respecInstance(store, i.id, rendered(spec, addresses));
  if (!peerMoved.length) return;
  const containers = new Map((await containersOfRelease(store, release.id)).map((c) => [c.instanceId, c]));
  const serving = (i: Instance) => { const c = containers.get(i.id); return Boolean(c && c.specHash === i.specHash && isServing(c)); };
  const away = instances.filter((i) => !serving(i));
  if (away.length) return;
  const { i, spec } = peerMoved[0];
  await respecInstance(store, i.id, rendered(spec, addresses));
  await panamaHooks.emit('event', store, {
    kind: 'PEER_ADDRESS_CHANGED', severity: 'INFO', releaseId: release.id, instanceId: i.id, topics: [`release:${release.id}`],
    message: `${i.releaseName}-${i.ordinal} re-created: its config files name ${movedPeers(i, addresses).join(', ')} at a new address`
      + `${peerMoved.length > 1 ? ` (${peerMoved.length - 1} more to follow, one at a time)` : ''}`,
  }, now);
}

/** Whether the instance's spec differs from what it should be only by the addresses of its peers. */
function onlyPeersMoved(release: Release, product: Product, instance: Instance): boolean {
  if (!instance.renderedIps) return false;
  const before: Addresses = new Map([...Object.entries(instance.renderedIps), [instance.id, instance.ip ?? null]]);
  return specHash(desiredSpec(release, product, instance, before)) === instance.specHash;
}

const movedPeers = (instance: Instance, addresses: Addresses) => [...addresses]
  .filter(([id, ip]) => id !== instance.id && (instance.renderedIps?.[id] ?? null) !== ip)
  .map(([id, ip]) => `${instance.releaseName}-${id.slice(id.lastIndexOf('-') + 1)} (${ip ?? 'no address'})`);

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
