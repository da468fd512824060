import { buildSubgraphSchema } from '@apollo/subgraph';
import gql from 'graphql-tag';
import { inScope, scopeOf, requireHost, secure, targetVisible, type AccessRules, type Context, type Scope } from '../../lib/auth';
import { config } from '../../lib/config';
import type { SyncRequest } from '../../lib/runner-protocol';
import { readSchemaFile } from '../../lib/schema-files';
import { store } from '../../lib/store';
import type { Label } from '../../lib/validate';
import { getContainer } from './containers';
import { resolveName, type Endpoint } from './discovery';
import { runnerHeartbeat, runnerSync, type HeartbeatRequest } from './dispatch';
import { issueHostCertificate } from './certificates';
import { createJoinToken, drainHost, getHost, labelHost, listHosts, registerHost, revokeHost, setCordoned, type Host, type RegisterHostInput } from './hosts';
import { checkLedger, type LedgerDrift } from './ledger';
import { instanceLogs, recordLogChunk, type LogChunkInput } from './logs';
import { getLogTail, recordLogTail, type LogTail, type LogTailInput } from './logtail';
import { getInstance, instancesOfHost, instancesOfRelease, type Instance } from './instances';

async function instancePorts(i: Instance) {
  const observed = (await getContainer(store(), i.id))?.ports ?? [];
  return i.spec.ports.map((p) => ({
    ...p,
    hostPort: observed.find((o) => o.containerPort === p.containerPort && o.protocol === p.protocol)?.hostPort ?? null,
  }));
}

/** The instances a principal may read: a scoped key's are those of its products and releases. */
const readable = <T>(ctx: Context, items: T[], instanceOf: (item: T) => Pick<Instance, 'releaseId' | 'product'>) => {
  const scope = scopeOf(ctx.principal);
  return scope ? items.filter((item) => inScope(scope, instanceOf(item))) : items;
};

/** An instance's id is `<releaseId>-<ordinal>`: its release, when the instance itself is gone. */
const releaseOfInstanceId = (id: string) => id.replace(/-\d+$/, '');

/** Drift naming an instance is the instance's release's business; a host's total is the host's. */
async function readableDrift(ctx: Context, drift: LedgerDrift[]) {
  const scope = scopeOf(ctx.principal);
  if (!scope) return drift;
  const kept = await Promise.all(drift.map(async (d) => {
    if (!d.instanceId) return true;
    const instance = await getInstance(store(), d.instanceId);
    return inScope(scope, instance ?? { releaseId: releaseOfInstanceId(d.instanceId) });
  }));
  return drift.filter((_, n) => kept[n]);
}

const resolvers = {
  Query: {
    hosts: () => listHosts(store()),
    host: (_: unknown, { id }: { id: string }) => getHost(store(), id),
    instance: (_: unknown, { id }: { id: string }) => getInstance(store(), id),
    // A name of a release outside a scoped key's scope resolves to nothing, as a name of no release does.
    resolveName: async (_: unknown, { name }: { name: string }, ctx: Context) => readable(ctx, await resolveName(store(), name), (e) => e.instance),
    ledgerDrift: async (_: unknown, __: unknown, ctx: Context) => readableDrift(ctx, await checkLedger(store(), false)),
    instanceLogs: (_: unknown, { id, tail, since }: { id: string; tail?: number | null; since?: string | null }) =>
      instanceLogs(store(), id, tail ?? 100, since),
    logTail: (_: unknown, { id }: { id: string }) => getLogTail(store(), id),
  },
  Mutation: {
    createJoinToken: (_: unknown, { ttlSeconds }: { ttlSeconds?: number | null }) =>
      createJoinToken(store(), ttlSeconds ?? config().joinTokenTtlSeconds),
    // A joining host moves the network serial but tells no one at once: it runs nothing yet, and once something placed
    // there starts serving, that change tells every host (routes and records together); every poll sees it before.
    registerHost: (_: unknown, { input }: { input: RegisterHostInput }) => registerHost(store(), input),
    labelHost: (_: unknown, { id, labels }: { id: string; labels: Label[] }) => labelHost(store(), id, labels),
    drainHost: (_: unknown, { id }: { id: string }) => drainHost(store(), id),
    cordonHost: (_: unknown, { id }: { id: string }) => setCordoned(store(), id, true),
    uncordonHost: (_: unknown, { id }: { id: string }) => setCordoned(store(), id, false),
    revokeHost: (_: unknown, { id }: { id: string }) => revokeHost(store(), id),
    runnerSync: (_: unknown, { input }: { input: SyncRequest }, ctx: Context) => runnerSync(store(), requireHost(ctx), input),
    runnerHeartbeat: (_: unknown, { input }: { input: HeartbeatRequest }, ctx: Context) => runnerHeartbeat(store(), requireHost(ctx), input),
    repairLedger: () => checkLedger(store(), true),
    runnerLogs: (_: unknown, { input }: { input: LogChunkInput }, ctx: Context) => recordLogChunk(store(), requireHost(ctx), input),
    runnerLogTail: (_: unknown, { input }: { input: LogTailInput }, ctx: Context) => recordLogTail(store(), requireHost(ctx), input),
    runnerRenewCertificate: (_: unknown, { input }: { input: { csr: string } }, ctx: Context) =>
      issueHostCertificate(store(), requireHost(ctx), input.csr, config().ca.lifetimeSeconds),
  },
  LedgerDrift: {
    host: (d: LedgerDrift) => getHost(store(), d.hostId),
  },
  Host: {
    __resolveReference: ({ id }: { id: string }) => getHost(store(), id),
    // Hosts are shared; the instances on them are their releases'.
    instances: async ({ id }: { id: string }, _: unknown, ctx: Context) => readable(ctx, await instancesOfHost(store(), id), (i) => i),
    certificateExpiresAt: (h: Host) => h.certificate?.notAfter ?? null,
  },
  Instance: {
    __resolveReference: ({ id }: { id: string }) => getInstance(store(), id),
    release: (i: Instance) => ({ __typename: 'Release', id: i.releaseId }),
    host: (i: Instance) => getHost(store(), i.hostId),
    image: (i: Instance) => i.spec.image,
    ip: (i: Instance) => i.ip ?? null,
    ports: (i: Instance) => instancePorts(i),
  },
  Endpoint: {
    host: (e: Endpoint) => getHost(store(), e.hostId),
    ports: (e: Endpoint) => instancePorts(e.instance),
  },
  Release: {
    instances: async ({ id }: { id: string }, _: unknown, ctx: Context) => readable(ctx, await instancesOfRelease(store(), id), (i) => i),
  },
  LogTail: {
    instance: (t: LogTail) => getInstance(store(), t.instanceId),
  },
} satisfies Record<string, Record<string, unknown>>;

/** The release and product an instance belongs to, for keys scoped to some of them. */
const instanceTarget = async ({ id }: { id: string }) => {
  const instance = await getInstance(store(), id);
  return instance ? { releaseId: instance.releaseId, product: instance.product } : null;
};

/**
 * Who may call what (lib/auth.ts): hosts are an admin's business; a runner syncs only with its own host token. Hosts
 * are shared: a scoped key reads them, but only the instances of its products and releases on them.
 */
export const arkAccess: AccessRules = {
  Query: {
    instance: { rule: 'VIEWER', target: instanceTarget },
    // Container output may hold what the product prints of its configuration: an operator's business.
    instanceLogs: { rule: 'OPERATOR', target: instanceTarget },
    // Checked again at each delivery of instanceLogTail: the publisher runs this lookup as the subscriber.
    logTail: { rule: 'OPERATOR', target: async ({ id }: { id: string }) => {
      const tail = await getLogTail(store(), id);
      return tail ? { releaseId: tail.releaseId, product: tail.product } : null;
    } },
  },
  Mutation: {
    createJoinToken: 'ADMIN',
    // The join token is its credential, checked by registerHost itself.
    registerHost: 'ANYONE',
    labelHost: 'ADMIN',
    drainHost: 'ADMIN',
    cordonHost: 'ADMIN',
    uncordonHost: 'ADMIN',
    revokeHost: 'ADMIN',
    repairLedger: 'ADMIN',
    runnerLogs: 'HOST',
    runnerLogTail: 'HOST',
    runnerSync: 'HOST',
    runnerHeartbeat: 'HOST',
    runnerRenewCertificate: 'HOST',
  },
  entities: {
    Instance: targetVisible(instanceTarget),
    // Ark knows a release by its instances (Panama is above it): a release of none has nothing here to show.
    Release: async ({ id }: { id: string }, scope: Scope) => {
      if (scope.releases.includes(id)) return true;
      const [instance] = await instancesOfRelease(store(), id);
      return instance ? inScope(scope, instance) : null;
    },
  },
};

export const arkSchema = () => buildSubgraphSchema({
  typeDefs: gql(readSchemaFile('ark.graphql')),
  resolvers: secure(resolvers, arkAccess) as never,
});
