import { config } from '../../lib/config';
import { log } from '../../lib/log';
import type { Store } from '../../lib/store';
import {
  forgetHost, getContainer, getHost, getInstance, instancesOfHost, isServing, listHostLiveness, markDown, migrateInstance, recordProbe, removeInstance,
  revokeHost, setCordoned, silenceFor, watchingSince, type Host, type HostLiveness, type Instance,
} from '../ark';
import { constraintsOf, getRelease, specAfterMove } from '../panama';
import { raise, resolveAlarm } from './alarms';
import { recordEvent } from './events';


/**
 * Asks a silent host's runner over its notification socket whether it is there: 'closed' when it holds no socket,
 * 'sent' when the question went out (the answer arrives as `recordSocketAnswer`). Null: no sockets to ask.
 */
export type SocketProbe = (hostId: string) => Promise<'sent' | 'closed'>;

/** How long a probe may go unanswered before the socket counts as dead (a pong takes milliseconds). */
const probeTimeoutMs = () => Math.max(2, 2 * config().tickSeconds) * 1000;

/**
 * The watchdog tick. A host is marked DOWN (HOST_DOWN alarm) only on evidence that holds up:
 * - its runner's heartbeats have been missing for its host-down time (`hostDownSeconds`, stretched for a large fleet
 *   as its heartbeat interval is: subgraphs/ark/cadence.ts), by the API's clock (a host's own clock is never
 *   asked, so a skewed one harms nothing), and
 * - the watchdog itself has been ticking all that time (after an API outage or a stalled tick the clock restarts:
 *   silence nobody watched is no evidence), and
 * - its notification socket is closed, or did not answer a probe within a couple of seconds (a runner that is alive
 *   but whose HTTP beats do not get through keeps its host).
 * A closed socket is the stronger witness (the runner's process or its host is gone; a cut link leaves a socket open
 * but silent), so with it three missed beats are enough; a silent socket needs the full `hostDownSeconds`.
 * A DOWN host's instances move to healthy hosts that satisfy the same constraints (INSTANCE_MIGRATED); a DRAINING
 * host gives up one instance per tick, once the previous one moved serves again. Level-triggered: an instance that
 * could not move this time is tried again at the next tick.
 */
export async function watchHosts(store: Store, probe: SocketProbe | null = null, now = new Date()): Promise<void> {
  const watching = await watchingSince(store, config().tickSeconds, now);
  const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000).toISOString();
  for (const host of await listHostLiveness(store)) {
    // Judged by the interval its runner was told (a large fleet beats less often, subgraphs/ark/cadence.ts).
    const { hostDownSeconds, heartbeatSeconds } = silenceFor(host);
    const staleBefore = { closed: ago(Math.min(hostDownSeconds, 3 * heartbeatSeconds)), unanswered: ago(hostDownSeconds) };
    // Ask the socket early, so that its answer is in by the time the heartbeats count as missing.
    const silentBefore = ago(Math.min(Math.max(hostDownSeconds / 2, 2 * heartbeatSeconds), 3 * heartbeatSeconds));
    try {
      if (host.status !== 'DOWN' && (host.lastHeartbeatAt ?? '') < silentBefore) {
        const socket = probe ? await askSocket(store, host, probe, now) : 'unanswered';
        const evidence = socket === 'closed' || socket === 'unanswered' ? staleBefore[socket] : null;
        // Silence counts only while the watchdog itself was ticking all along.
        if (evidence && (host.lastHeartbeatAt ?? '') < evidence && watching <= evidence && await markDown(store, host.id, evidence)) {
          await recordEvent(store, { kind: 'HOST_DOWN', message: `host ${host.name} is DOWN`, severity: 'CRITICAL', hostId: host.id }, now);
          host.status = 'DOWN';
        } else if ((host.lastHeartbeatAt ?? '') < staleBefore.unanswered && socket === 'alive') {
          log.warn({ hostId: host.id, lastHeartbeatAt: host.lastHeartbeatAt }, 'host heartbeats missing but its runner answers on its notification socket; not DOWN');
        }
      }
      if (host.status === 'DOWN') {
        // Every tick, deduplicated by its cause: a crash between marking the host and raising loses no alarm.
        await raise(store, {
          kind: 'HOST_DOWN', severity: 'CRITICAL', cause: `host:${host.id}`, hostId: host.id,
          message: `host ${host.name} stopped reporting (last heartbeat ${host.lastHeartbeatAt ?? 'never'}, notification socket closed or silent); moving its instances`,
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

/**
 * The silent host's socket: 'closed' when it holds none, 'unanswered' when a probe went unanswered for the probe
 * time-out, 'alive' when it answered the latest probe, 'asking' while a probe is out. Probes again once an answer is
 * older than a time-out.
 */
async function askSocket(store: Store, host: HostLiveness, probe: SocketProbe, now: Date): Promise<'closed' | 'unanswered' | 'alive' | 'asking'> {
  const sentAt = host.probeSentAt ?? null;
  const answered = !!sentAt && (host.socketAnsweredAt ?? '') >= sentAt;
  const timedOut = !!sentAt && Date.parse(sentAt) <= now.getTime() - probeTimeoutMs();
  if (sentAt && !answered && timedOut) return 'unanswered';
  if (sentAt && !timedOut) {
    // Still waiting, or answered recently; a closed socket is evidence at once.
    return (await probe(host.id)) === 'closed' ? 'closed' : answered ? 'alive' : 'asking';
  }
  if ((await probe(host.id)) === 'closed') return 'closed';
  await recordProbe(store, host.id, now);
  return answered ? 'alive' : 'asking';
}

async function drainOne(store: Store, host: HostLiveness, now: Date) {
  const instances = await instancesOfHost(store, host.id);
  if (!instances.length) {
    // Drained: what moved needs no more watching.
    if ((await recentlyMovedFrom(store, host.id)).length) await store.remove('butlerClaims', drainedKey(host.id));
    return;
  }
  // Orderly: wait until every instance that already left serves again before moving the next one. One deleted or
  // scaled away since has nothing to wait for (waiting on it would stall the drain for good).
  for (const id of await recentlyMovedFrom(store, host.id)) {
    const status = await getContainer(store, id);
    if (status && status.hostId !== host.id && isServing(status)) continue;
    if (!(await getInstance(store, id))) continue;
    return;
  }
  await move(store, host, instances[0], now);
}

const drainedKey = (hostId: string) => `drained-from#${hostId}`;

async function recentlyMovedFrom(store: Store, hostId: string): Promise<string[]> {
  const claim = await store.get<{ instanceIds: string[] }>('butlerClaims', drainedKey(hostId));
  return claim?.instanceIds ?? [];
}

/** Moves the instance off the host; false (and a MIGRATION_BLOCKED event) when no host can take it now. */
export async function move(store: Store, from: Pick<Host, 'id' | 'name' | 'status'>, instance: Instance, now: Date): Promise<boolean> {
  const release = await getRelease(store, instance.releaseId);
  if (!release) return false;
  let to: string;
  try {
    to = await migrateInstance(store, instance, constraintsOf(release), (moved) => specAfterMove(store, moved), now);
  } catch (err) {
    await recordEvent(store, {
      kind: 'MIGRATION_BLOCKED', message: err instanceof Error ? err.message : String(err), severity: 'WARNING',
      hostId: from.id, releaseId: instance.releaseId, instanceId: instance.id,
    }, now);
    return false;
  }
  if (from.status === 'DRAINING') {
    await store.mutate<{ key: string; instanceIds: string[]; seq: number }>('butlerClaims', drainedKey(from.id),
      (c) => ({ key: drainedKey(from.id), instanceIds: [...(c?.instanceIds ?? []), instance.id] }));
  }
  const message = `${instance.releaseName}-${instance.ordinal} moved from ${from.name} (${from.status}) to ${(await getHost(store, to))?.name ?? to}`;
  await raise(store, {
    kind: 'INSTANCE_MIGRATED', severity: 'WARNING', cause: `instance:${instance.id}`, hostId: to,
    releaseId: instance.releaseId, instanceId: instance.id, message,
  }, now);
  await recordEvent(store, { kind: 'INSTANCE_MIGRATED', message, severity: 'WARNING', hostId: to, releaseId: instance.releaseId, instanceId: instance.id }, now);
  return true;
}

/**
 * Removes a host that is not coming back: its token stops working and it takes no placements; each instance moves
 * where its constraints allow, the rest are forgotten (their releases place them again once there is room); then Ark
 * forgets the host, freeing its name, address and subnet. Calling it again finishes a removal cut short.
 */
export async function removeHost(store: Store, id: string, now = new Date()) {
  const host = await revokeHost(store, id, now);
  await setCordoned(store, id, true);
  const moved: string[] = [];
  const forgotten: string[] = [];
  for (const instance of await instancesOfHost(store, id)) {
    if (await move(store, host, instance, now)) moved.push(instance.id);
    else {
      await removeInstance(store, instance);
      forgotten.push(instance.id);
    }
  }
  await forgetHost(store, id);
  await store.remove('butlerClaims', drainedKey(id));
  await resolveAlarm(store, 'HOST_DOWN', `host:${id}`, now);
  await recordEvent(store, {
    kind: 'HOST_REMOVED', severity: 'WARNING', hostId: id,
    message: `host ${host.name} removed: ${moved.length} instance(s) moved, ${forgotten.length} forgotten`,
  }, now);
  return { hostId: id, name: host.name, moved, forgotten };
}

/** A DOWN host synced again: its alarm resolves; its runner removes the copies of instances that moved away. */
export async function hostCameBack(store: Store, host: Host, now = new Date()) {
  await resolveAlarm(store, 'HOST_DOWN', `host:${host.id}`, now);
  await recordEvent(store, { kind: 'HOST_UP', message: `host ${host.name} is back`, severity: 'INFO', hostId: host.id }, now);
}
