import { conflict, notFound } from '../../lib/errors';
import { claim, dropClaim, olderThanLease } from '../../lib/claims';
import { newId } from '../../lib/ids';
import type { Store, Versioned } from '../../lib/store';
import { channelsFor } from '../panama';
import { paginate, recordEvent, SEVERITY_RANK, type Page, type Severity } from './events';

export type AlarmKind = 'HOST_DOWN' | 'CONTAINER_UNHEALTHY' | 'CONTAINER_RESTARTED' | 'CONTAINER_OOM' | 'CONTAINER_CRASH_LOOP'
  | 'INSTANCE_MIGRATED' | 'DEPLOY_FAILED' | 'UPGRADE_ROLLED_BACK' | 'INSPECTION_CRITICAL' | 'MEMORY_HIGH' | 'TEST';

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
}

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
  const alarm = (await store.create<Omit<Alarm, 'seq'>>('alarms', {
    id, hostId: null, instanceId: null, releaseId: null, ...input,
    state: 'FIRING', raisedAt: now.toISOString(), acknowledgedAt: null, resolvedAt: null,
    notifications: channelIds.map((channelId) => ({ channelId, status: 'PENDING', attempts: 0, lastError: null, deliveredAt: null, nextAttemptAt: now.toISOString() })),
  })) as Alarm;
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
  const alarm = await store.mutate<Alarm>('alarms', held.alarmId, (a) => a && a.state !== 'RESOLVED' ? { ...a, state: 'RESOLVED', resolvedAt: now.toISOString() } : undefined);
  // Only this alarm's claim: a new fault raised meanwhile holds a claim of its own.
  await dropClaim<CauseClaim>(store, 'butlerClaims', causeKey(kind, cause), (c) => c.alarmId === held.alarmId);
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

/** Alarms sort newest first by raise time; ids are not time-ordered, so the cursor is `<raisedAt>~<id>`. */
export async function listAlarms(store: Store, filter: AlarmFilter = {}, first = 50, after?: string | null): Promise<Page<Alarm>> {
  const alarms = (await store.scan<Alarm>('alarms')).filter((a) =>
    (!filter.state || a.state === filter.state) && (!filter.severity || a.severity === filter.severity)
    && (!filter.hostId || a.hostId === filter.hostId) && (!filter.releaseId || a.releaseId === filter.releaseId));
  const keyed = alarms.map((a) => ({ ...a, cursor: `${a.raisedAt}~${a.id}` }));
  const page = paginate(keyed.map((a) => ({ ...a, id: a.cursor, alarmId: a.id })), first, after);
  return {
    nodes: page.nodes.map(({ alarmId, cursor: _c, ...a }) => ({ ...a, id: alarmId }) as Alarm),
    pageInfo: page.pageInfo,
  };
}

export const atLeast = (severity: Severity, min: Severity) => SEVERITY_RANK[severity] >= SEVERITY_RANK[min];
