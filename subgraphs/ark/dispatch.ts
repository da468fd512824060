import { kick } from '../../lib/kick';
import type { SyncRequest, SyncResponse } from '../../lib/runner-protocol';
import type { Store } from '../../lib/store';
import { assignAddresses } from './addresses';
import { fleetCadence } from './cadence';
import { isServing, recordObservations, type StatusChange } from './containers';
import { networkFor } from './discovery';
import { arkHooks } from './hooks';
import { checkSession, ensureSubnet, heartbeat, mustGetHost, recordEngine } from './hosts';
import { instancesOfHost, networkChanged, toDesired } from './instances';
import { hostLogItems, logRequestsFor } from './logs';
import { logFollowsFor } from './logtail';

/**
 * One round trip with a host runner: its report becomes the live status, and the answer is every container that
 * should run on that host. Level-triggered: the runner converges to the answer whatever it missed before. What the
 * report changed goes up to the parts that watch it (alarms, healing, deletions). A runner with a heartbeat session
 * proves it lives with runnerHeartbeat; the sync of one without (an older runner) is its heartbeat.
 */
export async function runnerSync(store: Store, hostId: string, request: SyncRequest, now = new Date()): Promise<SyncResponse> {
  const cadence = await fleetCadence(store);
  let beat;
  if (request.session) {
    beat = await mustGetHost(store, hostId);
    checkSession(beat, request.session, now);
  } else {
    const result = await heartbeat(store, hostId, { session: null }, cadence.heartbeatSeconds, now);
    beat = result.host;
    if (result.cameBack) await arkHooks.emit('hostCameBack', store, beat, now);
  }
  if (request.engine) await recordEngine(store, beat, request.engine);
  const host = await ensureSubnet(store, beat);
  const addressed = await assignAddresses(store, host, await instancesOfHost(store, hostId));
  const instances = addressed.instances;
  const desired = new Map(instances.map((i) => [i.id, i]));
  const changes = await recordObservations(store, hostId, request.observed, desired, now);
  if (addressed.changed || changes.some(changesServing)) await networkChanged(store, 'DNS records changed');
  await arkHooks.emit('containersChanged', store, hostId, changes, now);
  // Subscribers hear of a change now rather than at the next tick.
  if (changes.length) await kick('publish');
  const logItems = await hostLogItems(store, hostId);
  return {
    hostId, desired: instances.map(toDesired), pollSeconds: cadence.pollSeconds,
    network: await networkFor(store, host, request.networkSerial),
    logRequests: await logRequestsFor(store, logItems, now),
    logFollows: await logFollowsFor(store, logItems, now),
  };
}

/** Whether the change adds the instance to its release's DNS names or takes it out. */
const changesServing = (c: StatusChange) => Boolean(c.before && isServing(c.before)) !== Boolean(c.after && isServing(c.after));

export interface HeartbeatRequest {
  session: string;
  sentAt: string;
}

export interface HeartbeatResponse {
  hostId: string;
  serverTime: string;
  intervalSeconds: number;
  clockSkewSeconds: number;
}

/** The runner's own liveness signal, independent of its container work (runner/heartbeat.ts). */
export async function runnerHeartbeat(store: Store, hostId: string, request: HeartbeatRequest, now = new Date()): Promise<HeartbeatResponse> {
  const { heartbeatSeconds } = await fleetCadence(store);
  const { host, cameBack } = await heartbeat(store, hostId, request, heartbeatSeconds, now);
  if (cameBack) await arkHooks.emit('hostCameBack', store, host, now);
  return { hostId, serverTime: now.toISOString(), intervalSeconds: heartbeatSeconds, clockSkewSeconds: host.clockSkewSeconds ?? 0 };
}
