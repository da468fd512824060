import { createClient, type Client } from 'graphql-ws';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { kick } from '../../lib/kick';
import { createClient as createDbClient, Store } from '../../lib/store';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { raiseAlarm, type Alarm } from '../../subgraphs/butler/alarms';
import type { PlatformEvent } from '../../subgraphs/butler/events';
import { waitFor, waitUntil } from '../support/wait';

/**
 * Live subscriptions end to end: the real graphql-ws client against serverless-offline's WebSocket API, the ws
 * handlers, the subscriptions table on dynalite, and the publisher running each subscription as a lookup query
 * through the gateway (fields of Butler, Ark and Panama in one `next`). Alarms are raised with Butler's own
 * `raiseAlarm` on the stack's store; a registered host (kept alive by a fake runner's syncs) and a release give the
 * alarm something to resolve in Ark and Panama. No Docker needed.
 */
let stack: Stack;
let dir: string;
let db: Store;
let logFile: string;
let hostId: string;
let hostToken: string;
let releaseId: string;
let heartbeat: NodeJS.Timeout;
const clients: Client[] = [];
const sockets: WebSocket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fz-subs-'));
  logFile = join(dir, 'stack.log');
  // serverless-offline: this suite is the proof that serverless.yml's WebSocket API runs as written (server mode's
  // WebSocket is what every other suite runs on, e.g. runner-push.test.ts).
  stack = await startStack({ dataDir: dir, httpPort: 3330, wsPort: 3331, lambdaPort: 3332, storePort: 4830, output: logFile, runtime: 'offline' });
  db = new Store(createDbClient(stack.env.DYNAMODB_ENDPOINT, 'local'), stack.env.FZ_TABLE_PREFIX);
  // lib/kick as a handler would use it offline: the publisher runs now instead of at the next tick.
  process.env.IS_OFFLINE = 'true';
  process.env.FZ_LAMBDA_PORT = '3332';
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  const joinToken = (await stack.graphql<{ createJoinToken: { token: string } }>('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
  const registered = await stack.graphql<{ registerHost: { host: { id: string }; hostToken: string } }>(
    'mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken } }',
    { input: { joinToken, name: 'sub-host', address: '127.0.0.1', capacity: { cpuMillis: 2000, memoryMb: 1024 } } }, null);
  expect(registered.errors).toBeUndefined();
  ({ hostToken } = registered.data!.registerHost);
  hostId = registered.data!.registerHost.host.id;
  // A runner's sync every second keeps the host READY (no HOST_DOWN noise); it reports no containers.
  const sync = () => stack.graphql('mutation { runnerSync(input: {observed: []}) { hostId } }', {}, hostToken).catch(() => undefined);
  await sync();
  heartbeat = setInterval(sync, 1000);
  const deployed = await stack.graphql<{ deploy: { id: string } }>('mutation { deploy(input: {name: "subs", product: "demo", version: "1.0.0", replicas: 1}) { id } }');
  expect(deployed.errors).toBeUndefined();
  releaseId = deployed.data!.deploy.id;
}, 240_000);

afterAll(async () => {
  clearInterval(heartbeat);
  for (const c of clients) await c.dispose();
  for (const s of sockets) s.terminate();
  db?.client.destroy();
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------

interface Connection {
  client: Client;
  /** Close notices: the graphql-ws close code and reason the server sends before it drops the connection. */
  notices: { code: number; reason: string }[];
  closed: Promise<{ code: number }>;
  /** The operation id the client gave its latest subscription. */
  lastId?: string;
}

let ids = 0;
/** A graphql-ws client on the stack; no retries, so a close shows as it is. */
function connect(connectionParams?: Record<string, unknown>, options: { generateID?: () => string } = {}): Connection {
  let onClosed: (e: { code: number }) => void = () => undefined;
  const closed = new Promise<{ code: number }>((resolve) => (onClosed = resolve));
  const notices: Connection['notices'] = [];
  const generateID = options.generateID ?? (() => `op-${++ids}`);
  const conn: Connection = { notices, closed } as Connection;
  conn.client = createClient({
    url: stack.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams,
    retryAttempts: 0,
    generateID: () => (conn.lastId = generateID()),
    on: {
      ping: (received, payload) => {
        const close = (payload as { close?: { code: number; reason: string } } | undefined)?.close;
        if (received && close) notices.push(close);
      },
      closed: (event) => onClosed(event as { code: number }),
    },
  });
  clients.push(conn.client);
  return conn;
}

const operator = () => connect({ authorization: `Bearer ${stack.adminToken}` });

interface Sub {
  id: string;
  results: { data?: Record<string, any>; errors?: unknown[] }[];
  error?: unknown;
  completed: boolean;
  dispose: () => void;
}

function subscribe(conn: Connection, query: string, variables?: Record<string, unknown>): Sub {
  const sub: Sub = { id: '', results: [], completed: false, dispose: () => undefined };
  sub.dispose = conn.client.subscribe({ query, variables }, {
    next: (value) => sub.results.push(value as Sub['results'][number]),
    error: (err) => { sub.error = err; },
    complete: () => { sub.completed = true; },
  });
  sub.id = conn.lastId!;
  return sub;
}

const subscriptionRecords = async () =>
  (await db.scan<{ id: string; kind: string; connectionId: string; subscriptionId: string }>('subscriptions')).filter((i) => i.kind === 'subscription');
/** The store holds the subscription (the protocol has no "subscribed" message, so tests look). */
const stored = (...subs: Sub[]) => waitFor(`subscriptions ${subs.map((s) => s.id)} to be stored`, async () => {
  const records = await subscriptionRecords();
  return subs.every((s) => records.some((r) => r.subscriptionId === s.id)) && records;
}, 20_000, 100);

/** Waits until these are the only subscriptions (those of closed clients are gone), so reports count just them. */
const onlyThese = (...subs: Sub[]) => waitUntil('the subscriptions of earlier clients to be removed', async () => {
  const records = await subscriptionRecords();
  return records.length === subs.length && subs.every((s) => records.some((r) => r.subscriptionId === s.id));
}, 20_000, 100);

let causes = 0;
async function alarm(severity: Alarm['severity'] = 'WARNING'): Promise<Alarm> {
  const raised = await raiseAlarm(db, {
    kind: 'TEST', severity, message: `test alarm ${++causes}`, cause: `test:${process.pid}:${causes}`, hostId, releaseId,
  }, []);
  await kick('publish');
  return raised!;
}

const received = (sub: Sub, alarmId: string) => waitFor(`${sub.id} to receive alarm ${alarmId}`, async () =>
  sub.results.find((r) => Object.values(r.data ?? {}).some((v) => (v as { id?: string } | null)?.id === alarmId)), 30_000, 100);

const eventOf = async (alarmId: string) =>
  waitFor('the alarm event', async () => (await db.scan<PlatformEvent>('events')).find((e) => e.alarmId === alarmId));

const logLines = () => readFileSync(logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => {
  try {
    return JSON.parse(l) as Record<string, any>;
  } catch {
    return {};
  }
});

/** A raw WebSocket speaking graphql-transport-ws, for what the graphql-ws client would never send. */
async function raw() {
  const ws = new WebSocket(stack.wsUrl, 'graphql-transport-ws');
  sockets.push(ws);
  const messages: any[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data))));
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return {
    ws, messages, closed,
    send: (message: unknown) => ws.send(typeof message === 'string' ? message : JSON.stringify(message)),
    waitFor: (what: string, match: (m: any) => boolean) => waitFor(what, async () => messages.find(match), 20_000, 50),
    notice: () => messages.find((m) => m.type === 'ping' && m.payload?.close)?.payload.close,
  };
}

const closeNotice = async (conn: Connection) => {
  await conn.closed;
  return conn.notices[0];
};

// ---------------------------------------------------------------------------------------------------------------

test('an alarm reaches a subscribed operator with fields of Butler, Ark and Panama', async () => {
  const conn = operator();
  const sub = subscribe(conn, 'subscription { alarmRaised { id kind severity message host { name } release { name } } }');
  await stored(sub);
  const raised = await alarm();
  const result = await received(sub, raised.id);
  expect(result).toEqual({
    data: { alarmRaised: { id: raised.id, kind: 'TEST', severity: 'WARNING', message: raised.message, host: { name: 'sub-host' }, release: { name: 'subs' } } },
  });
  expect(sub.error).toBeUndefined();
  await conn.client.dispose();
});

test('identical subscriptions on two connections and a distinct one all receive; the identical ones run once', async () => {
  const a = operator();
  const b = operator();
  const c = operator();
  const query = 'subscription Watch($min: Severity) { alarmRaised(minSeverity: $min) { id message host { name } } }';
  const subA = subscribe(a, query, { min: 'WARNING' });
  const subB = subscribe(b, query, { min: 'WARNING' });
  const distinct = subscribe(c, 'subscription { alarmRaised { id severity release { name } } }');
  const criticalOnly = subscribe(c, 'subscription { alarmRaised(minSeverity: CRITICAL) { id } }');
  await stored(subA, subB, distinct, criticalOnly);
  await onlyThese(subA, subB, distinct, criticalOnly);

  const raised = await alarm('WARNING');
  const expected = { data: { alarmRaised: { id: raised.id, message: raised.message, host: { name: 'sub-host' } } } };
  expect(await received(subA, raised.id)).toEqual(expected);
  expect(await received(subB, raised.id)).toEqual(expected);
  expect(await received(distinct, raised.id)).toEqual({ data: { alarmRaised: { id: raised.id, severity: 'WARNING', release: { name: 'subs' } } } });

  // The publisher's report for this event: three subscribers, two executions (A and B share one).
  const event = await eventOf(raised.id);
  const report = await waitFor('the publisher report', async () => logLines().find((l) => l.msg === 'published event' && l.eventId === event.id), 10_000);
  expect(report).toMatchObject({ subscriptions: 3, executions: 2, deliveries: 3, gone: 0, failed: 0 });
  expect(criticalOnly.results).toEqual([]);

  const critical = await alarm('CRITICAL');
  expect(await received(criticalOnly, critical.id)).toEqual({ data: { alarmRaised: { id: critical.id } } });
  for (const conn of [a, b, c]) await conn.client.dispose();
});

describe('bad input is refused the graphql-ws way and others are not affected', () => {
  let bystander: Connection;
  let watching: Sub;

  beforeAll(async () => {
    bystander = operator();
    watching = subscribe(bystander, 'subscription { alarmRaised { id } }');
    await stored(watching);
  });

  afterAll(async () => {
    // After all the bad input, the bystander's connection still works.
    const raised = await alarm();
    expect(await received(watching, raised.id)).toEqual({ data: { alarmRaised: { id: raised.id } } });
    expect(watching.error).toBeUndefined();
    await bystander.client.dispose();
  });

  test('no credentials: closed with 4401', async () => {
    const conn = connect();
    const sub = subscribe(conn, 'subscription { alarmRaised { id } }');
    expect(await closeNotice(conn)).toEqual({ code: 4401, reason: 'Unauthorized: connection_init needs payload {authorization: "Bearer <operator token>"}' });
    await waitUntil('the subscription to fail', async () => sub.error !== undefined);
    expect((await subscriptionRecords()).some((r) => r.subscriptionId === sub.id)).toBe(false);
  });

  test('a wrong operator token: 4401; a host token: 4403', async () => {
    const wrong = connect({ authorization: 'Bearer fza_not-the-token' });
    subscribe(wrong, 'subscription { alarmRaised { id } }');
    expect(await closeNotice(wrong)).toMatchObject({ code: 4401, reason: expect.stringMatching(/admin token is not valid/) });
    const host = connect({ authorization: `Bearer ${hostToken}` });
    subscribe(host, 'subscription { alarmRaised { id } }');
    expect(await closeNotice(host)).toEqual({ code: 4403, reason: 'Forbidden: only an operator may subscribe' });
  });

  test('malformed messages: 4400', async () => {
    for (const body of ['{"type":"connection_init"', '{"type":"start","id":"1"}', '{"type":"subscribe","id":"","payload":{"query":"x"}}']) {
      const socket = await raw();
      socket.send(body);
      expect(await socket.closed).toBeGreaterThan(0);
      expect(socket.notice()).toMatchObject({ code: 4400 });
    }
  });

  test('subscribe before connection_init: 4401; a second connection_init: 4429', async () => {
    const early = await raw();
    early.send({ type: 'subscribe', id: '1', payload: { query: 'subscription { alarmRaised { id } }' } });
    await early.closed;
    expect(early.notice()).toEqual({ code: 4401, reason: 'Unauthorized' });

    const twice = await raw();
    twice.send({ type: 'connection_init', payload: { authorization: `Bearer ${stack.adminToken}` } });
    await twice.waitFor('connection_ack', (m) => m.type === 'connection_ack');
    twice.send({ type: 'connection_init', payload: { authorization: `Bearer ${stack.adminToken}` } });
    await twice.closed;
    expect(twice.notice()).toEqual({ code: 4429, reason: 'Too many initialisation requests' });
  });

  test('a duplicate operation id: 4409', async () => {
    const conn = connect({ authorization: `Bearer ${stack.adminToken}` }, { generateID: () => 'same-id' });
    const first = subscribe(conn, 'subscription { alarmRaised { id } }');
    expect(first.id).toBe('same-id');
    await stored(first);
    subscribe(conn, 'subscription { alarmRaised { kind } }');
    expect(await closeNotice(conn)).toEqual({ code: 4409, reason: 'Subscriber for same-id already exists' });
    await waitUntil('the subscription to be removed with its connection', async () =>
      !(await subscriptionRecords()).some((r) => r.subscriptionId === 'same-id'));
  });

  test('an invalid document, a query, an unknown release: an error message, and the connection keeps working', async () => {
    const conn = operator();
    const keep = subscribe(conn, 'subscription { alarmRaised { id message } }');
    await stored(keep);
    const invalid = subscribe(conn, 'subscription { alarmRaised(minSeverity: LOUD) { id nosuch } }');
    await waitUntil('the error', async () => invalid.error !== undefined);
    expect(invalid.error).toEqual([
      expect.objectContaining({ message: 'Value "LOUD" does not exist in "Severity" enum.', extensions: { code: 'BAD_USER_INPUT', reason: 'GRAPHQL_VALIDATION_FAILED' } }),
      expect.objectContaining({ message: 'Cannot query field "nosuch" on type "Alarm".' }),
    ]);
    const query = subscribe(conn, '{ hosts { id } }');
    await waitUntil('the error', async () => query.error !== undefined);
    expect(query.error).toEqual([{ message: 'only subscriptions are served over the WebSocket; send this query to POST /graphql', extensions: { code: 'BAD_USER_INPUT' } }]);
    const unknown = subscribe(conn, 'subscription { releaseProgress(releaseId: "r-nosuch") { id } }');
    await waitUntil('the error', async () => unknown.error !== undefined);
    expect(unknown.error).toEqual([{ message: 'release "r-nosuch" does not exist', extensions: { code: 'NOT_FOUND' } }]);

    const raised = await alarm();
    expect(await received(keep, raised.id)).toEqual({ data: { alarmRaised: { id: raised.id, message: raised.message } } });
    expect(conn.notices).toEqual([]);
    await conn.client.dispose();
  });

  test('complete for an unknown id is ignored; ping gets pong', async () => {
    const socket = await raw();
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${stack.adminToken}` } });
    await socket.waitFor('connection_ack', (m) => m.type === 'connection_ack');
    socket.send({ type: 'complete', id: 'never-subscribed' });
    socket.send({ type: 'ping', payload: { n: 7 } });
    expect(await socket.waitFor('pong', (m) => m.type === 'pong')).toEqual({ type: 'pong', payload: { n: 7 } });
    expect(socket.ws.readyState).toBe(WebSocket.OPEN);
    socket.ws.close();
  });
});

test('a client that disconnects is cleaned up at $disconnect, and one that vanished is removed after a 410', async () => {
  const conn = operator();
  const sub = subscribe(conn, 'subscription { alarmRaised { id } }');
  const records = await stored(sub);
  const connectionId = records.find((r) => r.subscriptionId === sub.id)!.connectionId;
  await conn.client.dispose();
  await waitUntil('$disconnect to remove the connection and its subscriptions', async () =>
    !(await db.scan<{ connectionId?: string }>('subscriptions')).some((i) => i.connectionId === connectionId));

  // A connection whose $disconnect never arrived: a copy of a live subscription under a connection id that the
  // WebSocket API does not know. The publisher's post gets 410 and removes it.
  const live = operator();
  const liveSub = subscribe(live, 'subscription { alarmRaised { id } }');
  const template = (await stored(liveSub)).find((r) => r.subscriptionId === liveSub.id)!;
  await onlyThese(liveSub);
  const ghost = 'ghost-connection-id';
  await db.create('subscriptions', { ...(await db.get<Record<string, unknown>>('subscriptions', `conn#${template.connectionId}`)), id: `conn#${ghost}`, connectionId: ghost });
  await db.create('subscriptions', { ...template, id: `sub#${ghost}#1`, connectionId: ghost, subscriptionId: '1' });
  const raised = await alarm();
  await received(liveSub, raised.id);
  await waitUntil('the gone connection to be removed', async () =>
    !(await db.scan<{ connectionId?: string }>('subscriptions')).some((i) => i.connectionId === ghost));
  const event = await eventOf(raised.id);
  expect(logLines().find((l) => l.msg === 'published event' && l.eventId === event.id)).toMatchObject({ deliveries: 1, gone: 1 });
  await live.client.dispose();
});
