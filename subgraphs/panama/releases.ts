import { badInput, conflict, notFound } from '../../lib/errors';
import { newId } from '../../lib/ids';
import type { Store, Versioned } from '../../lib/store';
import { config } from '../../lib/config';
import * as check from '../../lib/validate';
import { instanceId, instancesOfRelease, placeInstances, removeInstance, type ContainerSpec, type Instance, type UnplacedInstance } from '../ark/instances';
import { containersOfRelease, isFailing, isServing, type ContainerRecord } from '../butler/status';
import { latestVersion, mustGetProduct, type Product } from './products';

export type ReleaseStatus = 'PENDING' | 'DEPLOYING' | 'RUNNING' | 'DEGRADED' | 'UPGRADING' | 'ROLLING_BACK' | 'FAILED' | 'DELETING';

export interface Revision {
  revision: number;
  version: string;
  createdAt: string;
  reason: string;
}

export interface Release extends Versioned {
  id: string;
  name: string;
  product: string;
  version: string;
  replicas: number;
  resources: check.Resources;
  placement: { requiredLabels: check.Label[]; exclusive: boolean; spreadBy: string | null };
  env: { name: string; value: string }[];
  revision: number;
  revisions: Revision[];
  /** ACTIVE, or DELETING once deleteRelease was called; the visible status is derived from the instances. */
  phase: 'ACTIVE' | 'DELETING';
  createdAt: string;
  idempotencyKey: string | null;
}

export interface DeployInput {
  name: string;
  product: string;
  version?: string | null;
  replicas?: number | null;
  resources?: check.Resources | null;
  placement?: { requiredLabels?: check.Label[] | null; exclusive?: boolean | null; spreadBy?: string | null } | null;
  env?: { name: string; value: string }[] | null;
  withDependencies?: boolean | null;
  idempotencyKey?: string | null;
}

export const MAX_REPLICAS = 100;

/** Validates a deploy request against its product; throws before anything is written. */
export function releaseFromInput(input: DeployInput, product: Product, id: string, now: Date): Omit<Release, 'seq'> {
  const name = check.dnsLabel(input.name, 'name', 40);
  const version = input.version ?? latestVersion(product).version;
  if (!product.versions.some((v) => v.version === version)) {
    throw badInput(`product ${product.name} has no version "${version}"; available: ${product.versions.map((v) => v.version).join(', ')}`, 'version');
  }
  if (input.withDependencies && product.dependencies.length) {
    throw badInput(`withDependencies is not available yet; deploy ${product.dependencies.map((d) => d.product).join(', ')} first`, 'withDependencies');
  }
  if (input.placement?.exclusive) throw badInput('exclusive placement is not available yet', 'placement.exclusive');
  if (input.idempotencyKey !== undefined && input.idempotencyKey !== null && !/^[A-Za-z0-9._:-]{8,128}$/.test(input.idempotencyKey)) {
    throw badInput('idempotencyKey must be 8-128 letters, digits, ".", "_", ":" or "-"', 'idempotencyKey');
  }
  const env = new Map(product.defaults.env.map((e) => [e.name, e.value]));
  for (const e of check.envVars(input.env, 'env')) env.set(e.name, e.value);
  return {
    id,
    name,
    product: product.name,
    version,
    replicas: check.intInRange(input.replicas ?? product.defaults.replicas, 'replicas', 0, MAX_REPLICAS),
    resources: check.resources(input.resources ?? product.defaults.resources, 'resources'),
    placement: {
      requiredLabels: check.labels(input.placement?.requiredLabels, 'placement.requiredLabels'),
      exclusive: false,
      spreadBy: input.placement?.spreadBy ?? null,
    },
    env: [...env].map(([n, value]) => ({ name: n, value })),
    revision: 1,
    revisions: [{ revision: 1, version, createdAt: now.toISOString(), reason: 'deploy' }],
    phase: 'ACTIVE',
    createdAt: now.toISOString(),
    idempotencyKey: input.idempotencyKey ?? null,
  };
}

export function containerSpec(release: Pick<Release, 'version' | 'resources' | 'env'>, product: Product): ContainerSpec {
  const image = product.versions.find((v) => v.version === release.version)!.image;
  return {
    image,
    env: release.env,
    ports: product.defaults.ports,
    cpuMillis: release.resources.cpuMillis,
    memoryMb: release.resources.memoryMb,
    healthcheck: product.defaults.healthcheck,
    configFiles: [],
  };
}

export function unplacedInstances(release: Omit<Release, 'seq'>, product: Product, ordinals: number[], now: Date): UnplacedInstance[] {
  const spec = containerSpec(release, product);
  return ordinals.map((ordinal) => ({
    id: instanceId(release.id, ordinal),
    releaseId: release.id,
    releaseName: release.name,
    product: product.name,
    ordinal,
    domainName: `${release.name}-${ordinal}.${release.name}.${config().dnsZone}`,
    desiredState: 'RUNNING',
    spec,
    createdAt: now.toISOString(),
  }));
}

/**
 * Creates a release and places its instances. The name is claimed first (so two deploys of one name cannot both
 * win) and every step is undone when placement fails, so a rejected deploy leaves nothing behind. A retry with the
 * same idempotency key returns the release the first call created.
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
  const release = releaseFromInput(input, product, newId('r'), now);
  const nameKey = `release-name#${release.name}`;
  if (!(await store.create('claims', { key: nameKey, releaseId: release.id }))) {
    const other = await store.get<{ releaseId: string }>('claims', nameKey);
    throw conflict(`a release named "${release.name}" already exists (${other?.releaseId}); delete it first or choose another name`);
  }
  try {
    if (release.idempotencyKey) await store.create('claims', { key: `deploy-key#${release.idempotencyKey}`, releaseId: release.id });
    const created = (await store.create('releases', release)) as Release;
    const ordinals = Array.from({ length: release.replicas }, (_, i) => i);
    try {
      await placeInstances(store, unplacedInstances(release, product, ordinals, now), release.placement.requiredLabels, now);
    } catch (err) {
      await store.remove('releases', release.id);
      throw err;
    }
    return created;
  } catch (err) {
    if (release.idempotencyKey) await store.remove('claims', `deploy-key#${release.idempotencyKey}`);
    await store.remove('claims', nameKey);
    throw err;
  }
}

/**
 * Scales a release. Growing places the new instances first (all or none, so a refusal changes nothing); shrinking
 * records the new count first and then removes the highest ordinals. Each call that changes the count is a revision.
 */
export async function scaleRelease(store: Store, id: string, replicas: number, now = new Date()): Promise<Release> {
  check.intInRange(replicas, 'replicas', 0, MAX_REPLICAS);
  const release = await mustGetRelease(store, id);
  if (release.phase === 'DELETING') throw conflict(`release "${release.name}" is being deleted`);
  const instances = await instancesOfRelease(store, id);
  const ordinals = new Set(instances.map((i) => i.ordinal));
  const missing = Array.from({ length: replicas }, (_, n) => n).filter((n) => !ordinals.has(n));
  if (missing.length) {
    const product = await mustGetProduct(store, release.product);
    await placeInstances(store, unplacedInstances(release, product, missing, now), release.placement.requiredLabels, now);
  }
  const scaled = await store.mutate<Release>('releases', id, (r) => r && r.replicas !== replicas ? {
    ...r,
    replicas,
    revision: r.revision + 1,
    revisions: [...r.revisions, { revision: r.revision + 1, version: r.version, createdAt: now.toISOString(), reason: `scale ${r.replicas} → ${replicas}` }],
  } : undefined);
  for (const extra of instances.filter((i) => i.ordinal >= replicas).reverse()) await removeInstance(store, extra);
  return scaled!;
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

/**
 * Marks the release DELETING and removes its instances; each host runner then removes the containers, and the
 * release itself disappears once no container of it is reported (see finishDeletions). Calling it again is fine.
 */
export async function deleteRelease(store: Store, id: string): Promise<Release> {
  const existing = await mustGetRelease(store, id);
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

/** The status a user sees, derived from desired instances and what the runners report. */
export function releaseStatus(release: Release, instances: Instance[], containers: ContainerRecord[]): { status: ReleaseStatus; message: string | null } {
  if (release.phase === 'DELETING') return { status: 'DELETING', message: `${containers.length} container(s) still to remove` };
  const byInstance = new Map(containers.map((c) => [c.instanceId, c]));
  const current = instances.map((i) => ({ i, c: byInstance.get(i.id) }));
  const failing = current.filter(({ c }) => c && isFailing(c));
  if (failing.length) {
    const first = failing[0];
    const why = first.c!.error ?? `${first.c!.state.toLowerCase()}${first.c!.health === 'UNHEALTHY' ? ', unhealthy' : ''}`;
    return { status: 'DEGRADED', message: `${failing.length} of ${instances.length} instances failing; ${first.i.id}: ${why}` };
  }
  const serving = current.filter(({ i, c }) => c && isServing(c) && c.specHash === i.specHash).length;
  if (serving === instances.length) return { status: 'RUNNING', message: null };
  return { status: 'DEPLOYING', message: `${serving} of ${instances.length} instances running` };
}

export async function statusOf(store: Store, release: Release) {
  const [instances, containers] = await Promise.all([instancesOfRelease(store, release.id), containersOfRelease(store, release.id)]);
  return releaseStatus(release, instances, containers);
}
