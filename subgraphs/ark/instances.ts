import { config } from '../../lib/config';
import { AppError } from '../../lib/errors';
import { hashJson } from '../../lib/ids';
import { kick } from '../../lib/kick';
import { log } from '../../lib/log';
import { fillSecrets, openAll, secretsIn, type SealedVar } from '../../lib/secrets';
import { DEFAULT_STOP, type ConfigFileSpec, type DesiredContainer, type HealthcheckSpec, type LifecycleSpec, type PortSpec } from '../../lib/runner-protocol';
import { ConditionFailed, type Store, type Versioned } from '../../lib/store';
import type { Label } from '../../lib/validate';
import { containersOfRelease, forgetContainer } from './containers';
import { arkHooks } from './hooks';
import { ensureSubnet, getHost, listHostLiveness, listHosts, reserve, unreserve } from './hosts';
import { eachLimit } from '../../lib/concurrency';
import { fleetCadence } from './cadence';
import { bumpNetworkSerial, claimInstanceIp, freeInstanceIp, inSubnet } from './network';
import { schedule, type SchedulableHost } from './scheduler';

/** Everything that shapes an instance's container; its hash decides when the runner recreates it. */
export interface ContainerSpec {
  image: string;
  /** The digest the release pinned the image to in the platform registry; absent when unpinned. */
  imageDigest?: string;
  env: { name: string; value: string }[];
  /** Sealed values; opened only in the answer to the runner of the instance's host (toDesired). */
  secretEnv?: SealedVar[];
  ports: PortSpec[];
  cpuMillis: number;
  memoryMb: number;
  healthcheck: HealthcheckSpec | null;
  configFiles: ConfigFileSpec[];
  /** Absent: Docker's defaults (SIGTERM, 10 s). */
  stopSignal?: string;
  stopTimeoutSeconds?: number;
  /** Absent unless the product has them, so existing specs keep their hash. */
  dataPath?: string;
  lifecycle?: LifecycleSpec;
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
  /** The host it last moved away from: on its new host it starts with fresh data, after its onReplace hook. */
  movedFrom?: string;
  /**
   * Fixed address on its host's subnet, claimed when it is placed on the host (or moved there), so config files can
   * name it; kept while it stays on the host. Instances placed before that get theirs at the host's sync (addresses.ts).
   */
  ip?: string | null;
  /**
   * The addresses of its release's instances its spec's config files were rendered with (instance id → ip), written
   * by the part that renders them: it tells a peer's new address from other changes (subgraphs/panama/reconcile.ts).
   */
  renderedIps?: Record<string, string | null>;
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

export const listInstances = (store: Store) => store.scan<Instance>('instances');
export const getInstance = (store: Store, id: string) => store.get<Instance>('instances', id);

/** The event that tells a host's runner its desired containers changed; its one topic is `host:<hostId>`. */
export const HOST_DESIRED_CHANGED = 'HOST_DESIRED_CHANGED';
export const hostTopic = (hostId: string) => `host:${hostId}`;

const displayName = (i: Pick<Instance, 'id'> & Partial<Pick<Instance, 'releaseName' | 'ordinal'>>) =>
  i.releaseName !== undefined && i.ordinal !== undefined ? `${i.releaseName}-${i.ordinal}` : i.id;

/** What changed on each host, in words: host id → changes. */
type HostChanges = Map<string, string[]>;

const addChange = (changes: HostChanges, hostId: string, what: string) => {
  changes.set(hostId, [...(changes.get(hostId) ?? []), what]);
  return changes;
};

const summary = (what: string[]) => `${what.slice(0, 5).join(', ')}${what.length > 5 ? ` and ${what.length - 5} more` : ''}`;

/**
 * Tells the runners of these hosts that their desired containers changed: one HOST_DESIRED_CHANGED event per host
 * and operation (topic `host:<hostId>`, which its runner subscribes to through hostDesiredStateChanged), then the
 * publisher is kicked, so the runner syncs within a fraction of a second instead of at its next poll. Never throws:
 * the change itself is written already, and the runner's poll still picks it up if the notice is lost.
 */
async function announce(store: Store, changes: HostChanges): Promise<void> {
  if (!changes.size) return;
  // The time of writing, never a caller's `now`: the publisher sends no event older than a subscription.
  const now = new Date();
  const written = await Promise.allSettled([...changes].map(([hostId, what]) => arkHooks.emit('event', store, {
    kind: HOST_DESIRED_CHANGED, severity: 'INFO', hostId, topics: [hostTopic(hostId)], message: `desired containers changed: ${summary(what)}`,
  }, now)));
  const failed = written.filter((w): w is PromiseRejectedResult => w.status === 'rejected');
  if (failed.length) {
    log.warn({ err: failed[0].reason, hosts: [...changes.keys()] }, 'could not record a desired-state notice; the runners see the change at their next poll');
  }
  if (failed.length < written.length) await kick('publish');
}

/** Wakes the runner of one host now, e.g. for a log request it must answer; never throws. */
export const notifyHost = (store: Store, hostId: string, what: string) => announce(store, new Map([[hostId, [what]]]));

/** Where these instances would go now, or UNSCHEDULABLE saying why, per constraint. Writes nothing. */
async function plan(store: Store, pending: UnplacedInstance[], constraints: PlacementConstraints) {
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
  return placements;
}

/** Throws UNSCHEDULABLE, as placeInstances would, when these instances cannot be placed now; writes nothing. */
export async function checkPlacement(store: Store, unplaced: UnplacedInstance[], constraints: PlacementConstraints): Promise<void> {
  if (unplaced.length) await plan(store, unplaced, constraints);
}

/**
 * How the part that owns an instance's spec renders it once addresses are known: `addresses` holds the address of
 * every instance of the release (instance id → ip), this one's included. `renderedIps` is kept on the instance.
 */
export type RenderSpec = (instance: Pick<Instance, 'id' | 'ordinal' | 'spec'>, addresses: ReadonlyMap<string, string | null>) => RenderedSpec;
export interface RenderedSpec {
  spec: ContainerSpec;
  renderedIps?: Record<string, string | null>;
}

/** Hosts a placement writes to at once. */
const PLACING_AT_ONCE = 8;

/** Addresses on each host's subnet as this call knows them: those of the host's instances, plus what it claimed. */
type TakenAddresses = Map<string, Set<string>>;

/**
 * A fixed address for an instance on a host, from the host's subnet (claimed for the host first if it has none), by
 * the conditional claim of network.ts: an address is never given twice. Whoever claims it records it on the instance
 * or frees it; a claim a crash left unused is taken over later (its owner does not hold that address).
 */
async function claimAddressOn(store: Store, hostId: string, instanceId: string, taken: TakenAddresses, now: Date): Promise<string> {
  const host = await getHost(store, hostId);
  if (!host) throw new AppError('UNSCHEDULABLE', `host ${hostId} was removed while ${instanceId} was being placed on it; retry the request`);
  const { subnet } = await ensureSubnet(store, host, now);
  let onHost = taken.get(hostId);
  if (!onHost) {
    onHost = new Set((await instancesOfHost(store, hostId)).flatMap((i) => (i.ip && inSubnet(subnet, i.ip) ? [i.ip] : [])));
    taken.set(hostId, onHost);
  }
  const ip = await claimInstanceIp(store, instanceId, subnet, onHost, (id) => getInstance(store, id), now);
  onHost.add(ip);
  return ip;
}

/**
 * Places instances and writes them, each with its resources held on its host by a conditional write and its fixed
 * address on that host's subnet claimed, so the address is known before anything renders or runs: `render` (the
 * part that owns the spec) renders each spec once every new instance has its address. When a host filled up in the
 * meantime the rest is scheduled again; when nothing fits, whatever this call placed is undone and the error says
 * why, per constraint. An instance someone else placed meanwhile (a racing reconcile) is theirs: this call frees
 * what it held for it and neither announces nor undoes it. Returns what this call placed.
 */
export async function placeInstances(
  store: Store, unplaced: UnplacedInstance[], constraints: PlacementConstraints, now = new Date(), render?: RenderSpec,
): Promise<Instance[]> {
  /** Written by this call, by instance id. */
  const written = new Map<string, Instance>();
  /** Held on a host (resources and an address) and not written yet. */
  const held: { u: UnplacedInstance; hostId: string; ip: string }[] = [];
  const taken: TakenAddresses = new Map();
  const order = new Map(unplaced.map((u, n) => [u.id, n]));
  let pending = unplaced;
  try {
    for (let round = 0; round < 5 && pending.length; round++) {
      const placements = await plan(store, pending, constraints);
      const byId = new Map(pending.map((u) => [u.id, u]));
      const byHost = new Map<string, string[]>();
      for (const { instanceId, hostId } of placements) {
        if (!byHost.has(hostId)) byHost.set(hostId, []);
        byHost.get(hostId)!.push(instanceId);
      }
      const lost: UnplacedInstance[] = [];
      // Hosts at once (each host item is its own conditional write), one host's instances one after another.
      await eachLimit([...byHost], PLACING_AT_ONCE, async ([hostId, ids]) => {
        for (const id of ids) {
          const u = byId.get(id)!;
          if (!(await reserve(store, hostId, id, { cpuMillis: u.spec.cpuMillis, memoryMb: u.spec.memoryMb }))) {
            lost.push(u);
            continue;
          }
          try {
            held.push({ u, hostId, ip: await claimAddressOn(store, hostId, id, taken, now) });
          } catch (err) {
            await unreserve(store, hostId, id);
            throw err;
          }
        }
      });
      pending = lost.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
    }
    if (pending.length) throw new AppError('UNSCHEDULABLE', 'hosts kept filling up while placing; retry the request');
    held.sort((a, b) => order.get(a.u.id)! - order.get(b.u.id)!);
    const releaseIds = [...new Set(held.map((h) => h.u.releaseId))];
    const siblings = render ? (await Promise.all(releaseIds.map((r) => instancesOfRelease(store, r)))).flat() : [];
    const addresses = new Map<string, string | null>([...siblings.map((i) => [i.id, i.ip ?? null] as const), ...held.map((h) => [h.u.id, h.ip] as const)]);
    await eachLimit([...held], PLACING_AT_ONCE, async (h) => {
      const { u, hostId, ip } = h;
      const rendered = render ? render(u, addresses) : { spec: u.spec };
      const instance = {
        ...u, hostId, ip, spec: rendered.spec, specHash: specHash(rendered.spec), createdAt: u.createdAt ?? now.toISOString(),
        ...(rendered.renderedIps ? { renderedIps: rendered.renderedIps } : {}),
      };
      const created = await store.create<Omit<Instance, 'seq'>>('instances', instance);
      held.splice(held.indexOf(h), 1);
      if (created) {
        written.set(u.id, created as Instance);
        return;
      }
      // Placed by someone else meanwhile: what they hold stands; ours is freed unless it is the same.
      const winner = await getInstance(store, u.id);
      if (winner?.hostId !== hostId) await unreserve(store, hostId, u.id);
      if (winner?.ip !== ip) await freeInstanceIp(store, { id: u.id, ip });
    });
  } catch (err) {
    // Undone before any runner was told: a refused request announces nothing.
    for (const { u, hostId, ip } of held) {
      await unreserve(store, hostId, u.id);
      await freeInstanceIp(store, { id: u.id, ip });
    }
    await Promise.all([...written.values()].map((i) => dropInstance(store, i)));
    throw err;
  }
  const placed = [...written.values()].sort((a, b) => order.get(a.id)! - order.get(b.id)!);
  await announce(store, placed.reduce((changes, i) => addChange(changes, i.hostId, `placed ${displayName(i)}`), new Map() as HostChanges));
  // New names in the zone: runners fetch the records at their next sync (the hosts told above sync at once).
  if (placed.length) await bumpNetworkSerial(store);
  return placed;
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
 * Moves an instance to another host that satisfies its release's constraints: hold resources there, claim its new
 * fixed address on that host's subnet, point the instance at both (with the spec `render` gives for the new address,
 * when given, in the same write), free the old host and the old address. The old host's runner removes its copy
 * when it next syncs (if it ever does). Returns the new host id, or throws UNSCHEDULABLE with the reason.
 */
export async function migrateInstance(
  store: Store, instance: Instance, constraints: PlacementConstraints,
  render?: (moved: Instance) => Promise<RenderedSpec>, now = new Date(),
): Promise<string> {
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
  let ip: string | undefined;
  let moved: Instance | undefined;
  try {
    ip = await claimAddressOn(store, to, instance.id, new Map(), now);
    const rendered = render ? await render({ ...instance, hostId: to, ip, movedFrom: instance.hostId }) : undefined;
    const respecced = rendered ? {
      spec: rendered.spec, specHash: specHash(rendered.spec), ...(rendered.renderedIps ? { renderedIps: rendered.renderedIps } : {}),
    } : {};
    moved = await store.mutate<Instance>('instances', instance.id, (i) => i && i.hostId === instance.hostId
      ? { ...i, hostId: to, ip, movedFrom: instance.hostId, ...respecced } : undefined);
  } finally {
    if (moved?.hostId !== to) {
      await unreserve(store, to, instance.id);
      if (ip) await freeInstanceIp(store, { id: instance.id, ip });
    }
  }
  if (moved?.hostId !== to) throw new AppError('CONFLICT', `${instance.id} was moved or removed meanwhile`);
  await unreserve(store, instance.hostId, instance.id);
  if (instance.ip) await freeInstanceIp(store, instance);
  await bumpNetworkSerial(store);
  // The old report describes a container on the host being left; the new host's runner reports the new one.
  await forgetContainer(store, instance.id, instance.hostId);
  // Both runners: the new host starts the instance, the old one (if it is alive) removes its copy.
  const name = displayName(instance);
  await announce(store, addChange(addChange(new Map(), to, `${name} moved here from ${instance.hostId}`), instance.hostId, `${name} moved to ${to}`));
  return to;
}

/**
 * Drops the container records of a release that no runner will clear: those whose instance is gone and whose host is
 * DOWN or removed. Should the host come back, its runner removes the containers, since nothing desires them.
 */
export async function forgetLostContainers(store: Store, releaseId: string): Promise<void> {
  for (const c of await containersOfRelease(store, releaseId)) {
    if (await getInstance(store, c.instanceId)) continue;
    const host = await getHost(store, c.hostId);
    if (!host || host.status === 'DOWN') await forgetContainer(store, c.instanceId, c.hostId);
  }
}

/**
 * Gives the instance a new container spec (with the addresses it was rendered with, when the caller renders them);
 * its runner recreates the container when the hash changed.
 */
export async function respecInstance(store: Store, id: string, spec: ContainerSpec | RenderedSpec, restartLog?: string[]): Promise<void> {
  const { spec: next, renderedIps } = 'spec' in spec ? spec : { spec, renderedIps: undefined };
  const hash = specHash(next);
  let changed = false;
  const after = await store.mutate<Instance>('instances', id, (i) => {
    changed = !!i && i.specHash !== hash;
    return changed ? { ...i!, spec: next, specHash: hash, ...(renderedIps ? { renderedIps } : {}), ...(restartLog ? { restartLog } : {}) } : undefined;
  });
  if (changed && after) await announce(store, addChange(new Map(), after.hostId, `${displayName(after)} changed (spec ${hash.slice(0, 8)})`));
}

/**
 * Deletes the instance (its runner then removes the container) and frees what it held on the host it is on now,
 * which may not be the one the caller saw: the delete is conditional on the version read, and retried.
 */
export async function removeInstance(store: Store, instance: Pick<Instance, 'id'>): Promise<void> {
  const dropped = await dropInstance(store, instance);
  if (dropped) await announce(store, addChange(new Map(), dropped.hostId, `removed ${displayName(dropped)}`));
}

async function dropInstance(store: Store, instance: Pick<Instance, 'id'>): Promise<Instance | undefined> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const current = await getInstance(store, instance.id);
    if (!current) return undefined;
    try {
      await store.remove('instances', current.id, current.seq);
    } catch (err) {
      if (err instanceof ConditionFailed) continue;
      throw err;
    }
    await unreserve(store, current.hostId, current.id);
    if (current.ip) {
      await freeInstanceIp(store, current);
      await networkChanged(store, `${displayName(current)} removed`);
    }
    return current;
  }
  throw new ConditionFailed('instances', instance.id);
}

/** At most one network notice to every host per this many ms; changes in between go out together after it. */
const NETWORK_NOTICE_KEY = 'network#notice';

interface NetworkNotice {
  key: string;
  /** When every live host was last told (the API's clock). */
  at: string;
  /** Changes since then that no host has been told of yet (the watchdog tick tells them: announcePendingNetwork). */
  pending: string[];
  seq: number;
}

/**
 * Routes or DNS records changed (an address given or freed, a host joined, an instance started or stopped
 * serving): the serial moves on and every live runner is told to sync, so it serves the new records at once.
 * A notice to every host is one event per host, and every notified runner syncs: telling all hosts of each change
 * would cost hosts × changes (a release of 100 instances coming up on 100 hosts: 10,000 notices and syncs). So at
 * most one such round goes out a second, or on a large fleet every `noticeSeconds` of its cadence (cadence.ts);
 * changes in between are noted and go out together at a later tick (announcePendingNetwork), and a runner's poll
 * picks up the serial anyway.
 */
export async function networkChanged(store: Store, what: string, now = new Date()): Promise<void> {
  await bumpNetworkSerial(store);
  const gapMs = (await fleetCadence(store)).noticeSeconds * 1000;
  let due = false;
  await store.mutate<NetworkNotice>('claims', NETWORK_NOTICE_KEY, (c) => {
    due = !c || Date.parse(c.at) <= now.getTime() - gapMs;
    if (due) return { key: NETWORK_NOTICE_KEY, at: now.toISOString(), pending: [] };
    return c!.pending.includes(what) ? undefined : { ...c!, pending: [...c!.pending, what].slice(-20) };
  }).catch((err) => {
    // A notice is a hint (the serial has moved; polls see it): a record too contended to note it loses nothing.
    due = false;
    if (!(err instanceof ConditionFailed)) throw err;
  });
  if (due) await announceToLiveHosts(store, [what]);
}

/** The network changes noted since the last notice, told to every live host once the gap has passed (a tick). */
export async function announcePendingNetwork(store: Store, now = new Date()): Promise<void> {
  const gapMs = (await fleetCadence(store)).noticeSeconds * 1000;
  let what: string[] = [];
  await store.mutate<NetworkNotice>('claims', NETWORK_NOTICE_KEY, (c) => {
    what = [];
    if (!c?.pending.length || Date.parse(c.at) > now.getTime() - gapMs) return undefined;
    what = c.pending;
    return { key: NETWORK_NOTICE_KEY, at: now.toISOString(), pending: [] };
  });
  if (what.length) await announceToLiveHosts(store, what);
}

/**
 * A round of network notices: one HOST_DESIRED_CHANGED event about no host in particular, on the topic of every live
 * host (one event written and published for the round, not one per host), which asks the runners to spread their
 * syncs over `spreadSeconds` (cadence.ts: noticeSpreadSeconds). Never throws, as announce.
 */
async function announceToLiveHosts(store: Store, what: string[]): Promise<void> {
  const hosts = (await listHostLiveness(store)).filter((h) => h.status !== 'DOWN');
  if (!hosts.length) return;
  const { noticeSpreadSeconds } = await fleetCadence(store);
  try {
    await arkHooks.emit('event', store, {
      kind: HOST_DESIRED_CHANGED, severity: 'INFO', hostId: null, topics: hosts.map((h) => hostTopic(h.id)),
      message: `network changed, told to ${hosts.length} host(s): ${summary(what)}`, ...(noticeSpreadSeconds ? { spreadSeconds: noticeSpreadSeconds } : {}),
    }, new Date());
  } catch (err) {
    log.warn({ err }, 'could not record a network notice; the runners see the change at their next poll');
    return;
  }
  await kick('publish');
}

export const containerName = (i: Pick<Instance, 'releaseName' | 'ordinal'>) => `fz-${i.releaseName}-${i.ordinal}`;

export function toDesired(i: Instance): DesiredContainer {
  const secrets = openAll(i.spec.secretEnv);
  const values = new Map(secrets.map((v) => [v.name, v.value]));
  return {
    instanceId: i.id,
    releaseId: i.releaseId,
    name: containerName(i),
    image: i.spec.image,
    // Hosts pull by the pinned digest from the registry as it is reachable now; unpinned, they use their own images.
    imageDigest: i.spec.imageDigest ?? null,
    registry: i.spec.imageDigest ? config().registry : null,
    specHash: i.specHash,
    desiredState: i.desiredState,
    env: [...i.spec.env, ...secrets],
    ports: i.spec.ports,
    cpuMillis: i.spec.cpuMillis,
    memoryMb: i.spec.memoryMb,
    healthcheck: i.spec.healthcheck,
    domainName: i.domainName,
    ip: i.ip ?? null,
    // Files that hold secrets get their values here, for this host's runner only.
    configFiles: i.spec.configFiles.map((f) => (secretsIn(f.content).length ? { ...f, content: fillSecrets(f.content, values) } : f)),
    stopSignal: i.spec.stopSignal ?? DEFAULT_STOP.signal,
    stopTimeoutSeconds: i.spec.stopTimeoutSeconds ?? DEFAULT_STOP.timeoutSeconds,
    dataPath: i.spec.dataPath ?? null,
    lifecycle: i.spec.lifecycle ?? null,
    replaced: Boolean(i.movedFrom),
  };
}
