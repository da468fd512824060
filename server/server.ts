import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { invokeInProcess } from '../lib/kick';
import { log } from '../lib/log';
import { store } from '../lib/store';
import { serveConnections } from './connections';
import { loadHandler, readFunctions, type Handler } from './functions';
import { httpRoutes, type Route } from './http';
import { BodyTooLarge, lambdaContext, readBody } from './lambda';
import { LEASES_TABLE } from './lease';
import { startTicks, type Ticks } from './ticks';
import type { ServerTls } from './tls';
import { webSockets } from './websocket';

/**
 * Server mode: one long-lived process serving the functions of serverless.yml — their HTTP routes, the WebSocket
 * function on real sockets, the connections API that function answers through, and the scheduled functions under
 * a lease — so N replicas behind any load balancer act as one API, with nothing in memory that matters.
 *
 * Both ports serve everything (routes, health, connections API, WebSocket upgrades); they are two only so the
 * documented FZ_HTTP_PORT / FZ_WS_PORT of the offline stack keep working. Give both the same port to use one.
 * A route added to serverless.yml is served here with no change; the server's own routes are `ownRoutes` below.
 */

export interface ServerOptions {
  host: string;
  httpPort: number;
  wsPort: number;
  /** Where other replicas reach this one's connections API: the endpoint named in each connection record. */
  endpoint?: string;
  tickMs: number;
  leaseMs: number;
  /** Run the scheduled functions (under the lease); off for a replica that should only serve requests. */
  ticks?: boolean;
  /** With the platform CA on: HTTPS and WSS on both ports, with this certificate (server/tls.ts). */
  tls?: ServerTls;
}

export interface RunningServer {
  httpUrl: string;
  wsUrl: string;
  /** The connections API endpoint connection records name. */
  endpoint: string;
  /** Stops gracefully: not ready, no new connections, sockets closed with 1001, requests in flight finish. */
  close(): Promise<void>;
}

/** How long a graceful stop waits for requests in flight before cutting connections. */
const DRAIN_MS = 20_000;

const hostForUrl = (host: string) => (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host);

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const replica = randomBytes(6).toString('hex');
  const functions = readFunctions();
  // Cold start once, here, not on a user's first request.
  const handlers: Record<string, Handler> = {};
  for (const [name, spec] of Object.entries(functions.handlers)) handlers[name] = loadHandler(spec);

  const call = (name: string, event: unknown) => {
    const handler = handlers[name];
    if (!handler) throw new Error(`serverless.yml has no function ${name}`);
    return handler(event, lambdaContext(name, functions.timeouts[name]), () => undefined);
  };

  let draining = false;
  const inFlight = new Set<Promise<unknown>>();
  const track = <T>(p: Promise<T>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  };

  // lib/kick: the function runs here. A kick while it runs makes it run once more afterwards (kicks carry no payload).
  const kicked = new Map<string, { again: boolean }>();
  invokeInProcess((name, payload) => {
    const running = kicked.get(name);
    if (running) {
      running.again = true;
      return;
    }
    const state = { again: false };
    kicked.set(name, state);
    void track((async () => {
      do {
        state.again = false;
        await Promise.resolve().then(() => call(name, payload)).catch((err) => log.error({ err, functionName: name }, 'kicked function failed'));
      } while (state.again && !draining);
      kicked.delete(name);
    })());
  });

  const ws = webSockets(async (event) => (await call(functions.websocket ?? 'ws', event)) as never);
  const routes = httpRoutes(functions.http, call);

  const ready = async () => {
    if (draining) return 'shutting down';
    try {
      await Promise.race([
        store().get(LEASES_TABLE, 'readyz'),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 2 s')), 2000).unref()),
      ]);
      return null;
    } catch (err) {
      return `the store is not reachable: ${(err as Error).message}`;
    }
  };

  const ownRoutes: Route = async (req, res, body) => {
    const path = new URL(req.url ?? '/', 'http://server').pathname;
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', replica }));
      return true;
    }
    if (path === '/readyz') {
      const problem = await ready();
      res.writeHead(problem ? 503 : 200, { 'content-type': 'application/json' })
        .end(JSON.stringify(problem ? { status: 'unavailable', reason: problem, replica } : { status: 'ready', replica }));
      return true;
    }
    return serveConnections(req, res, body, ws.sockets);
  };

  const serve = async (req: IncomingMessage, res: ServerResponse) => {
    if (draining) res.setHeader('connection', 'close');
    try {
      const body = await readBody(req);
      if (await ownRoutes(req, res, body)) return;
      if (await routes(req, res, body)) return;
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `nothing is served at ${req.method} ${req.url}` }));
    } catch (err) {
      if (res.headersSent) return void res.destroy();
      if (err instanceof BodyTooLarge) {
        res.writeHead(413, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify({ message: err.message }));
        return;
      }
      log.error({ err, method: req.method, path: req.url }, 'request failed');
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'internal error; the server log has the details' }));
    }
  };

  const listen = (port: number) => new Promise<Server>((resolve, reject) => {
    const handle = (req: IncomingMessage, res: ServerResponse) => void track(serve(req, res));
    const server: Server = options.tls ? createHttpsServer(options.tls.context(), handle) : createServer(handle);
    server.on('upgrade', (req, socket, head) => ws.upgrade(req, socket, head));
    server.once('error', reject);
    server.listen(port, options.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
  const servers: Server[] = [await listen(options.httpPort)];
  if (options.wsPort !== options.httpPort) {
    try {
      servers.push(await listen(options.wsPort));
    } catch (err) {
      servers[0].close();
      throw err;
    }
  }
  const tls = options.tls;
  tls?.onRenew(() => servers.forEach((s) => (s as HttpsServer).setSecureContext(tls.context())));
  const portOf = (s: Server) => (s.address() as AddressInfo).port;
  const host = hostForUrl(options.host);
  const [httpScheme, wsScheme] = tls ? ['https', 'wss'] : ['http', 'ws'];
  const endpoint = options.endpoint ?? `${httpScheme}://${host}:${portOf(servers[servers.length - 1])}`;
  // What handlers/ws.ts writes into connection records, and how gateway/subscriptions.ts signs its posts.
  process.env.FZ_WS_MANAGEMENT_ENDPOINT = endpoint;
  process.env.FZ_RUNTIME = 'server';

  const ticks: Ticks | undefined = options.ticks === false ? undefined : startTicks({
    store: store(),
    holder: `${endpoint} ${replica}`,
    functions: functions.schedules,
    run: (name) => call(name, { source: 'fangzhou.server', 'detail-type': 'Scheduled Event', detail: {} }),
    everyMs: options.tickMs,
    leaseMs: options.leaseMs,
  });

  const httpUrl = `${httpScheme}://${host}:${portOf(servers[0])}`;
  log.info({ replica, http: httpUrl, endpoint, routes: functions.http.length, ticks: ticks ? functions.schedules : [] }, 'server mode up');

  let closed: Promise<void> | undefined;
  return {
    httpUrl,
    wsUrl: `${wsScheme}://${host}:${portOf(servers[servers.length - 1])}`,
    endpoint,
    close: () => (closed ??= (async () => {
      draining = true;
      log.info({ replica }, 'stopping: closing sockets (1001), finishing requests in flight');
      const stopped = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
      servers.forEach((s) => s.closeIdleConnections());
      await ws.closeAll(1001, 'server shutting down');
      await ticks?.stop();
      await tls?.stop();
      const cutOff = setTimeout(() => servers.forEach((s) => s.closeAllConnections()), DRAIN_MS);
      while (inFlight.size) await Promise.allSettled([...inFlight]);
      await Promise.all(stopped);
      clearTimeout(cutOff);
      invokeInProcess(undefined);
      log.info({ replica }, 'stopped');
    })()),
  };
}
