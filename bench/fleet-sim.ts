/**
 * The control plane at fleet scale: N simulated runners (no Docker; each beats like runner/heartbeat.ts at the
 * interval the API gives, holds the runner's own notification socket (runner/notifications.ts, which also answers
 * the watchdog's probes), and syncs at the API's poll interval or when notified, reporting its desired containers
 * back as RUNNING and HEALTHY) against server mode, on dynalite
 * and on Amazon's DynamoDB Local. Prints runnerSync p50/p99, store operations/s (counted by a proxy in front of the
 * store), the server process's CPU, and false HOST_DOWN alarms (every simulated runner stays alive), then the largest
 * N that keeps p99 < 1 s with no false HOST_DOWN.
 *
 *   node --import tsx bench/fleet-sim.ts [--stores dynalite,ddblocal] [--sizes 100,300,1000] [--seconds 30]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { followNotifications } from '../runner/notifications';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../scripts/demo-product';
import { startStack, type Stack } from '../scripts/stack';
import { startDynalite, startDynamoDbLocal, type DynamoDbServer } from '../test/support/dynamodb';
import { stats, type Stats } from './lib';

const { values } = parseArgs({
  options: { stores: { type: 'string', default: 'dynalite,ddblocal' }, sizes: { type: 'string', default: '100,300,1000' }, seconds: { type: 'string', default: '30' } },
});
const SECONDS = Number(values.seconds);

/** Counts requests on their way to the store. */
async function countingProxy(target: string): Promise<{ endpoint: string; count: () => number; close: () => void }> {
  const to = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let n = 0;
  const server = http.createServer((req, res) => {
    n++;
    const upstream = http.request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers, agent }, (up) => {
      res.writeHead(up.statusCode ?? 500, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: () => n,
    close: () => { server.closeAllConnections(); server.close(); agent.destroy(); },
  };
}

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function gql<T>(url: string, query: string, variables: Record<string, unknown>, token: string): Promise<{ data?: T; errors?: { message: string }[] }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify({ query, variables }) });
  return res.json() as never;
}

const SYNC = `mutation($input: RunnerSyncInput!) { runnerSync(input: $input) { pollSeconds desired { instanceId specHash name } } }`;
const BEAT = `mutation($input: RunnerHeartbeatInput!) { runnerHeartbeat(input: $input) { intervalSeconds } }`;

interface Result { store: string; n: number; sync: Stats; storeOpsPerSecond: number; cpuPercent: number; falseDown: number; errors: number }

async function runOne(storeName: string, store: DynamoDbServer, n: number): Promise<Result> {
  const proxy = await countingProxy(store.endpoint);
  const dir = mkdtempSync(join(tmpdir(), 'fz-fleet-sim-'));
  let stack: Stack | undefined;
  let running = true;
  try {
    stack = await startStack({
      dataDir: dir, runtime: 'server', dynamodbEndpoint: proxy.endpoint, tablePrefix: `sim${Date.now()}-`,
      httpPort: 3390, wsPort: 3391, lambdaPort: 3392, output: join(dir, 'stack.log'),
    });
    const s = stack;
    await s.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT });
    // Join tokens are single-use: one per host.
    const joinToken = async () => (await s.graphql<{ createJoinToken: { token: string } }>('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
    const hosts: { id: string; token: string }[] = [];
    for (let i = 0; i < n; i += 20) {
      await Promise.all(Array.from({ length: Math.min(20, n - i) }, async (_, k) => {
        const res = await gql<{ registerHost: { host: { id: string }; hostToken: string } }>(s.url,
          'mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken } }',
          { input: { joinToken: await joinToken(), name: `sim-${i + k}`, address: `10.99.${Math.floor((i + k) / 250)}.${(i + k) % 250}`, capacity: { cpuMillis: 4000, memoryMb: 4096 } } }, '');
        if (!res.data) throw new Error(`registerHost: ${JSON.stringify(res.errors)}`);
        hosts.push({ id: res.data.registerHost.host.id, token: res.data.registerHost.hostToken });
      }));
    }
    await s.graphql(`mutation { deploy(input: {name: "sim", product: "demo", version: "1.0.0", replicas: ${Math.min(n, 100)}}) { id } }`);

    const syncMs: number[] = [];
    let errors = 0;
    let measuring = false;
    const runner = async (h: { id: string; token: string }) => {
      const session = `${h.id}-sim`;
      let desired: { instanceId: string; specHash: string; name: string }[] = [];
      let beatMs = 1000;
      let pollMs = 2000;
      let nextBeat = Date.now() + Math.random() * beatMs;
      let nextSync = Date.now() + Math.random() * pollMs;
      let wake: () => void = () => undefined;
      const notifications = followNotifications({ url: s.wsUrl, hostToken: h.token, hostId: h.id, onChange: () => { nextSync = Date.now(); wake(); } });
      while (running) {
        const now = Date.now();
        if (now >= nextBeat) {
          nextBeat = Math.max(nextBeat + beatMs, now);
          void gql<{ runnerHeartbeat: { intervalSeconds: number } }>(s.url, BEAT, { input: { session, sentAt: new Date().toISOString() } }, h.token)
            .then((res) => { if (res.data) beatMs = res.data.runnerHeartbeat.intervalSeconds * 1000; else errors++; }, () => errors++);
        }
        if (now >= nextSync) {
          nextSync = now + pollMs;
          const observed = desired.map((d) => ({
            containerId: `c-${d.instanceId}`, instanceId: d.instanceId, specHash: d.specHash, name: d.name, state: 'RUNNING', health: 'HEALTHY',
            restartCount: 0, exitCode: null, oomKilled: false, startedAt: '2026-01-01T00:00:00.000Z', ip: null, ports: [], error: null,
          }));
          const t = performance.now();
          const res = await gql<{ runnerSync: { desired: typeof desired; pollSeconds: number } }>(s.url, SYNC, { input: { observed, engine: { version: 'sim', os: 'sim' }, session } }, h.token).catch(() => null);
          if (measuring) syncMs.push(performance.now() - t);
          if (res?.data) {
            desired = res.data.runnerSync.desired;
            pollMs = res.data.runnerSync.pollSeconds * 1000;
          } else errors++;
        }
        await new Promise<void>((r) => {
          const timer = setTimeout(r, Math.max(0, Math.min(nextBeat, nextSync) - Date.now()));
          wake = () => { clearTimeout(timer); r(); };
        });
      }
      await notifications.stop();
    };
    const loops = hosts.map(runner);
    await new Promise((r) => setTimeout(r, 5000)); // warm-up: first beats accepted, instances placed
    measuring = true;
    errors = 0;
    const [ops0, cpu0, t0] = [proxy.count(), cpuSeconds(s.apiPid), Date.now()];
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const elapsed = (Date.now() - t0) / 1000;
    const result = {
      store: storeName, n, sync: stats(syncMs), storeOpsPerSecond: (proxy.count() - ops0) / elapsed,
      cpuPercent: (100 * (cpuSeconds(s.apiPid) - cpu0)) / elapsed, errors, falseDown: 0,
    };
    running = false;
    await Promise.all(loops);
    const alarms = await s.graphql<{ alarms: { nodes: { kind: string }[] } }>('{ alarms(first: 1000) { nodes { kind } } }');
    result.falseDown = (alarms.data?.alarms.nodes ?? []).filter((a) => a.kind === 'HOST_DOWN').length;
    return result;
  } finally {
    running = false;
    await stack?.stop();
    proxy.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const results: Result[] = [];
  for (const storeName of values.stores.split(',')) {
    const store = storeName === 'ddblocal' ? await startDynamoDbLocal() : await startDynalite();
    try {
      for (const n of values.sizes.split(',').map(Number)) {
        const r = await runOne(storeName, store, n);
        results.push(r);
        console.log(`${storeName.padEnd(9)} N=${String(n).padEnd(5)} runnerSync p50 ${r.sync.p50?.toFixed(0)} ms  p99 ${r.sync.p99?.toFixed(0)} ms  ` +
          `store ${r.storeOpsPerSecond.toFixed(0)} ops/s  server CPU ${r.cpuPercent.toFixed(0)} %  false HOST_DOWN ${r.falseDown}  failed calls ${r.errors}`);
      }
    } finally {
      await store.stop();
    }
  }
  for (const storeName of new Set(results.map((r) => r.store))) {
    const ok = results.filter((r) => r.store === storeName && r.sync.p99 < 1000 && r.falseDown === 0).map((r) => r.n);
    console.log(`${storeName}: largest N with runnerSync p99 < 1 s and no false HOST_DOWN: ${ok.length ? Math.max(...ok) : 'none of those tried'}`);
  }
}

void main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
