import { AppError } from '../../lib/errors';
import { hashJson } from '../../lib/ids';
import type { ConfigFileSpec, DesiredContainer, HealthcheckSpec, PortSpec } from '../../lib/runner-protocol';
import type { Store, Versioned } from '../../lib/store';
import type { Label } from '../../lib/validate';
import { listHosts, reserve, unreserve } from './hosts';
import { schedule, type SchedulableHost } from './scheduler';

/** Everything that shapes an instance's container; its hash decides when the runner recreates it. */
export interface ContainerSpec {
  image: string;
  env: { name: string; value: string }[];
  ports: PortSpec[];
  cpuMillis: number;
  memoryMb: number;
  healthcheck: HealthcheckSpec | null;
  configFiles: ConfigFileSpec[];
  /** Bumped to replace the container with a fresh one (restartInstance, auto-restart); absent until then. */
  generation?: number;
}

/** An instance is desired state: one replica of a release, placed on one host. */
export interface Instance extends Versioned {
  id: string;
  releaseId: string;
  releaseName: string;
  product: string;
  ordinal: number;
  hostId: string;
  domainName: string;
  desiredState: 'RUNNING' | 'STOPPED';
  spec: ContainerSpec;
  specHash: string;
  createdAt: string;
  /** When Butler replaced the container because it stayed unhealthy (for crash-loop back-off). */
  restartLog?: string[];
}

export type UnplacedInstance = Omit<Instance, 'seq' | 'hostId' | 'specHash'>;

/** What a release asks of the hosts its instances go to. */
export interface PlacementConstraints {
  requiredLabels: Label[];
  /** Only hosts dedicated to the product. */
  exclusive: boolean;
  /** A host label key whose values the replicas are spread across. */
  spreadBy: string | null;
  strategy: 'SPREAD' | 'BINPACK';
}

export const instanceId = (releaseId: string, ordinal: number) => `${releaseId}-${ordinal}`;
export const specHash = (spec: ContainerSpec) => hashJson(spec);

export async function instancesOfRelease(store: Store, releaseId: string): Promise<Instance[]> {
  return (await store.query<Instance>('instances', 'byRelease', releaseId)).sort((a, b) => a.ordinal - b.ordinal);
}

export async function instancesOfHost(store: Store, hostId: string): Promise<Instance[]> {
  return (await store.query<Instance>('instances', 'byHost', hostId)).sort((a, b) => a.id.localeCompare(b.id));
}

export const getInstance = (store: Store, id: string) => store.get<Instance>('instances', id);

/**
 * Places instances and writes them, each with its resources held on its host by a conditional write. When a host
 * filled up in the meantime the rest is scheduled again; when nothing fits, whatever this call placed is undone
 * and the error says why, per constraint.
 */
export async function placeInstances(store: Store, unplaced: UnplacedInstance[], constraints: PlacementConstraints, now = new Date()): Promise<Instance[]> {
  const placed: Instance[] = [];
  let pending = unplaced;
  try {
    for (let round = 0; round < 5 && pending.length; round++) {
      const hosts = await schedulableHosts(store, pending[0]?.releaseId);
      const { placements, unschedulable } = schedule(hosts, pending.map((u) => ({
        instanceId: u.id, releaseId: u.releaseId, product: u.product,
        requiredLabels: constraints.requiredLabels, exclusive: constraints.exclusive, spreadBy: constraints.spreadBy, strategy: constraints.strategy,
        resources: { cpuMillis: u.spec.cpuMillis, memoryMb: u.spec.memoryMb },
      })));
      if (unschedulable.length) {
        throw new AppError('UNSCHEDULABLE', `${unschedulable.length} of ${pending.length} instances cannot be placed: ${unschedulable[0].reason}`, {
          instances: unschedulable,
        });
      }
      const byId = new Map(pending.map((u) => [u.id, u]));
      const lost: UnplacedInstance[] = [];
      for (const { instanceId: id, hostId } of placements) {
        const u = byId.get(id)!;
        if (!(await reserve(store, hostId, id, { cpuMillis: u.spec.cpuMillis, memoryMb: u.spec.memoryMb }))) {
          lost.push(u);
          continue;
        }
        const instance = { ...u, hostId, specHash: specHash(u.spec), createdAt: u.createdAt ?? now.toISOString() };
        const created = await store.create<Omit<Instance, 'seq'>>('instances', instance);
        placed.push((created ?? { ...instance, seq: 1 }) as Instance);
      }
      pending = lost;
    }
    if (pending.length) throw new AppError('UNSCHEDULABLE', 'hosts kept filling up while placing; retry the request');
    return placed;
  } catch (err) {
    await Promise.all(placed.map((i) => removeInstance(store, i)));
    throw err;
  }
}

async function schedulableHosts(store: Store, releaseId: string | undefined): Promise<SchedulableHost[]> {
  const [hosts, siblings] = await Promise.all([
    listHosts(store),
    releaseId ? instancesOfRelease(store, releaseId) : Promise.resolve([]),
  ]);
  return hosts.map((h) => ({
    id: h.id, status: h.status, labels: h.labels, exclusiveFor: h.exclusiveFor, capacity: h.capacity, allocated: h.allocated,
    releaseCounts: releaseId ? { [releaseId]: siblings.filter((s) => s.hostId === h.id).length } : {},
  }));
}

/**
 * Moves an instance to another host that satisfies its release's constraints: hold resources there, point the
 * instance at it, free the old host. The old host's runner removes its copy when it next syncs (if it ever does).
 * Returns the new host id, or throws UNSCHEDULABLE with the reason.
 */
export async function migrateInstance(store: Store, instance: Instance, constraints: PlacementConstraints): Promise<string> {
  const hosts = (await schedulableHosts(store, instance.releaseId)).filter((h) => h.id !== instance.hostId);
  const { placements, unschedulable } = schedule(hosts, [{
    instanceId: instance.id, releaseId: instance.releaseId, product: instance.product,
    requiredLabels: constraints.requiredLabels, exclusive: constraints.exclusive, spreadBy: constraints.spreadBy, strategy: constraints.strategy,
    resources: { cpuMillis: instance.spec.cpuMillis, memoryMb: instance.spec.memoryMb },
  }]);
  if (!placements.length) throw new AppError('UNSCHEDULABLE', `${instance.id} cannot move: ${unschedulable[0].reason}`);
  const to = placements[0].hostId;
  if (!(await reserve(store, to, instance.id, { cpuMillis: instance.spec.cpuMillis, memoryMb: instance.spec.memoryMb }))) {
    throw new AppError('UNSCHEDULABLE', `${instance.id} cannot move: host ${to} filled up meanwhile`);
  }
  const moved = await store.mutate<Instance>('instances', instance.id, (i) => i && i.hostId === instance.hostId ? { ...i, hostId: to } : undefined);
  if (moved?.hostId !== to) {
    await unreserve(store, to, instance.id);
    throw new AppError('CONFLICT', `${instance.id} was moved or removed meanwhile`);
  }
  await unreserve(store, instance.hostId, instance.id);
  return to;
}

/** Gives the instance a new container spec; its runner recreates the container when the hash changed. */
export async function respecInstance(store: Store, id: string, spec: ContainerSpec, restartLog?: string[]): Promise<void> {
  const hash = specHash(spec);
  await store.mutate<Instance>('instances', id, (i) => i && i.specHash !== hash ? { ...i, spec, specHash: hash, ...(restartLog ? { restartLog } : {}) } : undefined);
}

/** Deletes the instance (its runner then removes the container) and frees what it held on its host. */
export async function removeInstance(store: Store, instance: Pick<Instance, 'id' | 'hostId'>): Promise<void> {
  await store.remove('instances', instance.id);
  await unreserve(store, instance.hostId, instance.id);
}

export const containerName = (i: Pick<Instance, 'releaseName' | 'ordinal'>) => `fz-${i.releaseName}-${i.ordinal}`;

export function toDesired(i: Instance): DesiredContainer {
  return {
    instanceId: i.id,
    releaseId: i.releaseId,
    name: containerName(i),
    image: i.spec.image,
    specHash: i.specHash,
    desiredState: i.desiredState,
    env: i.spec.env,
    ports: i.spec.ports,
    cpuMillis: i.spec.cpuMillis,
    memoryMb: i.spec.memoryMb,
    healthcheck: i.spec.healthcheck,
    domainName: i.domainName,
    configFiles: i.spec.configFiles,
  };
}
