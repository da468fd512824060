/**
 * Live subscriptions over graphql-ws (serverless-offline's WebSocket API, handlers/ws.ts, gateway/publisher.ts):
 * 1. latency from a real container kill to the containerStatusChanged `next` at a subscriber, over 50 kills;
 * 2. fan-out of one alarm to 500 alarmRaised subscriptions, identical and distinct documents.
 * The fan-out runs first (it takes a known time); the kills then get the rest of the run's budget.
 * `node --import tsx bench/subscriptions.ts`
 */
import { createClient, type Client } from 'graphql-ws';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import WebSocket from 'ws';
import { kick } from '../lib/kick';
import { LABELS } from '../lib/runner-protocol';
import { createClient as createDbClient, Store } from '../lib/store';
import { raiseAlarm } from '../subgraphs/butler/alarms';
import type { PlatformEvent } from '../subgraphs/butler/events';
import {
  benchStack, DEPLOY, defineDemo, docker, forEachLimit, ms, percentile, post as postNoTimeout, printStats, removeContainers, round,
  roundStats, runBench, sleep, stats, waitFor, waitUntil, type Stats,
} from './lib';

const HTTP_PORT = 3460; // WS 3461, Lambda 3462
const STORE_PORT = 4960;
const LAMBDA_PORT = HTTP_PORT + 2;
/** The run gives up (and cleans up) after this; with the clean-up it stays under 5 minutes. */
const LIMIT_MS = 280_000;
/** No kill starts after this much of the run: the last cycle, the report and the clean-up fit in the rest. */
const KILL_PHASE_DEADLINE_MS = 262_000;

const KILLS = 50;
/** Kills before the measured ones (not counted): warms the publisher's lookup of containerStatus. */
const WARMUP_KILLS = 1;

const CONNECTIONS = 50;
const SUBS_PER_CONNECTION = 10;
const SUBSCRIPTIONS = CONNECTIONS * SUBS_PER_CONNECTION;
/**
 * Each WebSocket message is one invocation of the ws function, and serverless-offline starts a new worker thread
 * (a cold handler) for every invocation that finds no idle one; so connects, subscribes and closes go in waves.
 */
const CONNECT_CONCURRENCY = 5;
/** Subscribe messages in flight (sent, not yet stored) at most. */
const SUBSCRIBE_WINDOW = 8;
const TRIGGERS_PER_VARIANT = 2;

/** Wall-clock ms with sub-ms precision, comparable with the store's ISO times, pino's `time` and Docker's timeNano. */
const wall = () => performance.timeOrigin + performance.now();

const STATUS_SUBSCRIPTION = `subscription($r: ID) { containerStatusChanged(releaseId: $r) {
  containerId state health restartCount startedAt updatedAt instance { id domainName } host { name } } }`;
const ALARM_SELECTION = '{ id kind severity message raisedAt host { name } release { name } }';
const RELEASE_STATE = `query($id: ID!) { release(id: $id) { status instances { id status {
  containerId state health restartCount startedAt } } } }`;

interface ContainerView { containerId: string; state: string; health: string; restartCount: number; startedAt: string | null }
interface ReleaseState { release: { status: string; instances: { id: string; status: ContainerView | null }[] } }
interface StatusNext { containerStatusChanged: ContainerView & { instance: { id: string }; host: { name: string } } }
interface LogLine { time?: number; msg?: string; [key: string]: unknown }

/** The stack's JSON log lines (handlers' and the runner's pino output), read incrementally as the file grows. */
class LogTail {
  readonly lines: LogLine[] = [];
  private offset = 0;
  private partial = '';

  constructor(private readonly file: string) {}

  read(): LogLine[] {
    const fd = openSync(this.file, 'r');
    try {
      const chunk = Buffer.alloc(1 << 20);
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        const text = this.partial + chunk.subarray(0, n).toString('utf8');
        const parts = text.split('\n');
        this.partial = parts.pop() ?? '';
        for (const line of parts) {
          if (!line.startsWith('{')) continue;
          try {
            this.lines.push(JSON.parse(line) as LogLine);
          } catch { /* not one of ours */ }
        }
      }
    } finally {
      closeSync(fd);
    }
    return this.lines;
  }
}

/**
 * GraphQL over HTTP like lib's `post`, but giving up after 5 s: an invocation that hangs until its Lambda timeout
 * (it happens on a loaded machine) costs a poll, not the run.
 */
async function post<T>(url: string, query: string, variables: Record<string, unknown> | undefined, token: string): Promise<T> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(5000),
  });
  const body = (await res.json()) as { data?: T; errors?: { message: string }[] };
  if (res.status !== 200 || body.errors?.length) throw new Error(`${url} answered ${res.status}: ${JSON.stringify(body.errors ?? body)}`);
  return body.data as T;
}

/** The container of an instance is not the one seen before the kill (or not running). */
const changed = (s: ContainerView, before: ContainerView) =>
  s.state !== 'RUNNING' || s.containerId !== before.containerId || s.restartCount > before.restartCount || s.startedAt !== before.startedAt;

/** What a `next` showed about a killed container: its state if not running, else how it came back. */
const whatShowed = (s: ContainerView, before: ContainerView) =>
  s.state !== 'RUNNING' ? s.state
    : s.containerId !== before.containerId ? 'RUNNING (replaced: new container)'
      : s.restartCount > before.restartCount ? 'RUNNING (restarted by Docker: restartCount up)'
        : 'RUNNING (started again: new startedAt)';

// The bench reads the handlers' info lines (`subscribed`, `published event`) and the runner's debug lines.
process.env.LOG_LEVEL = 'info';

runBench('subscriptions', LIMIT_MS, async (b) => {
  const runStarted = wall();
  const loadAtStart = loadavg().map((x) => round(x));
  const elapsed = () => wall() - runStarted;
  const { stack } = await benchStack(b, HTTP_PORT, STORE_PORT);
  const log = new LogTail(join(b.dir, 'stack.log'));
  const db = new Store(createDbClient(stack.env.DYNAMODB_ENDPOINT, 'local'), stack.env.FZ_TABLE_PREFIX);
  b.defer(() => db.client.destroy());
  const scanSubscriptions = () => db.scan<{ kind: string; topic?: string; connectionId: string }>('subscriptions');

  // ---- the platform: a runner (at debug level it logs each engine event it gets), 2 demo replicas ----
  const runnerName = `bench-subs-${process.pid}`;
  let hostId = '';
  b.defer(async () => {
    await stack.stop(); // the runner first, so that it cannot recreate what is removed next
    if (hostId) await removeContainers(`${LABELS.host}=${hostId}`);
  });
  // Every graphql-ws client is closed before the stack stops (clean-ups run last-registered first).
  const clients = new Set<Client>();
  b.defer(async () => {
    for (const c of clients) await Promise.race([c.dispose(), sleep(1000)]);
  });
  const connect = () => new Promise<Client>((resolve, reject) => {
    let acked = false;
    const timer = setTimeout(() => reject(new Error('no connection_ack within 20 s')), 20_000);
    const fail = (why: string) => {
      clearTimeout(timer);
      if (!acked) reject(new Error(why));
    };
    const client = createClient({
      url: stack.wsUrl, webSocketImpl: WebSocket, lazy: false, retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${stack.adminToken}` },
      onNonLazyError: (err) => fail(`connection failed: ${describe(err)}`),
      on: {
        connected: () => { acked = true; clearTimeout(timer); resolve(client); },
        closed: (event) => fail(`closed before connection_ack: ${describe(event)}`),
      },
    });
    clients.add(client);
  });

  await defineDemo(stack);
  await stack.startRunner(runnerName, [], { LOG_LEVEL: 'debug' });
  hostId = (await waitFor(`runner ${runnerName} to register`, async () => {
    const { hosts } = await post<{ hosts: { id: string; name: string; status: string; engine: unknown }[] }>(
      stack.url, '{ hosts { id name status engine { version } } }', undefined, stack.adminToken);
    return hosts.find((h) => h.name === runnerName && h.status === 'READY' && h.engine);
  }, 60_000, 200)).id;
  const { deploy } = await postNoTimeout<{ deploy: { id: string } }>(stack.url, DEPLOY, {
    input: { name: 'bench-subs', product: 'demo', version: '1.0.0', replicas: 2 },
  }, stack.adminToken);
  const releaseId = deploy.id;
  const releaseState = async () => (await post<ReleaseState>(stack.url, RELEASE_STATE, { id: releaseId }, stack.adminToken)).release;
  await waitUntil('the release to be RUNNING', async () => (await releaseState()).status === 'RUNNING', 60_000, 200);
  const instanceIds = (await releaseState()).instances.map((i) => i.id).sort();
  if (instanceIds.length !== 2) throw new Error(`expected 2 instances of ${releaseId}, found ${instanceIds.length}`);
  console.log(`release ${releaseId} RUNNING (2 demo replicas) ${ms(elapsed())} into the run`);

  // ---- 2. fan-out: one alarm to 500 alarmRaised subscriptions ----
  process.env.IS_OFFLINE = 'true'; // lib/kick as a handler uses it offline
  process.env.FZ_LAMBDA_PORT = String(LAMBDA_PORT);

  const fanOut = async (variant: 'identical' | 'distinct', documentFor: (i: number) => string) => {
    const setupStarted = wall();
    const conns: Client[] = [];
    await forEachLimit(Array.from({ length: CONNECTIONS }, (_, i) => i), CONNECT_CONCURRENCY, async () => { conns.push(await connect()); });
    const connected = wall() - setupStarted;
    const arrivals: { at: number; alarmId: string; sub: number }[] = [];
    const errors: string[] = [];
    // The protocol has no "subscribed" answer: the ws handler's `subscribed` log line says the record is stored.
    const storedBefore = log.read().filter((l) => l.msg === 'subscribed' && l.topic === 'alarm').length;
    const storedNow = () => log.read().filter((l) => l.msg === 'subscribed' && l.topic === 'alarm').length - storedBefore;
    let sent = 0;
    const deadline = wall() + 60_000;
    while (storedNow() < SUBSCRIPTIONS) {
      if (errors.length) throw new Error(errors[0]);
      if (wall() > deadline) throw new Error(`only ${storedNow()} of ${SUBSCRIPTIONS} subscriptions stored after 60 s`);
      for (; sent < SUBSCRIPTIONS && sent - storedNow() < SUBSCRIBE_WINDOW; sent++) {
        const i = sent;
        conns[i % CONNECTIONS].subscribe<Record<string, { id: string }>>({ query: documentFor(i) }, {
          next: ({ data }) => { arrivals.push({ at: wall(), alarmId: Object.values(data ?? {})[0]?.id ?? '', sub: i }); },
          error: (err) => { errors.push(`subscription ${i}: ${describe(err)}`); },
          complete: () => undefined,
        });
      }
      await sleep(20);
    }
    const subscribed = wall() - setupStarted - connected;
    console.log(`${variant}: ${CONNECTIONS} connections opened in ${ms(connected)} (${CONNECT_CONCURRENCY} at a time), ` +
      `${SUBSCRIPTIONS} subscriptions stored in ${ms(subscribed)} (at most ${SUBSCRIBE_WINDOW} in flight)`);

    const triggers = [];
    for (let t = 0; t < TRIGGERS_PER_VARIANT; t++) {
      await sleep(500); // quiet: no publisher run in flight
      const t0 = wall();
      const alarm = (await raiseAlarm(db, {
        kind: 'TEST', severity: 'WARNING', message: `bench fan-out ${variant} ${t}`, cause: `bench:${process.pid}:${variant}:${t}`, hostId, releaseId,
      }, []))!;
      const raised = wall() - t0;
      await kick('publish');
      const kicked = wall() - t0;
      const mine = () => arrivals.filter((a) => a.alarmId === alarm.id);
      await waitUntil(`${SUBSCRIPTIONS} deliveries of alarm ${alarm.id}`, async () => new Set(mine().map((a) => a.sub)).size >= SUBSCRIPTIONS || undefined, 60_000, 20)
        .catch((err) => console.error(`  ${(err as Error).message} (got ${new Set(mine().map((a) => a.sub)).size})`));
      await sleep(500); // a duplicate (the publisher is at least once) would show here
      const got = mine();
      const firstPerSub = new Map<number, number>();
      for (const a of got) if (!firstPerSub.has(a.sub)) firstPerSub.set(a.sub, a.at - t0);
      const times = [...firstPerSub.values()].sort((x, y) => x - y);
      const event = (await db.scan<PlatformEvent>('events')).find((e) => e.alarmId === alarm.id && e.kind === 'ALARM_RAISED');
      const report = event && await waitFor('the publisher report', async () =>
        log.read().find((l) => l.msg === 'published event' && l.eventId === event.id), 5_000, 100).catch(() => undefined);
      const trigger = {
        trigger: t + 1,
        raiseAlarmMs: round(raised),
        kickReturnedMs: round(kicked),
        delivered: firstPerSub.size,
        duplicates: got.length - firstPerSub.size,
        firstMs: times.length ? round(times[0]) : null,
        p50Ms: times.length ? round(percentile(times, 50)) : null,
        lastMs: times.length ? round(times[times.length - 1]) : null,
        publisher: report ? {
          subscriptions: report.subscriptions as number, executions: report.executions as number, deliveries: report.deliveries as number,
          gone: report.gone as number, failed: report.failed as number, reportMs: round((report.time as number) - t0),
        } : null,
      };
      console.log(`  alarm ${t + 1}: raiseAlarm ${ms(raised)}, kick returned ${ms(kicked)}; ${trigger.delivered}/${SUBSCRIPTIONS} delivered` +
        `${trigger.duplicates ? ` (+${trigger.duplicates} duplicates)` : ''}; first ${fmt(trigger.firstMs)}, p50 ${fmt(trigger.p50Ms)}, last ${fmt(trigger.lastMs)}` +
        (trigger.publisher
          ? `; publisher: ${trigger.publisher.executions} executions, ${trigger.publisher.deliveries} posts, ${trigger.publisher.failed} failed, its report at ${ms(trigger.publisher.reportMs)}`
          : '; no publisher report found'));
      triggers.push(trigger);
    }

    // Closed in waves too: every close is a $disconnect invocation.
    const connectionRecords = async () => (await scanSubscriptions()).filter((r) => r.kind === 'connection').length;
    const before = await connectionRecords();
    for (let i = 0; i < conns.length; i += CONNECT_CONCURRENCY) {
      const wave = conns.slice(i, i + CONNECT_CONCURRENCY);
      await Promise.all(wave.map((c) => c.dispose()));
      wave.forEach((c) => clients.delete(c));
      const expected = before - Math.min(conns.length, i + CONNECT_CONCURRENCY);
      await waitUntil('closed connections to be removed', async () => (await connectionRecords()) <= expected, 20_000, 200);
    }
    return { connectionsOpenMs: round(connected), subscribeMs: round(subscribed), triggers };
  };

  console.log(`\n2. fan-out: ${SUBSCRIPTIONS} alarmRaised subscriptions on ${CONNECTIONS} graphql-ws connections × ${SUBS_PER_CONNECTION}; ` +
    `a WARNING alarm written with raiseAlarm on the stack's store, then kick('publish'); times from just before raiseAlarm`);
  type FanOut = Awaited<ReturnType<typeof fanOut>>;
  /** A failed variant is reported, not fatal: the figures of the rest still come out. */
  const attempt = async (variant: 'identical' | 'distinct', documentFor: (i: number) => string): Promise<FanOut | { error: string }> => {
    try {
      return await fanOut(variant, documentFor);
    } catch (err) {
      console.error(`${variant}: failed: ${describe(err)}`);
      return { error: describe(err) };
    }
  };
  const identical = await attempt('identical', () => `subscription { alarmRaised ${ALARM_SELECTION} }`);
  const distinct = await attempt('distinct', (i) => `subscription { s${i}: alarmRaised ${ALARM_SELECTION} }`);
  for (const c of [...clients]) await Promise.race([c.dispose(), sleep(1000)]);
  clients.clear();
  // Left-overs of a failed variant would only cost the publisher a filter (another topic); not worth failing for.
  await waitUntil('no alarmRaised subscription left', async () => !(await scanSubscriptions()).some((r) => r.kind === 'subscription'), 10_000, 200)
    .catch(() => console.error('some alarmRaised subscriptions of the fan-out are still stored; going on'));

  // ---- 1. kill → containerStatusChanged ----
  // Docker's own view of the kills: die/start events with the engine's timestamps.
  const engineEvents: { id: string; instanceId: string; action: string; at: number }[] = [];
  const stream = (await docker.getEvents({
    filters: { type: ['container'], label: [`${LABELS.release}=${releaseId}`], event: ['die', 'start'] },
  })) as unknown as Readable;
  b.defer(() => stream.destroy());
  let buffered = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (buffered + chunk.toString('utf8')).split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines.filter((l) => l.trim())) {
      try {
        const e = JSON.parse(line) as { id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; Action?: string; timeNano?: number };
        engineEvents.push({
          id: e.Actor?.ID ?? e.id ?? '', instanceId: e.Actor?.Attributes?.[LABELS.instance] ?? '', action: e.Action ?? '', at: (e.timeNano ?? 0) / 1e6,
        });
      } catch { /* not a whole line */ }
    }
  });
  stream.on('error', () => undefined);

  const statusClient = await connect();
  let waiting: { instanceId: string; before: ContainerView; done: (at: number, s: ContainerView) => void } | null = null;
  let statusNexts = 0;
  const disposeStatus = statusClient.subscribe<StatusNext>({ query: STATUS_SUBSCRIPTION, variables: { r: releaseId } }, {
    next: ({ data }) => {
      const at = wall();
      statusNexts++;
      const s = data?.containerStatusChanged;
      // The publisher looks the status up when it publishes: what arrives is the state then, not at the event.
      if (waiting && s && s.instance.id === waiting.instanceId && changed(s, waiting.before)) {
        waiting.done(at, s);
        waiting = null;
      }
    },
    error: (err) => console.error(`containerStatusChanged subscription failed: ${describe(err)}`),
    complete: () => undefined,
  });
  await waitUntil('the containerStatusChanged subscription to be stored', async () =>
    (await scanSubscriptions()).some((r) => r.kind === 'subscription' && r.topic === 'container'), 20_000, 100);

  interface Kill { n: number; instanceId: string; containerId: string; t0: number; received: number; running: number; showed: string; replaced: boolean }
  const kills: Kill[] = [];
  let stoppedEarly = '';
  for (let n = 0; n < WARMUP_KILLS + KILLS; n++) {
    if (elapsed() > KILL_PHASE_DEADLINE_MS) {
      stoppedEarly = `time budget: stopped after ${Math.max(0, kills.length - WARMUP_KILLS)} measured kills, ${round(elapsed() / 1000, 0)} s into the run`;
      break;
    }
    try {
      const instanceId = instanceIds[n % 2];
      const before = (await releaseState()).instances.find((i) => i.id === instanceId)?.status;
      if (!before || before.state !== 'RUNNING') throw new Error(`${instanceId} is not RUNNING: ${JSON.stringify(before)}`);
      const container = docker.getContainer(before.containerId);
      const received = new Promise<[number, ContainerView]>((resolve) => {
        waiting = { instanceId, before, done: (at, s) => resolve([at, s]) };
      });
      const t0 = wall();
      await container.kill();
      const patience = Math.max(3_000, Math.min(30_000, LIMIT_MS - 10_000 - elapsed()));
      const first = await Promise.race([received, sleep(patience).then(() => undefined)]);
      if (!first) throw new Error(`no containerStatusChanged for ${instanceId} within ${ms(patience)}`);
      const [at, s] = first;
      // The next kill waits until the platform sees the release whole again, with this instance back.
      const after = await waitFor(`the release to be RUNNING again`, async () => {
        const release = await releaseState();
        const st = release.instances.find((i) => i.id === instanceId)?.status;
        return release.status === 'RUNNING' && !!st && st.state === 'RUNNING' && st.health === 'HEALTHY' && changed(st, before) && st;
      }, Math.max(3_000, Math.min(60_000, LIMIT_MS - 10_000 - elapsed())), 100);
      kills.push({
        n, instanceId, containerId: before.containerId, t0, received: at - t0, running: wall() - t0,
        showed: whatShowed(s, before), replaced: after.containerId !== before.containerId,
      });
    } catch (err) {
      // A platform failure (e.g. the offline server gone) ends the loop; the kills measured so far are reported.
      stoppedEarly = `kill ${n} failed after ${Math.max(0, kills.length - WARMUP_KILLS)} measured kills: ${describe(err)}`;
      break;
    }
    if ((n + 1) % 10 === 0) console.log(`  ${n + 1} kills, ${round(elapsed() / 1000, 0)} s into the run`);
  }
  disposeStatus();
  await statusClient.dispose();
  clients.delete(statusClient);

  // Where the time goes: the engine's events, the runner's and the publisher's log lines, the event outbox.
  await sleep(300);
  const lines = log.read();
  const events = (await db.scan<PlatformEvent>('events')).filter((e) => e.kind === 'CONTAINER_STATUS').sort((x, y) => x.id.localeCompare(y.id));
  const publishedAt = new Map(lines.filter((l) => l.msg === 'published event').map((l) => [l.eventId as string, l.time as number]));
  const runnerGot = lines.filter((l) => l.msg === 'engine event' && l.action === 'die');
  const timed = kills.map((k) => {
    const rel = (t: number | undefined) => (t === undefined ? undefined : t - k.t0);
    const die = engineEvents.find((e) => e.id === k.containerId && e.action === 'die' && e.at >= k.t0 - 1);
    const got = runnerGot.find((l) => l.instanceId === k.instanceId && (l.time as number) >= Math.floor(k.t0));
    const event = events.find((e) => e.instanceId === k.instanceId && Date.parse(e.at) >= Math.floor(k.t0));
    const start = engineEvents.find((e) => e.instanceId === k.instanceId && e.action === 'start' && e.at >= k.t0);
    return {
      ...k, die: rel(die?.at), runnerGot: rel(got?.time as number | undefined), recorded: event ? rel(Date.parse(event.at)) : undefined,
      published: rel(event && publishedAt.get(event.id)), started: rel(start?.at),
    };
  });
  const measured = timed.slice(WARMUP_KILLS);
  const warmup = timed.slice(0, WARMUP_KILLS);
  type Timed = typeof measured[number];
  const stage = (name: string, from: (k: Timed) => number | undefined, to: (k: Timed) => number | undefined) => {
    const xs = measured.map((k) => {
      const a = from(k);
      const z = to(k);
      return a === undefined || z === undefined ? undefined : z - a;
    }).filter((x): x is number => x !== undefined);
    return { name, n: xs.length, ...(xs.length ? roundStats(stats(xs)) : {}) } as { name: string; n: number } & Partial<Stats>;
  };
  const stages = [
    stage('kill call → engine die event', () => 0, (k) => k.die),
    stage('die → runner got the engine event', (k) => k.die, (k) => k.runnerGot),
    stage('runner got it → event recorded (observe, runnerSync)', (k) => k.runnerGot, (k) => k.recorded),
    stage('event recorded → publisher logged it (kick, lease, lookup, posts)', (k) => k.recorded, (k) => k.published),
    stage('event recorded → next received', (k) => k.recorded, (k) => k.received),
    stage('kill call → container started again', () => 0, (k) => k.started),
  ];
  const showed = measured.reduce<Record<string, number>>((acc, k) => ({ ...acc, [k.showed]: (acc[k.showed] ?? 0) + 1 }), {});
  const replaced = measured.filter((k) => k.replaced).length;
  const latency = measured.length ? stats(measured.map((k) => k.received)) : undefined;
  const recovery = measured.length ? stats(measured.map((k) => k.running)) : undefined;

  console.log(`\n1. kill → containerStatusChanged(releaseId) next for that instance showing it not RUNNING or another container/start ` +
    `(graphql-ws client; the 2 replicas killed in turn, each time waiting until the release is RUNNING again)`);
  for (const w of warmup) console.log(`warm-up kill (not counted): ${ms(w.received)}`);
  if (latency && recovery) {
    printStats('kill → next received', latency);
    printStats('kill → release RUNNING again (polled 100 ms)', recovery);
  }
  console.log('stages, over the kills where both ends were seen:');
  for (const s of stages) console.log(`  ${s.name.padEnd(66)} n=${s.n}  p50 ${fmt(s.p50)}  p95 ${fmt(s.p95)}  p99 ${fmt(s.p99)}  max ${fmt(s.max)}`);
  console.log(`first next showed: ${Object.entries(showed).map(([what, count]) => `${what} ×${count}`).join(', ')}`);
  console.log(`the killed container was replaced by a new one (not restarted) after ${replaced} of ${measured.length} kills; ` +
    `${statusNexts} containerStatusChanged messages received in all`);
  const slow = measured.filter((k) => k.running > 10_000);
  if (slow.length) console.log(`kills whose release took > 10 s to be RUNNING again: ${slow.map((k) => `#${k.n} (${ms(k.running)})`).join(', ')}`);
  if (stoppedEarly) console.log(`NOTE: ${stoppedEarly}`);

  console.log(`\n2. fan-out, ${SUBSCRIPTIONS} subscriptions (times from just before raiseAlarm):`);
  for (const [name, v] of [['identical documents', identical], ['distinct documents (alias s<i>)', distinct]] as const) {
    if ('error' in v) {
      console.log(`  ${name}: failed: ${v.error}`);
      continue;
    }
    for (const t of v.triggers) {
      console.log(`  ${`${name}, alarm ${t.trigger}`.padEnd(44)} first ${fmt(t.firstMs)}  p50 ${fmt(t.p50Ms)}  last ${fmt(t.lastMs)}  ` +
        `(${t.delivered}/${SUBSCRIPTIONS} delivered${t.publisher ? `, ${t.publisher.executions} executions` : ''})`);
    }
  }
  // What serverless-offline went through: every WebSocket message is a ws invocation; timeouts are its own lines.
  const raw = readFileSync(join(b.dir, 'stack.log'), 'utf8');
  const wsDurations = [...raw.matchAll(/\(λ: ws\) RequestId: \S+ +Duration: ([0-9.]+) ms/g)].map((m) => Number(m[1]));
  const wsInvocations = wsDurations.length ? roundStats(stats(wsDurations)) : undefined;
  const lambdaTimeouts = (raw.match(/\[504\] - Lambda timeout/g) ?? []).length;
  const load = { atStart: loadAtStart, atEnd: loadavg().map((x) => round(x)) };
  if (wsInvocations) printStats('\nserverless-offline ws invocations (all routes)', wsInvocations);
  console.log(`Lambda timeouts in the stack's log: ${lambdaTimeouts}; load average at start ${load.atStart.join(' ')}, at end ${load.atEnd.join(' ')}`);
  console.log(`run took ${round(elapsed() / 1000, 1)} s before clean-up`);

  return {
    latency: {
      kills: measured.length,
      warmupMs: warmup.map((w) => round(w.received)),
      receivedMs: latency && roundStats(latency),
      runningAgainMs: recovery && roundStats(recovery),
      stages,
      firstNextShowed: showed,
      replacedContainers: replaced,
      ...(stoppedEarly ? { note: stoppedEarly } : {}),
    },
    fanOut: { connections: CONNECTIONS, subscriptionsPerConnection: SUBS_PER_CONNECTION, subscriptions: SUBSCRIPTIONS, identical, distinct },
    offline: { wsInvocationsMs: wsInvocations, lambdaTimeouts },
    loadAverage: load,
    runSeconds: round(elapsed() / 1000, 1),
  };
});

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  const e = err as { code?: number; reason?: string } | undefined;
  if (e && typeof e === 'object' && ('code' in e || 'reason' in e)) return `code ${e.code} ${e.reason ?? ''}`.trim();
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

function fmt(x: number | null | undefined): string {
  return x === null || x === undefined ? '-' : ms(x);
}
