import type { ChildProcess } from 'node:child_process';
import { relative, resolve } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from './demo-product';
import { registryMissing } from './registry';
import { ensureDocker, startStack, type Stack } from './stack';

/**
 * `npm start`: the platform on its embedded defaults. Store: dynalite under .fangzhou/data (or DYNAMODB_ENDPOINT).
 * API: server mode (server/), or serverless-offline with FZ_RUNTIME=offline. Hosts: one runner on the local Docker
 * engine. Ctrl-C, or any failure, stops everything it started, at any point of the start.
 */
const HOST_READY_SECONDS = 120;

async function main(signal: AbortSignal, started: (stack: Stack) => void) {
  const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  const dataDir = resolve(process.env.FZ_DATA_DIR ?? '.fangzhou');
  const stack = await startStack({
    dataDir,
    httpPort: port('FZ_HTTP_PORT', 3000),
    wsPort: port('FZ_WS_PORT', 3001),
    lambdaPort: port('FZ_LAMBDA_PORT', 3002),
    storePort: port('FZ_STORE_PORT', 4567),
    dynamodbEndpoint: process.env.DYNAMODB_ENDPOINT || undefined,
    registry: registryMissing() ? undefined : { port: port('FZ_REGISTRY_PORT', 5000) },
    output: 'inherit',
    watch: true,
    signal,
  });
  started(stack);

  const defined = await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT });
  if (defined.errors) process.stderr.write(`could not define the demo product: ${defined.errors[0].message}\n`);

  if (!stack.registry) process.stderr.write(`no image registry: ${registryMissing()}; hosts run only the images their engine has\n`);
  // The engine is prepared (on a fresh machine: packages, dockerd, image builds and pushes to the registry, about a
  // minute) in a child process: the stack's event loop keeps serving meanwhile.
  const noDocker = await ensureDocker(stack.registry, signal);
  signal.throwIfAborted();
  const hostName = process.env.FZ_RUNNER_NAME ?? 'local';
  let hostNote: string;
  if (noDocker) {
    hostNote = `no host: no Docker engine could be had (${noDocker}); deploys stay unplaced`;
    process.stderr.write(`\nWARNING: ${hostNote}. The API works.\n\n`);
  } else {
    const runner = await stack.startRunner(hostName, ['--labels', process.env.FZ_RUNNER_LABELS ?? 'zone=local']);
    hostNote = await hostReady(stack, hostName, runner, signal);
  }

  const base = stack.url.replace(/\/graphql$/, '');
  const tokenFile = relative(process.cwd(), resolve(dataDir, 'admin-token'));
  process.stdout.write(`
Fangzhou is up.
  GraphiQL      ${base}/graphql   (open in a browser; set the Authorization header below)
  GraphQL HTTP  POST ${stack.url}
  Operator token  in ${tokenFile} (send it as "Authorization: Bearer <token>")
  Host          ${hostNote}

First deploy:
  curl -s ${stack.url} -H 'content-type: application/json' -H "authorization: Bearer $(cat ${tokenFile})" \\
    -d '{"query":"mutation { deploy(input: {name: \\"hello\\", product: \\"demo\\", replicas: 3}) { id name status } }"}'
Then watch it:
  { releases { name status instances { domainName host { name } status { state health } ports { hostPort } } } }

Ctrl-C stops the stack (containers keep running; the runner converges them at next start).
`);
}

/** Waits until the local runner has synced and its host is READY; says what is still missing if it takes too long. */
async function hostReady(stack: Stack, name: string, runner: ChildProcess, signal: AbortSignal): Promise<string> {
  const deadline = Date.now() + HOST_READY_SECONDS * 1000;
  let last = 'not registered yet';
  while (Date.now() < deadline) {
    signal.throwIfAborted();
    if (runner.exitCode !== null) return `${name}: its runner exited with code ${runner.exitCode} (see its log above); deploys stay unplaced`;
    const res = await stack.graphql<{ hosts: { name: string; status: string; lastHeartbeatAt: string | null }[] }>('{ hosts { name status lastHeartbeatAt } }');
    const host = res.data?.hosts.find((h) => h.name === name);
    if (host?.status === 'READY' && host.lastHeartbeatAt) return `${name} is READY`;
    if (host) last = `${host.status}${host.lastHeartbeatAt ? '' : ', not synced yet'}`;
    await new Promise((r) => setTimeout(r, 250));
  }
  return `${name} is still joining (${last} after ${HOST_READY_SECONDS}s); deploys are placed once it is READY`;
}

const controller = new AbortController();
let stack: Stack | undefined;
let stopping = false;
const starting = main(controller.signal, (s) => { stack = s; });

async function shutdown(code: number) {
  if (stopping) return;
  stopping = true;
  process.stdout.write('\nstopping…\n');
  controller.abort();
  await starting.catch(() => undefined); // an aborted start stops what it had started before it settles
  await stack?.stop();
  process.exit(code);
}
// Installed before anything has started: Ctrl-C during the start stops what has started so far.
process.on('SIGINT', () => void shutdown(130));
process.on('SIGTERM', () => void shutdown(143));

starting.catch(async (err) => {
  if (stopping) return;
  process.stderr.write(`npm start failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await shutdown(1);
});
