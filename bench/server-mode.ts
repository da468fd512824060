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
import { ms, now, printStats, round, roundStats, runBench, stats, waitUntil, type Bench, type Stats } from './lib';
import { deployDemoRelease, simulatedHost, timeGateway } from './support';
import { startStack, type Runtime } from '../scripts/stack';

const REQUESTS = 300;
const WARMUP = 30;
const EVENTS = 30;
const REPLICAS = 3;

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
  const host = await simulatedHost(b, stack, `bench-${runtime}-${httpPort}`);
  const release = await deployDemoRelease(stack, 'bench-sm', REPLICAS);
  const id = release.id;

  // Gateway overhead: the query through the gateway against its three plan fetches sent back to back.
  const { gateway, planFetches, bare, overheadP50 } = await timeGateway(stack, release, WARMUP, REQUESTS);
  printStats('gateway  POST /graphql (release → 3 subgraphs)', gateway);
  printStats('its 3 plan fetches, back to back', planFetches);
  printStats('gateway  { __typename } (no fetch)', bare);
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
  const target = host.desired()[0].instanceId;
  const trigger = async (n: number, timeoutMs = 30_000) => {
    const at = new Date(Date.UTC(2026, 0, 2, 0, 0, n)).toISOString();
    host.setStartedAt(target, at);
    const sent = now();
    await host.sync();
    await waitUntil(`event ${n} at the subscriber`, async () => arrivals.has(at), timeoutMs, 5);
    return arrivals.get(at)! - sent;
  };
  // The first triggers also wait until the subscription is stored and the publisher warm: each one a new start time
  // (a report that repeats the last one is no change, so it would never be delivered).
  let n = 0;
  await waitUntil('the subscription to deliver', async () => { await trigger(++n, 5_000); return true; }, 60_000, 100);
  const latencies: number[] = [];
  for (let k = 1; k <= EVENTS; k++) latencies.push(await trigger(++n));
  const subscription = stats(latencies);
  printStats('subscription: report → next at the client', subscription);

  const rssMiB = treeRssMiB(apiPid());
  console.log(`resident memory of the API's processes: ${rssMiB.toFixed(0)} MiB`);
  await client.dispose();
  host.stop();
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
