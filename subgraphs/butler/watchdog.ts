import { config } from '../../lib/config';
import { log } from '../../lib/log';
import type { Store } from '../../lib/store';
import { getContainer, getHost, instancesOfHost, isServing, listHosts, markDown, migrateInstance, type Host, type Instance } from '../ark';
import { constraintsOf, getRelease } from '../panama';
import { raise, resolveAlarm } from './alarms';
import { recordEvent } from './events';


/**
 * The watchdog tick: a host whose runner stopped syncing for `hostDownSeconds` is marked DOWN (HOST_DOWN alarm)
 * and its instances move to healthy hosts that satisfy the same constraints (INSTANCE_MIGRATED); a DRAINING host
 * gives up one instance per tick, once the previous one moved serves again. Level-triggered: an instance that
 * could not move this time is tried again at the next tick.
 */
export async function watchHosts(store: Store, now = new Date()): Promise<void> {
  const staleBefore = new Date(now.getTime() - config().hostDownSeconds * 1000).toISOString();
  for (const host of await listHosts(store)) {
    try {
      if (host.status !== 'DOWN' && (host.lastHeartbeatAt ?? '') < staleBefore && await markDown(store, host.id, staleBefore)) {
        await recordEvent(store, { kind: 'HOST_DOWN', message: `host ${host.name} is DOWN`, severity: 'CRITICAL', hostId: host.id }, now);
        host.status = 'DOWN';
      }
      if (host.status === 'DOWN') {
        // Every tick, deduplicated by its cause: a crash between marking the host and raising loses no alarm.
        await raise(store, {
          kind: 'HOST_DOWN', severity: 'CRITICAL', cause: `host:${host.id}`, hostId: host.id,
          message: `host ${host.name} stopped reporting (last heartbeat ${host.lastHeartbeatAt ?? 'never'}); moving its instances`,
        }, now);
        for (const instance of await instancesOfHost(store, host.id)) await move(store, host, instance, now);
      } else if (host.status === 'DRAINING') {
        await drainOne(store, host, now);
      }
    } catch (err) {
      log.warn({ hostId: host.id, err: err instanceof Error ? err.message : String(err) }, 'watchdog could not handle host');
    }
  }
}

async function drainOne(store: Store, host: Host, now: Date) {
  const instances = await instancesOfHost(store, host.id);
  if (!instances.length) return;
  // Orderly: wait until every instance that already left serves again before moving the next one.
  const moved = await recentlyMovedFrom(store, host.id);
  for (const id of moved) {
    const status = await getContainer(store, id);
    if (!status || status.hostId === host.id || !isServing(status)) return;
  }
  await move(store, host, instances[0], now);
}

async function recentlyMovedFrom(store: Store, hostId: string): Promise<string[]> {
  const claim = await store.get<{ instanceIds: string[] }>('butlerClaims', `drained-from#${hostId}`);
  return claim?.instanceIds ?? [];
}

async function move(store: Store, from: Host, instance: Instance, now: Date) {
  const release = await getRelease(store, instance.releaseId);
  if (!release) return;
  let to: string;
  try {
    to = await migrateInstance(store, instance, constraintsOf(release));
  } catch (err) {
    await recordEvent(store, {
      kind: 'MIGRATION_BLOCKED', message: err instanceof Error ? err.message : String(err), severity: 'WARNING',
      hostId: from.id, releaseId: instance.releaseId, instanceId: instance.id,
    }, now);
    return;
  }
  if (from.status === 'DRAINING') {
    await store.mutate<{ key: string; instanceIds: string[]; seq: number }>('butlerClaims', `drained-from#${from.id}`,
      (c) => ({ key: `drained-from#${from.id}`, instanceIds: [...(c?.instanceIds ?? []), instance.id] }));
  }
  const message = `${instance.releaseName}-${instance.ordinal} moved from ${from.name} (${from.status}) to ${(await getHost(store, to))?.name ?? to}`;
  await raise(store, {
    kind: 'INSTANCE_MIGRATED', severity: 'WARNING', cause: `instance:${instance.id}`, hostId: to,
    releaseId: instance.releaseId, instanceId: instance.id, message,
  }, now);
  await recordEvent(store, { kind: 'INSTANCE_MIGRATED', message, severity: 'WARNING', hostId: to, releaseId: instance.releaseId, instanceId: instance.id }, now);
}

/** A DOWN host synced again: its alarm resolves; its runner removes the copies of instances that moved away. */
export async function hostCameBack(store: Store, host: Host, now = new Date()) {
  await resolveAlarm(store, 'HOST_DOWN', `host:${host.id}`, now);
  await recordEvent(store, { kind: 'HOST_UP', message: `host ${host.name} is back`, severity: 'INFO', hostId: host.id }, now);
}
