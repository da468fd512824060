import { hostname } from 'node:os';
import { log } from '../lib/log';
import { config } from '../lib/config';
import { platformCa } from '../lib/pca';
import { store } from '../lib/store';
import { ark } from '../subgraphs';
import { startServer } from './server';
import { serverNames, startServerTls } from './tls';

/**
 * `node --import tsx server/main.ts`: one server-mode replica, configured by the environment (README,
 * "Configuration"). SIGTERM or SIGINT stops it gracefully; a second signal stops it at once.
 */
const num = (name: string, fallback: number) => {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number, got "${raw}"`);
  return value;
};

/** With FZ_CA_DIR set: the platform CA (created there on first start) and this replica's certificate from it. */
async function serverTls(host: string, httpPort: number) {
  const { ca } = config();
  const opened = platformCa();
  if (!opened) return undefined;
  if (process.env.FZ_SUBGRAPH_TRANSPORT === 'http') {
    throw new Error('FZ_CA_DIR needs the gateway to run the subgraphs in this process: unset FZ_SUBGRAPH_TRANSPORT (server mode runs them in-process)');
  }
  // Names this replica's certificate record: its connections endpoint when set (unique per replica), else its address.
  const wildcard = host === '0.0.0.0' || host === '::';
  const server = process.env.FZ_WS_MANAGEMENT_ENDPOINT || `${wildcard ? hostname() : host}:${httpPort}`;
  return startServerTls({
    ca: await opened,
    names: serverNames(host, process.env.FZ_TLS_NAMES),
    lifetimeSeconds: ca.lifetimeSeconds,
    record: (info) => ark.recordServerCertificate(store(), server, info),
  });
}

async function main() {
  if (!process.env.FZ_ADMIN_TOKEN_HASH) throw new Error('FZ_ADMIN_TOKEN_HASH is not set: without it no operator can sign in and replicas cannot sign their connections API (npm start sets it)');
  const host = process.env.FZ_LISTEN_HOST || '127.0.0.1';
  const httpPort = num('FZ_HTTP_PORT', 3000);
  const tickSeconds = num('FZ_TICK_SECONDS', 1);
  // The gateway runs the subgraphs in this process (no HTTP hop to itself, and a request in flight during a graceful
  // stop needs no listener). With FZ_SUBGRAPH_TRANSPORT=http it calls the subgraph routes, by default this replica's.
  process.env.FZ_SUBGRAPH_TRANSPORT ||= 'inprocess';
  process.env.FZ_SUBGRAPH_URL_BASE ||= `http://${host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host}:${httpPort}/subgraphs`;
  const tls = await serverTls(host, httpPort);
  const server = await startServer({
    tls,
    host,
    httpPort,
    wsPort: num('FZ_WS_PORT', 3001),
    endpoint: process.env.FZ_WS_MANAGEMENT_ENDPOINT || undefined,
    tickMs: tickSeconds * 1000,
    // A dead holder's ticks move to another replica within this long; a live holder renews at every tick.
    leaseMs: num('FZ_TICK_LEASE_SECONDS', Math.max(5, 3 * tickSeconds)) * 1000,
  });
  process.stdout.write(`fangzhou server mode: ${server.httpUrl}/graphql, WebSocket ${server.wsUrl}, connections API ${server.endpoint}\n`);
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    server.close().then(() => process.exit(0), (err) => {
      log.error({ err }, 'graceful stop failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`server mode failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
