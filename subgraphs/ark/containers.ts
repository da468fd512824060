import type { ContainerState, ObservedContainer } from '../../lib/runner-protocol';
import { ConditionFailed, type Store, type Versioned } from '../../lib/store';

/** The last observed state of an instance's container, as its host runner reported it. */
export interface ContainerRecord extends Omit<ObservedContainer, 'instanceId'>, Versioned {
  instanceId: string;
  hostId: string;
  releaseId: string;
  updatedAt: string;
}

/** Figures that change all the time: stored, but not an event. A pull starting or ending is one (state, or null ↔ set). */
const FIGURES = new Set<keyof ObservedContainer>(['stats', 'pull']);
const sameObservation = (a: ObservedContainer, b: ContainerRecord) =>
  (Object.keys(a) as (keyof ObservedContainer)[]).every((k) => FIGURES.has(k) || JSON.stringify(a[k]) === JSON.stringify(b[k])) &&
  !a.pull === !b.pull;
const sameStats = (a: ObservedContainer, b: ContainerRecord) =>
  (!a.stats || JSON.stringify(a.stats) === JSON.stringify(b.stats)) && JSON.stringify(a.pull ?? null) === JSON.stringify(b.pull ?? null);

export interface StatusChange {
  instanceId: string;
  releaseId: string;
  before: ContainerRecord | undefined;
  /** Undefined when the container is gone from the host's report. */
  after: ContainerRecord | undefined;
}

/**
 * Stores what one host reports. Only instances that are (still) desired on that host are recorded; records of this
 * host that the report no longer contains are dropped, because the runner removed those containers.
 * Returns what changed, for events, alarms and healing.
 */
export async function recordObservations(
  store: Store, hostId: string, observed: ObservedContainer[], desired: Map<string, { releaseId: string }>, now = new Date(),
): Promise<StatusChange[]> {
  const changes: StatusChange[] = [];
  const previous = await store.query<ContainerRecord>('containers', 'byHost', hostId);
  const previousById = new Map(previous.map((p) => [p.instanceId, p]));
  const reported = new Set<string>();
  for (const o of observed) {
    const instance = desired.get(o.instanceId);
    if (!instance || reported.has(o.instanceId)) continue;
    // A runner mid-recreate may briefly report an old container next to the new one: prefer the desired spec.
    const best = observed.filter((x) => x.instanceId === o.instanceId).sort((a, b) => rank(b) - rank(a))[0];
    reported.add(o.instanceId);
    const before = previousById.get(o.instanceId) ?? await getContainer(store, o.instanceId);
    const unchanged = before && before.hostId === hostId && sameObservation(best, before);
    if (unchanged && sameStats(best, before)) continue;
    const after = await store.mutate<ContainerRecord>('containers', o.instanceId, (current) => ({
      ...best, stats: best.stats ?? current?.stats ?? null, hostId, releaseId: instance.releaseId,
      updatedAt: unchanged ? current?.updatedAt ?? now.toISOString() : now.toISOString(),
    }));
    if (unchanged) continue; // new figures only: stored, not an event
    changes.push({ instanceId: o.instanceId, releaseId: instance.releaseId, before, after });
  }
  for (const p of previous) {
    if (reported.has(p.instanceId)) continue;
    await store.remove('containers', p.instanceId);
    changes.push({ instanceId: p.instanceId, releaseId: p.releaseId, before: p, after: undefined });
  }
  return changes;
}

const rank = (o: ObservedContainer) => (o.state === 'RUNNING' ? 2 : 0) + (o.error ? 0 : 1);

/** Drops the record of an instance's container on this host (the instance moved away from it). */
export async function forgetContainer(store: Store, instanceId: string, hostId: string): Promise<void> {
  const record = await getContainer(store, instanceId);
  if (record?.hostId !== hostId) return;
  try {
    await store.remove('containers', instanceId, record.seq);
  } catch (err) {
    // The new host's runner reported the instance meanwhile: that record is current, keep it.
    if (!(err instanceof ConditionFailed)) throw err;
  }
}

export const listContainers = (store: Store) => store.scan<ContainerRecord>('containers');
export const getContainer = (store: Store, instanceId: string) => store.get<ContainerRecord>('containers', instanceId);
export const containersOfHost = (store: Store, hostId: string) => store.query<ContainerRecord>('containers', 'byHost', hostId);
export const containersOfRelease = (store: Store, releaseId: string) => store.query<ContainerRecord>('containers', 'byRelease', releaseId);

/** Running and healthy: RUNNING, and HEALTHY or without a healthcheck. */
export const isServing = (c: Pick<ContainerRecord, 'state' | 'health'>) => c.state === 'RUNNING' && (c.health === 'HEALTHY' || c.health === 'NONE');
export const isFailing = (c: Pick<ContainerRecord, 'state' | 'health' | 'error'>) =>
  Boolean(c.error) || c.state === 'EXITED' || c.state === 'DEAD' || c.health === 'UNHEALTHY';

/** An instance's status as a user reads it: always about the container generation of the instance's current spec. */
export type GenerationStatus = Omit<ContainerRecord, 'containerId' | 'state'> & { containerId: string | null; state: ContainerState | 'PENDING' };

/**
 * The record while it describes the instance's current spec; after a respec, until the new container reports,
 * PENDING/STARTING (the old container's RUNNING/HEALTHY says nothing about the new version). Null before any report.
 */
export function generationStatus(record: ContainerRecord | undefined, specHash: string): GenerationStatus | null {
  if (!record) return null;
  if (record.specHash === specHash) return record;
  return {
    ...record, specHash, containerId: null, state: 'PENDING', health: 'STARTING',
    restartCount: 0, exitCode: null, oomKilled: false, startedAt: null, ip: null, ports: [], error: null, stats: null,
  };
}
