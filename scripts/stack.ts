import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { hashSecret, newSecret } from '../lib/ids';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { createClient, ensureTables } from '../lib/store';
import { newSecretKey } from '../lib/secrets';
import { startRegistry } from './registry';

/**
 * The embedded stack: dynalite (persisted), the API with every handler of serverless.yml — server mode (server/)
 * or serverless-offline — and optionally a host runner on the local Docker engine. `npm start`, the end-to-end
 * tests and the benches use it.
 */

const ROOT = resolve(__dirname, '..');
/** The functions AWS runs on a schedule; offline, the stack invokes them in this order every tick. */
const TICKS = ['watchdog', 'reconcile', 'publish'];
const bin = (name: string) => join(ROOT, 'node_modules', '.bin', name);

export interface StackOptions {
  dataDir: string;
  httpPort?: number;
  wsPort?: number;
  lambdaPort?: number;
  storePort?: number;
  /** Use this DynamoDB endpoint instead of starting dynalite. */
  dynamodbEndpoint?: string;
  tablePrefix?: string;
  subgraphTransport?: 'http' | 'inprocess';
  /** Child output goes here (the dev stack shows it, tests keep it in a file). */
  output?: 'inherit' | 'ignore' | string;
  env?: Record<string, string>;
  /** Address the API and WebSocket listen on (FZ_LISTEN_HOST; default localhost): a fleet's runners reach it there. */
  listenHost?: string;
  /** Rebuild and reload the handlers when their code changes (the dev stack, offline only); off for tests and benches. */
  watch?: boolean;
  /**
   * Start the platform's image registry (scripts/registry.ts) on host:port (defaults: listenHost, FZ_LISTEN_HOST or
   * 127.0.0.1, and FZ_REGISTRY_PORT or 5000), data under `<dataDir>/registry`. Without it, hosts run only images
   * their engine already has. `stack.registry` is its address; push images with scripts/build-images.sh --push.
   */
  registry?: { host?: string; port?: number };
  /** `server` (server/, the default) or `offline` (serverless-offline); default FZ_RUNTIME, else `server`. */
  runtime?: Runtime;
  /** Aborting it while the stack starts stops what was started and rejects (Ctrl-C during `npm start`). */
  signal?: AbortSignal;
}

export type Runtime = 'server' | 'offline';

export interface Stack {
  /** The API process (server mode or serverless-offline), e.g. to freeze it for an outage drill. */
  apiPid: number;
  url: string;
  wsUrl: string;
  adminToken: string;
  /** The platform registry's `host:port`, or null when the stack runs none. */
  registry: string | null;
  env: Record<string, string>;
  /** GraphQL over HTTP with the operator token; throws on transport errors, returns data and errors. */
  graphql<T = Record<string, any>>(query: string, variables?: Record<string, unknown>, token?: string | null): Promise<{ data?: T; errors?: { message: string; extensions?: { code?: string } }[] }>;
  startRunner(name: string, args?: string[], env?: Record<string, string>): Promise<ChildProcess>;
  stop(): Promise<void>;
}

/** The operator token lives in the data dir (mode 0600); handlers get only its hash. */
function operatorToken(dataDir: string): string {
  const file = join(dataDir, 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const token = newSecret('fza');
  writeFileSync(file, token + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  return token;
}

/** The key that seals secret env values: a file beside the store, never inside it (mode 0600). */
function secretKeyFile(dataDir: string): string {
  const file = join(dataDir, 'secret-key');
  if (!existsSync(file)) writeFileSync(file, newSecretKey() + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

function outputStream(output: StackOptions['output']): 'inherit' | 'ignore' | number {
  if (output === 'inherit' || output === 'ignore' || output === undefined) return output ?? 'inherit';
  return require('node:fs').openSync(output, 'a');
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, child?: ChildProcess, signal?: AbortSignal) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    if (child && child.exitCode !== null) throw new Error(`${what}: the process exited with code ${child.exitCode}`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not become ready within ${timeoutMs / 1000}s`);
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const runtime = options.runtime ?? (process.env.FZ_RUNTIME as Runtime | undefined) ?? 'server';
  if (runtime !== 'server' && runtime !== 'offline') throw new Error(`FZ_RUNTIME must be server or offline, got "${runtime}"`);
  const dataDir = resolve(options.dataDir);
  mkdirSync(join(dataDir, 'data'), { recursive: true });
  const httpPort = options.httpPort ?? 3000;
  const stop: (() => Promise<void>)[] = [];

  try {
    return await start(options, runtime, dataDir, httpPort, stop);
  } catch (err) {
    // Every failure (and an abort) stops what was started: no store or API is left behind on its port.
    for (const s of stop.splice(0)) await s().catch(() => undefined);
    throw err;
  }
}

async function start(options: StackOptions, runtime: Runtime, dataDir: string, httpPort: number, stop: (() => Promise<void>)[]): Promise<Stack> {
  const { signal } = options;
  const out = outputStream(options.output);
  let endpoint = options.dynamodbEndpoint;
  let storeProcess: ChildProcess | undefined;
  if (!endpoint) {
    // Its own process, so the store outlives nothing it should not and stops with the stack.
    const storePort = options.storePort ?? 4567;
    const store = spawn(process.execPath, [bin('dynalite'), '--host', '127.0.0.1', '--port', String(storePort), '--path', join(dataDir, 'data'),
      '--createTableMs', '0', '--deleteTableMs', '0', '--updateTableMs', '0'], { stdio: ['ignore', out, out], detached: true });
    stop.push(() => killGroup(store));
    endpoint = `http://127.0.0.1:${storePort}`;
    storeProcess = store;
  }
  const tablePrefix = options.tablePrefix ?? 'fangzhou-';
  const client = createClient(endpoint, 'local');
  try {
    await waitFor(`the store at ${endpoint}`, async () => (await client.send(new ListTablesCommand({}))) !== undefined, 30_000, storeProcess, signal);
    await ensureTables(client, tablePrefix);
  } finally {
    client.destroy();
  }

  // The image registry: its own process; the handlers learn its address (FZ_REGISTRY) to pin image digests.
  let registry: string | null = null;
  if (options.registry) {
    const started = await startRegistry({
      dir: join(dataDir, 'registry'),
      // Where the API listens, so hosts that reach the API reach the registry too ("localhost" as an address engines trust).
      host: options.registry.host ?? ((options.listenHost ?? process.env.FZ_LISTEN_HOST) || 'localhost').replace(/^localhost$/, '127.0.0.1'),
      port: options.registry.port ?? Number(process.env.FZ_REGISTRY_PORT || 5000),
      output: out,
    });
    stop.push(() => started.stop());
    registry = started.address;
  }

  const adminToken = operatorToken(dataDir);
  const listenHost = options.listenHost ?? (process.env.FZ_LISTEN_HOST || 'localhost');
  const url = `http://${listenHost}:${httpPort}/graphql`;
  const env: Record<string, string> = {
    ...process.env as Record<string, string>,
    // The process that starts the stack shows the SDK's notice about Node 22 once; its children need not repeat it.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    DYNAMODB_ENDPOINT: endpoint,
    FZ_TABLE_PREFIX: tablePrefix,
    FZ_ADMIN_TOKEN_HASH: hashSecret(adminToken),
    FZ_SECRET_KEY_FILE: secretKeyFile(dataDir),
    FZ_HTTP_PORT: String(httpPort),
    FZ_WS_PORT: String(options.wsPort ?? 3001),
    FZ_LAMBDA_PORT: String(options.lambdaPort ?? 3002),
    ...(options.subgraphTransport ? { FZ_SUBGRAPH_TRANSPORT: options.subgraphTransport } : {}),
    FZ_LISTEN_HOST: listenHost,
    // The handlers learn how often the stack ticks them (the watchdog counts silence only while it ticked).
    FZ_TICK_SECONDS: process.env.FZ_TICK_SECONDS ?? '1',
    FZ_SUBGRAPH_URL_BASE: `http://${listenHost}:${httpPort}/subgraphs`,
    FZ_BUILD_DIR: `.esbuild/${httpPort}`,
    // As serverless.yml sets it for the functions (tests run with NODE_ENV=test, which would make it warn).
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
    ...(options.watch ? {} : { FZ_WATCH_PATTERN: '.esbuild/no-watch' }),
    ...(registry ? { FZ_REGISTRY: registry } : {}),
    ...options.env,
  };
  const api = runtime === 'server'
    ? spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'server/main.ts')], { cwd: ROOT, env, stdio: ['ignore', out, out], detached: true })
    : spawn(process.execPath, [bin('serverless'), 'offline', 'start'], { cwd: ROOT, env, stdio: ['ignore', out, out], detached: true });
  stop.unshift(() => killGroup(api));
  // Its build folder goes with it (runs after every process is stopped): nothing of a stopped stack stays in the tree.
  stop.push(async () => rmSync(join(ROOT, env.FZ_BUILD_DIR), { recursive: true, force: true }));

  const graphql: Stack['graphql'] = async (query, variables, token = adminToken) => {
    const res = await retryConnection(() => fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    }));
    return res.json() as never;
  };

  const stack: Stack = {
    apiPid: api.pid!,
    url,
    wsUrl: `ws://${listenHost}:${options.wsPort ?? 3001}`,
    adminToken,
    registry,
    env,
    graphql,
    async startRunner(name, args = [], runnerEnv = {}) {
      const stateDir = join(dataDir, 'runners');
      let joinToken = '';
      if (!existsSync(join(stateDir, `${name}.json`))) {
        const res = await graphql<{ createJoinToken: { token: string } }>('mutation { createJoinToken { token } }');
        if (!res.data) throw new Error(`could not create a join token for runner ${name}: ${res.errors?.[0].message}`);
        joinToken = res.data.createJoinToken.token;
      }
      // Runners of this stack share this machine's network stack: loopback says so (no routes between them, and no
      // address claimed twice), unless the caller gives an address.
      const address = args.includes('--address') ? [] : ['--address', '127.0.0.1'];
      // One process (tsx as a loader, not its CLI wrapper), so a signal to it reaches the runner itself.
      const runner = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'runner/main.ts'), '--name', name, '--state-dir', stateDir, ...address, ...args], {
        cwd: ROOT, env: { ...process.env, FZ_API_URL: url, FZ_JOIN_TOKEN: joinToken, ...runnerEnv }, stdio: ['ignore', out, out], detached: true,
      });
      stop.unshift(() => killGroup(runner));
      return runner;
    },
    async stop() {
      for (const s of stop.splice(0)) await s().catch(() => undefined);
    },
  };
  // serverless-offline runs no schedules: invoke the tick functions ourselves, one call at a time (server mode runs its own).
  const tickSeconds = Number(env.FZ_TICK_SECONDS);
  let ticking = runtime === 'offline';
  const tick = async () => {
    while (ticking) {
      for (const fn of TICKS) {
        await fetch(`http://${listenHost}:${env.FZ_LAMBDA_PORT}/2015-03-31/functions/fangzhou-dev-${fn}/invocations`, { method: 'POST', body: '{}' })
          .then((r) => r.arrayBuffer()).catch(() => undefined);
      }
      await new Promise((r) => setTimeout(r, tickSeconds * 1000).unref());
    }
  };
  stop.unshift(async () => { ticking = false; });
  await waitFor(runtime === 'server' ? 'server mode' : 'serverless offline', async () => (await graphql('{ __typename }')).data !== undefined, 300_000, api, signal);
  void tick();
  return stack;
}

/** Connection-level failures that mean the request never reached a handler of ours (a child still binding, or a
 * keep-alive socket it closed); anything else, and any HTTP answer, is returned or thrown at once. */
const TRANSIENT = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

async function retryConnection<T>(call: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const code = ((err as { cause?: { code?: string } }).cause ?? (err as { code?: string })).code;
      if (attempt >= attempts || !code || !TRANSIENT.has(code)) throw err;
      await new Promise((r) => setTimeout(r, 200 * 2 ** (attempt - 1)));
    }
  }
}

/** SIGTERM to the child's process group, SIGKILL if it is still there after 5 s; never waits longer than that. */
async function killGroup(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise((r) => child.once('exit', r));
  const signal = (sig: NodeJS.Signals) => { try { process.kill(-child.pid!, sig); } catch { /* already gone */ } };
  signal('SIGTERM');
  const timers = [setTimeout(() => signal('SIGKILL'), 5000)];
  await Promise.race([exited, new Promise((r) => timers.push(setTimeout(r, 6000)))]);
  timers.forEach(clearTimeout);
  // What the leader started and left in its group (serverless-offline's esbuild service, started as it shut down).
  signal('SIGKILL');
}

/**
 * Runs scripts/ensure-docker.sh (on a fresh machine: packages, dockerd, image builds, about a minute; with a registry
 * address, the images it builds are pushed there too); resolves with why no engine is available, or null when one is.
 * Not spawnSync: a blocked event loop leaves the stack's keep-alive sockets to the API half-closed, so the next
 * request fails. Aborting stops it.
 */
export function ensureDocker(registry: string | null = null, signal?: AbortSignal): Promise<string | null> {
  const env = { ...process.env, ...(registry ? { FZ_REGISTRY: registry } : {}) };
  const script = spawn('bash', [join(ROOT, 'scripts/ensure-docker.sh')], { stdio: ['ignore', 'inherit', 'inherit'], env, signal, killSignal: 'SIGTERM' });
  return new Promise((resolve) => {
    script.once('error', (err) => resolve(signal?.aborted ? 'stopped' : `scripts/ensure-docker.sh could not run: ${err.message}`));
    script.once('exit', (code, sig) => resolve(code === 0 ? null : `scripts/ensure-docker.sh ${sig ? `was stopped by ${sig}` : `exited with ${code}`}`));
  });
}
