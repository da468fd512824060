import { randomBytes } from 'node:crypto';
import { authorize, type Principal } from '../../lib/auth';
import { config } from '../../lib/config';
import { AppError } from '../../lib/errors';
import { kick } from '../../lib/kick';
import type { LogFollow, LogLine } from '../../lib/runner-protocol';
import { ConditionFailed, type Store, type Versioned } from '../../lib/store';
import { getHost } from './hosts';
import { getInstance, notifyHost } from './instances';
import { MAX_CHUNK_LINES, MAX_LINE_CHARS, type HostLogItem } from './logs';

/**
 * The live tail of a container's output (the subscription `instanceLogTail`). Nothing is streamed until someone
 * subscribes: the gateway's subscribe adds the subscriber to the instance's follow item (`follow#<instanceId>` in the
 * table `logs`) and wakes the runner of the instance's host, whose runnerSync answers then list the follow; the runner
 * follows the container on its own engine and sends new lines with runnerLogTail (at most MAX_CHUNK_LINES a chunk,
 * each line cut at 4 KiB, at most TAIL_LINES_PER_SECOND a second: the runner counts what it drops). Each chunk is an
 * item of the outbox `pendingTails`, which the publisher delivers to the subscribers (re-checking each subscriber's
 * access through the lookup `logTail`) and then removes.
 *
 * The follow ends when its last subscriber leaves (complete, disconnect, a gone connection), or after
 * FZ_LOG_FOLLOW_IDLE_SECONDS without a line or a new subscriber, or when the runner cannot read the container: then a
 * last chunk says why (`ended`) and the publisher completes the subscriptions. A runner may send lines only for a
 * follow of its own host; a chunk for an ended follow is refused (NOT_FOUND), which stops the runner's follow.
 */

/** Lines a followed container may print per second before the runner drops (and counts) the rest. */
export const TAIL_LINES_PER_SECOND = 50;
/** A follow's `since` and activity are written at most this often (not at every chunk), and well within its idle time. */
const followWriteMs = () => Math.min(5000, (config().logFollowIdleSeconds * 1000) / 4);
const PENDING = 'tail';

interface FollowItem extends Versioned {
  id: string;
  kind: 'follow';
  /** Indexed (byHost): the runner of this host finds its follows in runnerSync. */
  hostId: string;
  instanceId: string;
  releaseId: string;
  product: string;
  /** The subscriptions (gateway keys) that want the lines. */
  subscribers: string[];
  /** The time of the last line sent (RFC 3339, nanoseconds); the runner starts after it. */
  since: string;
  /** The last subscriber or line. */
  activeAt: string;
  createdAt: string;
}

export interface LogTail {
  id: string;
  kind: 'tail';
  instanceId: string;
  releaseId: string;
  product: string;
  lines: LogLine[];
  /** Lines the runner dropped before these, over the rate cap. */
  dropped: number;
  /** Why the follow ended with this chunk (null while it goes on). */
  ended: string | null;
  at: string;
  /** Indexed (pendingTails) until the publisher delivered it; then the item is removed. */
  pending: typeof PENDING;
}

export interface LogTailInput {
  instanceId: string;
  lines: LogLine[];
  dropped?: number | null;
  /** The runner could not follow the container (it is gone from this host): the follow ends with this reason. */
  error?: string | null;
}

const followKey = (instanceId: string) => `follow#${instanceId}`;

/**
 * Checks that the principal may follow the instance's logs: an operator or above, a scoped key only for its products
 * and releases (as instanceLogs). Throws FORBIDDEN, NOT_FOUND or CONFLICT otherwise.
 */
export async function checkFollow(store: Store, principal: Principal, instanceId: string) {
  const instance = await getInstance(store, instanceId);
  await authorize(principal, 'instanceLogTail', { rule: 'OPERATOR', target: () => (instance ? { releaseId: instance.releaseId, product: instance.product } : null) }, { instanceId }, 'read');
  if (!instance) throw new AppError('NOT_FOUND', `no instance ${instanceId}`);
  const host = instance.hostId ? await getHost(store, instance.hostId) : undefined;
  if (!host) throw new AppError('CONFLICT', `instance ${instance.domainName} is not placed on a host yet: it has no container to follow`);
  if (host.status === 'DOWN') throw new AppError('CONFLICT', `host ${host.name} is DOWN: its runner cannot follow the logs of ${instance.domainName}`);
  return { instance, host };
}

/**
 * Adds a subscriber to the instance's follow (starting it when it is the first) and wakes the runner of its host.
 * Call checkFollow first.
 */
export async function followLogs(store: Store, principal: Principal, instanceId: string, subscriber: string, now = new Date()): Promise<void> {
  const { instance, host } = await checkFollow(store, principal, instanceId);
  let started = false;
  await store.mutate<FollowItem>('logs', followKey(instanceId), (current) => {
    started = !current;
    const at = now.toISOString();
    if (current) return { ...current, subscribers: [...new Set([...current.subscribers, subscriber])], activeAt: at };
    return {
      id: followKey(instanceId), kind: 'follow', hostId: host.id, instanceId, releaseId: instance.releaseId, product: instance.product,
      subscribers: [subscriber], since: at, activeAt: at, createdAt: at,
    };
  });
  if (started) await notifyHost(store, host.id, `logs of ${instance.domainName} followed`);
}

/** Removes a subscriber; the follow ends with its last one (its runner stops at its next chunk or sync). */
export async function unfollowLogs(store: Store, instanceId: string, subscriber: string): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const current = await store.get<FollowItem>('logs', followKey(instanceId));
    if (!current?.subscribers.includes(subscriber)) return;
    const subscribers = current.subscribers.filter((s) => s !== subscriber);
    try {
      if (subscribers.length) await store.replace('logs', { ...current, subscribers });
      else await store.remove('logs', current.id, current.seq);
      return;
    } catch (err) {
      if (!(err instanceof ConditionFailed)) throw err;
    }
  }
}

/** Ends a follow: removes it and leaves a last chunk saying why, for the publisher to tell its subscribers. */
async function endFollow(store: Store, follow: FollowItem, reason: string, now: Date) {
  try {
    await store.remove('logs', follow.id, follow.seq);
  } catch (err) {
    if (err instanceof ConditionFailed) return;
    throw err;
  }
  await writeTail(store, follow, [], 0, reason, now);
}

async function writeTail(store: Store, follow: FollowItem, lines: LogLine[], dropped: number, ended: string | null, now: Date) {
  const at = now.toISOString();
  const tail: LogTail = {
    id: `tail#${at}~${randomBytes(4).toString('hex')}`, kind: 'tail', instanceId: follow.instanceId, releaseId: follow.releaseId,
    product: follow.product, lines, dropped, ended, at, pending: PENDING,
  };
  await store.create('logs', tail);
  await kick('publish');
}

/** The follows of this host's containers (sent with every runnerSync answer); idle ones end here. */
export async function logFollowsFor(store: Store, hostItems: readonly HostLogItem[], now = new Date()): Promise<LogFollow[]> {
  const items = hostItems.filter((i): i is FollowItem => i.kind === 'follow');
  const live: LogFollow[] = [];
  const idleMs = config().logFollowIdleSeconds * 1000;
  for (const f of items) {
    if (now.getTime() - Date.parse(f.activeAt) > idleMs) {
      await endFollow(store, f, `nothing was printed for ${config().logFollowIdleSeconds} s: the follow ended; follow again to go on`, now);
    } else {
      live.push({ instanceId: f.instanceId, since: f.since });
    }
  }
  return live;
}

/** One chunk of a followed container's new lines, from the runner of its host. */
export async function recordLogTail(store: Store, hostId: string, input: LogTailInput, now = new Date()): Promise<boolean> {
  const follow = await store.get<FollowItem>('logs', followKey(input.instanceId));
  if (!follow || follow.hostId !== hostId) {
    throw new AppError('NOT_FOUND', `nobody follows the logs of instance ${input.instanceId} on this host (any more): stop following it`);
  }
  if (input.lines.length > MAX_CHUNK_LINES) throw new AppError('BAD_USER_INPUT', `a chunk holds at most ${MAX_CHUNK_LINES} lines`, { field: 'lines' });
  const dropped = Math.max(0, Math.floor(input.dropped ?? 0));
  if (input.error) {
    await endFollow(store, follow, `the runner cannot follow the container: ${input.error.slice(0, 300)}`, now);
    return true;
  }
  if (!input.lines.length && !dropped) return true;
  const lines = input.lines.map((l) => ({ at: l.at, stream: l.stream, text: l.text.slice(0, MAX_LINE_CHARS) }));
  await writeTail(store, follow, lines, dropped, null, now);
  if (now.getTime() - Date.parse(follow.activeAt) >= followWriteMs()) {
    const since = lines.length ? lines[lines.length - 1].at : follow.since;
    await store.replace('logs', { ...follow, since, activeAt: now.toISOString() }).catch((err) => {
      if (!(err instanceof ConditionFailed)) throw err;
    });
  }
  return true;
}

/** Oldest first: the chunks the publisher has not delivered yet. */
export const pendingLogTails = (store: Store, limit = 100) => store.queryRange<LogTail>('logs', 'pendingTails', PENDING, { limit });

/** A delivered chunk is removed: nothing of a container's output stays in the store. */
export const logTailDelivered = (store: Store, id: string) => store.remove('logs', id);

/** The lookup the publisher runs per chunk, as the subscriber: access is checked again at each delivery. */
export async function getLogTail(store: Store, id: string): Promise<LogTail | null> {
  const item = await store.get<LogTail>('logs', id);
  return item?.kind === 'tail' ? item : null;
}
