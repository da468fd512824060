import { randomBytes } from 'node:crypto';
import type { NewEvent, Severity } from '../../lib/events';
import type { Store, Versioned } from '../../lib/store';

export { SEVERITY_RANK, type NewEvent, type Severity } from '../../lib/events';

/**
 * Everything that happened, in one append-only table: container status changes, alarms raised and resolved,
 * recovery and upgrade steps. It is also the outbox of live subscriptions: the publisher sends each event whose
 * `published` is false to the subscribers of its topics, then marks it.
 */
export interface PlatformEvent extends Versioned {
  /** Sortable by time: `<ISO time>~<random>`, so newest-first is a reverse sort of ids. */
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
  published: boolean;
}

export async function recordEvent(store: Store, event: NewEvent, now = new Date()): Promise<PlatformEvent> {
  const item = {
    id: `${now.toISOString()}~${randomBytes(4).toString('hex')}`,
    at: now.toISOString(),
    severity: 'INFO' as Severity,
    hostId: null, releaseId: null, instanceId: null, alarmId: null, topics: [],
    ...event,
    published: false,
  };
  return (await store.create('events', item))!;
}

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

/** Newest first; `after` is the id of the last event of the previous page. */
export function paginate<T extends { id: string }>(items: T[], first: number, after: string | null | undefined): Page<T> {
  const size = Math.max(1, Math.min(first, 500));
  const sorted = [...items].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const start = after ? sorted.findIndex((i) => i.id < after) : 0;
  const nodes = start < 0 ? [] : sorted.slice(start, start + size);
  const hasNextPage = start >= 0 && start + size < sorted.length;
  return { nodes, pageInfo: { endCursor: nodes.at(-1)?.id ?? null, hasNextPage } };
}

export async function listEvents(store: Store, filter: EventFilter = {}, first = 50, after?: string | null): Promise<Page<PlatformEvent>> {
  const events = (await store.scan<PlatformEvent>('events')).filter((e) =>
    (!filter.kind || e.kind === filter.kind) && (!filter.hostId || e.hostId === filter.hostId)
    && (!filter.releaseId || e.releaseId === filter.releaseId) && (!filter.instanceId || e.instanceId === filter.instanceId));
  return paginate(events, first, after);
}

export async function unpublishedEvents(store: Store): Promise<PlatformEvent[]> {
  return (await store.scan<PlatformEvent>('events')).filter((e) => !e.published).sort((a, b) => a.id.localeCompare(b.id));
}

export const markPublished = (store: Store, id: string) =>
  store.mutate<PlatformEvent>('events', id, (e) => e && !e.published ? { ...e, published: true } : undefined);
