import { badInput, conflict } from '../../lib/errors';
import type { Store } from '../../lib/store';
import * as check from '../../lib/validate';
import {
  containersOfRelease, instancesOfRelease, isFailing, isServing, respecInstance, specHash, type ContainerRecord, type Instance,
} from '../ark';
import { panamaHooks } from './hooks';
import { mustGetProduct, type Product } from './products';
import { getRevision, withNewRevision } from './revisions';
import type { PinnedImage } from '../ark';
import {
  addressesOf, changeBlocked, changeRelease, getRelease, releaseCause, instanceSpec, mustGetRelease, pinVersion, rendered, writeRelease, type Release,
} from './releases';

/**
 * Rolling upgrades and rollbacks as state in the release item, advanced one step per reconcile tick: killing any
 * handler or runner mid-way loses nothing, the next tick carries on where the record stands. A batch is written
 * to the record before its instances get the new spec, so a crash in between cannot skip a batch's health gate.
 */

export type UpgradeState = 'RUNNING' | 'PAUSED' | 'ROLLING_BACK' | 'SUCCEEDED' | 'ROLLED_BACK' | 'FAILED';

export interface UpgradeRecord {
  kind: 'UPGRADE' | 'ROLLBACK';
  state: UpgradeState;
  fromVersion: string;
  toVersion: string;
  maxUnavailable: number;
  healthTimeoutSeconds: number;
  autoRollback: boolean;
  pauseBetweenBatchesSeconds: number;
  /** Instances being replaced now, and since when. */
  batch: string[];
  batchStartedAt: string | null;
  nextBatchAt: string | null;
  /** Instances on the target version and healthy. */
  done: string[];
  startedAt: string;
  finishedAt: string | null;
  message: string | null;
  /** Why it stopped or was rolled back: the health gate that failed. */
  reason?: string | null;
  /** After an automatic rollback: the version that failed its health gate. */
  failedVersion?: string | null;
}

export interface UpgradeStrategy {
  maxUnavailable?: number | null;
  healthTimeoutSeconds?: number | null;
  autoRollback?: boolean | null;
  pauseBetweenBatchesSeconds?: number | null;
}

const ACTIVE: UpgradeState[] = ['RUNNING', 'PAUSED', 'ROLLING_BACK'];
export const isActive = (u: UpgradeRecord | null | undefined) => Boolean(u && ACTIVE.includes(u.state));

const topic = (releaseId: string) => [`release:${releaseId}`];
const progressEvent = (store: Store, release: Release, kind: string, message: string, done: number, severity: 'INFO' | 'WARNING' | 'CRITICAL' = 'INFO', instanceId: string | null = null, now = new Date()) =>
  panamaHooks.emit('event', store, { kind, message, severity, releaseId: release.id, instanceId, topics: topic(release.id), progress: { done, total: release.replicas } }, now);

/**
 * Starts an upgrade (or, with kind ROLLBACK, a return to an earlier version); refused while another one runs. An
 * upgrade pins the target version's image as the registry holds it now; a rollback passes the pin of the revision
 * it returns to, so it gets those very bits back.
 */
export async function startUpgrade(store: Store, id: string, version: string, strategy: UpgradeStrategy = {}, kind: UpgradeRecord['kind'] = 'UPGRADE', now = new Date(), pinned?: PinnedImage): Promise<Release> {
  const release = await mustGetRelease(store, id);
  const product = await mustGetProduct(store, release.product);
  const change = kind === 'UPGRADE' ? 'upgrade' : 'roll back';
  const blocked = changeBlocked(release, change);
  if (blocked) throw conflict(blocked);
  if (release.phase === 'WAITING') throw conflict(`release "${release.name}" is not placed yet (waiting for its dependencies)`);
  if (!product.versions.some((v) => v.version === version)) {
    throw badInput(`product ${product.name} has no version "${version}"; available: ${product.versions.map((v) => v.version).join(', ')}`, 'version');
  }
  if (version === release.version) throw badInput(`release "${release.name}" already runs ${version}`, 'version');
  if (release.replicas === 0) throw badInput(`release "${release.name}" has no instances to upgrade; scale it up first`, 'id');
  const record: UpgradeRecord = {
    kind,
    state: 'RUNNING',
    fromVersion: release.version,
    toVersion: version,
    maxUnavailable: check.intInRange(strategy.maxUnavailable ?? 1, 'strategy.maxUnavailable', 1, release.replicas),
    healthTimeoutSeconds: check.intInRange(strategy.healthTimeoutSeconds ?? 120, 'strategy.healthTimeoutSeconds', 5, 3600),
    autoRollback: kind === 'UPGRADE' && (strategy.autoRollback ?? true),
    pauseBetweenBatchesSeconds: check.intInRange(strategy.pauseBetweenBatchesSeconds ?? 0, 'strategy.pauseBetweenBatchesSeconds', 0, 3600),
    batch: [], batchStartedAt: null, nextBatchAt: null, done: [],
    startedAt: now.toISOString(), finishedAt: null, message: null, reason: null, failedVersion: null,
  };
  const reason = kind === 'UPGRADE' ? `upgrade ${release.version} → ${version}` : `rollback ${release.version} → ${version}`;
  const pin = pinned ?? await pinVersion(product, version);
  const updated = await changeRelease(store, id, change, (r) => {
    const { [version]: _, ...otherDigests } = r.imageDigests ?? {};
    return withNewRevision({
      ...r, version, upgrade: record,
      imageDigests: pin.imageDigest ? { ...otherDigests, [version]: pin.imageDigest } : otherDigests,
    }, { revision: r.revision + 1, version, createdAt: now.toISOString(), reason, ...pin });
  });
  await progressEvent(store, updated, kind === 'UPGRADE' ? 'UPGRADE_STARTED' : 'ROLLBACK_STARTED', `${reason}, ${record.maxUnavailable} at a time`, 0, 'INFO', null, now);
  return updated;
}

export async function rollbackRelease(store: Store, id: string, revision: number, now = new Date()): Promise<Release> {
  const release = await mustGetRelease(store, id);
  const target = await getRevision(store, release, revision);
  if (!target) throw badInput(`release "${release.name}" has no revision ${revision}; it has revisions 1 to ${release.revision}`, 'revision');
  const pinned = target.image ? { image: target.image, imageDigest: target.imageDigest ?? null } : undefined;
  return startUpgrade(store, id, target.version, {}, 'ROLLBACK', now, pinned);
}

export async function setPaused(store: Store, id: string, paused: boolean): Promise<Release> {
  const release = await mustGetRelease(store, id);
  const want = paused ? 'RUNNING' : 'PAUSED';
  if (release.upgrade?.state !== want) throw conflict(`release "${release.name}" has no ${paused ? 'running' : 'paused'} upgrade`);
  return (await store.mutate<Release>('releases', id, (r) => r && r.upgrade?.state === want
    ? { ...r, upgrade: { ...r.upgrade, state: paused ? 'PAUSED' : 'RUNNING' } } : undefined))!;
}

/**
 * Advances the release's upgrade, if it has one in progress, as far as it can go now: a batch that passed its gate
 * is followed by the next one in the same tick. Safe to run twice.
 */
export async function advanceUpgrade(store: Store, release: Release, now = new Date()): Promise<void> {
  // A tick that began before the upgrade did must not date its steps before the upgrade's start (subscribers get
  // events in time order: the first is always UPGRADE_STARTED or ROLLBACK_STARTED).
  const started = Date.parse(release.upgrade?.startedAt ?? '');
  if (started >= now.getTime()) now = new Date(started + 1);
  let current: Release | undefined = release;
  for (let steps = 0; current && steps < 4 && await step(store, current, now); steps++) current = await getRelease(store, release.id);
}

/** One step; true when another step could follow at once (a gate passed, a rollback began). */
async function step(store: Store, release: Release, now: Date): Promise<boolean> {
  const u = release.upgrade;
  if (!u || !isActive(u) || u.state === 'PAUSED') return false;
  const product = await mustGetProduct(store, release.product);
  const [instances, containers] = await Promise.all([instancesOfRelease(store, release.id), containersOfRelease(store, release.id)]);
  const byInstance = new Map(containers.map((c) => [c.instanceId, c]));
  const targetVersion = u.state === 'ROLLING_BACK' ? u.fromVersion : u.toVersion;
  const addresses = addressesOf(instances);
  const target = (i: Instance) => rendered(instanceSpec({ ...release, version: targetVersion }, product, i.ordinal, addresses), addresses);
  const onTarget = (i: Instance) => i.specHash === specHash(target(i).spec);
  const serving = (i: Instance) => { const c = byInstance.get(i.id); return Boolean(c && c.specHash === i.specHash && isServing(c)); };
  const save = (next: Partial<UpgradeRecord>, extra: Partial<Release> = {}) =>
    writeRelease(store, release, { ...release, ...extra, upgrade: { ...u, ...next } });

  if (u.batch.length) {
    const batch = instances.filter((i) => u.batch.includes(i.id));
    for (const i of batch) await respecInstance(store, i.id, target(i)); // finishes a batch a crash interrupted
    // A rollback returns to the version that served before: a failure report while its containers are recreated is
    // no verdict (a rollback is never rolled back); only its health timeout is.
    const failing = u.state === 'ROLLING_BACK' ? undefined
      : batch.map((i) => ({ i, c: byInstance.get(i.id) })).find(({ i, c }) => c && c.specHash === i.specHash && isFailing(c));
    const timedOut = now.getTime() - Date.parse(u.batchStartedAt!) > u.healthTimeoutSeconds * 1000;
    if (batch.every((i) => onTarget(i) && serving(i))) {
      const done = [...new Set([...u.done, ...u.batch])];
      for (const i of batch) await progressEvent(store, release, 'HEALTH_PASSED', `${i.releaseName}-${i.ordinal} is healthy on ${targetVersion}`, done.length, 'INFO', i.id, now);
      await save({ batch: [], batchStartedAt: null, done, nextBatchAt: new Date(now.getTime() + u.pauseBetweenBatchesSeconds * 1000).toISOString() });
      return true;
    }
    if (!failing && !timedOut) return false;
    const why = failing ? `${failing.i.releaseName}-${failing.i.ordinal}: ${describeFailure(failing.c!)}` : `not healthy within ${u.healthTimeoutSeconds}s`;
    await progressEvent(store, release, 'HEALTH_FAILED', `health gate failed on ${targetVersion}: ${why}`, u.done.length, 'WARNING', failing?.i.id ?? null, now);
    if (u.state === 'RUNNING' && u.autoRollback) {
      await save({ state: 'ROLLING_BACK', batch: [], batchStartedAt: null, done: [], message: `rolling back: ${why}`, reason: why, failedVersion: u.toVersion }, { version: u.fromVersion });
      await progressEvent(store, release, 'ROLLBACK_STARTED', `rolling back to ${u.fromVersion}: ${why}`, 0, 'WARNING', null, now);
      await panamaHooks.emit('upgradeRolledBack', store, release, releaseCause(release.id),
        `upgrade of ${release.name} to ${u.toVersion} failed its health gate (${why}); rolled back to ${u.fromVersion}`, now);
      return true;
    }
    await save({ state: 'FAILED', finishedAt: now.toISOString(), message: why, reason: why });
    await progressEvent(store, release, 'UPGRADE_FAILED', `stopped: ${why}`, u.done.length, 'CRITICAL', null, now);
    return false;
  }

  const remaining = instances.filter((i) => !onTarget(i));
  if (!remaining.length) {
    const rolledBack = u.state === 'ROLLING_BACK';
    await save({
      state: rolledBack ? 'ROLLED_BACK' : 'SUCCEEDED', finishedAt: now.toISOString(),
      ...(rolledBack ? { message: `rolled back to ${u.fromVersion}: ${u.failedVersion ?? u.toVersion} failed its health gate (${u.reason})` } : {}),
    },
      rolledBack ? addRevision(release, product, `rolled back to ${u.fromVersion} after a failed upgrade to ${u.toVersion}`, now) : {});
    await progressEvent(store, release, rolledBack ? 'UPGRADE_ROLLED_BACK' : 'UPGRADE_DONE',
      rolledBack ? `back on ${u.fromVersion}` : `all ${instances.length} instances on ${u.toVersion}`, instances.length, rolledBack ? 'WARNING' : 'INFO', null, now);
    return false;
  }
  if (u.nextBatchAt && Date.parse(u.nextBatchAt) > now.getTime()) return false;
  // Rolling back takes every changed instance at once: they are the ones that failed or may fail.
  const alreadyDown = instances.filter((i) => onTarget(i) && !serving(i)).length;
  const size = u.state === 'ROLLING_BACK' ? remaining.length : u.maxUnavailable - alreadyDown;
  if (size <= 0) return false;
  const next = remaining.slice(0, size);
  await save({ batch: next.map((i) => i.id), batchStartedAt: now.toISOString() });
  for (const i of next) {
    await respecInstance(store, i.id, target(i));
    await progressEvent(store, release, 'INSTANCE_REPLACED', `${i.releaseName}-${i.ordinal} → ${targetVersion}`, u.done.length, 'INFO', i.id, now);
  }
  return false;
}

const describeFailure = (c: ContainerRecord) => c.error ?? `${c.state.toLowerCase()}${c.health === 'UNHEALTHY' ? ', unhealthy' : ''}`;

/** The revision an automatic rollback ends with: the version it returned to, with that version's pin. */
const addRevision = (r: Release, product: Product, reason: string, now: Date, version = r.version) => {
  const digest = r.imageDigests?.[version] ?? null;
  const image = product.versions.find((v) => v.version === version)?.image;
  return withNewRevision(r, { revision: r.revision + 1, version, createdAt: now.toISOString(), reason, ...(image ? { image, imageDigest: digest } : {}) });
};
