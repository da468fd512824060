import { createClient, type Client } from 'graphql-ws';
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { hashSecret, newSecret } from '../../lib/ids';
import { createClient as createDbClient, ensureTables, Store } from '../../lib/store';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { raiseAlarm } from '../../subgraphs/butler/alarms';
import { startBalancer, type Balancer } from '../support/balancer';
import { startDynalite, type DynamoDbServer } from '../support/dynamodb';
import { startReplica, type Replica } from '../support/replicas';
import { waitFor, waitUntil } from '../support/wait';

/**
 * Server mode as a fleet's control plane runs it: two replicas (real processes) on one store (dynalite), behind a
 * tiny TCP round-robin balancer, with real graphql-ws clients. Requests and subscriptions are served by either; an
 * event is published by whichever replica holds the publish lease and reaches sockets held by the other through
 * its @connections API; each tick runs on one replica; SIGKILL of one leaves the other serving, its ticks and its
 * clients (which reconnect through the balancer); SIGTERM closes sockets with 1001 and lets a request finish.
 * No Docker: a registered host is kept alive by syncs that report no containers.
 */
const PREFIX = 'fz-sm-';
let dir: string;
let store: DynamoDbServer;
let db: Store;
let adminToken: string;
let replicas: Replica[] = [];
let balancer: Balancer;
let hostId: string;
let hostToken: string;
let heartbeat: NodeJS.Timeout | undefined;
const clients: Client[] = [];

const replicaOptions = (name: string, httpPort: number) => ({
  name, httpPort, wsPort: httpPort + 1, storeEndpoint: store.endpoint, tablePrefix: PREFIX,
  adminTokenHash: hashSecret(adminToken), logFile: join(dir, `${name}.log`),
  // `tick ran` lines (debug) show which replica ran which tick.
  env: { LOG_LEVEL: 'debug', FZ_TICK_SECONDS: '1', FZ_TICK_LEASE_SECONDS: '5' },
});

/** GraphQL over HTTP on a connection of its own (no keep-alive), so a balancer in front picks a replica per request. */
function gql<T = any>(base: string, query: string, variables?: Record<string, unknown>, token: string | null = adminToken): Promise<{ status: number; data?: T; errors?: { message: string }[] }> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ query, variables });
    const req = request(`${base}/graphql`, {
      method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, ...JSON.parse(text) });
        } catch (err) {
          reject(new Error(`${base} answered ${res.statusCode}: ${text.slice(0, 200)}`));
        }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const healthz = (base: string) => new Promise<{ replica: string }>((resolve, reject) => {
  request(`${base}/healthz`, { agent: false }, (res) => {
    let text = '';
    res.on('data', (c) => (text += c));
    res.on('end', () => resolve(JSON.parse(text)));
  }).on('error', reject).end();
});

interface Subscriber {
  client: Client;
  results: { data?: Record<string, any> }[];
  closes: number[];
}

/** A graphql-ws client subscribed to `query`; `url` may change between (re)connects. */
function subscriber(url: string | (() => string), query: string, token = adminToken): Subscriber {
  const sub: Subscriber = { client: undefined as unknown as Client, results: [], closes: [] };
  sub.client = createClient({
    url: typeof url === 'string' ? url : async () => url(),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 10,
    retryWait: async () => new Promise((r) => setTimeout(r, 200)),
    shouldRetry: () => true,
    on: { closed: (e) => sub.closes.push((e as { code: number }).code) },
  });
  sub.client.subscribe({ query }, { next: (v) => sub.results.push(v as Subscriber['results'][number]), error: () => undefined, complete: () => undefined });
  clients.push(sub.client);
  return sub;
}

type Record_ = { id: string; kind: string; connectionId: string; endpoint: string; subscriptionId?: string; topic?: string };
const subscriptionRecords = async () => (await db.scan<Record_>('subscriptions')).filter((r) => r.kind === 'subscription');

const received = (sub: Subscriber, alarmId: string) => waitUntil(`alarm ${alarmId} to reach the subscriber`, async () =>
  sub.results.some((r) => r.data?.alarmRaised?.id === alarmId), 30_000, 100);

let causes = 0;
const alarm = async () => (await raiseAlarm(db, {
  kind: 'TEST', severity: 'WARNING', message: `server mode test alarm ${++causes}`, cause: `sm:${process.pid}:${causes}`, hostId, releaseId: null,
}, []))!;

const ticksRan = (replica: Replica, tick: string, since: number) =>
  replica.logLines().filter((l) => l.msg === 'tick ran' && l.tick === tick && l.time >= since).length;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fz-server-mode-'));
  store = await startDynalite();
  const client = createDbClient(store.endpoint, 'local');
  await ensureTables(client, PREFIX);
  db = new Store(client, PREFIX);
  adminToken = newSecret('fza');
  replicas = await Promise.all([startReplica(replicaOptions('a', 3390)), startReplica(replicaOptions('b', 3392))]);
  balancer = await startBalancer([3390, 3392]);

  const lb = `http://127.0.0.1:${balancer.port}`;
  expect((await gql(lb, DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  const joinToken = (await gql(lb, 'mutation { createJoinToken { token } }')).data.createJoinToken.token;
  const registered = await gql(lb, 'mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken } }',
    { input: { joinToken, name: 'sm-host', address: '127.0.0.1', capacity: { cpuMillis: 2000, memoryMb: 1024 } } }, null);
  expect(registered.errors).toBeUndefined();
  ({ hostToken } = registered.data.registerHost);
  hostId = registered.data.registerHost.host.id;
  // The host's runner, as far as the API can tell: a sync every second (through the balancer), no containers.
  const sync = () => gql(lb, 'mutation { runnerSync(input: {observed: []}) { hostId } }', {}, hostToken).catch(() => undefined);
  await sync();
  heartbeat = setInterval(sync, 1000);
}, 240_000);

afterAll(async () => {
  clearInterval(heartbeat);
  for (const c of clients) await c.dispose();
  await balancer?.stop();
  await Promise.all(replicas.map((r) => r.kill()));
  db?.client.destroy();
  await store?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('two replicas behind a balancer serve requests in turn, each answering for the whole API', async () => {
  const lb = `http://127.0.0.1:${balancer.port}`;
  const seen = [];
  for (let i = 0; i < 4; i++) seen.push((await healthz(lb)).replica);
  expect(new Set(seen).size).toBe(2);
  expect(seen[0]).toBe(seen[2]);
  expect(seen[1]).toBe(seen[3]);

  const from = balancer.served.length;
  for (let i = 0; i < 4; i++) {
    const res = await gql(lb, '{ hosts { name status } products { name } }');
    expect(res.errors).toBeUndefined();
    expect(res.data).toEqual({ hosts: [{ name: 'sm-host', status: 'READY' }], products: [expect.objectContaining({ name: 'demo' })] });
  }
  expect(new Set(balancer.served.slice(from)).size).toBe(2);
});

test('a subscriber on either replica receives events, whichever replica publishes them', async () => {
  const [a, b] = replicas;
  const onA = subscriber(a.wsUrl, 'subscription { alarmRaised { id message } }');
  const onB = subscriber(b.wsUrl, 'subscription { alarmRaised { id message } }');
  await waitUntil('both subscriptions stored, each naming its replica', async () => {
    const endpoints = (await subscriptionRecords()).filter((r) => r.topic === 'alarm').map((r) => r.endpoint).sort();
    return endpoints.length === 2 && endpoints[0] === a.endpoint && endpoints[1] === b.endpoint;
  }, 20_000, 100);

  const raised = await alarm();
  await received(onA, raised.id);
  await received(onB, raised.id);
  // One replica published (the lease holder), so one of the two sockets was reached through the other's @connections.
  const event = await waitFor('the alarm\'s event', async () => (await db.scan<{ id: string; alarmId: string | null }>('events')).find((e) => e.alarmId === raised.id));
  const reports = () => replicas.flatMap((r) => r.logLines().filter((l) => l.msg === 'published event' && l.eventId === event.id));
  await waitUntil('the publisher\'s report', async () => reports().length > 0, 10_000, 100);
  expect(reports()).toEqual([expect.objectContaining({ subscriptions: 2, deliveries: 2, failed: 0 })]);
  for (const s of [onA, onB]) await s.client.dispose();
});

test('a runner connected to one replica hears of a deploy made through the other (the kick runs in the replica that took the mutation)', async () => {
  const [a, b] = replicas;
  const runner = subscriber(a.wsUrl, 'subscription { hostDesiredStateChanged { hostId } }', hostToken);
  await waitUntil('the runner subscription', async () => (await subscriptionRecords()).some((r) => r.topic === `host:${hostId}`), 20_000, 100);
  const deployed = await gql(b.httpUrl, 'mutation { deploy(input: {name: "sm-web", product: "demo", version: "1.0.0", replicas: 1}) { id } }');
  expect(deployed.errors).toBeUndefined();
  await waitUntil('the desired-state change at the runner', async () => runner.results.some((r) => r.data?.hostDesiredStateChanged?.hostId === hostId), 30_000, 100);
  await runner.client.dispose();
});

test('each tick runs once across the replicas; when its holder is killed the other takes the ticks and the clients', async () => {
  // Over a window, the watchdog runs about once a second in all: not once per replica, never on both at once.
  const since = Date.now();
  await new Promise((r) => setTimeout(r, 8000));
  const until = Date.now();
  const runs = replicas.flatMap((r) => r.logLines().filter((l) => l.msg === 'tick ran' && l.tick === 'watchdog' && l.time >= since && l.time <= until)
    .map((l) => ({ replica: r.name, start: l.time - l.ms, end: l.time })));
  expect(runs.length).toBeGreaterThan(0);
  expect(runs.length).toBeLessThanOrEqual((until - since) / 1000 + 2);
  for (const a of runs) {
    for (const b of runs) if (a.replica !== b.replica) expect(a.end <= b.start || b.end <= a.start).toBe(true);
  }
  const lease = await db.get<{ holder: string }>('leases', 'lease#watchdog');
  const victim = replicas.find((r) => lease?.holder.startsWith(`${r.endpoint} `))!;
  expect(victim).toBeDefined();
  const survivor = replicas.find((r) => r !== victim)!;

  // A client on the victim; after the victim dies it reconnects through the balancer (the survivor answers).
  let connects = 0;
  const moving = subscriber(() => (connects++ === 0 ? victim.wsUrl : `ws://127.0.0.1:${balancer.port}`), 'subscription { alarmRaised { id } }');
  const staying = subscriber(survivor.wsUrl, 'subscription { alarmRaised { id } }');
  await waitUntil('one subscription on each replica', async () =>
    (await subscriptionRecords()).filter((r) => r.topic === 'alarm').map((r) => r.endpoint).sort().join() === [victim.endpoint, survivor.endpoint].sort().join(), 20_000, 100);

  victim.process.kill('SIGKILL');
  await victim.exited;
  const killedAt = Date.now();

  // Requests carry on through the balancer (a TCP balancer has no health checks: a connection it handed to the
  // victim just before it died is cut, and the client tries again, as any client of such a balancer must).
  for (let i = 0; i < 4; i++) {
    const ask = () => gql(`http://127.0.0.1:${balancer.port}`, '{ hosts { name } }');
    expect((await ask().catch(ask)).errors).toBeUndefined();
  }
  // The ticks move: the survivor runs the watchdog once the victim's lease runs out.
  await waitUntil('the survivor to run the watchdog', async () => ticksRan(survivor, 'watchdog', killedAt) > 0, 20_000, 200);
  // The moved client resubscribed on the survivor; both receive the next event.
  await waitUntil('the moved client to resubscribe on the survivor', async () =>
    (await subscriptionRecords()).filter((r) => r.topic === 'alarm' && r.endpoint === survivor.endpoint).length === 2, 20_000, 100);
  const raised = await alarm();
  await received(moving, raised.id);
  await received(staying, raised.id);
  expect(moving.closes).toContain(1006);
  // The victim's connection records went when the publisher found nobody at its endpoint.
  await waitUntil('the victim\'s connections to be removed', async () =>
    !(await db.scan<Record_>('subscriptions')).some((r) => r.endpoint === victim.endpoint), 20_000, 200);
  for (const s of [moving, staying]) await s.client.dispose();
  replicas = [survivor];
});

test('SIGTERM: sockets are closed with 1001 and a request in flight still gets its answer', async () => {
  const [last] = replicas;
  const ws = new WebSocket(last.wsUrl, 'graphql-transport-ws');
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${adminToken}` } }));
  await new Promise((resolve) => ws.once('message', resolve));

  // A request whose body has not all arrived when the signal comes.
  const body = JSON.stringify({ query: '{ hosts { name } }' });
  const socket = net.connect(Number(new URL(last.httpUrl).port), '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  let response = '';
  socket.on('data', (c) => (response += c));
  const ended = new Promise((resolve) => socket.once('close', resolve));
  socket.write(`POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${adminToken}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 5)}`);

  last.process.kill('SIGTERM');
  expect(await closed).toBe(1001);
  socket.write(body.slice(5));
  await ended;
  expect(response).toMatch(/^HTTP\/1\.1 200 /);
  expect(JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4))).toEqual({ data: { hosts: [{ name: 'sm-host' }] } });
  expect(await last.exited).toBe(0);
  // Its $disconnect ran before it exited: no connection of it is left in the store.
  expect((await db.scan<Record_>('subscriptions')).filter((r) => r.endpoint === last.endpoint)).toEqual([]);
});
