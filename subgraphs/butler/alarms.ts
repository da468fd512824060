import { conflict, notFound } from '../../lib/errors';
import { claim, dropClaim, olderThanLease } from '../../lib/claims';
import { newId } from '../../lib/ids';
import type { Store, Versioned } from '../../lib/store';
import { channelsFor, getRelease } from '../panama';
import { mergedPage, pageOf, pageSize, recordEvent, SEVERITY_RANK, type Page, type Severity } from './events';

export type AlarmKind = 'HOST_DOWN' | 'CONTAINER_UNHEALTHY' | 'CONTAINER_RESTARTED' | 'CONTAINER_OOM' | 'CONTAINER_CRASH_LOOP'
  | 'INSTANCE_MIGRATED' | 'DEPLOY_FAILED' | 'UPGRADE_ROLLED_BACK' | 'INSPECTION_CRITICAL' | 'MEMORY_HIGH' | 'CERTIFICATE_EXPIRING' | 'TEST';

export interface Notification {
  channelId: string;
  status: 'PENDING' | 'DELIVERED' | 'FAILED';
  attempts: number;
  lastError: string | null;
  deliveredAt: string | null;
  nextAttemptAt: string | null;
}

export interface Alarm extends Versioned {
  id: string;
  kind: AlarmKind;
  severity: Severity;
  message: string;
  /** What the alarm is about, e.g. `host:h-1` or `instance:r-1-0`: one firing alarm per kind and cause. */
  cause: string;
  hostId: string | null;
  instanceId: string | null;
  releaseId: string | null;
  state: 'FIRING' | 'ACKNOWLEDGED' | 'RESOLVED';
  raisedAt: string;
  acknowledgedAt: string | null;
  resolvedAt: string | null;
  notifications: Notification[];
  /**
   * Index keys (lib/tables.json): every alarm is in `byTime` and `byState` ranged by `<raisedAt>~<id>`, and in
   * `byRelease` / `byHost` when it names one (an index key cannot be null), so lists are Queries.
   */
  stream?: typeof STREAM;
  raisedKey?: string;
  releaseRef?: string;
  hostRef?: string;
  /** Set while a notification may still be sent (index `undelivered`, read by the delivery tick). */
  outbox?: typeof STREAM;
}

const STREAM = 'alarms';

/** The alarm with the index keys its attributes call for. */
export function indexedAlarm<A extends Omit<Alarm, 'seq'>>(a: A): A {
  const { releaseRef: _r, hostRef: _h, outbox: _o, ...rest } = a;
  const owes = (a.notifications ?? []).some((n) => n.status === 'PENDING' || (n.status === 'FAILED' && n.nextAttemptAt !== null));
  return {
    ...rest, stream: STREAM, raisedKey: `${a.raisedAt}~${a.id}`,
    ...(a.releaseId ? { releaseRef: a.releaseId } : {}),
    ...(a.hostId ? { hostRef: a.hostId } : {}),
    ...(owes ? { outbox: STREAM } : {}),
  } as A;
}

/** Alarms with a notification that may still be sent, oldest first: a Query on the sparse index `undelivered`. */
export const undeliveredAlarms = (store: Store, limit = 500) => store.queryRange<Alarm>('alarms', 'undelivered', STREAM, { limit });

export type RaiseAlarm = Pick<Alarm, 'kind' | 'severity' | 'message' | 'cause'> & Partial<Pick<Alarm, 'hostId' | 'instanceId' | 'releaseId'>>;

const causeKey = (kind: AlarmKind, cause: string) => `alarm-cause#${kind}#${cause}`;
interface CauseClaim { key: string; alarmId: string; claimedAt?: string }

/**
 * Raises an alarm unless one of the same kind and cause is already open (firing or acknowledged): the cause claim
 * makes that a single conditional write, so two handlers seeing the same fault raise one alarm. Returns the new
 * alarm, or undefined when it was a duplicate. Notifications are queued PENDING for the channels it is routed to.
 */
export async function raiseAlarm(store: Store, input: RaiseAlarm, channelIds: string[], now = new Date()): Promise<Alarm | undefined> {
  const id = newId('a');
  // A claim whose alarm resolved (its holder has not removed it yet) or was never written (its raiser crashed) does
  // not stand in the way of a new fault.
  const outcome = await claim<CauseClaim>(store, 'butlerClaims', { key: causeKey(input.kind, input.cause), alarmId: id, claimedAt: new Date().toISOString() },
    async (holder) => {
      const alarm = await getAlarm(store, holder.alarmId);
      return alarm ? alarm.state === 'RESOLVED' : olderThanLease(holder.claimedAt);
    });
  if (!outcome.won) return undefined;
  const alarm = (await store.create<Omit<Alarm, 'seq'>>('alarms', indexedAlarm({
    id, hostId: null, instanceId: null, releaseId: null, ...input,
    state: 'FIRING', raisedAt: now.toISOString(), acknowledgedAt: null, resolvedAt: null,
    notifications: channelIds.map((channelId) => ({ channelId, status: 'PENDING', attempts: 0, lastError: null, deliveredAt: null, nextAttemptAt: now.toISOString() })),
  }))) as Alarm;
  await recordEvent(store, {
    kind: 'ALARM_RAISED', message: alarm.message, severity: alarm.severity, alarmId: id,
    hostId: alarm.hostId, releaseId: alarm.releaseId, instanceId: alarm.instanceId, topics: ['alarm'],
  }, now);
  return alarm;
}

/** Raises an alarm routed to every alert channel that takes its severity. */
export async function raise(store: Store, alarm: RaiseAlarm, now = new Date()) {
  return raiseAlarm(store, alarm, await channelsFor(store, alarm.severity), now);
}

/** Resolves the open alarm of this kind and cause, if any (the cause cleared). */
export async function resolveAlarm(store: Store, kind: AlarmKind, cause: string, now = new Date()): Promise<Alarm | undefined> {
  const held = await store.get<CauseClaim>('butlerClaims', causeKey(kind, cause));
  if (!held) return undefined;
  return resolveById(store, held.alarmId, kind, cause, now);
}

async function resolveById(store: Store, alarmId: string, kind: AlarmKind, cause: string, now: Date): Promise<Alarm | undefined> {
  const alarm = await store.mutate<Alarm>('alarms', alarmId, (a) => a && a.state !== 'RESOLVED' ? { ...a, state: 'RESOLVED', resolvedAt: now.toISOString() } : undefined);
  // Only this alarm's claim: a new fault raised meanwhile holds a claim of its own.
  await dropClaim<CauseClaim>(store, 'butlerClaims', causeKey(kind, cause), (c) => c.alarmId === alarmId);
  if (alarm?.state === 'RESOLVED' && alarm.resolvedAt === now.toISOString()) {
    await recordEvent(store, {
      kind: 'ALARM_RESOLVED', message: `resolved: ${alarm.message}`, severity: 'INFO', alarmId: alarm.id,
      hostId: alarm.hostId, releaseId: alarm.releaseId, instanceId: alarm.instanceId,
    }, now);
  }
  return alarm;
}

export const getAlarm = (store: Store, id: string) => store.get<Alarm>('alarms', id);

export async function acknowledgeAlarm(store: Store, id: string, now = new Date()): Promise<Alarm> {
  const alarm = await getAlarm(store, id);
  if (!alarm) throw notFound('alarm', id);
  if (alarm.state === 'RESOLVED') throw conflict(`alarm ${id} is already resolved`);
  return (await store.mutate<Alarm>('alarms', id, (a) => a && a.state === 'FIRING' ? { ...a, state: 'ACKNOWLEDGED', acknowledgedAt: now.toISOString() } : undefined))!;
}

export interface AlarmFilter {
  state?: Alarm['state'] | null;
  severity?: Severity | null;
  hostId?: string | null;
  releaseId?: string | null;
}

/**
 * Alarms sort newest first by raise time; ids are not time-ordered, so the cursor is `<raisedAt>~<id>`. The narrowest
 * index the filter allows is queried (release, host, state, else all); the rest of the filter applies to what it yields.
 * `releases`: only the alarms of these (a scoped key's), read from each release's index.
 */
export async function listAlarms(store: Store, filter: AlarmFilter = {}, first = 50, after?: string | null, releases?: Set<string> | null): Promise<Page<Alarm>> {
  const where: Record<string, string> = {};
  if (filter.severity) where.severity = filter.severity;
  const cursor = (a: Alarm) => `${a.raisedAt}~${a.id}`;
  if (releases) {
    if (filter.hostId) where.hostId = filter.hostId;
    if (filter.state) where.state = filter.state;
    const ids = filter.releaseId ? [filter.releaseId].filter((r) => releases.has(r)) : [...releases];
    return mergedPage(ids.map((id) => store.queryRange<Alarm>('alarms', 'byRelease', id, { descending: true, below: after ?? undefined, limit: pageSize(first) + 1, where })), first, cursor);
  }
  let index: string, value: string;
  if (filter.releaseId) {
    [index, value] = ['byRelease', filter.releaseId];
    if (filter.hostId) where.hostId = filter.hostId;
    if (filter.state) where.state = filter.state;
  } else if (filter.hostId) {
    [index, value] = ['byHost', filter.hostId];
    if (filter.state) where.state = filter.state;
  } else if (filter.state) {
    [index, value] = ['byState', filter.state];
  } else {
    [index, value] = ['byTime', STREAM];
  }
  const items = await store.queryRange<Alarm>('alarms', index, value, { descending: true, below: after ?? undefined, limit: pageSize(first) + 1, where });
  return pageOf(items, first, cursor);
}

/** Open (FIRING or ACKNOWLEDGED) alarms, oldest first, up to `limit` per state: a Query on the state index. */
export async function openAlarms(store: Store, limit = 500): Promise<Alarm[]> {
  const [firing, acknowledged] = await Promise.all((['FIRING', 'ACKNOWLEDGED'] as const).map((state) => store.queryRange<Alarm>('alarms', 'byState', state, { limit })));
  return [...firing, ...acknowledged];
}

/**
 * Resolves every open alarm about a release that no longer exists. Level-triggered: the `releaseDeleted` hook
 * resolves them at once, and this tick step catches what a crash between the release's removal and that hook left
 * open.
 */
export async function resolveAlarmsOfDeletedReleases(store: Store, now = new Date()): Promise<number> {
  const open = (await openAlarms(store)).filter((a) => a.releaseId);
  const exists = new Map<string, boolean>();
  let resolved = 0;
  for (const a of open) {
    if (!exists.has(a.releaseId!)) exists.set(a.releaseId!, Boolean(await getRelease(store, a.releaseId!)));
    if (exists.get(a.releaseId!)) continue;
    if (await resolveById(store, a.id, a.kind, a.cause, now)) resolved++;
  }
  return resolved;
}

/** Resolves every open alarm of this kind whose cause is not in `standing` (their causes cleared). */
export async function resolveAlarmsOfKindExcept(store: Store, kind: AlarmKind, standing: Set<string>, now = new Date()): Promise<number> {
  let resolved = 0;
  for (const a of await openAlarms(store)) {
    if (a.kind !== kind || standing.has(a.cause)) continue;
    if (await resolveById(store, a.id, a.kind, a.cause, now)) resolved++;
  }
  return resolved;
}

export const atLeast = (severity: Severity, min: Severity) => SEVERITY_RANK[severity] >= SEVERITY_RANK[min];
