import { AppError, conflict, notFound } from '../../lib/errors';
import { hashSecret, newId, newSecret } from '../../lib/ids';
import type { EngineInfo } from '../../lib/runner-protocol';
import { ConditionFailed, type Store, type Versioned } from '../../lib/store';
import * as check from '../../lib/validate';
import { bumpNetworkSerial, checkHostNetworks, claimHostAddress, claimSubnet, clusterNetwork, freeHostNetwork } from './network';

export type HostStatus = 'READY' | 'DOWN' | 'CORDONED' | 'DRAINING';

export interface Host extends Versioned {
  id: string;
  name: string;
  address: string;
  labels: check.Label[];
  exclusiveFor: string | null;
  capacity: check.Resources;
  /** What each placed instance holds on this host; `allocated` is their sum. */
  reservations: Record<string, check.Resources>;
  allocated: check.Resources;
  status: HostStatus;
  lastHeartbeatAt: string | null;
  engine: EngineInfo | null;
  /** The host's share of the cluster network (FZ_CLUSTER_CIDR); its instances' addresses come from it. */
  subnet?: string | null;
  createdAt: string;
  /** Hash of the host token (its claim's key), so revokeHost can remove it. */
  tokenHash?: string | null;
  /** Set by revokeHost: the host token stopped working then. */
  tokenRevokedAt?: string | null;
}

interface JoinClaim {
  key: string;
  expiresAt: string;
}

export async function createJoinToken(store: Store, ttlSeconds: number, now = new Date()) {
  check.intInRange(ttlSeconds, 'ttlSeconds', 60, 7 * 24 * 3600);
  const token = newSecret('fzj');
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000).toISOString();
  await store.create<JoinClaim>('claims', { key: `join-token#${hashSecret(token)}`, expiresAt });
  return { token, expiresAt };
}

export interface RegisterHostInput {
  joinToken: string;
  name: string;
  address: string;
  labels?: check.Label[] | null;
  capacity: check.Resources;
  /** The CIDRs of the host's own interfaces, which the cluster network must not overlap. */
  networks?: string[] | null;
}

const ADDRESS = /^[A-Za-z0-9.:-]{1,253}$/;

/**
 * Exchanges a join token for a host and its own token. The name, the address and a subnet of the cluster network
 * are claimed first (conditional writes), so two runners racing for one of them cannot both win; a refusal gives
 * back what this call claimed. The host token is returned once and stored only as a hash.
 */
export async function registerHost(store: Store, input: RegisterHostInput, now = new Date()) {
  const joinKey = `join-token#${hashSecret(input.joinToken)}`;
  const join = await store.get<JoinClaim & Versioned>('claims', joinKey);
  const invalid = () => new AppError('UNAUTHENTICATED', 'the join token is not valid, was used already or has expired: ask an admin for a new one (createJoinToken)');
  if (!join || join.expiresAt < now.toISOString()) throw invalid();
  const name = check.dnsLabel(input.name, 'name', 63);
  if (!ADDRESS.test(input.address)) throw check.badAddress(input.address);
  const labels = check.labels(input.labels, 'labels');
  const capacity = check.resources(input.capacity, 'capacity');
  const net = clusterNetwork();
  checkHostNetworks(net, input.networks ?? []);
  // Single use: the token is spent by a conditional delete, so of two runners racing with it exactly one goes on.
  try {
    await store.remove('claims', joinKey, join.seq);
  } catch (err) {
    if (err instanceof ConditionFailed) throw invalid();
    throw err;
  }
  const id = newId('h');
  const claimed = await store.create('claims', { key: `host-name#${name}`, hostId: id });
  if (!claimed) {
    const existing = await store.get<{ hostId: string }>('claims', `host-name#${name}`);
    throw conflict(`a host named "${name}" is already registered (${existing?.hostId}); pick another name, or restart its runner with its saved state`);
  }
  const hostToken = newSecret('fzh');
  const tokenHash = hashSecret(hostToken);
  let subnet: string | null = null;
  try {
    await claimHostAddress(store, id, input.address, (hostId) => getHost(store, hostId), now);
    subnet = await claimSubnet(store, id, (hostId) => getHost(store, hostId), net, now);
  } catch (err) {
    await freeHostNetwork(store, { id, address: input.address, subnet });
    await store.remove('claims', `host-name#${name}`);
    throw err;
  }
  const host = await store.create<Omit<Host, 'seq'>>('hosts', {
    id, name, address: input.address, labels, exclusiveFor: null, capacity,
    reservations: {}, allocated: { cpuMillis: 0, memoryMb: 0 },
    status: 'READY', lastHeartbeatAt: now.toISOString(), engine: null, subnet, createdAt: now.toISOString(), tokenHash,
  });
  await bumpNetworkSerial(store);
  await store.create('claims', { key: `host-token#${tokenHash}`, hostId: id });
  return { host: host as Host, hostToken };
}

/** The host token stops working at once (its claim is removed); the host and its instances stay until removed. */
export async function revokeHost(store: Store, id: string, now = new Date()): Promise<Host> {
  const host = await mustGetHost(store, id);
  if (host.tokenHash) await store.remove('claims', `host-token#${host.tokenHash}`);
  return (await store.mutate<Host>('hosts', id, (h) => h && { ...h, tokenHash: null, tokenRevokedAt: h.tokenRevokedAt ?? now.toISOString() }))!;
}

export const getHost = (store: Store, id: string) => store.get<Host>('hosts', id);

/** A host registered before the cluster network existed gets its subnet at its next sync. */
export async function ensureSubnet(store: Store, host: Host, now = new Date()): Promise<Host & { subnet: string }> {
  if (host.subnet) return host as Host & { subnet: string };
  const subnet = await claimSubnet(store, host.id, (id) => getHost(store, id), clusterNetwork(), now);
  const updated = await store.mutate<Host>('hosts', host.id, (h) => h && !h.subnet ? { ...h, subnet } : undefined);
  if (updated?.subnet !== subnet) await freeHostNetwork(store, { id: host.id, address: '', subnet });
  else await bumpNetworkSerial(store);
  return { ...updated!, subnet: updated!.subnet! };
}

export async function mustGetHost(store: Store, id: string): Promise<Host> {
  const host = await getHost(store, id);
  if (!host) throw notFound('host', id);
  return host;
}

export async function listHosts(store: Store): Promise<Host[]> {
  return (await store.scan<Host>('hosts')).sort((a, b) => a.name.localeCompare(b.name));
}

export async function labelHost(store: Store, id: string, labels: check.Label[]): Promise<Host> {
  const valid = check.labels(labels, 'labels');
  await mustGetHost(store, id);
  return (await store.mutate<Host>('hosts', id, (host) => host && { ...host, labels: valid }))!;
}

/**
 * Dedicates a host to one product, or frees it (null). Refused while instances of another product run there, so a
 * dedicated host never holds anything else.
 */
export async function setHostExclusive(store: Store, id: string, product: string | null, othersOnHost: (hostId: string, product: string) => Promise<string[]>): Promise<Host> {
  await mustGetHost(store, id);
  if (product !== null) {
    const others = await othersOnHost(id, product);
    if (others.length) throw conflict(`host ${id} runs instances of other products (${others.slice(0, 5).join(', ')}); drain or move them first`);
  }
  return (await store.mutate<Host>('hosts', id, (h) => h && h.exclusiveFor !== product ? { ...h, exclusiveFor: product } : undefined))!;
}

/** Cordoned hosts take no new placements; instances already there stay. */
export async function setCordoned(store: Store, id: string, cordoned: boolean): Promise<Host> {
  await mustGetHost(store, id);
  return (await store.mutate<Host>('hosts', id, (h) => {
    if (!h) return undefined;
    if (cordoned && h.status === 'READY') return { ...h, status: 'CORDONED' };
    if (!cordoned && (h.status === 'CORDONED' || h.status === 'DRAINING')) return { ...h, status: 'READY' };
    return undefined;
  }))!;
}

/** A runner's sync is its heartbeat; a host that was marked DOWN comes back READY (and says so). */
export async function heartbeat(store: Store, id: string, engine: EngineInfo | null, now = new Date()): Promise<{ host: Host; cameBack: boolean }> {
  let cameBack = false;
  const host = await store.mutate<Host>('hosts', id, (h) => {
    cameBack = h?.status === 'DOWN';
    return h && {
      ...h,
      lastHeartbeatAt: now.toISOString(),
      engine: engine ? { version: engine.version, os: engine.os } : h.engine,
      // A host offers no more than its engine has, whatever it declared when it joined.
      capacity: {
        cpuMillis: engine?.cpuMillis ? Math.min(h.capacity.cpuMillis, engine.cpuMillis) : h.capacity.cpuMillis,
        memoryMb: engine?.memoryMb ? Math.min(h.capacity.memoryMb, engine.memoryMb) : h.capacity.memoryMb,
      },
      status: h.status === 'DOWN' ? 'READY' : h.status,
    };
  });
  if (!host) throw notFound('host', id);
  return { host, cameBack };
}

/** Marks a host whose heartbeats stopped DOWN; false when it is already DOWN or beat again in the meantime. */
export async function markDown(store: Store, id: string, staleBefore: string): Promise<boolean> {
  let marked = false;
  await store.mutate<Host>('hosts', id, (h) => {
    marked = Boolean(h && h.status !== 'DOWN' && (h.lastHeartbeatAt ?? '') < staleBefore);
    return marked ? { ...h!, status: 'DOWN' } : undefined;
  });
  return marked;
}

/** Drains a host: no new placements, and the watchdog moves its instances away one at a time. */
export async function drainHost(store: Store, id: string): Promise<Host> {
  const host = await mustGetHost(store, id);
  if (host.status === 'DOWN') throw conflict(`host ${host.name} is DOWN; its instances are moved automatically`);
  return (await store.mutate<Host>('hosts', id, (h) => h && h.status !== 'DRAINING' ? { ...h, status: 'DRAINING' } : undefined))!;
}

const sum = (list: check.Resources[]) => list.reduce(
  (a, r) => ({ cpuMillis: a.cpuMillis + r.cpuMillis, memoryMb: a.memoryMb + r.memoryMb }), { cpuMillis: 0, memoryMb: 0 });

/**
 * Holds resources on a host for one instance. A conditional write on the host item, so concurrent deploys can
 * never over-commit it; holding twice for the same instance is a no-op. Returns false when it no longer fits.
 */
export async function reserve(store: Store, hostId: string, instanceId: string, want: check.Resources): Promise<boolean> {
  let fits = false;
  await store.mutate<Host>('hosts', hostId, (host) => {
    fits = false;
    if (!host || host.status !== 'READY') return undefined;
    if (host.reservations[instanceId]) { fits = true; return undefined; }
    const reservations = { ...host.reservations, [instanceId]: want };
    const allocated = sum(Object.values(reservations));
    if (allocated.cpuMillis > host.capacity.cpuMillis || allocated.memoryMb > host.capacity.memoryMb) return undefined;
    fits = true;
    return { ...host, reservations, allocated };
  });
  return fits;
}

export async function unreserve(store: Store, hostId: string, instanceId: string): Promise<void> {
  await store.mutate<Host>('hosts', hostId, (host) => {
    if (!host || !host.reservations[instanceId]) return undefined;
    const { [instanceId]: _gone, ...reservations } = host.reservations;
    return { ...host, reservations, allocated: sum(Object.values(reservations)) };
  });
}
