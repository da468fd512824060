import { log } from '../../lib/log';
import type { Store } from '../../lib/store';
import { getInstance, isServing, respecInstance, type ContainerRecord, type Instance, type StatusChange } from '../ark';
import { getRelease, isActive } from '../panama';
import { raise, resolveAlarm, type AlarmKind } from './alarms';
import { recordEvent } from './events';

/**
 * What Butler does with every change a runner reports: record it as an event (the live feed), raise or resolve
 * alarms, and replace a container that stays unhealthy — Docker does not do that by itself. A container that keeps
 * failing is left alone with a CONTAINER_CRASH_LOOP alarm instead of being replaced forever.
 */

export const AUTO_RESTART = { max: 3, windowMs: 10 * 60_000 };

/** Alarms about one instance; they clear when it serves again or no longer exists. */
const INSTANCE_ALARMS: AlarmKind[] = ['CONTAINER_UNHEALTHY', 'CONTAINER_RESTARTED', 'CONTAINER_OOM', 'CONTAINER_CRASH_LOOP', 'DEPLOY_FAILED', 'INSTANCE_MIGRATED'];

const describe = (c: ContainerRecord | undefined) =>
  c ? `${c.state}${c.health !== 'NONE' ? `/${c.health}` : ''}${c.error ? ` (${c.error})` : ''}` : 'removed';

export async function reactToChanges(store: Store, hostId: string, changes: StatusChange[], now = new Date()): Promise<void> {
  for (const change of changes) {
    try {
      await react(store, hostId, change, now);
    } catch (err) {
      log.warn({ instanceId: change.instanceId, err: err instanceof Error ? err.message : String(err) }, 'could not act on a status change');
    }
  }
}

async function react(store: Store, hostId: string, { instanceId, releaseId, before, after }: StatusChange, now: Date) {
  const subject = { hostId, releaseId, instanceId };
  const name = after?.name ?? before?.name ?? instanceId;
  await recordEvent(store, {
    kind: 'CONTAINER_STATUS', message: `${name}: ${describe(after)} (was ${describe(before)})`,
    severity: after && (after.health === 'UNHEALTHY' || after.state === 'EXITED' || after.state === 'DEAD') ? 'WARNING' : 'INFO',
    ...subject, topics: ['container'], health: { before: before?.health ?? null, after: after?.health ?? null },
  }, now);
  const cause = `instance:${instanceId}`;
  const resolve = (kind: AlarmKind) => resolveAlarm(store, kind, cause, now);
  if (!after) {
    // The container is gone because its instance is (deleted, scaled down): nothing about it is still wrong.
    if (!(await getInstance(store, instanceId))) for (const kind of INSTANCE_ALARMS) await resolve(kind);
    return;
  }
  const restarted = await restartOf(store, instanceId, name, before, after);
  // Raised even when it serves again already (resolved just below): the restart still happened.
  if (restarted) await raise(store, { kind: 'CONTAINER_RESTARTED', severity: 'WARNING', cause, ...subject, message: restarted }, now);
  if (isServing(after)) {
    for (const kind of INSTANCE_ALARMS) await resolve(kind);
    return;
  }
  if (after.oomKilled && !before?.oomKilled) {
    await raise(store, { kind: 'CONTAINER_OOM', severity: 'CRITICAL', cause, ...subject, message: `${name} was killed for running out of memory` }, now);
  }
  if (after.error && after.error !== before?.error) {
    await raise(store, { kind: 'DEPLOY_FAILED', severity: 'WARNING', cause, ...subject, message: `${name}: ${after.error}` }, now);
  }
  if (after.health === 'UNHEALTHY' && before?.health !== 'UNHEALTHY') {
    await raise(store, { kind: 'CONTAINER_UNHEALTHY', severity: 'WARNING', cause, ...subject, message: `${name} is unhealthy: its healthcheck failed its retries` }, now);
    await autoRestart(store, instanceId, name, subject, now);
  }
}

/**
 * Why a container stopped without being asked to, or null. Docker restarts a container that exits by itself (its
 * restart count goes up), but not one killed from outside (`docker kill`): its runner starts that one again, and the
 * change shows as a later start of the same container, or as an exit while its instance is meant to run.
 */
async function restartOf(store: Store, instanceId: string, name: string, before: ContainerRecord | undefined, after: ContainerRecord): Promise<string | null> {
  if (!before || !after.containerId || after.containerId !== before.containerId) return null;
  if (after.restartCount > before.restartCount) return `${name} exited and was restarted by Docker (${after.restartCount} restarts)`;
  if (before.state !== 'RUNNING') return null;
  if (after.state === 'RUNNING' && before.startedAt && after.startedAt && after.startedAt !== before.startedAt) {
    return `${name} stopped without being asked to and was started again`;
  }
  if ((after.state === 'EXITED' || after.state === 'DEAD') && (await getInstance(store, instanceId))?.desiredState === 'RUNNING') {
    return `${name} exited (code ${after.exitCode ?? '?'}) while it should run; its runner starts it again`;
  }
  return null;
}

/** Replaces an unhealthy container with a fresh one, at most AUTO_RESTART.max times in AUTO_RESTART.windowMs. */
async function autoRestart(store: Store, instanceId: string, name: string, subject: { hostId: string; releaseId: string; instanceId: string }, now: Date) {
  const instance = await getInstance(store, instanceId);
  if (!instance) return;
  // During an upgrade the health gate decides: a failing new container means roll back, not restart.
  if (isActive((await getRelease(store, instance.releaseId))?.upgrade)) return;
  const recent = (instance.restartLog ?? []).filter((at) => now.getTime() - Date.parse(at) < AUTO_RESTART.windowMs);
  if (recent.length >= AUTO_RESTART.max) {
    await raise(store, {
      kind: 'CONTAINER_CRASH_LOOP', severity: 'CRITICAL', cause: `instance:${instanceId}`, ...subject,
      message: `${name} stays unhealthy after ${recent.length} restarts in ${AUTO_RESTART.windowMs / 60_000} min; no more automatic restarts until it recovers or is restarted by hand`,
    }, now);
    return;
  }
  await restart(store, instance, 'unhealthy', now, [...recent, now.toISOString()]);
}

/** Replaces the instance's container: a new generation changes the spec hash, so its runner recreates it. */
export async function restart(store: Store, instance: Instance, reason: string, now = new Date(), restartLog = instance.restartLog ?? []) {
  await respecInstance(store, instance.id, { ...instance.spec, generation: (instance.spec.generation ?? 0) + 1 }, restartLog);
  await recordEvent(store, {
    kind: 'RESTARTED', message: `${instance.releaseName}-${instance.ordinal} replaced with a fresh container (${reason})`,
    severity: 'INFO', hostId: instance.hostId, releaseId: instance.releaseId, instanceId: instance.id,
  }, now);
}
