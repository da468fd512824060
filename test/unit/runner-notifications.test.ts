import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { log } from '../../lib/log';
import { notificationUrl } from '../../runner/agent';
import { defaultWsUrl, followNotifications, HOST_DESIRED_STATE_CHANGED, wsUrlProblem, type Notifications } from '../../runner/notifications';

/**
 * The runner's push-notice client against a stand-in for the API's WebSocket endpoint: a graphql-transport-ws server
 * in this process whose behaviour each test chooses (acknowledge, refuse with a close notice, drop, stay silent).
 */

type Behaviour = 'ack' | 'refuse' | 'ack-no-pong' | 'error';

interface Conn {
  socket: WebSocket;
  init?: Record<string, unknown>;
  subscribe?: { id: string; payload: { query: string } };
  closed: boolean;
}

let server: WebSocketServer;
let url: string;
let behaviour: Behaviour;
let conns: Conn[];
const running: Notifications[] = [];

beforeEach(async () => {
  behaviour = 'ack';
  conns = [];
  server = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: (protocols) => (protocols.has('graphql-transport-ws') ? 'graphql-transport-ws' : false) });
  await new Promise((resolve) => server.once('listening', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  server.on('connection', (socket) => {
    const conn: Conn = { socket, closed: false };
    const mine = behaviour; // each connection keeps the behaviour it was made with
    conns.push(conn);
    socket.on('close', () => (conn.closed = true));
    socket.on('message', (data) => {
      const message = JSON.parse(String(data));
      if (message.type === 'connection_init') {
        conn.init = message.payload;
        if (mine === 'refuse') {
          // What gateway/subscriptions.ts does: the close code in a ping, then the socket goes (no code of its own).
          socket.send(JSON.stringify({ type: 'ping', payload: { close: { code: 4403, reason: 'Forbidden: only an operator may subscribe' } } }));
          socket.close();
          return;
        }
        socket.send(JSON.stringify({ type: 'connection_ack' }));
      } else if (message.type === 'subscribe') {
        conn.subscribe = message;
        if (mine === 'error') socket.send(JSON.stringify({ id: message.id, type: 'error', payload: [{ message: 'nope', extensions: { code: 'FORBIDDEN' } }] }));
      } else if (message.type === 'ping' && mine !== 'ack-no-pong') {
        socket.send(JSON.stringify({ type: 'pong' }));
      }
    });
  });
  for (const level of ['info', 'warn', 'debug'] as const) jest.spyOn(log, level).mockImplementation(() => undefined);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
  for (const c of conns) c.socket.terminate();
  await new Promise((resolve) => server.close(resolve));
  jest.restoreAllMocks();
});

async function until(what: string, ok: () => boolean, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}


function follow(overrides: Partial<Parameters<typeof followNotifications>[0]> = {}) {
  const changes = { count: 0 };
  const n = followNotifications({
    url, hostToken: 'fzh_secret', hostId: 'h-1', onChange: () => changes.count++,
    maxBackoffMs: 50, refusedBackoffMs: 60_000, ...overrides,
  });
  running.push(n);
  return { n, changes };
}

const ofToken = (token: string) => conns.filter((c) => c.init?.authorization === `Bearer ${token}`);
const mine = () => ofToken('fzh_secret');

/**
 * The time it takes a live follower (same back-off) to notice a dropped socket and subscribe again, measured by doing
 * it: no reconnect a follower should not make can have been missed by waiting this long, on a busy machine or not.
 */
async function aReconnectCycle() {
  const was = behaviour;
  behaviour = 'ack';
  const { n } = follow({ hostToken: 'control' });
  await until('the control follower to subscribe', () => !!ofToken('control')[0]?.subscribe);
  ofToken('control')[0].socket.close();
  await until('the control follower to subscribe again', () => !!ofToken('control')[1]?.subscribe);
  await n.stop();
  behaviour = was;
}

/** Resolves with how long `p` took; fails with `what` after `ms` (well below the test's timeout). */
async function within(ms: number, what: string, p: Promise<unknown>): Promise<number> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms); })]);
  clearTimeout(timer);
  return Date.now() - started;
}

const next = (conn: Conn, spreadSeconds = 0) => conn.socket.send(JSON.stringify({ id: conn.subscribe!.id, type: 'next', payload: { data: { hostDesiredStateChanged: { at: new Date().toISOString(), spreadSeconds } } } }));
const lines = (level: 'info' | 'warn' | 'debug') => (log[level] as unknown as jest.Mock).mock.calls.map((c) => (typeof c[0] === 'string' ? c[0] : c[1]) as string);

test('subscribes with the host token; wakes on connect and on every notice; stop closes the socket for good', async () => {
  const { n, changes } = follow();
  await until('the subscription', () => !!conns[0]?.subscribe);
  expect(conns[0].init).toEqual({ authorization: 'Bearer fzh_secret' });
  expect(conns[0].subscribe!.payload.query).toBe(HOST_DESIRED_STATE_CHANGED);
  expect(changes.count).toBe(1); // on connect: whatever changed before
  next(conns[0]);
  next(conns[0]);
  await until('two notices', () => changes.count === 3);
  expect(lines('info').filter((l) => l.startsWith('notifications connected'))).toHaveLength(1);
  await n.stop();
  await until('the socket to close', () => conns[0].closed);
  await aReconnectCycle();
  expect(mine()).toHaveLength(1);
});

test('a notice asking for spread wakes the runner once, at a random moment within the spread; one without wakes it at once', async () => {
  jest.spyOn(Math, 'random').mockReturnValue(0.5);
  const { changes } = follow();
  await until('the subscription', () => !!conns[0]?.subscribe);
  expect(changes.count).toBe(1);
  const sent = Date.now();
  for (let k = 0; k < 3; k++) next(conns[0], 1);
  await until('the spread-out wake-up', () => changes.count === 2);
  expect(Date.now() - sent).toBeGreaterThanOrEqual(450); // half of the 1 s asked for (Math.random gave 0.5)
  await new Promise((r) => setTimeout(r, 700));
  expect(changes.count).toBe(2); // three notices of one round: one sync
  // A spread-out wake-up is pending; a change of this host's own containers does not wait for it, nor does it come after.
  next(conns[0], 1);
  await new Promise((r) => setTimeout(r, 50));
  expect(changes.count).toBe(2);
  next(conns[0]);
  await until('the immediate wake-up', () => changes.count === 3);
  await new Promise((r) => setTimeout(r, 700));
  expect(changes.count).toBe(3);
});

test('a dropped connection is made again with back-off, and one line says so', async () => {
  const { changes } = follow();
  await until('the subscription', () => !!conns[0]?.subscribe);
  conns[0].socket.close();
  await until('a new subscription', () => !!conns[1]?.subscribe);
  expect(changes.count).toBe(2);
  next(conns[1]);
  await until('the notice', () => changes.count === 3);
  expect(lines('warn').filter((l) => l.startsWith('notifications lost'))).toHaveLength(1);
});

test('a refusal (close notice 4403) is not retried in a tight loop, and stop does not wait for the back-off', async () => {
  behaviour = 'refuse';
  const { n, changes } = follow();
  await until('the refusal', () => conns[0]?.closed === true);
  // The decision to wait: the refused back-off (60 s here), not the ordinary one (50 ms here).
  await until('the refusal to be logged', () => lines('warn').some((l) => l.startsWith('notifications refused')));
  expect(lines('warn').filter((l) => l.startsWith('notifications refused'))).toEqual(['notifications refused; polling continues; trying again in 60s']);
  await aReconnectCycle();
  expect(mine()).toHaveLength(1);
  expect(changes.count).toBe(0);
  // Mid-way through a 60 s back-off, stop ends it (the bound only turns a hang into a clear message).
  console.log(`stop during the refused back-off took ${await within(20_000, 'stop during a 60 s back-off', n.stop())} ms`);
}, 60_000);

test('a subscription the server answers with an error is not made again soon', async () => {
  behaviour = 'error';
  const { changes } = follow();
  await until('the subscription', () => !!conns[0]?.subscribe);
  await until('the refusal to be logged', () => lines('warn').some((l) => l.startsWith('notifications subscription refused')));
  expect(lines('warn').filter((l) => l.startsWith('notifications subscription refused'))).toEqual([
    'notifications subscription refused; polling continues; trying again in 60s']);
  await aReconnectCycle();
  expect(mine().filter((c) => c.subscribe)).toHaveLength(1);
  expect(changes.count).toBe(1);
});

test('a socket that stops answering pings is dropped and made again', async () => {
  behaviour = 'ack-no-pong';
  follow({ keepAliveMs: 50, pongTimeoutMs: 100 });
  await until('the subscription', () => !!conns[0]?.subscribe);
  behaviour = 'ack';
  await until('a new subscription after the silent one', () => !!conns[1]?.subscribe, 5000);
  await until('the silent socket to be closed', () => conns[0].closed);
});

test('an endpoint that is not there: no error escapes, one warning, and stop is prompt', async () => {
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  const { n, changes } = follow({ url: `ws://127.0.0.1:${port}` });
  await until('two failed attempts after the first', () => lines('debug').filter((l) => l.startsWith('notifications: connection attempt failed')).length >= 2);
  expect(changes.count).toBe(0);
  expect(lines('warn').filter((l) => l.startsWith('notifications unavailable'))).toHaveLength(1);
  console.log(`stop took ${await within(20_000, 'stop', n.stop())} ms`);
  server = new WebSocketServer({ port: 0, host: '127.0.0.1' }); // for afterEach
  await new Promise((resolve) => server.once('listening', resolve));
});

describe('the WebSocket URL', () => {
  const env = process.env.FZ_WS_URL;
  afterEach(() => {
    if (env === undefined) delete process.env.FZ_WS_URL;
    else process.env.FZ_WS_URL = env;
  });

  test('derived from the API URL: same host, the next port (the stack\'s convention), ws or wss', () => {
    expect(defaultWsUrl('http://localhost:3000/graphql')).toBe('ws://localhost:3001');
    expect(defaultWsUrl('http://localhost:3380/graphql')).toBe('ws://localhost:3381');
    expect(defaultWsUrl('https://api.example.com/graphql')).toBe('wss://api.example.com:3001');
    expect(defaultWsUrl('http://[::1]:3000/graphql')).toBe('ws://[::1]:3001');
  });

  test('the config wins over FZ_WS_URL, which wins over the derived one; off means polling only', () => {
    delete process.env.FZ_WS_URL;
    expect(notificationUrl({ apiUrl: 'http://localhost:3000/graphql' })).toBe('ws://localhost:3001');
    process.env.FZ_WS_URL = 'wss://ws.example.com/prod';
    expect(notificationUrl({ apiUrl: 'http://localhost:3000/graphql' })).toBe('wss://ws.example.com/prod');
    expect(notificationUrl({ apiUrl: 'http://localhost:3000/graphql', wsUrl: 'ws://other:9' })).toBe('ws://other:9');
    process.env.FZ_WS_URL = 'off';
    expect(notificationUrl({ apiUrl: 'http://localhost:3000/graphql' })).toBeNull();
  });

  test('only ws:// and wss:// URLs are usable', () => {
    expect(wsUrlProblem('ws://localhost:3001')).toBeNull();
    expect(wsUrlProblem('wss://x.example.com/prod')).toBeNull();
    expect(wsUrlProblem('http://localhost:3001')).toMatch(/must start with ws:\/\/ or wss:\/\//);
    expect(wsUrlProblem('localhost:3001')).toMatch(/must start with ws/);
    expect(wsUrlProblem('not a url')).toMatch(/is not a URL/);
  });
});
