import semver from 'semver';
import { badInput, conflict, notFound } from '../../lib/errors';
import { newId } from '../../lib/ids';
import type { Store, Versioned } from '../../lib/store';
import { config } from '../../lib/config';
import type { PullProgress } from '../../lib/runner-protocol';
import * as check from '../../lib/validate';
import { mergeSealed, sealAll, type SealedVar } from '../../lib/secrets';
import {
  instanceId, instancesOfRelease, placeInstances, removeInstance, respecInstance, type ContainerSpec, type Instance, type PlacementConstraints, type UnplacedInstance,
} from '../ark/instances';
import { pinImage, type PinnedImage } from '../ark/images';
import { containersOfRelease, isFailing, isServing, type ContainerRecord } from '../butler/status';
import { resolveDependencies } from './dependencies';
import { renderTemplates, templateContext } from './templates';
import type { UpgradeRecord } from './upgrades';
import { latestVersion, listProducts, mustGetProduct, type Product } from './products';

export type ReleaseStatus = 'PENDING' | 'DEPLOYING' | 'RUNNING' | 'DEGRADED' | 'UPGRADING' | 'ROLLING_BACK' | 'FAILED' | 'DELETING';

export interface Revision {
  revision: number;
  version: string;
  createdAt: string;
  reason: string;
  /** What the revision runs: the image and the digest it was pinned to (absent on revisions older than pinning). */
  image?: string;
  imageDigest?: string | null;
}

export interface Release extends Versioned {
  id: string;
  name: string;
  product: string;
  version: string;
  replicas: number;
  resources: check.Resources;
  placement: { requiredLabels: check.Label[]; exclusive: boolean; spreadBy: string | null; strategy: 'SPREAD' | 'BINPACK' };
  env: { name: string; value: string }[];
  /** Sealed (lib/secrets.ts): the product's default secrets merged with the deploy's; only names are returned. */
  secretEnv?: SealedVar[];
  revision: number;
  revisions: Revision[];
  /** Version → the digest its image was pinned to in the platform registry; every instance spec uses these. */
  imageDigests?: Record<string, string>;
  /** Releases that must be RUNNING before this one is placed. */
  dependsOn: string[];
  /**
   * WAITING for its dependencies (nothing placed yet), ACTIVE, or DELETING once deleteRelease was called. The
   * status a user sees is derived from this and from what the runners report.
   */
  phase: 'WAITING' | 'ACTIVE' | 'DELETING';
  /** Why the reconciler could not place it last time, while WAITING. */
  placementError: string | null;
  /** The upgrade or rollback in progress, or the last one. */
  upgrade?: UpgradeRecord | null;
  createdAt: string;
  idempotencyKey: string | null;
}

export interface DeployInput {
  name: string;
  product: string;
  version?: string | null;
  replicas?: number | null;
  resources?: check.Resources | null;
  placement?: { requiredLabels?: check.Label[] | null; exclusive?: boolean | null; spreadBy?: string | null; strategy?: 'SPREAD' | 'BINPACK' | null } | null;
  env?: { name: string; value: string }[] | null;
  /** Write-only: sealed at once, handed only to the runners of the release's instances. */
  secretEnv?: { name: string; value: string }[] | null;
  withDependencies?: boolean | null;
  idempotencyKey?: string | null;
}

export const MAX_REPLICAS = 100;
const ordinalsUpTo = (n: number) => Array.from({ length: n }, (_, i) => i);
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;

const mergeEnv = (product: Product, env: DeployInput['env']) => {
  const merged = new Map(product.defaults.env.map((e) => [e.name, e.value]));
  for (const e of check.envVars(env, 'env')) merged.set(e.name, e.value);
  return [...merged].map(([name, value]) => ({ name, value }));
};

/** A name that is secret anywhere (product default or deploy) is secret: it leaves the plain env. */
const withSecrets = (env: Release['env'], ...secretLists: (SealedVar[] | undefined)[]) => {
  const secretEnv = mergeSealed(...secretLists);
  const names = new Set(secretEnv.map((v) => v.name));
  return { env: env.filter((e) => !names.has(e.name)), secretEnv };
};

/** Validates a deploy request against its product; throws before anything is written. */
export function releaseFromInput(input: DeployInput, product: Product, id: string, now: Date): Omit<Release, 'seq'> {
  const name = check.dnsLabel(input.name, 'name', 40);
  const version = input.version ?? latestVersion(product).version;
  if (!product.versions.some((v) => v.version === version)) {
    throw badInput(`product ${product.name} has no version "${version}"; available: ${product.versions.map((v) => v.version).join(', ')}`, 'version');
  }
  if (input.idempotencyKey !== undefined && input.idempotencyKey !== null && !/^[A-Za-z0-9._:-]{8,128}$/.test(input.idempotencyKey)) {
    throw badInput('idempotencyKey must be 8-128 letters, digits, ".", "_", ":" or "-"', 'idempotencyKey');
  }
  const spreadBy = input.placement?.spreadBy ?? null;
  if (spreadBy !== null && !LABEL_KEY.test(spreadBy)) throw badInput(`placement.spreadBy "${spreadBy}" is not a label key`, 'placement.spreadBy');
  return {
    id,
    name,
    product: product.name,
    version,
    replicas: check.intInRange(input.replicas ?? product.defaults.replicas, 'replicas', 0, MAX_REPLICAS),
    resources: check.resources(input.resources ?? product.defaults.resources, 'resources'),
    placement: {
      requiredLabels: check.labels(input.placement?.requiredLabels, 'placement.requiredLabels'),
      exclusive: Boolean(input.placement?.exclusive) || product.requiresExclusiveHosts,
      spreadBy,
      strategy: input.placement?.strategy ?? 'SPREAD',
    },
    ...withSecrets(mergeEnv(product, input.env), product.defaults.secretEnv, sealAll(check.envVars(input.secretEnv, 'secretEnv'))),
    revision: 1,
    revisions: [{ revision: 1, version, createdAt: now.toISOString(), reason: 'deploy' }],
    dependsOn: [],
    phase: 'ACTIVE',
    placementError: null,
    createdAt: now.toISOString(),
    idempotencyKey: input.idempotencyKey ?? null,
  };
}

export const domainName = (releaseName: string, ordinal: number) => `${releaseName}-${ordinal}.${releaseName}.${config().dnsZone}`;

/** The container of one instance; its config files are rendered for its ordinal and the release's peers. */
export function instanceSpec(release: Pick<Release, 'id' | 'name' | 'version' | 'replicas' | 'resources' | 'env' | 'secretEnv' | 'imageDigests'>, product: Product, ordinal: number): ContainerSpec {
  const image = product.versions.find((v) => v.version === release.version)!.image;
  const imageDigest = release.imageDigests?.[release.version];
  const peers = ordinalsUpTo(Math.max(release.replicas, ordinal + 1))
    .map((n) => ({ id: instanceId(release.id, n), ordinal: n, domainName: domainName(release.name, n) }));
  return {
    image,
    // Absent rather than null when unpinned, so that specs written before pinning keep their hash.
    ...(imageDigest ? { imageDigest } : {}),
    env: release.env,
    ...(release.secretEnv?.length ? { secretEnv: release.secretEnv } : {}),
    ports: product.defaults.ports,
    cpuMillis: release.resources.cpuMillis,
    memoryMb: release.resources.memoryMb,
    healthcheck: product.defaults.healthcheck,
    configFiles: product.configTemplates.length ? renderTemplates(product.configTemplates, templateContext(release, product, peers, ordinal)) : [],
    ...(product.defaults.dataPath ? { dataPath: product.defaults.dataPath } : {}),
    ...(product.defaults.lifecycle ? { lifecycle: product.defaults.lifecycle } : {}),
  };
}

export function unplacedInstances(release: Omit<Release, 'seq'>, product: Product, ordinals: number[], now: Date): UnplacedInstance[] {
  return ordinals.map((ordinal) => ({
    id: instanceId(release.id, ordinal),
    releaseId: release.id,
    releaseName: release.name,
    product: product.name,
    ordinal,
    domainName: domainName(release.name, ordinal),
    desiredState: 'RUNNING',
    spec: instanceSpec(release, product, ordinal),
    createdAt: now.toISOString(),
  }));
}

/** Gives every instance the spec the release now implies (after a config change or a change of peers). */
async function respecAll(store: Store, release: Release, product: Product) {
  for (const instance of await instancesOfRelease(store, release.id)) {
    await respecInstance(store, instance.id, { ...instanceSpec(release, product, instance.ordinal), ...(instance.spec.generation ? { generation: instance.spec.generation } : {}) });
  }
}

export const constraintsOf = (release: Pick<Release, 'placement'>): PlacementConstraints => release.placement;


/**
 * Creates a release and places its instances. With dependencies, the ones without a suitable release are deployed
 * too (dependencies first) and every release waits, PENDING, until what it depends on runs; the reconciler then
 * places it. Names are claimed first (two deploys of one name cannot both win) and every step is undone when one
 * fails, so a rejected deploy leaves nothing behind. A retry with the same idempotency key returns the first release.
 */
export async function deploy(store: Store, input: DeployInput, now = new Date()): Promise<Release> {
  if (input.idempotencyKey) {
    const earlier = await store.get<{ releaseId: string }>('claims', `deploy-key#${input.idempotencyKey}`);
    if (earlier) {
      const release = await getRelease(store, earlier.releaseId);
      if (release && release.name !== input.name) throw conflict(`idempotencyKey "${input.idempotencyKey}" was already used to deploy release "${release.name}"`);
      if (release) return release;
    }
  }
  const product = await mustGetProduct(store, input.product);
  const main = releaseFromInput(input, product, newId('r'), now);
  const plan = product.dependencies.length
    ? await planDependencies(store, main, input.withDependencies ?? false, now)
    : [{ release: main, product }];

  // Pinned before anything is written: an image the registry lacks refuses the deploy and leaves nothing behind.
  for (const entry of plan) entry.release = withPin(entry.release, await pinVersion(entry.product, entry.release.version));
  const written: Omit<Release, 'seq'>[] = [];
  try {
    for (const { release, product: p } of plan) {
      await claimName(store, release);
      written.push(release);
      if (release.idempotencyKey) await store.create('claims', { key: `deploy-key#${release.idempotencyKey}`, releaseId: release.id });
      await store.create('releases', release);
      if (release.phase === 'ACTIVE') {
        await placeInstances(store, unplacedInstances(release, p, ordinalsUpTo(release.replicas), now), constraintsOf(release), now);
      }
    }
  } catch (err) {
    for (const release of written.reverse()) await discard(store, release);
    throw err;
  }
  return (await getRelease(store, main.id))!;
}

/** The image of a product version, pinned to its digest in the platform registry now. */
export const pinVersion = (product: Product, version: string): Promise<PinnedImage> =>
  pinImage(product.versions.find((v) => v.version === version)!.image);

/** A new release records the pin of its version, in its first revision too. */
const withPin = (release: Omit<Release, 'seq'>, pin: PinnedImage): Omit<Release, 'seq'> => ({
  ...release,
  imageDigests: pin.imageDigest ? { [release.version]: pin.imageDigest } : {},
  revisions: release.revisions.map((r) => ({ ...r, ...pin })),
});

async function claimName(store: Store, release: Pick<Release, 'id' | 'name'>) {
  const key = `release-name#${release.name}`;
  if (await store.create('claims', { key, releaseId: release.id })) return;
  const other = await store.get<{ releaseId: string }>('claims', key);
  throw conflict(`a release named "${release.name}" already exists (${other?.releaseId}); delete it first or choose another name`);
}

/** Undoes a deploy step by step; each step is harmless when the thing it removes was never written. */
async function discard(store: Store, release: Omit<Release, 'seq'>) {
  for (const instance of await instancesOfRelease(store, release.id)) await removeInstance(store, instance);
  await store.remove('releases', release.id);
  if (release.idempotencyKey) await store.remove('claims', `deploy-key#${release.idempotencyKey}`);
  const claim = await store.get<{ releaseId: string }>('claims', `release-name#${release.name}`);
  if (claim?.releaseId === release.id) await store.remove('claims', `release-name#${release.name}`);
}

/**
 * The releases to write for a product with dependencies: an existing release of a dependency is used when its
 * version satisfies every range asked of it; otherwise, with `withDependencies`, a new one named after the
 * dependency (or `<release>-<dependency>` when that name is taken) is deployed with the product's defaults.
 */
async function planDependencies(store: Store, main: Omit<Release, 'seq'>, withDependencies: boolean, now: Date) {
  const catalog = new Map((await listProducts(store)).map((p) => [p.name, p]));
  const resolved = resolveDependencies([main.product], catalog);
  const existing = (await listReleases(store)).filter((r) => r.phase !== 'DELETING');
  const releaseOf = new Map<string, string>();
  const plan: { release: Omit<Release, 'seq'>; product: Product }[] = [];
  for (const { product, version, ranges } of resolved) {
    const dependsOn = product.dependencies.map((d) => releaseOf.get(d.product)!);
    if (product.name === main.product) {
      plan.push({ release: { ...main, dependsOn, phase: 'WAITING' }, product });
      break;
    }
    const suitable = existing.find((r) => r.product === product.name && ranges.every((range) => semver.satisfies(r.version, range)));
    if (suitable) {
      releaseOf.set(product.name, suitable.id);
      continue;
    }
    if (!withDependencies) {
      throw badInput(`${main.product} needs ${product.name} ${ranges.join(' and ')}, which has no release; deploy it first or pass withDependencies: true`, 'withDependencies');
    }
    const taken = existing.some((r) => r.name === product.name) || (await store.get('claims', `release-name#${product.name}`));
    const name = taken ? `${main.name}-${product.name}`.slice(0, 40).replace(/-+$/, '') : product.name;
    const release = releaseFromInput({ name, product: product.name, version }, product, newId('r'), now);
    plan.push({ release: { ...release, dependsOn, phase: dependsOn.length ? 'WAITING' : 'ACTIVE' }, product });
    releaseOf.set(product.name, release.id);
  }
  return plan;
}

export const getRelease = (store: Store, id: string) => store.get<Release>('releases', id);

export async function mustGetRelease(store: Store, id: string): Promise<Release> {
  const release = await getRelease(store, id);
  if (!release) throw notFound('release', id);
  return release;
}

export async function listReleases(store: Store): Promise<Release[]> {
  return (await store.scan<Release>('releases')).sort((a, b) => a.name.localeCompare(b.name));
}

/** A revision of what the release runs now (scale, config): the same version and pinned image as the last one. */
const addRevision = (r: Release, reason: string, now: Date): Pick<Release, 'revision' | 'revisions'> => {
  const last = r.revisions[r.revisions.length - 1];
  const pin = last?.version === r.version && last.image ? { image: last.image, imageDigest: last.imageDigest ?? null } : {};
  return { revision: r.revision + 1, revisions: [...r.revisions, { revision: r.revision + 1, version: r.version, createdAt: now.toISOString(), reason, ...pin }] };
};

const mustBeChangeable = (release: Release) => {
  if (release.phase === 'DELETING') throw conflict(`release "${release.name}" is being deleted`);
};

/**
 * Scales a release. Growing places the new instances first (all or none, so a refusal changes nothing); shrinking
 * records the new count first and then removes the highest ordinals. Each call that changes the count is a revision.
 */
export async function scaleRelease(store: Store, id: string, replicas: number, now = new Date()): Promise<Release> {
  check.intInRange(replicas, 'replicas', 0, MAX_REPLICAS);
  const release = await mustGetRelease(store, id);
  mustBeChangeable(release);
  const instances = await instancesOfRelease(store, id);
  const ordinals = new Set(instances.map((i) => i.ordinal));
  const missing = ordinalsUpTo(replicas).filter((n) => !ordinals.has(n));
  const product = await mustGetProduct(store, release.product);
  if (missing.length && release.phase === 'ACTIVE') {
    await placeInstances(store, unplacedInstances({ ...release, replicas }, product, missing, now), constraintsOf(release), now);
  }
  const scaled = (await store.mutate<Release>('releases', id, (r) => r && r.replicas !== replicas
    ? { ...r, replicas, ...addRevision(r, `scale ${r.replicas} → ${replicas}`, now) }
    : undefined))!;
  for (const extra of instances.filter((i) => i.ordinal >= replicas).reverse()) await removeInstance(store, extra);
  // Config files that list peers change with the count: the remaining instances get them (and are recreated).
  if (product.configTemplates.length) await respecAll(store, scaled, product);
  return scaled;
}

/** New env for the release: a revision, and every instance gets the new spec (its runner recreates the container). */
export async function configureRelease(store: Store, id: string, env: { name: string; value: string }[], now = new Date()): Promise<Release> {
  const release = await mustGetRelease(store, id);
  mustBeChangeable(release);
  const product = await mustGetProduct(store, release.product);
  const secret = new Set((release.secretEnv ?? []).map((v) => v.name));
  const merged = mergeEnv(product, env).filter((e) => !secret.has(e.name));
  const same = JSON.stringify(merged) === JSON.stringify(release.env);
  const updated = same ? release : (await store.mutate<Release>('releases', id, (r) => r && { ...r, env: merged, ...addRevision(r, 'config change', now) }))!;
  await respecAll(store, updated, product);
  return updated;
}

/**
 * Marks the release DELETING and removes its instances; each host runner then removes the containers, and the
 * release itself disappears once no container of it is reported (see finishDeletions). Calling it again is fine.
 * A release that others depend on stays until they are deleted.
 */
export async function deleteRelease(store: Store, id: string): Promise<Release> {
  const existing = await mustGetRelease(store, id);
  const dependants = (await listReleases(store)).filter((r) => (r.dependsOn ?? []).includes(id) && r.phase !== 'DELETING');
  if (dependants.length) {
    throw conflict(`release "${existing.name}" is needed by ${dependants.map((d) => `"${d.name}"`).join(', ')}; delete those first`);
  }
  const release = existing.phase === 'DELETING'
    ? existing
    : (await store.mutate<Release>('releases', id, (r) => r && { ...r, phase: 'DELETING' }))!;
  for (const instance of await instancesOfRelease(store, id)) await removeInstance(store, instance);
  await finishDeletions(store, [id]);
  return release;
}

/** Drops releases in DELETING that have neither instances nor reported containers left. */
export async function finishDeletions(store: Store, releaseIds: Iterable<string>): Promise<void> {
  for (const id of releaseIds) {
    const release = await getRelease(store, id);
    if (!release || release.phase !== 'DELETING') continue;
    const [instances, containers] = await Promise.all([instancesOfRelease(store, id), containersOfRelease(store, id)]);
    if (instances.length || containers.length) continue;
    await store.remove('releases', id);
    await store.remove('claims', `release-name#${release.name}`);
    if (release.idempotencyKey) await store.remove('claims', `deploy-key#${release.idempotencyKey}`);
  }
}

export interface DerivedStatus {
  status: ReleaseStatus;
  message: string | null;
}

/** The status a user sees, derived from desired instances and what the runners report. */
export function releaseStatus(release: Release, instances: Instance[], containers: ContainerRecord[]): DerivedStatus {
  if (release.phase === 'DELETING') return { status: 'DELETING', message: `${containers.length} container(s) still to remove` };
  if (release.phase === 'WAITING') return { status: 'PENDING', message: release.placementError ?? 'waiting for its dependencies to run' };
  const u = release.upgrade;
  if (u && ['RUNNING', 'PAUSED', 'ROLLING_BACK'].includes(u.state)) {
    const target = u.state === 'ROLLING_BACK' ? u.fromVersion : u.toVersion;
    const what = `${u.done.length} of ${release.replicas} on ${target}${u.batch.length ? `, replacing ${u.batch.length}` : ''}`;
    return { status: u.state === 'ROLLING_BACK' ? 'ROLLING_BACK' : 'UPGRADING', message: u.state === 'PAUSED' ? `paused: ${what}` : what };
  }
  // Only a container of the instance's current spec speaks for it: an old generation says nothing about the new one.
  const byInstance = new Map(containers.map((c) => [c.instanceId, c]));
  const current = instances.map((i) => ({ i, c: byInstance.get(i.id) })).map(({ i, c }) => ({ i, c: c?.specHash === i.specHash ? c : undefined }));
  const serving = current.filter(({ c }) => c && isServing(c)).length;
  if (u?.state === 'FAILED') {
    const stopped = `upgrade to ${u.toVersion} stopped: ${u.reason ?? u.message}`;
    // FAILED means not serving; a release that still serves from some instances is DEGRADED.
    return serving ? { status: 'DEGRADED', message: `${serving} of ${release.replicas} instances serving; ${stopped}` } : { status: 'FAILED', message: stopped };
  }
  const failing = current.filter(({ c }) => c && isFailing(c));
  if (failing.length) {
    const first = failing[0];
    const why = first.c!.error ?? `${first.c!.state.toLowerCase()}${first.c!.health === 'UNHEALTHY' ? ', unhealthy' : ''}`;
    return { status: 'DEGRADED', message: `${failing.length} of ${instances.length} instances failing; ${first.i.id}: ${why}` };
  }
  if (serving === instances.length && instances.length === release.replicas) return { status: 'RUNNING', message: null };
  const unplaced = release.placementError && instances.length < release.replicas ? `; ${release.placementError}` : '';
  const pulls = current.flatMap(({ c }) => (c?.pull ? [c.pull] : []));
  const pulling = pulls.length ? `; ${pulls.length} pulling ${describePull(pulls[0])}` : '';
  return { status: 'DEPLOYING', message: `${serving} of ${release.replicas} instances running${pulling}${unplaced}` };
}

const describePull = (p: PullProgress) =>
  `${p.image} (${p.layersDone} of ${p.layers} layers${p.bytesTotal ? `, ${Math.floor((100 * p.bytesDone) / p.bytesTotal)}% of ${(p.bytesTotal / 1e6).toFixed(1)} MB` : ''})`;

export async function statusOf(store: Store, release: Release): Promise<DerivedStatus> {
  const [instances, containers] = await Promise.all([instancesOfRelease(store, release.id), containersOfRelease(store, release.id)]);
  return releaseStatus(release, instances, containers);
}
