import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join, resolve } from 'node:path';
import { waitUntil } from './wait';

/**
 * Server-mode replicas (server/main.ts) as real processes on their own ports, sharing one store: what a fleet's
 * control plane runs, for tests and benches. Each logs JSON lines into its own file.
 */

const ROOT = resolve(__dirname, '../..');

export interface ReplicaOptions {
  name: string;
  httpPort: number;
  wsPort: number;
  /** The store (DYNAMODB_ENDPOINT) and table prefix every replica shares. */
  storeEndpoint: string;
  tablePrefix: string;
  adminTokenHash: string;
  logFile: string;
  env?: Record<string, string>;
}

export interface Replica {
  name: string;
  process: ChildProcess;
  httpUrl: string;
  wsUrl: string;
  /** The connections API endpoint its connection records name. */
  endpoint: string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  logLines(): Record<string, any>[];
  /** SIGKILL if still running (clean-up after a failed test). */
  kill(): Promise<void>;
}

/** GET over http, or https trusting the platform CA of `caDir` (a replica with FZ_CA_DIR serves HTTPS only). */
function status(url: string, caDir: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet;
    get(url, { ...(caDir ? { ca: readFileSync(join(caDir, 'ca.crt')) } : {}), agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

export async function startReplica(options: ReplicaOptions): Promise<Replica> {
  const out = openSync(options.logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'server/main.ts')], {
    cwd: ROOT,
    stdio: ['ignore', out, out],
    env: {
      ...process.env,
      DYNAMODB_ENDPOINT: options.storeEndpoint,
      FZ_TABLE_PREFIX: options.tablePrefix,
      FZ_ADMIN_TOKEN_HASH: options.adminTokenHash,
      FZ_LISTEN_HOST: '127.0.0.1',
      FZ_HTTP_PORT: String(options.httpPort),
      FZ_WS_PORT: String(options.wsPort),
      LOG_LEVEL: 'info',
      ...options.env,
    },
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const caDir = options.env?.FZ_CA_DIR;
  const [http, ws] = caDir ? ['https', 'wss'] : ['http', 'ws'];
  const httpUrl = `${http}://127.0.0.1:${options.httpPort}`;
  const replica: Replica = {
    name: options.name,
    process: child,
    httpUrl,
    wsUrl: `${ws}://127.0.0.1:${options.wsPort}`,
    endpoint: `${http}://127.0.0.1:${options.wsPort}`,
    exited,
    logLines: () => readFileSync(options.logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => {
      try {
        return JSON.parse(l) as Record<string, any>;
      } catch {
        return {};
      }
    }),
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  try {
    await Promise.race([
      waitUntil(`replica ${options.name} to be ready`, async () => (await status(`${httpUrl}/readyz`, caDir)) === 200, 120_000, 200),
      exited.then((code) => {
        throw new Error(`replica ${options.name} exited with ${code}; see ${options.logFile}`);
      }),
    ]);
  } catch (err) {
    await replica.kill();
    throw err;
  }
  return replica;
}
