import { buildSubgraphSchema } from '@apollo/subgraph';
import gql from 'graphql-tag';
import { callerOf, inScope, scopeOf, secure, type AccessRules, type Context, type Scope } from '../../lib/auth';
import { readSchemaFile } from '../../lib/schema-files';
import { store } from '../../lib/store';
import { acknowledgeAlarm, getAlarm, listAlarms, type Alarm, type AlarmFilter } from './alarms';
import { getEvent, listEvents, releaseOfInstance, type EventFilter, type PlatformEvent } from './events';
import { restart } from './watch';
import { AppError, notFound } from '../../lib/errors';
import { config } from '../../lib/config';
import { getInspection, inspectionOf, listInspections, runInspection, type Inspection } from './inspection';
import { findingCounts, reportHtml, reportMarkdown } from './inspection-report';
import {
  containersOfHost, containersOfRelease, generationStatus, getContainer, getInstance, HOST_DESIRED_CHANGED, hostTopic, instancesOfRelease, isFailing, isServing,
  listContainers, type ContainerRecord,
} from '../ark';
import { testChannel } from './notify';
import { removeHost } from './watchdog';
import { releaseInScope, releasesInScope } from '../panama';

/**
 * The change a HOST_DESIRED_CHANGED event announced: about one host, or a round of network notices told to many (the
 * event names no host; its topics name the hosts told). A host runner may read only those told to its own host.
 */
async function hostDesiredStateChange(eventId: string, ctx: Context) {
  const event = await getEvent(store(), eventId);
  if (!event || event.kind !== HOST_DESIRED_CHANGED) return null;
  const hostId = ctx.principal.kind === 'host' ? ctx.principal.hostId : event.hostId;
  if (!hostId) return null;
  if (event.hostId ? event.hostId !== hostId : !event.topics.includes(hostTopic(hostId))) {
    throw new AppError('FORBIDDEN', 'a host runner may read only the desired-state changes of its own host');
  }
  return { hostId, at: event.at, spreadSeconds: event.spreadSeconds ?? 0 };
}

/**
 * The releases whose alarms, events, containers and findings the principal reads: a scoped key's (those it names and
 * those of its products); null for every one.
 */
const readableReleases = (ctx: Context) => {
  const scope = scopeOf(ctx.principal);
  return scope ? releasesInScope(store(), scope) : null;
};

const readableContainers = async (ctx: Context, containers: ContainerRecord[]) => {
  const releases = await readableReleases(ctx);
  return releases ? containers.filter((c) => releases.has(c.releaseId)) : containers;
};

const readableInspection = async (ctx: Context, inspection: Inspection | undefined) => {
  const releases = inspection && (await readableReleases(ctx));
  return releases ? inspectionOf(inspection, releases) : inspection;
};

const resolvers = {
  Query: {
    unhealthyContainers: async (_: unknown, __: unknown, ctx: Context) => readableContainers(ctx, (await listContainers(store())).filter(isFailing)),
    alarms: async (_: unknown, { filter, first, after }: { filter?: AlarmFilter | null; first: number; after?: string | null }, ctx: Context) =>
      listAlarms(store(), filter ?? {}, first, after, await readableReleases(ctx)),
    alarm: (_: unknown, { id }: { id: string }) => getAlarm(store(), id),
    events: async (_: unknown, { filter, first, after }: { filter?: EventFilter | null; first: number; after?: string | null }, ctx: Context) =>
      listEvents(store(), filter ?? {}, first, after, await readableReleases(ctx)),
    event: (_: unknown, { id }: { id: string }) => getEvent(store(), id),
    containerStatus: async (_: unknown, { instanceId }: { instanceId: string }) => {
      const [instance, record] = await Promise.all([getInstance(store(), instanceId), getContainer(store(), instanceId)]);
      return instance ? generationStatus(record, instance.specHash) : null;
    },
    hostDesiredStateChange: (_: unknown, { eventId }: { eventId: string }, ctx: Context) => hostDesiredStateChange(eventId, ctx),
    inspections: async (_: unknown, { first, after }: { first: number; after?: string | null }, ctx: Context) => {
      const page = await listInspections(store(), first, after);
      return { ...page, nodes: await Promise.all(page.nodes.map((i) => readableInspection(ctx, i))) };
    },
    inspection: async (_: unknown, { id }: { id: string }, ctx: Context) => readableInspection(ctx, await getInspection(store(), id)),
    me: (_: unknown, __: unknown, { principal }: Context) => callerOf(principal),
  },
  Mutation: {
    acknowledgeAlarm: (_: unknown, { id }: { id: string }) => acknowledgeAlarm(store(), id),
    restartInstance: async (_: unknown, { id }: { id: string }) => {
      const instance = await getInstance(store(), id);
      if (!instance) throw notFound('instance', id);
      await restart(store(), instance, 'restartInstance');
      return { __typename: 'Instance', id };
    },
    testAlertChannel: (_: unknown, { id }: { id: string }) => testChannel(store(), id),
    runInspection: () => runInspection(store(), 'ON_DEMAND', config().runnerPollSeconds),
    removeHost: (_: unknown, { id }: { id: string }) => removeHost(store(), id),
  },
  Inspection: {
    __resolveReference: async ({ id }: { id: string }, ctx: Context) => readableInspection(ctx, await getInspection(store(), id)),
    counts: findingCounts,
    report: (i: Inspection, { format }: { format: 'MARKDOWN' | 'HTML' }) => (format === 'HTML' ? reportHtml(i) : reportMarkdown(i)),
  },
  Alarm: {
    __resolveReference: ({ id }: { id: string }) => getAlarm(store(), id),
    host: (a: Alarm) => a.hostId && { __typename: 'Host', id: a.hostId },
    instance: (a: Alarm) => a.instanceId && { __typename: 'Instance', id: a.instanceId },
    release: (a: Alarm) => a.releaseId && { __typename: 'Release', id: a.releaseId },
  },
  Event: {
    __resolveReference: ({ id }: { id: string }) => getEvent(store(), id),
    host: (e: PlatformEvent) => e.hostId && { __typename: 'Host', id: e.hostId },
    instance: (e: PlatformEvent) => e.instanceId && { __typename: 'Instance', id: e.instanceId },
    release: (e: PlatformEvent) => e.releaseId && { __typename: 'Release', id: e.releaseId },
    alarm: (e: PlatformEvent) => e.alarmId && getAlarm(store(), e.alarmId),
  },
  Notification: {
    channel: (n: { channelId: string }) => ({ __typename: 'AlertChannel', id: n.channelId }),
  },
  Instance: {
    status: async ({ id }: { id: string }) => {
      const [instance, record] = await Promise.all([getInstance(store(), id), getContainer(store(), id)]);
      return instance ? generationStatus(record, instance.specHash) : null;
    },
  },
  Host: {
    // Hosts are shared; the containers on them are their releases'.
    containers: async ({ id }: { id: string }, _: unknown, ctx: Context) => readableContainers(ctx, await containersOfHost(store(), id)),
  },
  Release: {
    health: async ({ id }: { id: string }) => {
      const [instances, containers] = await Promise.all([instancesOfRelease(store(), id), containersOfRelease(store(), id)]);
      // Only containers of each instance's current spec count: an old generation says nothing about the new one.
      const specOf = new Map(instances.map((i) => [i.id, i.specHash]));
      const current = containers.filter((c) => specOf.get(c.instanceId) === c.specHash);
      return {
        desired: instances.length,
        running: current.filter((c) => c.state === 'RUNNING').length,
        healthy: current.filter(isServing).length,
        unhealthy: current.filter((c) => c.health === 'UNHEALTHY').length,
      };
    },
  },
  ContainerStatus: {
    instance: (c: ContainerRecord) => ({ __typename: 'Instance', id: c.instanceId }),
    host: (c: ContainerRecord) => ({ __typename: 'Host', id: c.hostId }),
    stats: (c: ContainerRecord) => c.stats ?? null,
    pull: (c: ContainerRecord) => c.pull ?? null,
  },
} satisfies Record<string, Record<string, unknown>>;

/** Whether what names this release lies in the scope: what names no release (a host's, the platform's) does not. */
const ofRelease = async (releaseId: string | null | undefined, scope: Scope) => (releaseId ? (await releaseInScope(store(), scope, releaseId)) ?? false : false);

const alarmVisible = async ({ id }: { id: string }, scope: Scope) => {
  const alarm = await getAlarm(store(), id);
  return alarm ? ofRelease(alarm.releaseId, scope) : null;
};

const eventVisible = async ({ id }: { id: string }, scope: Scope) => {
  const event = await getEvent(store(), id);
  return event ? ofRelease(event.releaseId, scope) : null;
};

const instanceVisible = async (id: string, scope: Scope) => {
  const instance = await getInstance(store(), id);
  return instance ? inScope(scope, instance) : null;
};

/**
 * Who may call what (lib/auth.ts): operators acknowledge alarms, restart instances and run inspections. A scoped key
 * reads the alarms, events and containers of its releases (lists are filtered, other direct reads are FORBIDDEN).
 */
export const butlerAccess: AccessRules = {
  Query: {
    hostDesiredStateChange: 'HOST',
    alarm: { rule: 'VIEWER', visible: alarmVisible },
    event: { rule: 'VIEWER', visible: eventVisible },
    containerStatus: { rule: 'VIEWER', visible: ({ instanceId }: { instanceId: string }, scope) => instanceVisible(instanceId, scope) },
    alarms: { rule: 'VIEWER', visible: ({ filter }: { filter?: AlarmFilter | null }, scope) => (filter?.releaseId ? releaseInScope(store(), scope, filter.releaseId) : true) },
    events: {
      rule: 'VIEWER',
      visible: ({ filter }: { filter?: EventFilter | null }, scope) => {
        const releaseId = filter?.releaseId ?? (filter?.instanceId ? releaseOfInstance(filter.instanceId) : null);
        return releaseId ? releaseInScope(store(), scope, releaseId) : true;
      },
    },
  },
  Mutation: {
    runInspection: 'OPERATOR',
    testAlertChannel: 'ADMIN',
    removeHost: 'ADMIN',
    acknowledgeAlarm: {
      rule: 'OPERATOR',
      target: async ({ id }: { id: string }) => {
        const alarm = await getAlarm(store(), id);
        const instance = alarm?.instanceId ? await getInstance(store(), alarm.instanceId) : undefined;
        return alarm?.releaseId ? { releaseId: alarm.releaseId, product: instance?.product ?? null } : null;
      },
    },
    restartInstance: {
      rule: 'OPERATOR',
      target: async ({ id }: { id: string }) => {
        const instance = await getInstance(store(), id);
        return instance ? { releaseId: instance.releaseId, product: instance.product } : null;
      },
    },
  },
  entities: {
    Alarm: alarmVisible,
    Event: eventVisible,
    Instance: ({ id }: { id: string }, scope) => instanceVisible(id, scope),
    Release: ({ id }: { id: string }, scope) => releaseInScope(store(), scope, id),
  },
};

export const butlerSchema = () => buildSubgraphSchema({
  typeDefs: gql(readSchemaFile('butler.graphql')),
  resolvers: secure(resolvers, butlerAccess) as never,
});
