import { config } from '../../lib/config';
import { AppError, conflict, notFound } from '../../lib/errors';
import { platformCa, type CertificateInfo } from '../../lib/pca';
import { hashSecret, newId, newSecret } from '../../lib/ids';
import type { EngineInfo } from '../../lib/runner-protocol';
import { forgetHostToken } from '../../lib/auth';
import { dropClaim } from '../../lib/claims';
import { ConditionFailed, type Store, type Versioned } from '../../lib/store';
import * as check from '../../lib/validate';
import { checkHostCsr, issueHostCertificate } from './certificates';
import { fleetChanged, silenceFor } from './cadence';
import { forgetContainer } from './containers';
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
  reservations: Record<string, Reservation>;
  allocated: check.Resources;
  status: HostStatus;
  /** While DOWN: the status it returns to (READY, or the CORDONED or DRAINING an operator set). */
  statusBeforeDown?: HostStatus | null;
  /** By the API's clock. */
  lastHeartbeatAt: string | null;
  engine: EngineInfo | null;
  /** The host's share of the cluster network (FZ_CLUSTER_CIDR); its instances' addresses come from it. */
  subnet?: string | null;
  createdAt: string;
  /** The runner process that beat last; another one is refused while this one is fresh. */
  runnerSession?: string | null;
  /** The heartbeat interval its runner was last told (subgraphs/ark/cadence.ts); its silence is judged by it. */
  heartbeatSeconds?: number | null;
  /** The host's clock minus the API's at the last beat. */
  clockSkewSeconds?: number | null;
  /**
   * How regularly its heartbeats arrive, by the API's clock: folded into the heartbeat's own write (no write of its
   * own), for the daily inspection's jitter check.
   */
  beats?: BeatStats | null;
  /** When the watchdog last probed the notification socket of this (silent) host, and when it last answered. */
  probeSentAt?: string | null;
  socketAnsweredAt?: string | null;
  /** Hash of the host token (its claim's key), so revokeHost can remove it. */
  tokenHash?: string | null;
  /** Set by revokeHost: the host token stopped working then. */
  tokenRevokedAt?: string | null;
  /** The host's client certificate (CA on), and the one it replaced; see certificates.ts. */
  certificate?: CertificateInfo | null;
  previousCertificate?: CertificateInfo | null;
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
  /** With the CA on: the runner's certificate request (PEM); its key stays on the host. */
  csr?: string | null;
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
  await checkHostCsr(input.csr);
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
  fleetChanged(store);
  await bumpNetworkSerial(store);
  await store.create('claims', { key: `host-token#${tokenHash}`, hostId: id });
  const certificate = input.csr && platformCa() ? await issueHostCertificate(store, id, input.csr, config().ca.lifetimeSeconds, now) : null;
  return { host: host as Host, hostToken, certificate };
}

/** The host token's claim goes, and this process stops taking the token at once (lib/auth keeps valid ones 1 s). */
async function forgetToken(store: Store, tokenHash: string): Promise<void> {
  await store.remove('claims', `host-token#${tokenHash}`);
  forgetHostToken(store, tokenHash);
}

/**
 * The host token stops working at once (its claim is removed; other API processes refuse it within a second), and
 * so does its certificate (lib/auth checks the record); the host and its instances stay until removed.
 */
export async function revokeHost(store: Store, id: string, now = new Date()): Promise<Host> {
  const host = await mustGetHost(store, id);
  if (host.tokenHash) await forgetToken(store, host.tokenHash);
  return (await store.mutate<Host>('hosts', id, (h) => h && { ...h, tokenHash: null, tokenRevokedAt: h.tokenRevokedAt ?? now.toISOString() }))!;
}

/**
 * Forgets a host that holds no instances any more (removeHost moved or dropped them first): its token stops working,
 * its container reports go, then its name, address and subnet are free again, and last the host itself. Each step is
 * idempotent and the host item goes last, so a removal cut short by a crash is finished by calling it again.
 */
export async function forgetHost(store: Store, id: string): Promise<Host> {
  const host = await mustGetHost(store, id);
  const left = await store.query<{ id: string }>('instances', 'byHost', id);
  if (left.length) throw conflict(`host ${host.name} still holds ${left.length} instance(s); move or remove them first`);
  if (host.tokenHash) await forgetToken(store, host.tokenHash);
  for (const c of await store.query<{ instanceId: string }>('containers', 'byHost', id)) await forgetContainer(store, c.instanceId, id);
  await dropClaim<{ hostId: string }>(store, 'claims', `host-name#${host.name}`, (c) => c.hostId === id);
  await freeHostNetwork(store, host);
  await store.remove('hosts', id);
  fleetChanged(store);
  return host;
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

/** Where every host is on the cluster network (its address and subnet): the routes between hosts need no more. */
export function listHostAddresses(store: Store): Promise<Pick<Host, 'id' | 'address' | 'subnet'>[]> {
  return store.scan<Host>('hosts', ['id', 'address', 'subnet']);
}

/** What a host's liveness is judged by (subgraphs/butler/watchdog.ts). */
export type HostLiveness = Pick<Host, typeof LIVENESS[number]>;
const LIVENESS = ['id', 'name', 'status', 'lastHeartbeatAt', 'heartbeatSeconds', 'probeSentAt', 'socketAnsweredAt'] as const;

/**
 * Every host with only what its liveness is judged by: the watchdog reads this every tick, so a large fleet's host
 * items (reservations, certificates, engine, beat figures) are not moved and decoded each second.
 */
export async function listHostLiveness(store: Store): Promise<HostLiveness[]> {
  return (await store.scan<Host>('hosts', LIVENESS)).sort((a, b) => a.name.localeCompare(b.name));
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
    if (h.status === 'DOWN') {
      const after = cordoned ? (h.statusBeforeDown === 'DRAINING' ? 'DRAINING' : 'CORDONED') : 'READY';
      return after !== (h.statusBeforeDown ?? 'READY') ? { ...h, statusBeforeDown: after } : undefined;
    }
    if (cordoned && h.status === 'READY') return { ...h, status: 'CORDONED' };
    if (!cordoned && (h.status === 'CORDONED' || h.status === 'DRAINING')) return { ...h, status: 'READY' };
    return undefined;
  }))!;
}

export interface BeatInput {
  /** The runner process's session; null for a sync from a runner that does not beat separately. */
  session: string | null;
  /** The host's clock when it sent the beat, for the skew report only. */
  sentAt?: string | null;
}

/**
 * A runner is alive: records the beat by the API's clock (never the host's), and the interval the runner is told to
 * beat at (`intervalSeconds`). A host that was DOWN comes back to the status an operator left it in, READY or
 * CORDONED or DRAINING (and says so). One live runner per host: while the runner session that beat last is fresh
 * (within its host-down time), a beat from any other session is refused, so a second runner started with the same
 * host token touches nothing; once the old one has gone quiet, the new one takes over.
 */
export async function heartbeat(store: Store, id: string, beat: BeatInput, intervalSeconds: number, now = new Date()): Promise<{ host: Host; cameBack: boolean }> {
  let cameBack = false;
  let holder: Host | null = null;
  const skew = beat.sentAt ? clockSkew(beat.sentAt, now) : null;
  const host = await store.mutate<Host>('hosts', id, (h) => {
    holder = null;
    cameBack = false;
    if (!h) return undefined;
    if (beat.session && h.runnerSession && h.runnerSession !== beat.session && fresh(h, now)) {
      holder = h;
      return undefined;
    }
    cameBack = h.status === 'DOWN';
    return {
      ...h,
      beats: foldBeat(h, beat.session ?? null, now),
      lastHeartbeatAt: now.toISOString(),
      // Back to what an operator made it (a cordon or a drain survives the outage).
      status: h.status === 'DOWN' ? h.statusBeforeDown ?? 'READY' : h.status,
      statusBeforeDown: null,
      runnerSession: beat.session ?? h.runnerSession ?? null,
      clockSkewSeconds: skew ?? h.clockSkewSeconds ?? null,
      heartbeatSeconds: intervalSeconds,
      probeSentAt: null,
    };
  });
  if (!host) throw notFound('host', id);
  if (holder) throw anotherRunner(holder, now);
  return { host, cameBack };
}

export interface BeatStats {
  /** Beats counted since the runner session began. */
  count: number;
  /** Smoothed gap between beats, and the smoothed deviation from it (as TCP smooths round trips), in ms. */
  gapMs: number;
  jitterMs: number;
  /** The longest gap, and when it ended; a longest gap older than a day gives way to the next one. */
  maxGapMs: number;
  maxGapAt: string;
}

const DAY_MS = 86_400_000;

/**
 * The gap since the previous beat, folded into the host's beat figures. A gap is not counted across a new runner
 * session (a restart) or an outage (the host was DOWN): those are not jitter.
 */
export function foldBeat(h: Pick<Host, 'lastHeartbeatAt' | 'runnerSession' | 'status' | 'beats'>, session: string | null, now: Date): BeatStats | null {
  const previous = h.beats ?? null;
  if (!h.lastHeartbeatAt || h.status === 'DOWN' || (session ?? null) !== (h.runnerSession ?? null)) return null;
  const gap = now.getTime() - Date.parse(h.lastHeartbeatAt);
  if (!(gap >= 0)) return previous;
  if (!previous) return { count: 1, gapMs: gap, jitterMs: 0, maxGapMs: gap, maxGapAt: now.toISOString() };
  const stale = now.getTime() - Date.parse(previous.maxGapAt) > DAY_MS;
  return {
    count: previous.count + 1,
    gapMs: Math.round(previous.gapMs * 0.875 + gap * 0.125),
    jitterMs: Math.round(previous.jitterMs * 0.75 + Math.abs(gap - previous.gapMs) * 0.25),
    ...(stale || gap >= previous.maxGapMs ? { maxGapMs: gap, maxGapAt: now.toISOString() } : { maxGapMs: previous.maxGapMs, maxGapAt: previous.maxGapAt }),
  };
}

/** Whether the host's last beat is within its host-down time (its runner is taken to live). */
const fresh = (h: Host, now: Date) => (h.lastHeartbeatAt ?? '') >= new Date(now.getTime() - silenceFor(h).hostDownSeconds * 1000).toISOString();

function anotherRunner(h: Host, now: Date): AppError {
  const ago = ((now.getTime() - Date.parse(h.lastHeartbeatAt!)) / 1000).toFixed(1);
  return conflict(`host ${h.name} is already served by another runner (its last heartbeat was ${ago} s ago): ` +
    'a host token serves one runner at a time; stop the other runner, or give this one its own host (a new join token and --name)');
}

/** Seconds the host's clock is ahead of ours (negative: behind), to 0.1 s; nothing is judged by it. */
function clockSkew(sentAt: string, now: Date): number | null {
  const at = Date.parse(sentAt);
  return Number.isFinite(at) ? Math.round((at - now.getTime()) / 100) / 10 : null;
}

/**
 * Stores what the runner says of its engine, when that changed (a sync is otherwise no write to the host). A host
 * offers no more than its engine has (NCPU, MemTotal), whatever it declared when it joined.
 */
export async function recordEngine(store: Store, host: Host, engine: EngineInfo): Promise<void> {
  const capped = (h: Host) => ({
    cpuMillis: engine.cpuMillis ? Math.min(h.capacity.cpuMillis, engine.cpuMillis) : h.capacity.cpuMillis,
    memoryMb: engine.memoryMb ? Math.min(h.capacity.memoryMb, engine.memoryMb) : h.capacity.memoryMb,
  });
  const cap = capped(host);
  const facts = {
    version: engine.version, os: engine.os,
    diskUsedPercent: engine.diskUsedPercent ?? null, memoryAvailablePercent: engine.memoryAvailablePercent ?? null,
  };
  if (host.engine?.version === facts.version && host.engine?.os === facts.os
    && (host.engine.diskUsedPercent ?? null) === facts.diskUsedPercent && (host.engine.memoryAvailablePercent ?? null) === facts.memoryAvailablePercent
    && cap.cpuMillis === host.capacity.cpuMillis && cap.memoryMb === host.capacity.memoryMb) return;
  await store.mutate<Host>('hosts', host.id, (h) => h && { ...h, engine: facts, capacity: capped(h) });
}

/** A sync carries observed state: refused for a session that is not the host's live runner. */
export function checkSession(host: Host, session: string | null | undefined, now = new Date()): void {
  if (!session || !host.runnerSession || host.runnerSession === session) return;
  if (fresh(host, now)) throw anotherRunner(host, now);
  throw conflict(`host ${host.name}: this runner's session has not been accepted by a heartbeat yet; it syncs after its first heartbeat`);
}

/**
 * Marks a host whose heartbeats stopped DOWN; false when it is already DOWN or beat again in the meantime (the
 * condition is checked again on the item itself, so a beat that lands between the watchdog's read and its write wins).
 */
export async function markDown(store: Store, id: string, staleBefore: string): Promise<boolean> {
  let marked = false;
  await store.mutate<Host>('hosts', id, (h) => {
    marked = Boolean(h && h.status !== 'DOWN' && (h.lastHeartbeatAt ?? '') < staleBefore);
    return marked ? { ...h!, status: 'DOWN', statusBeforeDown: h!.status } : undefined;
  });
  return marked;
}

/** The watchdog asked the host's notification socket whether the runner is there (see butler/watchdog.ts). */
export async function recordProbe(store: Store, id: string, now = new Date()): Promise<void> {
  await store.mutate<Host>('hosts', id, (h) => h && { ...h, probeSentAt: now.toISOString() });
}

/** The runner answered a probe on its notification socket: it lives, whatever its HTTP heartbeats say. */
export async function recordSocketAnswer(store: Store, id: string, now = new Date()): Promise<void> {
  await store.mutate<Host>('hosts', id, (h) => h && { ...h, socketAnsweredAt: now.toISOString() });
}

/** Drains a host: no new placements, and the watchdog moves its instances away one at a time. */
export async function drainHost(store: Store, id: string): Promise<Host> {
  const host = await mustGetHost(store, id);
  if (host.status === 'DOWN') throw conflict(`host ${host.name} is DOWN; its instances are moved automatically`);
  return (await store.mutate<Host>('hosts', id, (h) => h && h.status !== 'DRAINING' ? { ...h, status: 'DRAINING' } : undefined))!;
}

/**
 * Resources held for one instance. `reservedAt` (absent on reservations written before it) tells a placement in
 * progress, which reserves before it writes its instance, from one a crash left behind (subgraphs/ark/ledger.ts).
 */
export type Reservation = check.Resources & { reservedAt?: string };

const sum = (list: check.Resources[]) => list.reduce(
  (a, r) => ({ cpuMillis: a.cpuMillis + r.cpuMillis, memoryMb: a.memoryMb + r.memoryMb }), { cpuMillis: 0, memoryMb: 0 });

/**
 * Holds resources on a host for one instance. A conditional write on the host item, so concurrent deploys can
 * never over-commit it; holding twice for the same instance is a no-op. Returns false when it no longer fits.
 */
export async function reserve(store: Store, hostId: string, instanceId: string, want: check.Resources, now = new Date()): Promise<boolean> {
  let fits = false;
  await store.mutate<Host>('hosts', hostId, (host) => {
    fits = false;
    if (!host || host.status !== 'READY') return undefined;
    if (host.reservations[instanceId]) { fits = true; return undefined; }
    const reservations = { ...host.reservations, [instanceId]: { ...want, reservedAt: now.toISOString() } };
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

/**
 * Since when the watchdog has been ticking without a gap. A gap longer than two ticks (the API was down, or the
 * ticks stalled) restarts it: heartbeats that went missing while nobody watched prove nothing about the hosts.
 */
export async function watchingSince(store: Store, tickSeconds: number, now = new Date()): Promise<string> {
  const gapBefore = new Date(now.getTime() - (2 * tickSeconds + 1) * 1000).toISOString();
  const at = now.toISOString();
  const record = await store.mutate<{ key: string; lastTickAt: string; since: string; seq: number }>('claims', 'watchdog#watching', (c) => ({
    key: 'watchdog#watching',
    lastTickAt: at,
    since: !c || c.lastTickAt < gapBefore ? at : c.since,
  }));
  return record!.since;
}
