/**
 * What bench/gateway-latency.ts and bench/server-mode.ts share: a simulated host (no Docker: it reports every
 * desired container RUNNING and HEALTHY, as a runner would), the demo release it serves, and the gateway query with
 * the three fetches of its query plan, timed one after another.
 */
import type { Stack } from '../scripts/stack';
import { DEPLOY, defineDemo, post, sequential, stats, waitUntil, type Bench, type Stats } from './lib';

export const GATEWAY_QUERY = `query Release($id: ID!) {
  release(id: $id) { name status instances { id host { name } status { state health } } }
}`;
// The three fetches of the gateway's query plan for GATEWAY_QUERY, as it sends them (one after another).
export const PANAMA_FETCH = 'query($id: ID!) { release(id: $id) { __typename id name status } }';
export const ARK_FETCH = `query($representations: [_Any!]!) { _entities(representations: $representations) {
  ... on Release { instances { __typename id host { name } } } } }`;
export const BUTLER_FETCH = `query($representations: [_Any!]!) { _entities(representations: $representations) {
  ... on Instance { status { state health } } } }`;
const SYNC = 'mutation($input: RunnerSyncInput!) { runnerSync(input: $input) { desired { instanceId specHash name } } }';

export interface SimulatedHost {
  /** One report: every desired container RUNNING and HEALTHY, with the start time set for it (default a fixed one). */
  sync(): Promise<void>;
  desired(): { instanceId: string; specHash: string; name: string }[];
  /** The `startedAt` reported for an instance from now on: a change the report carries. */
  setStartedAt(instanceId: string, at: string): void;
  /** No more reports. */
  stop(): void;
}

/** Registers a host and reports for it every second (its sync is its heartbeat), until the bench cleans up. */
export async function simulatedHost(b: Bench, stack: Stack, name: string): Promise<SimulatedHost> {
  const token = stack.adminToken;
  const joinToken = (await post(stack.url, 'mutation { createJoinToken { token } }', undefined, token)).createJoinToken.token;
  const { registerHost } = await post(stack.url, 'mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken } }',
    { input: { joinToken, name, address: '127.0.0.1', capacity: { cpuMillis: 4000, memoryMb: 4096 } } }, token);
  const hostToken: string = registerHost.hostToken;
  const startedAt = new Map<string, string>();
  let desired: { instanceId: string; specHash: string; name: string }[] = [];
  const sync = async () => {
    const observed = desired.map((d) => ({
      containerId: `c-${d.instanceId}`, instanceId: d.instanceId, specHash: d.specHash, name: d.name, state: 'RUNNING', health: 'HEALTHY',
      restartCount: 0, oomKilled: false, startedAt: startedAt.get(d.instanceId) ?? '2026-01-01T00:00:00.000Z', ports: [],
    }));
    desired = (await post(stack.url, SYNC, { input: { observed, engine: { version: 'bench', os: 'bench' } } }, hostToken)).runnerSync.desired;
  };
  await sync();
  const timer = setInterval(() => void sync().catch(() => undefined), 1000);
  b.defer(() => clearInterval(timer));
  return { sync, desired: () => desired, setStartedAt: (id, at) => void startedAt.set(id, at), stop: () => clearInterval(timer) };
}

/** Defines the demo product, deploys `replicas` of it and waits until the release is RUNNING. */
export async function deployDemoRelease(stack: Stack, name: string, replicas: number): Promise<{ id: string; instances: { id: string }[] }> {
  const token = stack.adminToken;
  await defineDemo(stack);
  const { deploy } = await post(stack.url, DEPLOY, { input: { name, product: 'demo', version: '1.0.0', replicas } }, token);
  const id: string = deploy.id;
  await waitUntil('the release to be RUNNING', async () => (await post(stack.url, GATEWAY_QUERY, { id }, token)).release.status === 'RUNNING', 90_000, 250);
  const instances: { id: string }[] = (await post(stack.url, GATEWAY_QUERY, { id }, token)).release.instances;
  return { id, instances };
}

export interface GatewayFigures {
  /** GATEWAY_QUERY through `POST /graphql`. */
  gateway: Stats;
  /** The ark fetch of its plan, sent to `POST /subgraphs/ark` directly. */
  ark: Stats;
  /** The plan's three fetches sent back to back: the work the gateway delegates, without the gateway. */
  planFetches: Stats;
  /** `{ __typename }` through the gateway: the request path alone, no plan, no fetch. */
  bare: Stats;
  /** gateway p50 − plan fetches p50. */
  overheadP50: number;
}

/** Times each target `requests` times one after another (after `warmup` calls), one target after the other. */
export async function timeGateway(stack: Stack, release: { id: string; instances: { id: string }[] }, warmup: number, requests: number): Promise<GatewayFigures> {
  const token = stack.adminToken;
  const { id, instances } = release;
  const subgraph = (name: string) => stack.url.replace(/\/graphql$/, `/subgraphs/${name}`);
  const releaseRef = [{ __typename: 'Release', id }];
  const instanceRefs = instances.map((i) => ({ __typename: 'Instance', id: i.id }));
  const targets = {
    gateway: () => post(stack.url, GATEWAY_QUERY, { id }, token),
    ark: () => post(subgraph('ark'), ARK_FETCH, { representations: releaseRef }, token),
    planFetches: async () => {
      await post(subgraph('panama'), PANAMA_FETCH, { id }, token);
      await post(subgraph('ark'), ARK_FETCH, { representations: releaseRef }, token);
      await post(subgraph('butler'), BUTLER_FETCH, { representations: instanceRefs }, token);
    },
    bare: () => post(stack.url, '{ __typename }', undefined, token),
  };
  const out = {} as Record<keyof typeof targets, Stats>;
  for (const [name, fn] of Object.entries(targets) as [keyof typeof targets, () => Promise<unknown>][]) {
    await sequential(warmup, fn);
    out[name] = stats(await sequential(requests, fn));
  }
  return { ...out, overheadP50: out.gateway.p50 - out.planFetches.p50 };
}
