import { buildSubgraphSchema } from '@apollo/subgraph';
import gql from 'graphql-tag';
import { actor, OUT_OF_SCOPE, scopeOf, secure, type AccessRules, type Context, type Scope } from '../../lib/auth';
import { createApiKey, listApiKeys, revokeApiKey, type ApiKeyInput } from '../../lib/apikeys';
import { auditHead, listAudit, type AuditFilter } from '../../lib/audit';
import { kick } from '../../lib/kick';
import { log } from '../../lib/log';
import { DEFAULT_STOP } from '../../lib/runner-protocol';
import { readSchemaFile } from '../../lib/schema-files';
import { store } from '../../lib/store';
import { defineProduct, deleteProduct, getProduct, listProducts, mustGetProduct, type Product, type ProductInput } from './products';
import { openAll } from '../../lib/secrets';
import { instancesOfHost, instancesOfRelease, listContainers, listHosts, listInstances, setHostExclusive } from '../ark';
import { configSummary, deploymentScript, summaryRows } from './artefacts';
import { resolveDependencies } from './dependencies';
import { reconcileRelease } from './reconcile';
import { rollbackRelease, setPaused, startUpgrade, type UpgradeStrategy } from './upgrades';
import { configureRelease, deleteRelease, deploy, deployOutsideScope, getRelease, listReleases, mustGetRelease, scaleRelease, statusOf, versionsInUse, type DeployInput, type Release } from './releases';
import { createAlertChannel, deleteAlertChannel, displayTarget, getChannel, listChannels, type AlertChannel, type AlertChannelInput } from './channels';
import { listRevisions } from './revisions';
import { AppError, badInput } from '../../lib/errors';
import { productsInScope, releaseInScope, releaseVisible } from './scope';

// status and statusMessage come from one look at the instances, shared by both fields of the same release object.
const statuses = new WeakMap<Release, ReturnType<typeof statusOf>>();
const status = (r: Release) => {
  if (!statuses.has(r)) statuses.set(r, statusOf(store(), r));
  return statuses.get(r)!;
};

/**
 * A release's desired state changed: its instances follow now rather than at the next tick. A failure here does not
 * fail the request, whose change is written: the tick converges what this could not.
 */
async function converging(change: Promise<Release>): Promise<Release> {
  const release = await change;
  try {
    await reconcileRelease(store(), release.id);
  } catch (err) {
    log.warn({ releaseId: release.id, err: err instanceof Error ? err.message : String(err) }, 'could not converge the release now; the tick will');
  }
  await kick('reconcile');
  return (await getRelease(store(), release.id)) ?? release;
}

const resolvers = {
  Query: {
    products: async (_: unknown, __: unknown, ctx: Context) => {
      const [products, scope] = [await listProducts(store()), scopeOf(ctx.principal)];
      if (!scope) return products;
      const seen = await productsInScope(store(), scope);
      return products.filter((p) => seen.has(p.name));
    },
    product: (_: unknown, { name }: { name: string }) => getProduct(store(), name),
    releases: async (_: unknown, __: unknown, ctx: Context) => {
      const [releases, scope] = [await listReleases(store()), scopeOf(ctx.principal)];
      return scope ? releases.filter((r) => releaseVisible(scope, r)) : releases;
    },
    release: (_: unknown, { id }: { id: string }) => getRelease(store(), id),
    resolveDependencies: async (_: unknown, { products }: { products: string[] }, ctx: Context) => {
      const resolved = resolveDependencies(products, new Map((await listProducts(store())).map((p) => [p.name, p])));
      const scope = scopeOf(ctx.principal);
      if (scope) {
        const seen = await productsInScope(store(), scope);
        const outside = resolved.filter((r) => !seen.has(r.product.name)).map((r) => r.product.name);
        if (outside.length) {
          throw new AppError('FORBIDDEN', `the dependencies of ${products.join(', ')} include ${outside.join(', ')}, outside the scope of ${actor(ctx)}`, { reason: OUT_OF_SCOPE });
        }
      }
      return resolved;
    },
    alertChannels: () => listChannels(store()),
    apiKeys: () => listApiKeys(store()),
    auditLog: (_: unknown, { filter, first, after }: { filter?: AuditFilter | null; first: number; after?: string | null }) =>
      listAudit(store(), filter ?? {}, first, after),
    auditHead: () => auditHead(store()),
    deploymentScript: async (_: unknown, { releaseId, format }: { releaseId: string; format: 'SHELL' | 'COMPOSE' }) => {
      const release = await mustGetRelease(store(), releaseId);
      return deploymentScript(format, release, await instancesOfRelease(store(), releaseId));
    },
    configFiles: async (_: unknown, { releaseId }: { releaseId: string }) => {
      await mustGetRelease(store(), releaseId);
      return (await instancesOfRelease(store(), releaseId)).map((i) => ({ instanceId: i.id, ordinal: i.ordinal, domainName: i.domainName, files: i.spec.configFiles }));
    },
    configSummary: async (_: unknown, { format }: { format: 'CSV' | 'MARKDOWN' }, ctx: Context) => {
      const [all, instances, hosts, containers] = await Promise.all([
        listReleases(store()), listInstances(store()), listHosts(store()), listContainers(store()),
      ]);
      // The rows are the releases' (and their instances'): a scoped key's table has its releases only.
      const scope = scopeOf(ctx.principal);
      const releases = scope ? all.filter((r) => releaseVisible(scope, r)) : all;
      return configSummary(format, summaryRows({ releases, instances, hosts, containers }));
    },
  },
  Mutation: {
    defineProduct: (_: unknown, { input }: { input: ProductInput }) => defineProduct(store(), input, (name) => versionsInUse(store(), name)),
    deleteProduct: (_: unknown, { name }: { name: string }) => deleteProduct(store(), name, (product) => versionsInUse(store(), product)),
    // A deploy places its instances itself; a release waiting for dependencies is the reconciler's.
    deploy: async (_: unknown, { input }: { input: DeployInput }, ctx: Context) => {
      const release = await deploy(store(), input, new Date(), scopeOf(ctx.principal));
      await kick('reconcile');
      return release;
    },
    configureRelease: (_: unknown, { id, env }: { id: string; env: { name: string; value: string }[] }) => converging(configureRelease(store(), id, env)),
    upgradeRelease: (_: unknown, { id, version, strategy }: { id: string; version: string; strategy?: UpgradeStrategy | null }) =>
      converging(startUpgrade(store(), id, version, strategy ?? {})),
    rollbackRelease: (_: unknown, { id, revision }: { id: string; revision: number }) => converging(rollbackRelease(store(), id, revision)),
    pauseUpgrade: (_: unknown, { id }: { id: string }) => setPaused(store(), id, true),
    resumeUpgrade: (_: unknown, { id }: { id: string }) => converging(setPaused(store(), id, false)),
    scaleRelease: (_: unknown, { id, replicas }: { id: string; replicas: number }) => converging(scaleRelease(store(), id, replicas)),
    deleteRelease: (_: unknown, { id }: { id: string }, ctx: Context) => converging(deleteRelease(store(), id, scopeOf(ctx.principal))),
    createAlertChannel: (_: unknown, { input }: { input: AlertChannelInput }) => createAlertChannel(store(), input),
    deleteAlertChannel: (_: unknown, { id }: { id: string }) => deleteAlertChannel(store(), id),
    setHostExclusive: async (_: unknown, { id, product }: { id: string; product?: string | null }) => {
      if (product) await mustGetProduct(store(), product);
      return setHostExclusive(store(), id, product ?? null, async (hostId, keep) =>
        (await instancesOfHost(store(), hostId)).filter((i) => i.product !== keep).map((i) => i.id));
    },
    createApiKey: (_: unknown, { input }: { input: ApiKeyInput }, ctx: Context) => createApiKey(store(), input, actor(ctx)),
    revokeApiKey: (_: unknown, { id }: { id: string }) => revokeApiKey(store(), id),
    revealSecretEnv: async (_: unknown, { releaseId }: { releaseId: string }) => openAll((await mustGetRelease(store(), releaseId)).secretEnv),
  },
  Product: {
    __resolveReference: ({ name }: { name: string }) => getProduct(store(), name),
  },
  Release: {
    __resolveReference: ({ id }: { id: string }) => getRelease(store(), id),
    product: (r: Release) => mustGetProduct(store(), r.product),
    status: async (r: Release) => (await status(r)).status,
    statusMessage: async (r: Release) => (await status(r)).message,
    upgrade: (r: Release) => r.upgrade && { ...r.upgrade, done: r.upgrade.done.length, total: r.replicas },
    secretEnvNames: (r: Release) => (r.secretEnv ?? []).map((v) => v.name),
    revisions: (r: Release, { first, after }: { first?: number | null; after?: number | null }) => {
      if (first !== undefined && first !== null && (first < 0 || first > 1000)) throw badInput('revisions(first:) must be between 0 and 1000', 'first');
      return listRevisions(store(), r, first, after);
    },
  },
  ProductDefaults: {
    secretEnvNames: (d: Product['defaults']) => (d.secretEnv ?? []).map((v) => v.name),
    stopSignal: (d: Product['defaults']) => d.stopSignal ?? DEFAULT_STOP.signal,
    stopTimeoutSeconds: (d: Product['defaults']) => d.stopTimeoutSeconds ?? DEFAULT_STOP.timeoutSeconds,
  },
  AlertChannel: {
    // Deleted channels resolve too (tombstones), so old alarms' notifications still name them.
    __resolveReference: ({ id }: { id: string }) => getChannel(store(), id),
    // Never the stored URL: its query string and userinfo may hold a secret.
    target: (c: AlertChannel) => displayTarget(c),
  },
} satisfies Record<string, Record<string, unknown>>;

/** A change to one release, for keys scoped to some products or releases. */
const releaseTarget = async ({ id }: { id: string }) => ({ releaseId: id, product: (await getRelease(store(), id))?.product ?? null });

/** A read of one release or of what it renders, for keys scoped to some products or releases. */
const releaseRead = (arg: 'id' | 'releaseId') => (args: Record<string, string>, scope: Scope) => releaseInScope(store(), scope, args[arg]);

const productVisible = async (name: string, scope: Scope) =>
  (await productsInScope(store(), scope)).has(name) || ((await getProduct(store(), name)) ? false : null);

/** Keys and the audit log span every product: no scoped key reads them. */
const unscopedOnly = () => false;

/**
 * Who may call what (lib/auth.ts): operators run releases, admins define products and channels and manage keys. A
 * scoped key reads the products and releases of its scope (lists are filtered, other direct reads are FORBIDDEN).
 */
export const panamaAccess: AccessRules = {
  Query: {
    apiKeys: { rule: 'ADMIN', visible: unscopedOnly },
    auditLog: { rule: 'ADMIN', visible: unscopedOnly },
    auditHead: { rule: 'ADMIN', visible: unscopedOnly },
    product: { rule: 'VIEWER', visible: ({ name }: { name: string }, scope) => productVisible(name, scope) },
    release: { rule: 'VIEWER', visible: releaseRead('id') },
    deploymentScript: { rule: 'VIEWER', visible: releaseRead('releaseId') },
    configFiles: { rule: 'VIEWER', visible: releaseRead('releaseId') },
    resolveDependencies: {
      rule: 'VIEWER',
      visible: async ({ products }: { products: string[] }, scope) => {
        const seen = await productsInScope(store(), scope);
        return products.every((p) => seen.has(p));
      },
    },
  },
  Mutation: {
    defineProduct: { rule: 'ADMIN', target: ({ input }: { input: { name: string } }) => ({ product: input?.name }) },
    deleteProduct: { rule: 'ADMIN', target: ({ name }: { name: string }) => ({ product: name }) },
    deploy: {
      rule: 'OPERATOR',
      target: ({ input }: { input: { product: string } }) => ({ product: input?.product }),
      // The releases of its dependencies it would create or rely on must be in the scope too.
      reach: ({ input }: { input: { product: string } }, scope) => deployOutsideScope(store(), input?.product, scope),
    },
    scaleRelease: { rule: 'OPERATOR', target: releaseTarget },
    configureRelease: { rule: 'OPERATOR', target: releaseTarget },
    upgradeRelease: { rule: 'OPERATOR', target: releaseTarget },
    rollbackRelease: { rule: 'OPERATOR', target: releaseTarget },
    pauseUpgrade: { rule: 'OPERATOR', target: releaseTarget },
    resumeUpgrade: { rule: 'OPERATOR', target: releaseTarget },
    deleteRelease: { rule: 'OPERATOR', target: releaseTarget },
    createAlertChannel: 'ADMIN',
    deleteAlertChannel: 'ADMIN',
    setHostExclusive: 'ADMIN',
    createApiKey: 'ADMIN',
    revokeApiKey: 'ADMIN',
    revealSecretEnv: { rule: 'ADMIN', target: ({ releaseId }: { releaseId: string }) => releaseTarget({ id: releaseId }) },
  },
  entities: {
    Product: ({ name }: { name: string }, scope) => productVisible(name, scope),
    Release: ({ id }: { id: string }, scope) => releaseInScope(store(), scope, id),
  },
};

export const panamaSchema = () => buildSubgraphSchema({
  typeDefs: gql(readSchemaFile('panama.graphql')),
  resolvers: secure(resolvers, panamaAccess) as never,
});
