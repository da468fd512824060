/**
 * Server mode against serverless-offline, in one run, on the same machine and the same store (dynalite): start-up
 * time, resident memory of the API's processes, subscription latency (a runner's report → the `next` at an
 * operator's graphql-ws client), and the gateway's own overhead over its plan's fetches. Three stacks one after
 * another: offline, server mode with the gateway calling the subgraph routes over HTTP (the deployed shape, the
 * same plan fetches as offline), and server mode as it runs by default (subgraphs in-process).
 * No Docker: a registered host reports containers as a runner would. `node --import tsx bench/server-mode.ts`
 */
import { createClient } from 'graphql-ws';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { DEPLOY, defineDemo, ms, now, post, printStats, round, roundStats, runBench, sequential, stats, waitUntil, type Bench, type Stats } from './lib';
import { startStack, type Runtime } from '../scripts/stack';

const REQUESTS = 300;
const WARMUP = 30;
const EVENTS = 30;
const REPLICAS = 3;

const GATEWAY_QUERY = `query Release($id: ID!) {
  release(id: $id) { name status instances { id host { name } status { state health } } }
}`;
// The three fetches of the gateway's query plan for GATEWAY_QUERY (as bench/gateway-latency.ts sends them).
const PANAMA_FETCH = 'query($id: ID!) { release(id: $id) { __typename id name status } }';
const ARK_FETCH = `query($representations: [_Any!]!) { _entities(representations: $representations) {
  ... on Release { instances { __typename id host { name } } } } }`;
const BUTLER_FETCH = `query($representations: [_Any!]!) { _entities(representations: $representations) {
  ... on Instance { status { state health } } } }`;
const SYNC = 'mutation($input: RunnerSyncInput!) { runnerSync(input: $input) { desired { instanceId specHash name } } }';

/** Resident memory (kB → MiB) of a process and all its descendants, from /proc. */
function treeRssMiB(root: number): number {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch { /* gone meanwhile */ }
  }
  let kb = 0;
  const visit = (pid: number) => {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch { /* gone meanwhile */ }
    for (const c of children.get(pid) ?? []) visit(c);
  };
  visit(root);
  return kb / 1024;
}

/** The API's process: this process's child that is neither dynalite nor a runner. */
function apiPid(): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== process.pid) continue;
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes('server/main.ts') || cmd.includes('serverless')) return Number(entry);
    } catch { /* gone meanwhile */ }
  }
  throw new Error('no API process found among this process\'s children');
}

interface Figures {
  startupMs: number;
  rssMiB: number;
  subscription: Stats;
  gateway: Stats;
  planFetches: Stats;
  overheadP50: number;
  /** `{ __typename }` through the gateway: the request path alone, no plan, no fetch. */
  bare: Stats;
}

async function measure(b: Bench, label: string, runtime: Runtime, httpPort: number, storePort: number, subgraphTransport?: 'http'): Promise<Figures> {
  console.log(`\n== ${label}`);
  const t = now();
  const stack = await startStack({
    dataDir: join(b.dir, label.replace(/\W+/g, '-')), httpPort, wsPort: httpPort + 1, lambdaPort: httpPort + 2, storePort,
    output: join(b.dir, `${label.replace(/\W+/g, '-')}.log`), runtime, subgraphTransport,
  });
  const startupMs = now() - t;
  b.defer(() => stack.stop());
  console.log(`up in ${ms(startupMs)} (store, tables, API answering)`);
  const token = stack.adminToken;

  // A host that reports like a runner: every desired container RUNNING and HEALTHY.
  const joinToken = (await post(stack.url, 'mutation { createJoinToken { token } }', undefined, token)).createJoinToken.token;
  const { registerHost } = await post(stack.url, 'mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken } }',
    { input: { joinToken, name: `bench-${runtime}-${httpPort}`, address: '127.0.0.1', capacity: { cpuMillis: 4000, memoryMb: 4096 } } }, token);
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
  const heartbeat = setInterval(() => void sync().catch(() => undefined), 1000);
  b.defer(() => clearInterval(heartbeat));

  await defineDemo(stack);
  const { deploy } = await post(stack.url, DEPLOY, { input: { name: 'bench-sm', product: 'demo', version: '1.0.0', replicas: REPLICAS } }, token);
  const id: string = deploy.id;
  await waitUntil('the release RUNNING', async () => (await post(stack.url, GATEWAY_QUERY, { id }, token)).release.status === 'RUNNING', 90_000, 250);

  // Gateway overhead: the query through the gateway against its three plan fetches sent back to back.
  const subgraph = (name: string) => stack.url.replace(/\/graphql$/, `/subgraphs/${name}`);
  const instances: { id: string }[] = (await post(stack.url, GATEWAY_QUERY, { id }, token)).release.instances;
  const gatewayCall = () => post(stack.url, GATEWAY_QUERY, { id }, token);
  const planCall = async () => {
    await post(subgraph('panama'), PANAMA_FETCH, { id }, token);
    await post(subgraph('ark'), ARK_FETCH, { representations: [{ __typename: 'Release', id }] }, token);
    await post(subgraph('butler'), BUTLER_FETCH, { representations: instances.map((i) => ({ __typename: 'Instance', id: i.id })) }, token);
  };
  const bareCall = () => post(stack.url, '{ __typename }', undefined, token);
  await sequential(WARMUP, gatewayCall);
  await sequential(WARMUP, planCall);
  await sequential(WARMUP, bareCall);
  const gateway = stats(await sequential(REQUESTS, gatewayCall));
  const planFetches = stats(await sequential(REQUESTS, planCall));
  const bare = stats(await sequential(REQUESTS, bareCall));
  printStats('gateway  POST /graphql (release → 3 subgraphs)', gateway);
  printStats('its 3 plan fetches, back to back', planFetches);
  printStats('gateway  { __typename } (no fetch)', bare);
  const overheadP50 = gateway.p50 - planFetches.p50;
  console.log(`gateway overhead over its plan's fetches (p50 difference): ${overheadP50.toFixed(1)} ms`);

  // Subscription latency: a container's new report → the containerStatusChanged `next` at the operator.
  const client = createClient({ url: stack.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0 });
  b.defer(() => client.dispose());
  const arrivals = new Map<string, number>();
  client.subscribe({ query: 'subscription($r: ID) { containerStatusChanged(releaseId: $r) { startedAt instance { id } } }', variables: { r: id } }, {
    next: (v) => {
      const s = (v.data as { containerStatusChanged?: { startedAt: string } } | undefined)?.containerStatusChanged;
      if (s && !arrivals.has(s.startedAt)) arrivals.set(s.startedAt, now());
    },
    error: (err) => console.error('subscription error', err),
    complete: () => undefined,
  });
  const target = desired[0].instanceId;
  const trigger = async (n: number) => {
    const at = new Date(Date.UTC(2026, 0, 2, 0, 0, n)).toISOString();
    startedAt.set(target, at);
    const sent = now();
    await sync();
    await waitUntil(`event ${n} at the subscriber`, async () => arrivals.has(at), 30_000, 5);
    return arrivals.get(at)! - sent;
  };
  // The first trigger also waits until the subscription is stored and the publisher warm.
  await waitUntil('the subscription to deliver', async () => { await trigger(0); return true; }, 60_000, 100);
  const latencies: number[] = [];
  for (let n = 1; n <= EVENTS; n++) latencies.push(await trigger(n));
  const subscription = stats(latencies);
  printStats('subscription: report → next at the client', subscription);

  const rssMiB = treeRssMiB(apiPid());
  console.log(`resident memory of the API's processes: ${rssMiB.toFixed(0)} MiB`);
  await client.dispose();
  clearInterval(heartbeat);
  await stack.stop();
  return { startupMs, rssMiB, subscription, gateway, planFetches, overheadP50, bare };
}

runBench('server-mode', 900_000, async (b) => {
  const server = await measure(b, 'server mode (default: subgraphs in-process)', 'server', 3620, 4972);
  const serverHttp = await measure(b, 'server mode, subgraphs over HTTP', 'server', 3610, 4971, 'http');
  // Last, and allowed to fail: on a busy machine serverless-offline may not answer within the stack's 180 s.
  const offline = await measure(b, 'serverless-offline', 'offline', 3600, 4970, 'http').catch((err: Error) => {
    console.log(`serverless-offline: ${err.message}`);
    return undefined;
  });

  const columns = [offline, serverHttp, server];
  console.log('\n                         offline    server/http  server (default)');
  const row = (name: string, f: (x: Figures) => number, unit: string) =>
    console.log(`${name.padEnd(24)} ${columns.map((x) => (x ? `${f(x).toFixed(1)} ${unit}` : 'n/a').padStart(12)).join(' ')}`);
  row('start-up', (x) => x.startupMs / 1000, 's');
  row('resident memory', (x) => x.rssMiB, 'MiB');
  row('subscription p50', (x) => x.subscription.p50, 'ms');
  row('subscription p99', (x) => x.subscription.p99, 'ms');
  row('gateway p50', (x) => x.gateway.p50, 'ms');
  row('plan fetches p50', (x) => x.planFetches.p50, 'ms');
  row('gateway overhead p50', (x) => x.overheadP50, 'ms');
  row('{ __typename } p50', (x) => x.bare.p50, 'ms');
  const out = (x: Figures | undefined) => x && ({
    startupSeconds: round(x.startupMs / 1000), rssMiB: round(x.rssMiB, 0), subscription: roundStats(x.subscription),
    gateway: roundStats(x.gateway), planFetches: roundStats(x.planFetches), gatewayOverheadP50: round(x.overheadP50), bare: roundStats(x.bare),
  });
  return { requests: REQUESTS, events: EVENTS, offline: out(offline) ?? null, serverHttp: out(serverHttp), server: out(server) };
});
