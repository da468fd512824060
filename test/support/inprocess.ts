import type { ApolloServer } from '@apollo/server';
import { BOOTSTRAP_ADMIN, type Context, type Role } from '../../lib/auth';
import { hashSecret } from '../../lib/ids';
import { newSecretKey } from '../../lib/secrets';
import { createClient, ensureTables } from '../../lib/store';
import { startDynalite, startDynamoDbLocal, type DynamoDbServer } from './dynamodb';

export type Result = { data?: Record<string, any>; errors?: { message: string; extensions?: { code?: string } }[] };

export const operator: Context = { principal: BOOTSTRAP_ADMIN };
export const withRole = (role: Role, id = `k-test-${role.toLowerCase()}`): Context => ({ principal: { kind: 'operator', id, role } });
export const anonymous: Context = { principal: { kind: 'anonymous' } };
export const asHost = (hostId: string): Context => ({ principal: { kind: 'host', hostId } });

/**
 * The single-process shape for API-level tests: the gateway runs the three subgraphs in-process on the real store
 * protocol (dynalite, or Amazon's DynamoDB Local with `server: 'dynamodb-local'`). `run` executes an operation as the
 * given principal.
 */
export async function startInProcess(prefix: string, { server = 'dynalite' }: { server?: 'dynalite' | 'dynamodb-local' } = {}) {
  const db = server === 'dynalite' ? await startDynalite() : await startDynamoDbLocal();
  process.env.FZ_ADMIN_TOKEN_HASH = hashSecret('fza_test');
  process.env.FZ_SECRET_KEY ??= newSecretKey();
  await ensureTables(createClient(db.endpoint, 'local'), prefix);
  return connectInProcess(db.endpoint, prefix, db);
}

/**
 * The gateway in this process on a store that is already running (tables created), e.g. one a parent test process
 * started: for child processes of crash tests. `stop` also stops `db` when given.
 */
export async function connectInProcess(endpoint: string, prefix: string, db?: DynamoDbServer) {
  process.env.DYNAMODB_ENDPOINT = endpoint;
  process.env.FZ_TABLE_PREFIX = prefix;
  // Loaded after the environment is set: the store client is built from it on first use.
  const { createGateway } = await import('../../gateway/gateway');
  const { apolloServer } = await import('../../lib/graphql-lambda');
  const server: ApolloServer<Context> = apolloServer({ gateway: createGateway('inprocess') });
  await server.start();
  const run = async (query: string, variables: Record<string, unknown> = {}, ctx: Context = operator): Promise<Result> => {
    const res = await server.executeOperation({ query, variables }, { contextValue: ctx });
    if (res.body.kind !== 'single') throw new Error('expected a single result');
    return res.body.singleResult as Result;
  };
  const registerHost = async (name: string, capacity = { cpuMillis: 2000, memoryMb: 2048 }, labels: { key: string; value: string }[] = []) => {
    const token = (await run('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
    const res = await run('mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } } }',
      { input: { joinToken: token, name, address: '127.0.0.1', capacity, labels } }, anonymous);
    if (res.errors) throw new Error(res.errors[0].message);
    return res.data!.registerHost.host.id as string;
  };
  /** Reports every desired container of the host as running and healthy (or as `as` says), as its runner would. */
  const reportAllRunning = async (hostId: string, as: (d: { instanceId: string; specHash: string }) => Record<string, unknown> = () => ({})) => {
    const desired = (await run('mutation { runnerSync(input: {observed: []}) { desired { instanceId specHash name } } }', {}, asHost(hostId))).data!.runnerSync.desired;
    const observed = desired.map((d: { instanceId: string; specHash: string; name: string }, n: number) => ({
      containerId: `c-${d.instanceId}`, instanceId: d.instanceId, specHash: d.specHash, name: d.name, state: 'RUNNING', health: 'HEALTHY',
      restartCount: 0, oomKilled: false, ports: [{ containerPort: 8080, protocol: 'tcp', hostPort: 40000 + n }], ...as(d),
    }));
    await run('mutation($o: [ObservedContainerInput!]!) { runnerSync(input: {observed: $o}) { hostId } }', { o: observed }, asHost(hostId));
    return desired as { instanceId: string; name: string }[];
  };
  return {
    endpoint, run, registerHost, reportAllRunning,
    async stop() {
      await server.stop();
      await db?.stop();
    },
  };
}
