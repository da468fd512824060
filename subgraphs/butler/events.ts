import { randomBytes } from 'node:crypto';
import type { NewEvent, Severity } from '../../lib/events';
import type { Store, Versioned } from '../../lib/store';

export { SEVERITY_RANK, type NewEvent, type Severity } from '../../lib/events';

/**
 * Everything that happened, in one append-only table: container status changes, alarms raised and resolved,
 * recovery and upgrade steps. It is also the outbox of live subscriptions: the publisher sends each event whose
 * `published` is false to the subscribers of its topics, then marks it. Events are kept FZ_EVENT_RETENTION_DAYS
 * (pruneEvents, from the watchdog tick).
 *
 * Every read is a Query on an index whose range key is the time-ordered id (lib/tables.json): `byTime` (all events),
 * `byRelease` and `byHost` (their attributes `releaseRef` and `hostRef` are set only when the event has one: an index
 * key cannot be null), and `unpublished` (`pending` is set until the publisher marks the event), so a page costs
 * the same at 1k events as at 100k.
 */
export interface PlatformEvent extends Versioned {
  /** Sortable by time: `<ISO time>~<order within the instant><random>`, so newest-first is a reverse sort of ids. */
  id: string;
  at: string;
  kind: string;
  message: string;
  severity: Severity;
  hostId: string | null;
  releaseId: string | null;
  instanceId: string | null;
  alarmId: string | null;
  /** Subscription topics this event feeds, e.g. `alarm`, `container:<releaseId>:<hostId>`, `release:<releaseId>`. */
  topics: string[];
  /** Upgrade and rollback steps: instances done out of the total. */
  progress?: { done: number; total: number } | null;
  /** Container status changes: the health before and after. */
  health?: { before: string | null; after: string | null } | null;
  published: boolean;
  /** Index keys (see above). */
  stream?: typeof STREAM;
  releaseRef?: string;
  hostRef?: string;
  pending?: typeof STREAM;
}

const STREAM = 'events';

/** The event with the index keys its attributes call for. */
export function indexed<E extends Omit<PlatformEvent, 'seq'>>(e: E): E {
  const { releaseRef: _r, hostRef: _h, pending: _p, ...rest } = e;
  return {
    ...rest, stream: STREAM,
    ...(e.releaseId ? { releaseRef: e.releaseId } : {}),
    ...(e.hostId ? { hostRef: e.hostId } : {}),
    ...(e.published ? {} : { pending: STREAM }),
  } as E;
}

/**
 * Events this process records at one instant keep the order they were recorded in (an upgrade step writes several
 * with one `now`): a counter within the millisecond comes before the random part of the id.
 */
let lastInstant = '';
let sameInstant = 0;
function eventId(at: string): string {
  sameInstant = at === lastInstant ? sameInstant + 1 : 0;
  lastInstant = at;
  return `${at}~${sameInstant.toString(36).padStart(4, '0')}${randomBytes(4).toString('hex')}`;
}

export async function recordEvent(store: Store, event: NewEvent, now = new Date()): Promise<PlatformEvent> {
  const item: Omit<PlatformEvent, 'seq'> = indexed({
    id: eventId(now.toISOString()),
    at: now.toISOString(),
    severity: 'INFO' as Severity,
    hostId: null, releaseId: null, instanceId: null, alarmId: null, topics: [],
    ...event,
    published: false,
  });
  return (await store.create('events', item))!;
}

export const getEvent = (store: Store, id: string) => store.get<PlatformEvent>('events', id);

export interface EventFilter {
  kind?: string | null;
  hostId?: string | null;
  releaseId?: string | null;
  instanceId?: string | null;
}

export interface Page<T> {
  nodes: T[];
  pageInfo: { endCursor: string | null; hasNextPage: boolean };
}

/** The page size asked for, within bounds. */
export const pageSize = (first: number) => Math.max(1, Math.min(first, 500));

/** A page out of `first + 1` items read in order: the extra one says whether another page follows. */
export function pageOf<T>(items: T[], first: number, cursor: (item: T) => string): Page<T> {
  const nodes = items.slice(0, pageSize(first));
  return { nodes, pageInfo: { endCursor: nodes.length ? cursor(nodes[nodes.length - 1]) : null, hasNextPage: items.length > nodes.length } };
}

/**
 * A page out of several partitions of an index read newest first (e.g. one per release a scoped key reads), each read
 * up to a page: merged by the range key the cursor names.
 */
export async function mergedPage<T>(partitions: Promise<T[]>[], first: number, cursor: (item: T) => string): Promise<Page<T>> {
  const items = (await Promise.all(partitions)).flat().sort((a, b) => (cursor(a) < cursor(b) ? 1 : cursor(a) > cursor(b) ? -1 : 0));
  return pageOf(items.slice(0, pageSize(first) + 1), first, cursor);
}

/** An instance's id is `<releaseId>-<ordinal>` (ark's instanceId): its events are among its release's. */
export const releaseOfInstance = (instanceId: string) => instanceId.replace(/-\d+$/, '');

/**
 * Newest first; `after` is the id of the last event of the previous page. The narrowest index the filter allows is
 * queried; the rest of the filter applies to what it yields. `releases`: only the events of these (a scoped key's),
 * read from each release's index.
 */
export async function listEvents(store: Store, filter: EventFilter = {}, first = 50, after?: string | null, releases?: Set<string> | null): Promise<Page<PlatformEvent>> {
  const where: Record<string, string> = {};
  if (filter.kind) where.kind = filter.kind;
  if (filter.instanceId) where.instanceId = filter.instanceId;
  const release = filter.releaseId ?? (filter.instanceId ? releaseOfInstance(filter.instanceId) : null);
  if (releases) {
    if (filter.hostId) where.hostId = filter.hostId;
    const ids = release ? [release].filter((r) => releases.has(r)) : [...releases];
    return mergedPage(ids.map((id) => store.queryRange<PlatformEvent>('events', 'byRelease', id, { descending: true, below: after ?? undefined, limit: pageSize(first) + 1, where })),
      first, (e) => e.id);
  }
  let index: string, value: string;
  if (release) {
    [index, value] = ['byRelease', release];
    if (filter.hostId) where.hostId = filter.hostId;
  } else if (filter.hostId) {
    [index, value] = ['byHost', filter.hostId];
  } else {
    [index, value] = ['byTime', STREAM];
  }
  const items = await store.queryRange<PlatformEvent>('events', index, value, { descending: true, below: after ?? undefined, limit: pageSize(first) + 1, where });
  return pageOf(items, first, (e) => e.id);
}

/** Oldest first: the events the publisher has not sent yet, up to `limit`. */
export const unpublishedEvents = (store: Store, limit = 200) =>
  store.queryRange<PlatformEvent>('events', 'unpublished', STREAM, { limit });

export const markPublished = (store: Store, id: string) =>
  store.mutate<PlatformEvent>('events', id, (e) => e && !e.published ? indexed({ ...e, published: true }) : undefined);

/**
 * Removes events older than the retention, oldest first, a bounded number per call (the next tick takes the rest).
 * A Query on the time index up to the cutoff: what is kept is never read.
 */
export async function pruneEvents(store: Store, retentionDays: number, now = new Date(), budget = 2000): Promise<number> {
  const cutoff = new Date(now.getTime() - retentionDays * 86_400_000).toISOString();
  let removed = 0;
  while (removed < budget) {
    const old = await store.queryRange<PlatformEvent>('events', 'byTime', STREAM, { below: cutoff, limit: Math.min(100, budget - removed) });
    if (!old.length) break;
    for (const e of old) await store.remove('events', e.id);
    removed += old.length;
  }
  return removed;
}
