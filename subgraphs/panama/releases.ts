import { inScope, OUT_OF_SCOPE, type Scope } from '../../lib/auth';
import { AppError, badInput, conflict, notFound } from '../../lib/errors';
import { claim, dropClaim, olderThanLease } from '../../lib/claims';
import { hashJson, newId } from '../../lib/ids';
import { ConditionFailed, type Store, type Versioned } from '../../lib/store';
import { config } from '../../lib/config';
import type { PullProgress } from '../../lib/runner-protocol';
import * as check from '../../lib/validate';
import { mergeSealed, sealAll, type SealedVar } from '../../lib/secrets';
import {
  checkPlacement, containersOfRelease, instanceId, instancesOfRelease, isFailing, isServing, pinImage, placeInstances, removeInstance,
  type ContainerRecord, type ContainerSpec, type Instance, type PinnedImage, type PlacementConstraints, type RenderedSpec, type RenderSpec, type UnplacedInstance,
} from '../ark';
import { dependencyPlan, resolveDependencies, type DependencyPlan } from './dependencies';
import { panamaHooks } from './hooks';
import { renderTemplates, templateContext } from './templates';
import { DEFAULT_STOP } from '../../lib/runner-protocol';
import { isActive, type UpgradeRecord } from './upgrades';
import { getProduct, latestVersion, listProducts, mustGetProduct, type Product, type VersionUse } from './products';
import { dropRevisions, keepRevisions, newestRevision, withNewRevision } from './revisions';

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
  /** The newest revision's number, and that revision; the older ones are items of the table `revisions`. */
  revision: number;
  lastRevision?: Revision;
  /** Only on releases written before revisions were items (subgraphs/panama/revisions.ts). */
  revisions?: Revision[];
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
    lastRevision: { revision: 1, version, createdAt: now.toISOString(), reason: 'deploy' },
    dependsOn: [],
    phase: 'ACTIVE',
    placementError: null,
    createdAt: now.toISOString(),
    idempotencyKey: input.idempotencyKey ?? null,
  };
}

export const domainName = (releaseName: string, ordinal: number) => `${releaseName}-${ordinal}.${releaseName}.${config().dnsZone}`;

/** The fixed address of each instance of a release that has one (instance id → ip). */
export type Addresses = ReadonlyMap<string, string | null>;
export const addressesOf = (instances: Pick<Instance, 'id' | 'ip'>[]): Addresses => new Map(instances.map((i) => [i.id, i.ip ?? null]));

/**
 * The container of one instance; its config files are rendered for its ordinal and the release's peers, with the
 * addresses of those placed (`ip` is null for the others: see subgraphs/panama/templates.ts).
 */
export function instanceSpec(
  release: Pick<Release, 'id' | 'name' | 'version' | 'replicas' | 'resources' | 'env' | 'secretEnv' | 'imageDigests'>, product: Product, ordinal: number,
  addresses: Addresses = new Map(),
): ContainerSpec {
  const image = product.versions.find((v) => v.version === release.version)!.image;
  const imageDigest = release.imageDigests?.[release.version];
  const peers = ordinalsUpTo(Math.max(release.replicas, ordinal + 1)).map((n) => {
    const id = instanceId(release.id, n);
    return { id, ordinal: n, domainName: domainName(release.name, n), ip: addresses.get(id) ?? null };
  });
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
    ...declaredStop(product),
    configFiles: product.configTemplates.length ? renderTemplates(product.configTemplates, templateContext(release, product, peers, ordinal), (release.secretEnv ?? []).map((v) => v.name)) : [],
    ...(product.defaults.dataPath ? { dataPath: product.defaults.dataPath } : {}),
    ...(product.defaults.lifecycle ? { lifecycle: product.defaults.lifecycle } : {}),
  };
}

/** Only a stop that differs from the defaults is part of the spec, so products that declare none keep their hashes. */
function declaredStop(product: Product): Pick<ContainerSpec, 'stopSignal' | 'stopTimeoutSeconds'> {
  const { stopSignal = DEFAULT_STOP.signal, stopTimeoutSeconds = DEFAULT_STOP.timeoutSeconds } = product.defaults;
  return stopSignal === DEFAULT_STOP.signal && stopTimeoutSeconds === DEFAULT_STOP.timeoutSeconds ? {} : { stopSignal, stopTimeoutSeconds };
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

/**
 * The spec an existing instance should have now: the release's env, resources and peers, on the version the
 * instance runs (only an upgrade or a rollback moves an instance to another version, batch by batch), keeping the
 * generation a restart gave it.
 */
export function desiredSpec(release: Release, product: Product, instance: Pick<Instance, 'ordinal' | 'spec'>, addresses: Addresses = new Map()): ContainerSpec {
  const version = product.versions.find((v) => v.image === instance.spec.image)?.version ?? release.version;
  return {
    ...instanceSpec({ ...release, version }, product, instance.ordinal, addresses),
    image: instance.spec.image,
    ...(instance.spec.generation ? { generation: instance.spec.generation } : {}),
  };
}

/** A spec with the addresses it was rendered with, as Ark keeps them on the instance (`renderedIps`). */
export const rendered = (spec: ContainerSpec, addresses: Addresses): RenderedSpec => ({ spec, renderedIps: Object.fromEntries(addresses) });

/** How Ark renders the specs of the instances it places once their addresses are claimed. */
export const renderAtPlacement = (release: Release | Omit<Release, 'seq'>, product: Product): RenderSpec =>
  (instance, addresses) => rendered(instanceSpec(release, product, instance.ordinal, addresses), addresses);

/**
 * The spec of an instance that is moving to another host, rendered with its new address (and its peers' current
 * ones), so that its container there starts with the right files at once. Butler passes it to Ark's migrateInstance.
 */
export async function specAfterMove(store: Store, moved: Instance): Promise<RenderedSpec> {
  const release = await mustGetRelease(store, moved.releaseId);
  const product = await mustGetProduct(store, release.product);
  const addresses = new Map(addressesOf(await instancesOfRelease(store, moved.releaseId)));
  addresses.set(moved.id, moved.ip ?? null);
  return rendered(desiredSpec(release, product, moved, addresses), addresses);
}

export const constraintsOf = (release: Pick<Release, 'placement'>): PlacementConstraints => release.placement;

/** Whether a key with this scope reads the release: the scope names it or its product (subgraphs/panama/scope.ts). */
export const releaseVisible = (scope: Scope, r: Pick<Release, 'id' | 'product'>) => inScope(scope, { product: r.product, releaseId: r.id });


/**
 * Creates a release and places its instances. With dependencies, the ones without a suitable release are deployed
 * too (dependencies first) and every release waits, PENDING, until what it depends on runs; the reconciler then
 * places it. The idempotency key and then the names are claimed first (two deploys cannot both win either) and every
 * step is undone when one fails, so a rejected deploy leaves nothing behind. A retry with the same idempotency key
 * and the same input returns the first release, also while that one is still being written; other input is a
 * CONFLICT. A key with a `scope` deploys only what its scope allows (planDependencies).
 */
export async function deploy(store: Store, input: DeployInput, now = new Date(), scope: Scope | null = null): Promise<Release> {
  const product = await mustGetProduct(store, input.product);
  const main = releaseFromInput(input, product, newId('r'), now);
  const fingerprint = hashJson({ ...desiredOf(main), withDependencies: Boolean(input.withDependencies) });
  if (main.idempotencyKey) {
    const earlier = await claimDeployKey(store, main, fingerprint, scope);
    if (earlier) return earlier;
  }
  const written: Omit<Release, 'seq'>[] = [];
  let created: Release | undefined;
  try {
    const plan = product.dependencies.length
      ? await planDependencies(store, main, input.withDependencies ?? false, now, scope)
      : [{ release: main, product }];
    // Pinned before anything is written: an image the registry lacks refuses the deploy and leaves nothing behind.
    for (const entry of plan) entry.release = withPin(entry.release, await pinVersion(entry.product, entry.release.version));
    for (const { release, product: p } of plan) {
      await claimName(store, release);
      written.push(release);
      const item = await store.create<Omit<Release, 'seq'>>('releases', release) as Release | undefined;
      if (release.id === main.id) created = item;
      if (release.phase === 'ACTIVE') {
        await placeInstances(store, unplacedInstances(release, p, ordinalsUpTo(release.replicas), now), constraintsOf(release), now, renderAtPlacement(release, p));
      }
    }
  } catch (err) {
    for (const release of written.reverse()) await discard(store, release);
    if (main.idempotencyKey) await dropClaim<KeyClaim>(store, 'panamaClaims', deployKey(main.idempotencyKey), (c) => c.releaseId === main.id);
    throw err;
  }
  // Another client may have deleted it meanwhile (and the tick finished that): the deploy still happened.
  return (await getRelease(store, main.id)) ?? created!;
}

/** The image of a product version, pinned to its digest in the platform registry now. */
export const pinVersion = (product: Product, version: string): Promise<PinnedImage> =>
  pinImage(product.versions.find((v) => v.version === version)!.image);

/** A new release records the pin of its version, in its first revision too. */
const withPin = (release: Omit<Release, 'seq'>, pin: PinnedImage): Omit<Release, 'seq'> => ({
  ...release,
  imageDigests: pin.imageDigest ? { [release.version]: pin.imageDigest } : {},
  lastRevision: { ...release.lastRevision!, ...pin },
});


interface KeyClaim { key: string; releaseId: string; fingerprint: string; claimedAt: string }
interface NameClaim { key: string; releaseId: string; claimedAt?: string }
const deployKey = (key: string) => `deploy-key#${key}`;
const nameKey = (name: string) => `release-name#${name}`;

/** What a deploy asked for, without what each attempt makes up (id, times): equal for a retry of one request. */
const desiredOf = (r: Omit<Release, 'seq'>) =>
  ({ name: r.name, product: r.product, version: r.version, replicas: r.replicas, resources: r.resources, placement: r.placement, env: r.env });

/**
 * Claims the deploy's idempotency key, or answers the release an earlier deploy with that key made. A deploy with
 * the key still in progress is waited for; one that crashed (its claim is older than the lease and no release came
 * of it) is taken over.
 */
async function claimDeployKey(store: Store, main: Omit<Release, 'seq'>, fingerprint: string, scope: Scope | null): Promise<Release | undefined> {
  const key = main.idempotencyKey!;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const outcome = await claim<KeyClaim>(store, 'panamaClaims', { key: deployKey(key), releaseId: main.id, fingerprint, claimedAt: new Date().toISOString() },
      async (holder) => olderThanLease(holder.claimedAt) && !(await getRelease(store, holder.releaseId)));
    if (outcome.won) return undefined;
    const holder = outcome.holder;
    if (holder.fingerprint !== fingerprint) {
      const earlier = await getRelease(store, holder.releaseId);
      // Another team may have used the same key: its release is named only to those who may read it.
      const named = earlier && (!scope || releaseVisible(scope, earlier)) ? ` (release "${earlier.name}")` : '';
      throw conflict(`idempotencyKey "${key}" was already used for a different deploy${named}; use a new key for a new request`);
    }
    const earlier = await getRelease(store, holder.releaseId);
    if (earlier) return earlier;
    if (Date.now() > deadline) throw conflict(`a deploy with idempotencyKey "${key}" is still in progress; retry in a moment`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Claims the release's name; a claim left by a crashed deploy or deletion (no release, older than the lease) is taken over. */
async function claimName(store: Store, release: Pick<Release, 'id' | 'name'>) {
  const outcome = await claim<NameClaim>(store, 'panamaClaims', { key: nameKey(release.name), releaseId: release.id, claimedAt: new Date().toISOString() },
    async (holder) => olderThanLease(holder.claimedAt) && !(await getRelease(store, holder.releaseId)));
  if (outcome.won) return;
  throw conflict(`a release named "${release.name}" already exists (${outcome.holder.releaseId}); delete it first or choose another name`);
}

/** Undoes a deploy step by step; each step is harmless when the thing it removes was never written. */
async function discard(store: Store, release: Omit<Release, 'seq'>) {
  for (const instance of await instancesOfRelease(store, release.id)) await removeInstance(store, instance);
  await store.remove('releases', release.id);
  await dropClaim<NameClaim>(store, 'panamaClaims', nameKey(release.name), (c) => c.releaseId === release.id);
}

/**
 * What a deploy of `product` takes of its dependencies (dependencyPlan), relying only on releases the scope reads, or
 * on any without a scope; and the releases not being deleted, whose names a new release must avoid.
 */
async function planOf(store: Store, product: string, scope: Scope | null): Promise<{ plan: DependencyPlan; releases: Release[] }> {
  const catalog = new Map((await listProducts(store)).map((p) => [p.name, p]));
  const releases = (await listReleases(store)).filter((r) => r.phase !== 'DELETING');
  const usable = scope ? releases.filter((r) => releaseVisible(scope, r)) : releases;
  return { plan: dependencyPlan(product, resolveDependencies([product], catalog), usable), releases };
}

/**
 * Why a key with this scope may not deploy `product`: the dependencies it would have to create or rely on outside the
 * scope (no release it reads provides them and it does not name their product), and what to do; null when none. Said
 * from the products' definitions and the scope's own releases only, so nothing of another team's releases shows,
 * not even whether one exists.
 */
export function outsideScope(product: string, plan: DependencyPlan, scope: Scope): string | null {
  const names = plan.creates.map((r) => r.product.name).filter((name) => name !== product && !scope.products.includes(name));
  if (!names.length) return null;
  const list = names.join(', ');
  const one = names.length === 1;
  return `deploy of ${product} needs ${one ? 'a release' : 'releases'} of ${list}, outside the scope: a scoped key creates releases only of the `
    + `products it names and relies only on releases in its scope. To use ${one ? 'a release' : 'releases'} of ${list}, ask an admin to add `
    + `${one ? 'it' : 'them'} to this key's scope (releases), deploying ${one ? 'it' : 'them'} first with a key that covers ${list} if there is none; `
    + `or ask for a scope that includes the product${one ? '' : 's'} ${list}.`;
}

/**
 * The access check of a deploy by a key with this scope (subgraphs/panama/schema.ts): what its dependencies would
 * take outside the scope, before anything is written. A deploy that fails anyway (unknown product, a dependency
 * cycle, no version fits) is let through to report that itself.
 */
export async function deployOutsideScope(store: Store, product: string | null | undefined, scope: Scope): Promise<string | null> {
  const requested = product ? await getProduct(store, product) : undefined;
  if (!requested?.dependencies.length) return null;
  try {
    return outsideScope(requested.name, (await planOf(store, requested.name, scope)).plan, scope);
  } catch (err) {
    if (err instanceof AppError) return null;
    throw err;
  }
}

/**
 * The releases to write for a product with dependencies: an existing release of a dependency is used when its
 * version satisfies every range asked of it; otherwise, with `withDependencies`, a new one named after the
 * dependency (or `<release>-<dependency>` when that name is taken) is deployed with the product's defaults. With a
 * scope, only releases it reads are used and only releases of products it names are created: anything else is
 * FORBIDDEN (the access check refuses it up front; this holds it when releases changed in between).
 */
async function planDependencies(store: Store, main: Omit<Release, 'seq'>, withDependencies: boolean, now: Date, scope: Scope | null) {
  const { plan: needed, releases } = await planOf(store, main.product, scope);
  const refusal = scope && outsideScope(main.product, needed, scope);
  if (refusal) throw new AppError('FORBIDDEN', refusal, { reason: OUT_OF_SCOPE });
  const missing = needed.creates.find((r) => r.product.name !== main.product);
  if (missing && !withDependencies) {
    throw badInput(`${main.product} needs ${missing.product.name} ${missing.ranges.join(' and ')}, which has no release; deploy it first or pass withDependencies: true`, 'withDependencies');
  }
  const releaseOf = new Map(needed.uses);
  const plan: { release: Omit<Release, 'seq'>; product: Product }[] = [];
  for (const { product, version } of needed.creates) {
    const dependsOn = product.dependencies.map((d) => releaseOf.get(d.product)!);
    if (product.name === main.product) {
      plan.push({ release: { ...main, dependsOn, phase: 'WAITING' }, product });
      continue;
    }
    const taken = releases.some((r) => r.name === product.name) || (await store.get('panamaClaims', nameKey(product.name)));
    const name = taken ? `${main.name}-${product.name}`.slice(0, 40).replace(/-+$/, '') : product.name;
    const release = releaseFromInput({ name, product: product.name, version }, product, newId('r'), now);
    plan.push({ release: { ...release, dependsOn, phase: dependsOn.length ? 'WAITING' : 'ACTIVE' }, product });
    releaseOf.set(product.name, release.id);
  }
  return plan;
}

/** The versions of a product that releases (not being deleted) run or are moving between. */
export async function versionsInUse(store: Store, product: string): Promise<VersionUse[]> {
  return (await listReleases(store)).filter((r) => r.product === product && r.phase !== 'DELETING').map((r) => {
    const moving = r.upgrade && !['SUCCEEDED', 'ROLLED_BACK'].includes(r.upgrade.state) ? [r.upgrade.fromVersion, r.upgrade.toVersion] : [];
    return { name: r.name, product, versions: [...new Set([r.version, ...moving])], secretNames: (r.secretEnv ?? []).map((v) => v.name) };
  });
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

/** The release changed with a revision of what it runs now (scale, config): the same version and pinned image as the last one. */
const addRevision = <R extends Release>(r: R, reason: string, now: Date) => {
  const last = newestRevision(r);
  const pin = last?.version === r.version && last.image ? { image: last.image, imageDigest: last.imageDigest ?? null } : {};
  return withNewRevision(r, { revision: r.revision + 1, version: r.version, createdAt: now.toISOString(), reason, ...pin });
};

/**
 * Why the release cannot take this change now, naming what is in progress; null when it can. Checked on the version
 * that is written, so two changes racing serialize: the second sees the first.
 */
export function changeBlocked(release: Release, change: string): string | null {
  if (release.phase === 'DELETING') return `cannot ${change} release "${release.name}": it is being deleted`;
  const u = release.upgrade;
  if (isActive(u)) {
    const what = u!.kind === 'ROLLBACK' || u!.state === 'ROLLING_BACK' ? 'rolled back' : 'upgraded';
    return `cannot ${change} release "${release.name}": it is being ${what} to ${u!.state === 'ROLLING_BACK' ? u!.fromVersion : u!.toVersion}`
      + ` (${u!.done.length} of ${release.replicas} done${u!.state === 'PAUSED' ? ', paused' : ''}); wait until it ends`;
  }
  return null;
}

/**
 * The one way a release's desired state changes: a conditional write at the version read (store.mutate re-reads
 * and re-applies on a lost race). `apply` throws to refuse, or returns undefined when nothing changes.
 */
export async function changeRelease(store: Store, id: string, change: string, apply: (r: Release) => Omit<Release, 'seq'> | undefined): Promise<Release> {
  for (let attempt = 0; ; attempt++) {
    const r = await getRelease(store, id);
    if (!r) throw notFound('release', id);
    const blocked = changeBlocked(r, change);
    if (blocked) throw conflict(blocked);
    const next = apply(r);
    if (!next) return r;
    try {
      return await writeRelease(store, r, next);
    } catch (err) {
      if (!(err instanceof ConditionFailed) || attempt >= 19) throw err;
    }
    await new Promise((res) => setTimeout(res, Math.random() * 10 * (attempt + 1)));
  }
}

/**
 * Writes the release at the version `current` was read; when the write gives it a new newest revision, the ones the
 * item held are stored as items first (subgraphs/panama/revisions.ts), so a crash between the two loses none.
 */
export async function writeRelease(store: Store, current: Release, next: Omit<Release, 'seq'>): Promise<Release> {
  if (next.revision !== current.revision || (current.revisions && !next.revisions)) await keepRevisions(store, current);
  return store.replace<Release>('releases', { ...next, seq: current.seq } as Release);
}

/**
 * Scales a release: the new count is desired state, and the reconciler places or removes instances to match
 * (highest ordinals first). Growing is refused, writing nothing, when the new instances cannot be placed now.
 * Each call that changes the count is a revision.
 */
export async function scaleRelease(store: Store, id: string, replicas: number, now = new Date()): Promise<Release> {
  check.intInRange(replicas, 'replicas', 0, MAX_REPLICAS);
  const release = await mustGetRelease(store, id);
  const blocked = changeBlocked(release, 'scale');
  if (blocked) throw conflict(blocked);
  const product = await mustGetProduct(store, release.product);
  if (release.phase === 'ACTIVE' && replicas > release.replicas) {
    const placed = new Set((await instancesOfRelease(store, id)).map((i) => i.ordinal));
    const missing = ordinalsUpTo(replicas).filter((n) => !placed.has(n));
    await checkPlacement(store, unplacedInstances({ ...release, replicas }, product, missing, now), constraintsOf(release));
  }
  return changeRelease(store, id, 'scale', (r) => r.replicas === replicas ? undefined
    : addRevision({ ...r, replicas }, `scale ${r.replicas} → ${replicas}`, now));
}

/**
 * New env for the release: a revision, and the reconciler gives every instance the new spec (its runner recreates
 * the container). Refused during an upgrade, which would otherwise change every instance at once.
 */
export async function configureRelease(store: Store, id: string, env: { name: string; value: string }[], now = new Date()): Promise<Release> {
  const release = await mustGetRelease(store, id);
  const product = await mustGetProduct(store, release.product);
  // Secret values stay in secretEnv; env never carries a name that is secret.
  const secret = new Set((release.secretEnv ?? []).map((v) => v.name));
  const merged = mergeEnv(product, env).filter((e) => !secret.has(e.name));
  return changeRelease(store, id, 'configure', (r) => JSON.stringify(merged) === JSON.stringify(r.env) ? undefined
    : addRevision({ ...r, env: merged }, 'config change', now));
}

/**
 * Marks the release DELETING; the reconciler removes its instances, each host runner then removes the containers,
 * and the release itself disappears once no container of it is reported (see finishDeletions). Calling it again is
 * fine; it stops an upgrade in progress. A release that others depend on stays until they are deleted; a key with a
 * scope is told the names of those it reads only, and how many others there are.
 */
export async function deleteRelease(store: Store, id: string, scope: Scope | null = null): Promise<Release> {
  const existing = await mustGetRelease(store, id);
  const dependants = (await listReleases(store)).filter((r) => (r.dependsOn ?? []).includes(id) && r.phase !== 'DELETING');
  if (dependants.length) {
    const named = dependants.filter((d) => !scope || releaseVisible(scope, d)).map((d) => `"${d.name}"`);
    const others = dependants.length - named.length;
    const outside = others ? [`${others} release${others > 1 ? 's' : ''} outside this key's scope`] : [];
    throw conflict(`release "${existing.name}" is needed by ${[...named, ...outside].join(', ')}; delete those first${others ? ' (those outside the scope with a key that covers them)' : ''}`);
  }
  const release = await store.mutate<Release>('releases', id, (r) => r && r.phase !== 'DELETING' ? { ...r, phase: 'DELETING' } : undefined);
  if (!release) throw notFound('release', id);
  return release;
}

/** Drops releases in DELETING that have neither instances nor reported containers left. */
export async function finishDeletions(store: Store, releaseIds: Iterable<string>): Promise<void> {
  for (const id of releaseIds) {
    const release = await getRelease(store, id);
    if (!release || release.phase !== 'DELETING') continue;
    const [instances, containers] = await Promise.all([instancesOfRelease(store, id), containersOfRelease(store, id)]);
    if (instances.length || containers.length) continue;
    // Its revisions first: a crash in between leaves the release DELETING, and the next tick finishes both.
    await dropRevisions(store, id);
    await store.remove('releases', id);
    await panamaHooks.emit('releaseDeleted', store, release, releaseCause(id), new Date());
    await dropClaim<NameClaim>(store, 'panamaClaims', nameKey(release.name), (c) => c.releaseId === id);
    if (release.idempotencyKey) await dropClaim<KeyClaim>(store, 'panamaClaims', deployKey(release.idempotencyKey), (c) => c.releaseId === id);
  }
}

/** What alarms about a release as a whole name as their cause. */
export const releaseCause = (releaseId: string) => `release:${releaseId}`;

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

// Until the engine has read the manifest no layer is known: say it started rather than "0 of 0 layers".
const describePull = (p: PullProgress) => `${p.image} (${p.layers === 0 ? 'starting' : `${p.layersDone} of ${p.layers} layers`}${
  p.bytesTotal ? `, ${Math.floor((100 * p.bytesDone) / p.bytesTotal)}% of ${(p.bytesTotal / 1e6).toFixed(1)} MB` : ''})`;

export async function statusOf(store: Store, release: Release): Promise<DerivedStatus> {
  const [instances, containers] = await Promise.all([instancesOfRelease(store, release.id), containersOfRelease(store, release.id)]);
  return releaseStatus(release, instances, containers);
}
