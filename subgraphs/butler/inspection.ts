import { config } from '../../lib/config';
import type { Store, Versioned } from '../../lib/store';
import { newId } from '../../lib/ids';
import { checkLedger, instancesOfRelease, isServing, listContainers, listHosts, silenceFor, type ContainerRecord, type Host, type Instance, type LedgerDrift } from '../ark';
import { listReleases, type Release } from '../panama';
import { raise, resolveAlarm } from './alarms';
import { pageOf, pageSize, SEVERITY_RANK, type Page, type PlatformEvent, type Severity } from './events';

/**
 * Daily inspection (日常巡检): plain checks over what the control plane knows of hosts, instances and releases,
 * stored as a report with a score. Critical findings raise alarms (one per finding, deduplicated by cause) that
 * resolve when a later inspection no longer finds them.
 */
export interface Finding {
  severity: Severity;
  /** Which check found it, e.g. `host.heartbeat`. */
  check: string;
  /** What it is about: `host/<name>`, `instance/<domain name>`, `release/<name>`. */
  subject: string;
  message: string;
  /** The release an instance's or a release's finding belongs to (what a scoped key's view keeps). */
  releaseId?: string;
}

export interface Inspection extends Versioned {
  id: string;
  trigger: 'SCHEDULED' | 'ON_DEMAND';
  startedAt: string;
  finishedAt: string;
  score: number;
  findings: Finding[];
}

export interface FleetView {
  hosts: Host[];
  releases: Release[];
  instances: Instance[];
  containers: ContainerRecord[];
  /** How often runners sync; a heartbeat older than a few of these is late. */
  pollSeconds: number;
  /** Where a host's books disagree with the instances placed on it. */
  ledgerDrift?: LedgerDrift[];
  /** Per instance: how often its container turned unhealthy in the last 24 h (from the events). */
  healthFlaps?: Map<string, number>;
  /** A host certificate this close to its expiry is a finding (FZ_CERT_WARNING_SECONDS). */
  certificateWarningSeconds?: number;
}

/** A host clock this far off the API's is worth a warning (NTP keeps hosts within milliseconds). */
const CLOCK_SKEW_SECONDS = 2;
const DISK_WARNING_PERCENT = 85;
const DISK_CRITICAL_PERCENT = 95;
/** Below this share of available memory a host is under pressure. */
const MEMORY_AVAILABLE_PERCENT = 10;
/** A gap between heartbeats of half the time that declares a host DOWN is a near miss. */
const BEAT_GAP_SHARE = 0.5;
/** Beats that wander by half their interval on average are irregular. */
const BEAT_JITTER_SHARE = 0.5;
/** A container that turned unhealthy this often in 24 h flaps. */
const HEALTH_FLAPS = 3;
const seconds = (ms: number) => (ms / 1000).toFixed(1);

const pct = (part: number, whole: number) => (whole > 0 ? Math.round((part / whole) * 100) : 0);
const MB = 1024 * 1024;

function inspectHosts({ hosts, pollSeconds, certificateWarningSeconds = 7 * 86_400 }: FleetView, now: Date): Finding[] {
  const out: Finding[] = [];
  const engines = new Map<string, number>();
  for (const h of hosts) if (h.engine) engines.set(h.engine.version, (engines.get(h.engine.version) ?? 0) + 1);
  const usual = [...engines].sort((a, b) => b[1] - a[1])[0]?.[0];
  for (const h of hosts) {
    const subject = `host/${h.name}`;
    if (h.status === 'DOWN') out.push({ severity: 'CRITICAL', check: 'host.status', subject, message: 'the host is DOWN: its runner stopped reporting' });
    else if (h.status !== 'READY') out.push({ severity: 'INFO', check: 'host.status', subject, message: `the host is ${h.status}: nothing new is placed on it` });
    const age = h.lastHeartbeatAt ? (now.getTime() - Date.parse(h.lastHeartbeatAt)) / 1000 : Infinity;
    if (h.status !== 'DOWN' && age > pollSeconds * 3) {
      out.push({ severity: 'WARNING', check: 'host.heartbeat', subject, message: `last heartbeat ${Number.isFinite(age) ? `${Math.round(age)} s ago` : 'never'} (runners sync every ${pollSeconds} s)` });
    }
    const disk = h.engine?.diskUsedPercent;
    if (h.status !== 'DOWN' && disk != null && disk >= DISK_WARNING_PERCENT) {
      out.push({ severity: disk >= DISK_CRITICAL_PERCENT ? 'CRITICAL' : 'WARNING', check: 'host.disk', subject, message: `the file system of its Docker root dir is ${disk}% full: pulls and containers' writes fail when it is full (docker image prune, or grow it)` });
    }
    const memory = h.engine?.memoryAvailablePercent;
    if (h.status !== 'DOWN' && memory != null && memory < MEMORY_AVAILABLE_PERCENT) {
      out.push({ severity: 'WARNING', check: 'host.memory-pressure', subject, message: `only ${memory}% of its memory is available: the kernel may start killing containers (OOM)` });
    }
    const beats = h.beats;
    if (h.status !== 'DOWN' && beats && beats.count >= 10) {
      // The interval this host's runner was told to beat at, and the silence that declares it DOWN.
      const { heartbeatSeconds, hostDownSeconds } = silenceFor(h);
      const downMs = hostDownSeconds * 1000;
      if (beats.maxGapMs >= downMs * BEAT_GAP_SHARE) {
        out.push({ severity: 'WARNING', check: 'host.heartbeat-jitter', subject, message: `a gap of ${seconds(beats.maxGapMs)} s between two heartbeats at ${beats.maxGapAt} (it beats every ${heartbeatSeconds} s; ${hostDownSeconds} s without one declare it DOWN and move its instances): its runner or its link to the API stalls — look at the host's load, swap and network, and the runner's log at that time` });
      } else if (beats.jitterMs >= heartbeatSeconds * 1000 * BEAT_JITTER_SHARE) {
        out.push({ severity: 'INFO', check: 'host.heartbeat-jitter', subject, message: `its heartbeats arrive every ${seconds(beats.gapMs)} s ± ${seconds(beats.jitterMs)} s (it beats every ${heartbeatSeconds} s): the runner or its link is irregular — look at the host's load and network` });
      }
    }
    const skew = h.clockSkewSeconds ?? 0;
    if (h.status !== 'DOWN' && Math.abs(skew) >= CLOCK_SKEW_SECONDS) {
      out.push({ severity: 'WARNING', check: 'host.clock-skew', subject, message: `its clock is ${Math.abs(Math.round(skew))} s ${skew > 0 ? 'ahead of' : 'behind'} the API's: heartbeats are judged by the API's clock, but logs, certificates and the middleware's own timeouts are not (run NTP on the host)` });
    }
    const certificateLeft = h.certificate && !h.tokenRevokedAt ? Date.parse(h.certificate.notAfter) - now.getTime() : Infinity;
    if (certificateLeft < certificateWarningSeconds * 1000) {
      out.push({ severity: certificateLeft <= 0 ? 'CRITICAL' : 'WARNING', check: 'host.certificate', subject, message: `its client certificate ${certificateLeft <= 0 ? 'expired' : 'expires'} at ${h.certificate!.notAfter} and was not renewed (its runner renews it at 2/3 of its lifetime)` });
    }
    if (h.engine && usual && h.engine.version !== usual) {
      out.push({ severity: 'WARNING', check: 'host.engine-drift', subject, message: `Docker ${h.engine.version} while most hosts run ${usual}` });
    }
    for (const [what, used, cap] of [['memory', h.allocated.memoryMb, h.capacity.memoryMb], ['CPU', h.allocated.cpuMillis, h.capacity.cpuMillis]] as const) {
      if (pct(used, cap) >= 90) out.push({ severity: 'WARNING', check: 'host.allocation', subject, message: `${pct(used, cap)}% of its ${what} is allocated: new instances may not fit` });
    }
  }
  return out;
}

function inspectInstances({ instances, containers, releases, healthFlaps }: FleetView, now: Date): Finding[] {
  const out: Finding[] = [];
  const byInstance = new Map(containers.map((c) => [c.instanceId, c]));
  const upgrading = new Set(releases.filter((r) => r.upgrade && !r.upgrade.finishedAt).map((r) => r.id));
  for (const i of instances) {
    if (i.desiredState !== 'RUNNING') continue;
    const subject = `instance/${i.domainName}`;
    const about = { subject, releaseId: i.releaseId };
    const c = byInstance.get(i.id);
    if (!c) { out.push({ severity: 'WARNING', check: 'instance.reported', ...about, message: 'no runner has reported its container' }); continue; }
    if (!isServing(c)) out.push({ severity: 'CRITICAL', check: 'instance.health', ...about, message: `the container is ${c.state.toLowerCase()}, health ${c.health.toLowerCase()}${c.error ? `: ${c.error}` : ''}` });
    if (c.oomKilled) out.push({ severity: 'CRITICAL', check: 'instance.oom', ...about, message: 'the container was killed for running out of memory' });
    if (c.restartCount >= 3) out.push({ severity: 'WARNING', check: 'instance.restarts', ...about, message: `restarted ${c.restartCount} times` });
    if (c.specHash !== i.specHash && !upgrading.has(i.releaseId)) {
      out.push({ severity: 'WARNING', check: 'instance.spec-drift', ...about, message: 'the container does not run the spec (image, env, config files) the release asks for' });
    }
    const flaps = healthFlaps?.get(i.id) ?? 0;
    if (flaps >= HEALTH_FLAPS) {
      out.push({ severity: 'WARNING', check: 'instance.health-flaps', ...about, message: `its container turned unhealthy ${flaps} times in 24 h: its healthcheck passes and fails by turns (a timeout too tight for the load, a dependency that comes and goes, a resource limit); read its events and logs` });
    }
    if (c.configDrift?.length && c.specHash === i.specHash) {
      out.push({ severity: 'WARNING', check: 'instance.config-drift', ...about, message: `config files in the container differ from the release's rendered config: ${c.configDrift.join(', ')} (edited inside the container, or rewritten by the product); the release's files are in configFiles — change the release's config instead, and restartInstance re-creates the container with them` });
    }
    if (c.stats && pct(c.stats.memoryBytes, i.spec.memoryMb * MB) >= 90) {
      out.push({ severity: 'WARNING', check: 'instance.memory', ...about, message: `uses ${Math.round(c.stats.memoryBytes / MB)} MB of its ${i.spec.memoryMb} MB limit` });
    }
    if (c.startedAt && now.getTime() - Date.parse(c.startedAt) < 10 * 60_000 && Date.parse(i.createdAt) < Date.parse(c.startedAt) - 60_000) {
      out.push({ severity: 'INFO', check: 'instance.uptime', ...about, message: `up only since ${c.startedAt}: it was restarted recently` });
    }
  }
  return out;
}

function inspectReleases({ releases, instances, containers, hosts }: FleetView): Finding[] {
  const out: Finding[] = [];
  const serving = new Set(containers.filter(isServing).map((c) => c.instanceId));
  const byId = new Map(releases.map((r) => [r.id, r]));
  const healthy = (r: Release) => instances.filter((i) => i.releaseId === r.id && serving.has(i.id)).length;
  // Hosts are put in zones by their `zone` label (as spreadBy: "zone" reads it).
  const zoneOf = new Map(hosts.map((h) => [h.id, h.labels.find((l) => l.key === 'zone')?.value ?? null]));
  const zones = new Set([...zoneOf.values()].filter(Boolean));
  for (const r of releases) {
    if (r.phase === 'DELETING') continue;
    const subject = `release/${r.name}`;
    const about = { subject, releaseId: r.id };
    const own = instances.filter((i) => i.releaseId === r.id);
    const ok = healthy(r);
    if (r.phase === 'ACTIVE' && ok < r.replicas) {
      out.push({ severity: ok === 0 ? 'CRITICAL' : 'WARNING', check: 'release.replicas', ...about, message: `${ok} of ${r.replicas} replicas are healthy` });
    }
    const onHosts = new Set(own.map((i) => i.hostId));
    if (own.length > 1 && onHosts.size === 1 && hosts.length > 1) {
      out.push({ severity: 'WARNING', check: 'release.spread', ...about, message: `all ${own.length} instances run on one host: losing it loses the release` });
    } else if (own.length > 1 && zones.size > 1) {
      const inZones = new Set(own.map((i) => zoneOf.get(i.hostId ?? '') ?? null));
      const [only] = [...inZones];
      if (inZones.size === 1 && only) out.push({ severity: 'WARNING', check: 'release.zone-spread', ...about, message: `all ${own.length} instances run in zone ${only} while the fleet has ${zones.size} zones: losing it loses the release (deploy with spreadBy: "zone")` });
    }
    for (const depId of r.dependsOn) {
      const dep = byId.get(depId);
      if (dep && healthy(dep) < dep.replicas) out.push({ severity: 'WARNING', check: 'release.dependency', ...about, message: `depends on ${dep.name}, which has ${healthy(dep)} of ${dep.replicas} replicas healthy` });
    }
    if (r.upgrade?.state === 'ROLLED_BACK' || r.upgrade?.state === 'FAILED') {
      out.push({ severity: 'INFO', check: 'release.upgrade', ...about, message: `the last ${r.upgrade.kind.toLowerCase()} to ${r.upgrade.toVersion} ended ${r.upgrade.state.toLowerCase().replace('_', ' ')}` });
    }
  }
  return out;
}

/**
 * One finding per host whose books drifted (ark's ledger check, the one `fz doctor` runs): `allocated` is not the sum
 * of what its instances hold. A warning: nothing stops serving, but placement decides on wrong numbers until
 * `fz doctor --repair` (or `repairLedger`) rewrites them.
 */
function inspectLedger({ hosts, ledgerDrift = [] }: FleetView): Finding[] {
  const byHost = new Map<string, LedgerDrift[]>();
  for (const d of ledgerDrift) byHost.set(d.hostId, [...(byHost.get(d.hostId) ?? []), d]);
  return [...byHost].map(([hostId, drift]) => ({
    severity: 'WARNING' as const, check: 'host.ledger', subject: `host/${hosts.find((h) => h.id === hostId)?.name ?? hostId}`,
    message: `its allocated resources do not match its instances: ${drift.map((d) => d.message).join('; ')}; run fz doctor --repair`,
  }));
}

/** Every finding, most severe first. */
export function inspect(view: FleetView, now = new Date()): Finding[] {
  return [...inspectHosts(view, now), ...inspectLedger(view), ...inspectInstances(view, now), ...inspectReleases(view)]
    .sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.subject.localeCompare(b.subject));
}

/** 100 for a clean fleet; each critical finding costs 20, each warning 5, notes nothing. */
export const score = (findings: Finding[]) =>
  Math.max(0, 100 - findings.reduce((s, f) => s + (f.severity === 'CRITICAL' ? 20 : f.severity === 'WARNING' ? 5 : 0), 0));

/**
 * The inspection as a key scoped to some releases sees it: the findings of those releases and their instances, and
 * those of the (shared) hosts but their books, which name every instance on them; scored on what is left.
 */
export function inspectionOf(i: Inspection, releases: Set<string>): Inspection {
  const findings = i.findings.filter((f) => (f.releaseId ? releases.has(f.releaseId) : f.subject.startsWith('host/') && f.check !== 'host.ledger'));
  return { ...i, findings, score: score(findings) };
}

const causeOf = (f: Finding) => `${f.check}#${f.subject}`;

async function fleetView(store: Store, pollSeconds: number, now: Date): Promise<FleetView> {
  const [hosts, releases, containers, ledgerDrift] = await Promise.all([listHosts(store), listReleases(store), listContainers(store), checkLedger(store, false)]);
  const instances = (await Promise.all(releases.map((r) => instancesOfRelease(store, r.id)))).flat();
  const healthFlaps = await countHealthFlaps(store, releases.map((r) => r.id), now);
  return { hosts, releases, instances, containers, pollSeconds, ledgerDrift, healthFlaps, certificateWarningSeconds: config().ca.warningSeconds };
}

/** Most container events of one release read for the flap count: a bounded read per release. */
const FLAP_EVENTS = 5000;

/**
 * Per instance, how often its container turned unhealthy in the 24 h before `now`: the container status events of
 * each release in that time (a Query on the release's time-ordered index, from the cutoff on).
 */
async function countHealthFlaps(store: Store, releaseIds: string[], now: Date): Promise<Map<string, number>> {
  const cutoff = new Date(now.getTime() - 86_400_000).toISOString();
  const flaps = new Map<string, number>();
  for (const releaseId of releaseIds) {
    const events = await store.queryRange<PlatformEvent>('events', 'byRelease', releaseId, { above: cutoff, limit: FLAP_EVENTS, where: { kind: 'CONTAINER_STATUS' } });
    for (const e of events) {
      if (!e.instanceId || e.health?.after !== 'UNHEALTHY' || e.health.before === 'UNHEALTHY') continue;
      flaps.set(e.instanceId, (flaps.get(e.instanceId) ?? 0) + 1);
    }
  }
  return flaps;
}

export async function runInspection(store: Store, trigger: Inspection['trigger'], pollSeconds: number, now = new Date()): Promise<Inspection> {
  const previous = (await listInspections(store, 1)).nodes[0];
  const findings = inspect(await fleetView(store, pollSeconds, now), now);
  const id = newId('insp');
  const inspection = (await store.create<Omit<Inspection, 'seq'>>('inspections', {
    id, trigger, startedAt: now.toISOString(), finishedAt: new Date().toISOString(), score: score(findings), findings,
    ...inspectionKeys({ id, startedAt: now.toISOString() }),
  })) as Inspection;
  const critical = findings.filter((f) => f.severity === 'CRITICAL');
  // A release's finding raises an alarm of that release: its team (a scoped key) sees it.
  for (const f of critical) {
    await raise(store, { kind: 'INSPECTION_CRITICAL', severity: 'CRITICAL', message: `inspection: ${f.subject}: ${f.message}`, cause: causeOf(f), ...(f.releaseId ? { releaseId: f.releaseId } : {}) });
  }
  const still = new Set(critical.map(causeOf));
  for (const f of previous?.findings ?? []) if (f.severity === 'CRITICAL' && !still.has(causeOf(f))) await resolveAlarm(store, 'INSPECTION_CRITICAL', causeOf(f));
  return inspection;
}

const SCHEDULE = 'inspection-schedule';

/**
 * The scheduled inspection: the first tick sets the next due time one interval ahead; the tick that finds it due
 * moves it on with a conditional write, so one tick of any number of replicas runs each inspection.
 */
export async function inspectIfDue(store: Store, intervalHours: number, pollSeconds: number, now = new Date()): Promise<Inspection | undefined> {
  const next = new Date(now.getTime() + intervalHours * 3600_000).toISOString();
  const schedule = await store.get<{ key: string; nextAt: string } & Versioned>('butlerClaims', SCHEDULE);
  if (!schedule) { await store.create('butlerClaims', { key: SCHEDULE, nextAt: next }); return undefined; }
  if (schedule.nextAt > now.toISOString()) return undefined;
  const won = await store.replace('butlerClaims', { ...schedule, nextAt: next }).then(() => true, () => false);
  return won ? runInspection(store, 'SCHEDULED', pollSeconds, now) : undefined;
}

export const getInspection = (store: Store, id: string) => store.get<Inspection>('inspections', id);

const STREAM = 'inspections';
/** Index keys of an inspection: all of them in one time-ordered index (`byTime`), `<startedAt>~<id>`. */
export const inspectionKeys = (i: Pick<Inspection, 'id' | 'startedAt'>) => ({ stream: STREAM, startedKey: `${i.startedAt}~${i.id}` });

/** Newest first; the cursor is the start time and id. A Query on the time index: a page reads a page. */
export async function listInspections(store: Store, first = 20, after?: string | null): Promise<Page<Inspection>> {
  const items = await store.queryRange<Inspection>('inspections', 'byTime', STREAM, { descending: true, below: after ?? undefined, limit: pageSize(first) + 1 });
  return pageOf(items, first, (i) => inspectionKeys(i).startedKey);
}
