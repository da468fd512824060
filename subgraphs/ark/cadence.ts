import { config } from '../../lib/config';
import type { Store } from '../../lib/store';
import type { Host } from './hosts';

/**
 * How often runners beat and poll, and how long a silent host is given, for a fleet of a given size. Up to a budget
 * of heartbeats and polls a second (FZ_MAX_HEARTBEATS_PER_SECOND, FZ_MAX_POLLS_PER_SECOND) the configured figures
 * hold; beyond it every interval stretches with the fleet, as Nomad stretches its heartbeat TTL past
 * `max_heartbeats_per_second`, so the control plane's load stays flat while the fleet grows and a slow answer at
 * scale is never taken for a dead host. Host-down keeps its ratio to the heartbeat (5 beats by default).
 */
export interface Cadence {
  heartbeatSeconds: number;
  pollSeconds: number;
  hostDownSeconds: number;
  /**
   * The least time between two rounds of network notices (every live runner told to sync because routes or DNS
   * records changed): a round is one notice and one sync per host, so a large fleet has them less often
   * (FZ_MAX_NOTICES_PER_SECOND); changes in between go out together with the next round, and polls see them anyway.
   */
  noticeSeconds: number;
  /**
   * Over how many seconds the runners told in one such round spread their syncs, each waking at a random moment
   * within it (runner/notifications.ts), so that a round of N notices is N syncs over this time rather than at once:
   * 0 while the fleet is within FZ_MAX_NOTICES_PER_SECOND (a round is one burst the API takes), else the gap between
   * rounds, so that syncs arrive at about that rate and one round is over before the next.
   */
  noticeSpreadSeconds: number;
}

export function cadenceFor(hosts: number, c: ReturnType<typeof config> = config()): Cadence {
  const heartbeatSeconds = Math.max(c.heartbeatSeconds, Math.ceil(hosts / c.maxHeartbeatsPerSecond));
  const noticeSeconds = Math.max(1, Math.ceil(hosts / c.maxNoticesPerSecond));
  return {
    heartbeatSeconds,
    pollSeconds: Math.max(c.runnerPollSeconds, Math.ceil(hosts / c.maxPollsPerSecond)),
    hostDownSeconds: c.hostDownSeconds * (heartbeatSeconds / c.heartbeatSeconds),
    noticeSeconds,
    noticeSpreadSeconds: hosts > c.maxNoticesPerSecond ? noticeSeconds : 0,
  };
}

/**
 * The silence a host is judged by: the heartbeat interval its runner was last told (recorded with each beat), so a
 * host is never held to a shorter interval than it was given while the fleet shrinks.
 */
export function silenceFor(host: Pick<Host, 'heartbeatSeconds'>, c: ReturnType<typeof config> = config()): Omit<Cadence, 'noticeSeconds' | 'noticeSpreadSeconds'> {
  const heartbeatSeconds = Math.max(c.heartbeatSeconds, host.heartbeatSeconds ?? 0);
  return { heartbeatSeconds, pollSeconds: c.runnerPollSeconds, hostDownSeconds: c.hostDownSeconds * (heartbeatSeconds / c.heartbeatSeconds) };
}

/**
 * The fleet's size as this process last counted it: counted again at most every 30 s (a count-only Scan of `hosts`),
 * or soon after this process registered or removed a host (at most once a second while hosts keep joining). The
 * callers that ask while a count is under way share it.
 */
const COUNT_TTL_MS = 30_000;
const RECOUNT_GAP_MS = 1_000;
let counted: { hosts: Promise<number>; at: number; store: Store; stale: boolean } | null = null;

export async function fleetCadence(store: Store, now = Date.now()): Promise<Cadence> {
  const age = counted?.store === store ? now - counted.at : Infinity;
  if (age > COUNT_TTL_MS || (counted!.stale && age > RECOUNT_GAP_MS)) {
    const count = { hosts: store.count('hosts'), at: now, store, stale: false };
    counted = count;
    count.hosts.catch(() => { if (counted === count) counted = null; });
  }
  return cadenceFor(await counted!.hosts);
}

/** A host joined or left through this process: the fleet is counted again soon. */
export function fleetChanged(store: Store): void {
  if (counted?.store === store) counted.stale = true;
}
