/**
 * The control plane at fleet scale: N simulated runners (no Docker; each beats like runner/heartbeat.ts at the
 * interval the API gives, holds the runner's own notification socket (runner/notifications.ts, which also answers
 * the watchdog's probes), and syncs at the API's poll interval or when notified, reporting its desired containers
 * back as RUNNING and HEALTHY) against server mode, on dynalite and on Amazon's DynamoDB Local.
 *
 * Every part runs in a process of its own, so no part steals the event loop of another and each one's CPU is its own
 * figure: the store (dynalite or DynamoDB Local's JVM), a counting proxy in front of it (store operations by kind,
 * and how many lost an optimistic-lock race), server mode (the control plane), and the simulated runners, spread over
 * worker processes. Prints per size: runnerSync p50/p99, store operations/s, the CPU of the server and of the store
 * (the control plane), false HOST_DOWN alarms (every simulated runner stays alive), then per store the largest N
 * that keeps runnerSync p99 < 1 s with no false HOST_DOWN. Each size is bounded in time (`--limit` seconds); a size
 * that does not finish in it is reported as such and the next store goes on.
 *
 *   node --import tsx bench/fleet-sim.ts [--stores dynalite,ddblocal] [--sizes 100,300,1000] [--seconds 30] [--limit 300]
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { followNotifications } from '../runner/notifications';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../scripts/demo-product';
import { startStack, type Stack } from '../scripts/stack';
import { startDynamoDbLocal, type DynamoDbServer } from '../test/support/dynamodb';
import { stats, type Stats } from './lib';

const { values } = parseArgs({
  options: {
    stores: { type: 'string', default: 'dynalite,ddblocal' },
    sizes: { type: 'string', default: '100,300,1000' },
    seconds: { type: 'string', default: '30' },
    limit: { type: 'string', default: '300' },
    // A directory for V8 CPU profiles of the server process (node --cpu-prof), one per size.
    profile: { type: 'string' },
    // Internal: this file is also the proxy's and the simulated runners' process.
    role: { type: 'string', default: 'main' },
    target: { type: 'string', default: '' },
  },
});
const SECONDS = Number(values.seconds);
const RUNNERS_PER_WORKER = 250;

// ---- the counting proxy (its own process) ----

interface StoreCounts { total: number; byKind: Record<string, number>; conditionFailed: number }

/** Passes every request to the store and counts it by operation (X-Amz-Target) and lost conditions. */
function proxyProcess(target: string) {
  const to = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const counts: StoreCounts = { total: 0, byKind: {}, conditionFailed: 0 };
  const server = http.createServer((req, res) => {
    counts.total++;
    const kind = String(req.headers['x-amz-target'] ?? '').split('.').pop() || 'other';
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      // Which table (its name without the run's prefix), to see where the operations and the lost races go.
      const table = /"TableName":"[^"]*?-([A-Za-z]+)"/.exec(body.toString('utf8', 0, 300))?.[1] ?? '';
      const what = `${kind} ${table}`;
      counts.byKind[what] = (counts.byKind[what] ?? 0) + 1;
      const upstream = http.request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers, agent }, (up) => {
        res.writeHead(up.statusCode ?? 500, up.headers);
        if (up.statusCode === 400) {
          const answer: Buffer[] = [];
          up.on('data', (c: Buffer) => answer.push(c));
          up.on('end', () => {
            const text = Buffer.concat(answer);
            if (text.includes('ConditionalCheckFailed')) {
              counts.conditionFailed++;
              counts.byKind[`lost ${table}`] = (counts.byKind[`lost ${table}`] ?? 0) + 1;
            }
            res.end(text);
          });
        } else up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      upstream.end(body);
    });
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
  process.on('message', (m: { take?: boolean }) => {
    if (m.take) process.send!({ counts: { ...counts, byKind: { ...counts.byKind } } });
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- simulated runners (worker processes) ----

interface SimHost { id: string; token: string }
interface WorkerReport { syncMs: number[]; beatMs: number[]; errors: number; firstErrors: string[] }

const SYNC = `mutation($input: RunnerSyncInput!) { runnerSync(input: $input) { pollSeconds desired { instanceId specHash name } } }`;
const BEAT = `mutation($input: RunnerHeartbeatInput!) { runnerHeartbeat(input: $input) { intervalSeconds } }`;

async function gql<T>(url: string, query: string, variables: Record<string, unknown>, token: string): Promise<{ data?: T; errors?: { message: string }[] }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify({ query, variables }) });
  return res.json() as never;
}

function runnersProcess() {
  let running = true;
  let measuring = false;
  const report: WorkerReport = { syncMs: [], beatMs: [], errors: 0, firstErrors: [] };
  const failed = (what: string) => {
    if (!measuring) {
      if (process.env.FZ_SIM_DEBUG) console.error(what);
      return;
    }
    report.errors++;
    if (report.firstErrors.length < 3) report.firstErrors.push(what.slice(0, 300));
  };
  let loops: Promise<void>[] = [];
  const runner = async (url: string, wsUrl: string, h: SimHost) => {
    const session = `${h.id}-sim`;
    let desired: { instanceId: string; specHash: string; name: string }[] = [];
    let beatMs = 1000;
    let pollMs = 2000;
    let nextBeat = Date.now() + Math.random() * beatMs;
    let nextSync = Date.now() + Math.random() * pollMs;
    let beatOut = false;
    let wake: () => void = () => undefined;
    const notifications = followNotifications({ url: wsUrl, hostToken: h.token, hostId: h.id, onChange: () => { nextSync = Date.now(); wake(); } });
    // The first beat makes the session the host's live runner; syncs before it are refused (as the runner waits too).
    while (running) {
      const now = Date.now();
      if (now >= nextBeat) {
        nextBeat = Math.max(nextBeat + beatMs, now);
        // As runner/heartbeat.ts: one beat in flight at a time; a slow one is not doubled up.
        if (!beatOut) {
          beatOut = true;
          const t = performance.now();
          void gql<{ runnerHeartbeat: { intervalSeconds: number } }>(url, BEAT, { input: { session, sentAt: new Date().toISOString() } }, h.token)
            .then((res) => {
              if (measuring) report.beatMs.push(performance.now() - t);
              if (res.data) beatMs = res.data.runnerHeartbeat.intervalSeconds * 1000; else failed(`runnerHeartbeat: ${JSON.stringify(res.errors)}`);
            }, (err: Error) => failed(`runnerHeartbeat: ${err.message}`))
            .finally(() => { beatOut = false; });
        }
      }
      if (now >= nextSync) {
        const observed = desired.map((d) => ({
          containerId: `c-${d.instanceId}`, instanceId: d.instanceId, specHash: d.specHash, name: d.name, state: 'RUNNING', health: 'HEALTHY',
          restartCount: 0, exitCode: null, oomKilled: false, startedAt: '2026-01-01T00:00:00.000Z', ip: null, ports: [], error: null,
        }));
        const t = performance.now();
        const wasMeasuring = measuring;
        const res = await gql<{ runnerSync: { desired: typeof desired; pollSeconds: number } }>(url, SYNC, { input: { observed, engine: { version: 'sim', os: 'sim' }, session } }, h.token)
          .catch((err: Error) => ({ errors: [{ message: err.message }] }) as { data?: undefined; errors: { message: string }[] });
        if (wasMeasuring && measuring) report.syncMs.push(performance.now() - t);
        if (res.data) {
          desired = res.data.runnerSync.desired;
          pollMs = res.data.runnerSync.pollSeconds * 1000;
        } else failed(`runnerSync: ${JSON.stringify(res.errors)}`);
        nextSync = Date.now() + pollMs;
      }
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.max(0, Math.min(nextBeat, nextSync) - Date.now()));
        wake = () => { clearTimeout(timer); r(); };
      });
    }
    await notifications.stop();
  };
  process.on('message', async (m: { start?: { url: string; wsUrl: string; hosts: SimHost[] }; measure?: boolean; stop?: boolean }) => {
    if (m.start) loops.push(...m.start.hosts.map((h) => runner(m.start!.url, m.start!.wsUrl, h)));
    if (m.measure) measuring = true;
    if (m.stop) {
      measuring = false;
      running = false;
      process.send!({ report });
      await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, 10_000))]);
      process.exit(0);
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- the run ----

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

const once = <T>(child: ChildProcess, pick: (m: any) => T | undefined): Promise<T> => new Promise((resolve, reject) => {
  const onMessage = (m: unknown) => {
    const v = pick(m);
    if (v !== undefined) { child.off('message', onMessage); resolve(v); }
  };
  child.on('message', onMessage);
  child.once('exit', (code) => reject(new Error(`child ${child.pid} exited (${code})`)));
});

/** This file again, in another process, in another role. */
const self = (role: string, args: string[] = []) => fork(__filename, ['--role', role, ...args], {
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, LOG_LEVEL: 'warn' },
});

interface Store { name: string; endpoint: string; pid: number; stop(): Promise<void> }

async function startStore(name: string): Promise<Store> {
  if (name === 'ddblocal') {
    const before = new Set(childPids());
    const db: DynamoDbServer = await startDynamoDbLocal();
    const pid = childPids().find((p) => !before.has(p))!;
    return { name, endpoint: db.endpoint, pid, stop: () => db.stop() };
  }
  // dynalite in memory, in its own process.
  const port = 4700 + Math.floor(Math.random() * 200);
  const child = spawn(process.execPath, [require.resolve('dynalite/cli.js'), '--host', '127.0.0.1', '--port', String(port),
    '--createTableMs', '0', '--deleteTableMs', '0', '--updateTableMs', '0'], { stdio: 'ignore' });
  return {
    name, endpoint: `http://127.0.0.1:${port}`, pid: child.pid!,
    stop: async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); } },
  };
}

function childPids(): number[] {
  try {
    return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

interface Result {
  store: string; n: number; sync?: Stats; beat?: Stats; storeOpsPerSecond?: number; opsPerSync?: number; conditionFailedPerSecond?: number;
  byKind?: Record<string, number>; serverCpu?: number; storeCpu?: number; runnersCpu?: number; falseDown?: number; errors?: number;
  firstErrors?: string[]; failure?: string; load?: number;
}

async function runOne(store: Store, n: number, signal: AbortSignal): Promise<Result> {
  const proxy = self('proxy', ['--target', store.endpoint]);
  const proxyPort = await once(proxy, (m: { port?: number }) => m.port);
  const dir = mkdtempSync(join(tmpdir(), 'fz-fleet-sim-'));
  const workers: ChildProcess[] = [];
  let stack: Stack | undefined;
  // Out of time: stop everything of this size now, so that nothing of it is left running (or on its ports).
  const stopAll = () => {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
    void stack?.stop();
    proxy.kill('SIGTERM');
  };
  signal.addEventListener('abort', stopAll);
  try {
    const t0 = Date.now();
    stack = await startStack({
      dataDir: dir, runtime: 'server', dynamodbEndpoint: `http://127.0.0.1:${proxyPort}`, tablePrefix: `sim${Date.now()}-`,
      httpPort: 3390, wsPort: 3391, lambdaPort: 3392, output: join(dir, 'stack.log'),
      // Room for 1000 hosts (the default /16 holds 256 host subnets of /24).
      env: { FZ_CLUSTER_CIDR: '10.128.0.0/9', ...(values.profile ? profileEnv(values.profile) : {}) }, signal,
    });
    const s = stack;
    console.log(`  N=${n}: server mode up in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    await s.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT });
    // Join tokens are single-use: one per host.
    const joinToken = async () => (await s.graphql<{ createJoinToken: { token: string } }>('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
    // Each host's simulated runner starts as soon as the host is registered, as a real runner does: a host left
    // silent while the others register would be DOWN (rightly) before the measurement starts.
    const take = async () => { proxy.send({ take: true }); return once(proxy, (m: { counts?: StoreCounts }) => m.counts); };
    let seen = { at: Date.now(), counts: await take() };
    let registered = 0;
    const BATCH = 25;
    for (let i = 0; i < n; i += BATCH) {
      const batch = await Promise.all(Array.from({ length: Math.min(BATCH, n - i) }, async (_, k) => {
        const res = await gql<{ registerHost: { host: { id: string }; hostToken: string } }>(s.url,
          'mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken } }',
          { input: { joinToken: await joinToken(), name: `sim-${i + k}`, address: `10.99.${Math.floor((i + k) / 250)}.${(i + k) % 250}`, capacity: { cpuMillis: 4000, memoryMb: 4096 } } }, '');
        if (!res.data) throw new Error(`registerHost: ${JSON.stringify(res.errors)}`);
        return { id: res.data.registerHost.host.id, token: res.data.registerHost.hostToken };
      }));
      if (registered % RUNNERS_PER_WORKER === 0) workers.push(self('runners'));
      workers.at(-1)!.send({ start: { url: s.url, wsUrl: s.wsUrl, hosts: batch } });
      registered += batch.length;
      if (process.env.FZ_SIM_DEBUG) {
        console.log(`  ${registered} registered at ${((Date.now() - t0) / 1000).toFixed(0)} s`);
        if (registered % 100 === 0) {
          // What the store is asked most while the fleet grows, per second since the last such line.
          const [now, counts] = [Date.now(), await take()];
          const rate = Object.entries(counts.byKind).map(([k, v]) => [k, (v - (seen.counts.byKind[k] ?? 0)) / ((now - seen.at) / 1000)] as const);
          console.log(`    store ops/s: ${rate.sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}`);
          seen = { at: now, counts };
        }
      }
    }
    console.log(`  N=${n}: stack up and ${n} hosts registered, each with its simulated runner, in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

    // Warm-up: every runner beating and holding its socket; then one release placed (an instance on each of up to
    // 100 hosts), whose instances the runners report RUNNING.
    await sleep(5000, undefined, { signal });
    const t1 = Date.now();
    const deployed = await s.graphql(`mutation { deploy(input: {name: "sim", product: "demo", version: "1.0.0", replicas: ${Math.min(n, 100)}}) { id } }`);
    if (!deployed.data) throw new Error(`deploy: ${JSON.stringify(deployed.errors)}`);
    console.log(`  N=${n}: deploy of ${Math.min(n, 100)} replicas answered in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    await sleep(5000, undefined, { signal });
    const downBefore = await hostDownEvents(s);

    const cpu = () => ({ server: cpuSeconds(s.apiPid), store: cpuSeconds(store.pid), runners: workers.reduce((a, w) => a + cpuSeconds(w.pid!), 0) });
    for (const w of workers) w.send({ measure: true });
    const [ops0, cpu0, started] = [await take(), cpu(), Date.now()];
    await sleep(SECONDS * 1000, undefined, { signal });
    const [ops1, cpu1] = [await take(), cpu()];
    const elapsed = (Date.now() - started) / 1000;
    if (process.env.FZ_SIM_DEBUG) console.log(`  N=${n}: measured, collecting the runners' reports`);
    const reports = await Promise.all(workers.map((w) => { w.send({ stop: true }); return once(w, (m: { report?: WorkerReport }) => m.report); }));
    const syncMs = reports.flatMap((r) => r.syncMs);
    const byKind = Object.fromEntries(Object.entries(ops1.byKind).map(([k, v]) => [k, Math.round((v - (ops0.byKind[k] ?? 0)) / elapsed)]).filter(([, v]) => v));
    const load = loadavg()[0];
    if (process.env.FZ_SIM_DEBUG) {
      const ev = await s.graphql<{ events: { nodes: { kind: string; message: string }[] } }>('{ events(first: 1000) { nodes { kind message } } }');
      const kinds: Record<string, number> = {};
      for (const e of ev.data?.events.nodes ?? []) kinds[e.kind] = (kinds[e.kind] ?? 0) + 1;
      console.log(JSON.stringify(kinds), JSON.stringify(ev.data?.events.nodes.slice(0, 5)));
    }
    return {
      store: store.name, n, sync: stats(syncMs), beat: stats(reports.flatMap((r) => r.beatMs)),
      storeOpsPerSecond: (ops1.total - ops0.total) / elapsed, opsPerSync: syncMs.length ? (ops1.total - ops0.total) / syncMs.length : NaN,
      conditionFailedPerSecond: (ops1.conditionFailed - ops0.conditionFailed) / elapsed, byKind,
      serverCpu: (100 * (cpu1.server - cpu0.server)) / elapsed, storeCpu: (100 * (cpu1.store - cpu0.store)) / elapsed,
      runnersCpu: (100 * (cpu1.runners - cpu0.runners)) / elapsed,
      // Every simulated runner lived throughout: any host marked DOWN since the warm-up is a false alarm.
      falseDown: (await hostDownEvents(s)) - downBefore, load,
      errors: reports.reduce((a, r) => a + r.errors, 0), firstErrors: reports.flatMap((r) => r.firstErrors).slice(0, 3),
    };
  } finally {
    signal.removeEventListener('abort', stopAll);
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
    await stack?.stop();
    proxy.kill('SIGTERM');
    if (process.env.FZ_SIM_DEBUG) console.log(`  kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Environment that makes a Node process write a V8 CPU profile of its whole life into `dir` when it exits
 * (--cpu-prof itself is not allowed in NODE_OPTIONS; a preloaded module with the inspector does the same).
 */
function profileEnv(dir: string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const hook = join(dir, 'profile-hook.mjs');
  writeFileSync(hook, [
    "import { Session } from 'node:inspector';",
    "import { writeFileSync } from 'node:fs';",
    'const session = new Session();',
    'session.connect();',
    "session.post('Profiler.enable');",
    "session.post('Profiler.start');",
    "process.on('exit', () => session.post('Profiler.stop', (err, r) => { if (!err) writeFileSync(`${process.env.FZ_PROFILE_DIR}/server-${process.pid}.cpuprofile`, JSON.stringify(r.profile)); }));",
  ].join('\n'));
  return { NODE_OPTIONS: `--import ${hook}`, FZ_PROFILE_DIR: dir };
}

/** How many times a host was marked DOWN so far (HOST_DOWN events). */
async function hostDownEvents(s: Stack): Promise<number> {
  const res = await s.graphql<{ events: { nodes: unknown[] } }>('{ events(filter: {kind: "HOST_DOWN"}, first: 1000) { nodes { id } } }');
  if (!res.data) throw new Error(`events: ${JSON.stringify(res.errors)}`);
  return res.data.events.nodes.length;
}

const f0 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(0));

async function main() {
  const results: Result[] = [];
  // Ctrl-C or a kill: the size that runs stops as if out of time (everything of it is stopped), and no other starts.
  let interrupted: AbortController | null = null;
  let stopping = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => { stopping = true; interrupted?.abort(); });
  console.log(`fleet-sim: node ${process.version}, ${SECONDS} s measured per size after 10 s of warm-up, at most ${values.limit} s per size`);
  for (const storeName of values.stores.split(',')) {
    if (stopping) break;
    const store = await startStore(storeName);
    try {
      for (const n of values.sizes.split(',').map(Number)) {
        if (stopping) break;
        const limit = new AbortController();
        interrupted = limit;
        const timer = setTimeout(() => limit.abort(), Number(values.limit) * 1000);
        const r: Result = await runOne(store, n, limit.signal)
          .catch((err: Error) => ({ store: storeName, n, failure: stopping ? 'interrupted' : limit.signal.aborted ? `did not finish within ${values.limit} s` : err.message }))
          .finally(() => clearTimeout(timer));
        results.push(r);
        if (r.failure) {
          console.log(`${storeName.padEnd(9)} N=${String(n).padEnd(5)} ${r.failure}`);
          break;
        }
        console.log(`${storeName.padEnd(9)} N=${String(n).padEnd(5)} runnerSync p50 ${f0(r.sync!.p50)} ms  p99 ${f0(r.sync!.p99)} ms (${r.sync!.n} syncs)  ` +
          `heartbeat p50 ${f0(r.beat!.p50)} ms  p99 ${f0(r.beat!.p99)} ms  store ${f0(r.storeOpsPerSecond)} ops/s (${r.opsPerSync!.toFixed(1)} per sync, ` +
          `${f0(r.conditionFailedPerSecond)} lost races/s)  CPU: server ${f0(r.serverCpu)} %  store ${f0(r.storeCpu)} %  runners ${f0(r.runnersCpu)} %  ` +
          `false HOST_DOWN ${r.falseDown}  failed calls ${r.errors}  (load average ${r.load!.toFixed(1)})`);
        console.log(`          store ops/s by kind: ${JSON.stringify(r.byKind)}`);
        if (r.firstErrors!.length) console.log(`          first failures: ${r.firstErrors!.join(' | ')}`);
      }
    } finally {
      await store.stop();
    }
  }
  for (const storeName of new Set(results.map((r) => r.store))) {
    const ok = results.filter((r) => r.store === storeName && !r.failure && r.sync!.p99 < 1000 && r.falseDown === 0).map((r) => r.n);
    console.log(`${storeName}: largest N with runnerSync p99 < 1 s and no false HOST_DOWN: ${ok.length ? Math.max(...ok) : 'none of those tried'}`);
  }
}

if (values.role === 'proxy') proxyProcess(values.target);
else if (values.role === 'runners') runnersProcess();
else void main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
