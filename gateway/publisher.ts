import { randomBytes } from 'node:crypto';
import type { FormattedExecutionResult } from 'graphql';
import { OUT_OF_SCOPE, type Principal } from '../lib/auth';
import { eachLimit } from '../lib/concurrency';
import { hashJson } from '../lib/ids';
import { kick } from '../lib/kick';
import { log } from '../lib/log';
import { ConditionFailed, type Store } from '../lib/store';
import { logTailDelivered, pendingLogTails, type LogTail } from '../subgraphs/ark';
import { markPublished, unpublishedEvents } from '../subgraphs/butler';
import {
  LOG_TAIL, lookupId, matches, removeConnection, SUBSCRIPTIONS_TABLE, topicsOfEvent,
  type Connections, type MatchableEvent, type SubscriptionRecord, type SubscriptionStore,
} from './subscriptions';

/**
 * The fan-out of the event outbox to live subscriptions. For each unpublished event, oldest first: find the
 * subscriptions of its topics, keep those whose filter matches, group the identical ones (same rewritten query,
 * variables and principal) so each group is executed through the gateway once, post a `next` message to each
 * subscriber, drop connections that are gone (410), then mark the event published. At least once: a crash before
 * the mark sends the event again at the next run.
 *
 * Chunks of followed container output (Ark's `pendingLogTails`) go the same way to the `instanceLogTail`
 * subscribers of their instance, and are removed once sent; the last chunk of an ended follow completes them.
 */

/** A refusal because the event is about something outside a scoped subscriber's scope (lib/auth.ts). */
const isOutOfScope = (error: { extensions?: Record<string, unknown> }) => error.extensions?.reason === OUT_OF_SCOPE;

/** Runs one query through the gateway as the given principal. */
export type Execute = (query: string, variables: Record<string, unknown>, principal: Principal) => Promise<FormattedExecutionResult>;

export interface PublisherDeps {
  store: Store;
  connections: Connections;
  execute: Execute;
}

export interface Target {
  connectionId: string;
  subscriptionId: string;
  endpoint: string;
}

export interface DeliveryGroup {
  key: string;
  query: string;
  variables: Record<string, unknown>;
  principal: Principal;
  responseKey: string;
  targets: Target[];
}

/**
 * The executions one event needs: the matching subscriptions grouped by (query, variables with the event's lookup
 * id, principal). Pure, so the de-duplication is tested on its own.
 */
export function groupDeliveries(subscriptions: SubscriptionRecord[], event: MatchableEvent): DeliveryGroup[] {
  const groups = new Map<string, DeliveryGroup>();
  const seen = new Set<string>();
  for (const sub of subscriptions) {
    if (seen.has(sub.id) || !matches(sub, event)) continue;
    seen.add(sub.id);
    const variables = { ...sub.variables, [sub.lookupVariable]: lookupId(sub.field, event) };
    const key = hashJson({ query: sub.query, variables, principal: sub.principal });
    let group = groups.get(key);
    if (!group) {
      group = { key, query: sub.query, variables, principal: sub.principal, responseKey: sub.responseKey, targets: [] };
      groups.set(key, group);
    }
    group.targets.push({ connectionId: sub.connectionId, subscriptionId: sub.subscriptionId, endpoint: sub.endpoint });
  }
  return [...groups.values()];
}

export interface EventReport {
  eventId: string;
  subscriptions: number;
  executions: number;
  deliveries: number;
  gone: number;
  failed: number;
}

/** Sends one event to its subscribers. Never throws for one bad subscription or connection. */
export async function publishEvent(deps: PublisherDeps, event: MatchableEvent): Promise<EventReport> {
  const store = deps.store as SubscriptionStore;
  // A round of network notices names every live host's topic: at most 16 lookups at a time.
  const candidates: SubscriptionRecord[] = [];
  await eachLimit(topicsOfEvent(event.topics ?? []), 16, async (topic) => {
    candidates.push(...await store.query<SubscriptionRecord>(SUBSCRIPTIONS_TABLE, 'byTopic', topic));
  });
  const groups = groupDeliveries(candidates, event);
  const report: EventReport = { eventId: event.id, subscriptions: 0, executions: 0, deliveries: 0, gone: 0, failed: 0 };
  const goneConnections = new Set<string>();

  await eachLimit(groups, 4, async (group) => {
    report.subscriptions += group.targets.length;
    let result: FormattedExecutionResult;
    try {
      report.executions++;
      result = await deps.execute(group.query, group.variables, group.principal);
    } catch (err) {
      report.failed += group.targets.length;
      log.error({ err, eventId: event.id, query: group.query }, 'subscription query failed');
      return;
    }
    // The thing the event is about is gone (e.g. deleted since), or outside the subscriber's scope: nothing to tell.
    if (result.data?.[group.responseKey] == null && (!result.errors?.length || result.errors.every(isOutOfScope))) return;
    await eachLimit(group.targets, 16, async (target) => {
      if (goneConnections.has(target.connectionId)) return;
      try {
        const sent = await deps.connections.post(target.endpoint, target.connectionId, { id: target.subscriptionId, type: 'next', payload: result });
        if (sent === 'sent') {
          report.deliveries++;
        } else if (!goneConnections.has(target.connectionId)) {
          goneConnections.add(target.connectionId);
          report.gone++;
          const removed = await removeConnection(store, target.connectionId);
          log.info({ connectionId: target.connectionId, subscriptions: removed }, 'removed a gone connection');
        }
      } catch (err) {
        report.failed++;
        log.warn({ err, connectionId: target.connectionId, id: target.subscriptionId }, 'posting to a subscriber failed');
      }
    });
  });
  if (report.subscriptions && event.kind !== LOG_TAIL) log.info({ ...report, kind: event.kind }, 'published event');
  return report;
}

/** A chunk of a followed container's output as the event the matching and grouping above take. */
const tailEvent = (tail: LogTail): MatchableEvent => ({
  id: tail.id, at: tail.at, kind: LOG_TAIL, severity: 'INFO', topics: [`logs:${tail.instanceId}`],
  alarmId: null, instanceId: tail.instanceId, releaseId: tail.releaseId, hostId: null,
});

/** Sends one chunk to the subscribers of its instance's tail and removes it; an ended follow completes them. */
export async function publishLogTail(deps: PublisherDeps, tail: LogTail): Promise<EventReport> {
  const report = await publishEvent(deps, tailEvent(tail));
  if (tail.ended) {
    const store = deps.store as SubscriptionStore;
    for (const sub of await store.query<SubscriptionRecord>(SUBSCRIPTIONS_TABLE, 'byTopic', `logs:${tail.instanceId}`)) {
      if (sub.field !== 'instanceLogTail') continue;
      await deps.connections.post(sub.endpoint, sub.connectionId, { id: sub.subscriptionId, type: 'complete' }).catch(() => undefined);
      await store.remove(SUBSCRIPTIONS_TABLE, sub.id);
    }
  }
  await logTailDelivered(deps.store, tail.id);
  return report;
}

const LEASE_KEY = 'lease#publisher';
/** Short, and renewed while the holder works, so a holder that died (a killed server-mode replica) blocks no one for long. */
const LEASE_MS = 10_000;

interface Lease {
  id: string;
  holder: string;
  until: number;
  /** Someone wanted to publish while the lease was held: the holder looks for new events once more. */
  again: boolean;
  seq: number;
}

/**
 * One publisher at a time (the tick and kicks overlap): a lease item in the subscriptions table, taken by a
 * conditional write; a crashed holder's lease expires after a minute. A publisher that finds the lease held marks
 * it `again` instead, and the holder cannot give the lease up (a conditional delete at the seq it knows) without
 * seeing that mark, so an event whose kick came during another run's last scan is not left for the next tick.
 */
async function takeLease(store: Store, holder: string): Promise<boolean> {
  try {
    const lease = await store.mutate<Lease>(SUBSCRIPTIONS_TABLE, LEASE_KEY, (current) => {
      if (!current || current.until < Date.now()) return { id: LEASE_KEY, holder, until: Date.now() + LEASE_MS, again: false };
      return current.again || current.holder === holder ? undefined : { ...current, again: true };
    }, 5);
    return lease?.holder === holder;
  } catch (err) {
    if (err instanceof ConditionFailed) return false;
    throw err;
  }
}

/** Extends the lease while publishing; false when it is no longer ours (it ran out and another publisher took it). */
async function renewLease(store: Store, holder: string): Promise<boolean> {
  try {
    const lease = await store.mutate<Lease>(SUBSCRIPTIONS_TABLE, LEASE_KEY, (current) =>
      current?.holder === holder ? { ...current, until: Date.now() + LEASE_MS } : undefined, 5);
    return lease?.holder === holder;
  } catch (err) {
    if (err instanceof ConditionFailed) return false;
    throw err;
  }
}

/** Gives the lease up; false when it was marked `again` (the mark is cleared and the lease kept). */
async function giveUpLease(store: Store, holder: string): Promise<boolean> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const current = await store.get<Lease>(SUBSCRIPTIONS_TABLE, LEASE_KEY);
    if (current?.holder !== holder) return true;
    try {
      if (current.again) {
        await store.replace(SUBSCRIPTIONS_TABLE, { ...current, again: false, until: Date.now() + LEASE_MS });
        return false;
      }
      await store.remove(SUBSCRIPTIONS_TABLE, LEASE_KEY, current.seq);
      return true;
    } catch (err) {
      if (!(err instanceof ConditionFailed)) throw err;
    }
  }
  return true;
}

export interface PublishReport {
  events: number;
  deliveries: number;
  skipped?: string;
}

/** Publishes every unpublished event, oldest first, until none is left or `budgetMs` is spent. */
export async function publishPending(deps: PublisherDeps, budgetMs = 20_000): Promise<PublishReport> {
  const holder = randomBytes(6).toString('hex');
  if (!(await takeLease(deps.store, holder))) return { events: 0, deliveries: 0, skipped: 'another publisher is running; it will look again' };
  const started = Date.now();
  const report: PublishReport = { events: 0, deliveries: 0 };
  const failed = new Set<string>();
  let renewedAt = Date.now();
  let lost = false;
  const drain = async () => {
    // Again until nothing is left: events written while this run was busy.
    while (Date.now() - started < budgetMs) {
      const events = (await unpublishedEvents(deps.store)).filter((e) => !failed.has(e.id));
      const tails = (await pendingLogTails(deps.store)).filter((t) => !failed.has(t.id));
      if (!events.length && !tails.length) return;
      for (const tail of tails) {
        try {
          report.deliveries += (await publishLogTail(deps, tail)).deliveries;
        } catch (err) {
          failed.add(tail.id);
          log.error({ err, tailId: tail.id }, 'publishing a log tail failed');
        }
      }
      for (const event of events) {
        if (Date.now() - started >= budgetMs) return;
        if (Date.now() - renewedAt > LEASE_MS / 3) {
          if ((lost = !(await renewLease(deps.store, holder)))) return;
          renewedAt = Date.now();
        }
        try {
          report.deliveries += (await publishEvent(deps, event)).deliveries;
          await markPublished(deps.store, event.id);
          report.events++;
        } catch (err) {
          // A store failure for this event: it stays unpublished and the next run tries again.
          failed.add(event.id);
          log.error({ err, eventId: event.id }, 'publishing an event failed');
        }
      }
    }
  };
  let released = false;
  try {
    for (;;) {
      await drain();
      if (lost) {
        log.warn({ holder }, 'the publisher lease ran out while publishing; the new holder carries on');
        released = true;
        break;
      }
      if (Date.now() - started >= budgetMs) break;
      if ((released = await giveUpLease(deps.store, holder))) break;
    }
  } finally {
    if (!released) await dropLease(deps.store, holder).catch((err) => log.warn({ err }, 'could not give up the publisher lease; it expires'));
  }
  // Out of time with events left: another run continues now rather than at the next tick.
  if (Date.now() - started >= budgetMs) await kick('publish');
  return report;
}

async function dropLease(store: Store, holder: string) {
  for (let attempt = 0; attempt < 10; attempt++) {
    const current = await store.get<Lease>(SUBSCRIPTIONS_TABLE, LEASE_KEY);
    if (current?.holder !== holder) return;
    try {
      await store.remove(SUBSCRIPTIONS_TABLE, LEASE_KEY, current.seq);
      return;
    } catch (err) {
      if (!(err instanceof ConditionFailed)) throw err;
    }
  }
}
