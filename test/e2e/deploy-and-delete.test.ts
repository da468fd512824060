import Docker from 'dockerode';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { clearReleaseNames } from '../support/docker';
import { waitFor, waitUntil } from '../support/wait';

/**
 * The walking skeleton end to end: dynalite + serverless-offline (gateway and three subgraph handlers over HTTP) +
 * a host runner on the real Docker engine. Everything is asserted through the gateway and through Docker itself.
 */
const docker = new Docker();
let stack: Stack;
let dir: string;
let runner: ChildProcess;
const hostName = `e2e-${process.pid}`;

const containersOf = (releaseId: string) =>
  docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${releaseId}`] } });

const RELEASE = `query Release($id: ID!) {
  release(id: $id) {
    id name status statusMessage version
    product { name }
    health { desired running healthy }
    instances { id ordinal domainName image host { name } status { state health containerId } ports { containerPort hostPort } }
  }
}`;

beforeAll(async () => {
  await clearReleaseNames(docker, 'e2e-web', 'e2e-restart', 'e2e-idem', 'e2e-secret');
  dir = mkdtempSync(join(tmpdir(), 'fz-e2e-'));
  // Debug level: the secret test below checks the most talkative logs.
  process.env.LOG_LEVEL = 'debug';
  stack = await startStack({ dataDir: dir, httpPort: 3300, wsPort: 3301, lambdaPort: 3302, storePort: 4800, output: join(dir, 'stack.log') });
  const defined = await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT });
  expect(defined.errors).toBeUndefined();
  runner = await stack.startRunner(hostName, ['--labels', 'zone=a']);
  await waitFor('the runner to register its host', async () => {
    const res = await stack.graphql<{ hosts: { name: string; status: string; engine: { version: string } | null }[] }>('{ hosts { name status engine { version } } }');
    return res.data?.hosts.find((h) => h.name === hostName && h.status === 'READY' && h.engine);
  });
}, 240_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // A test that failed half-way leaves its release's containers; they go with the run, not with the next one.
  await clearReleaseNames(docker, 'e2e-web', 'e2e-restart', 'e2e-idem', 'e2e-secret');
});

test('deploys 3 replicas that run as labelled containers, reports them RUNNING across all subgraphs, and removes them on delete', async () => {
  const deployed = await stack.graphql<{ deploy: { id: string; status: string } }>(
    'mutation { deploy(input: {name: "e2e-web", product: "demo", version: "1.0.0", replicas: 3}) { id status } }');
  expect(deployed.errors).toBeUndefined();
  const id = deployed.data!.deploy.id;

  const running = await waitFor('the release to be RUNNING', async () => {
    const res = await stack.graphql<{ release: any }>(RELEASE, { id });
    return res.data?.release.status === 'RUNNING' && res.data.release;
  });
  expect(running.health).toEqual({ desired: 3, running: 3, healthy: 3 });
  expect(running.instances.map((i: any) => i.domainName)).toEqual([0, 1, 2].map((n) => `e2e-web-${n}.e2e-web.fz.internal`));
  for (const instance of running.instances) {
    expect(instance).toMatchObject({ image: 'fangzhou/demo:1', host: { name: hostName }, status: { state: 'RUNNING', health: 'HEALTHY' } });
  }

  // Docker agrees: exactly three running containers carrying the release's labels.
  const containers = await containersOf(id);
  expect(containers).toHaveLength(3);
  expect(containers.every((c) => c.State === 'running')).toBe(true);
  expect(new Set(containers.map((c) => c.Labels['fangzhou.instance']))).toEqual(new Set(running.instances.map((i: any) => i.id)));
  expect(new Set(containers.map((c) => c.Id))).toEqual(new Set(running.instances.map((i: any) => i.status.containerId)));

  // The containers really serve: the published port answers with the demo page of version 1.
  const hostPort = running.instances[0].ports[0].hostPort;
  const page = await (await fetch(`http://127.0.0.1:${hostPort}/`)).text();
  expect(page).toContain('fangzhou demo version 1');

  // host -> containers (Butler) from the host side.
  const hosts = await stack.graphql<{ hosts: { name: string; containers: { name: string; state: string }[] }[] }>('{ hosts { name containers { name state } } }');
  const names = hosts.data!.hosts.find((h) => h.name === hostName)!.containers.map((c) => c.name).sort();
  expect(names).toEqual(['fz-e2e-web-0', 'fz-e2e-web-1', 'fz-e2e-web-2']);

  const deleted = await stack.graphql<{ deleteRelease: { status: string } }>('mutation($id: ID!) { deleteRelease(id: $id) { status } }', { id });
  expect(deleted.data?.deleteRelease.status).toBe('DELETING');
  await waitUntil('the containers to be removed', async () => (await containersOf(id)).length === 0);
  await waitUntil('the release to disappear', async () => (await stack.graphql(RELEASE, { id })).data?.release === null);
});

test('a runner killed mid-deploy and restarted converges without duplicate or orphaned containers', async () => {
  runner.kill('SIGKILL');
  await new Promise((r) => runner.once('exit', r));
  const deployed = await stack.graphql<{ deploy: { id: string } }>(
    'mutation { deploy(input: {name: "e2e-restart", product: "demo", version: "2.0.0", replicas: 2}) { id } }');
  const id = deployed.data!.deploy.id;
  runner = await stack.startRunner(hostName, ['--labels', 'zone=a']);
  // Kill it again as soon as it has created anything, then restart once more.
  await waitUntil('a first container', async () => (await containersOf(id)).length > 0, 60_000, 50);
  runner.kill('SIGKILL');
  await new Promise((r) => runner.once('exit', r));
  runner = await stack.startRunner(hostName, ['--labels', 'zone=a']);

  await waitUntil('the release to be RUNNING', async () => (await stack.graphql<{ release: any }>(RELEASE, { id })).data?.release.status === 'RUNNING');
  const containers = await containersOf(id);
  expect(containers.map((c) => c.Labels['fangzhou.instance']).sort()).toEqual([`${id}-0`, `${id}-1`]);

  await stack.graphql('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
  await waitUntil('the containers to be removed', async () => (await containersOf(id)).length === 0);
});

test('retrying a deploy with the same idempotency key returns the first release and places nothing twice', async () => {
  const input = { name: 'e2e-idem', product: 'demo', version: '1.0.0', replicas: 1, idempotencyKey: `key-${process.pid}-idem` };
  const deploy = 'mutation($input: DeployInput!) { deploy(input: $input) { id } }';
  const first = await stack.graphql<{ deploy: { id: string } }>(deploy, { input });
  const second = await stack.graphql<{ deploy: { id: string } }>(deploy, { input });
  expect(first.errors).toBeUndefined();
  expect(second.data?.deploy.id).toBe(first.data?.deploy.id);
  const id = first.data!.deploy.id;
  const release = await stack.graphql<{ release: any }>(RELEASE, { id });
  expect(release.data?.release.instances).toHaveLength(1);
  await stack.graphql('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
  await waitUntil('the release to disappear', async () => (await stack.graphql(RELEASE, { id })).data?.release === null);
});

test('a secret reaches its container and nothing else: not the logs of the API, store or runner at debug level, not the files on disk', async () => {
  const secret = `s3cr3t-${process.pid}-${Date.now()}`;
  const deployed = await stack.graphql<{ deploy: { id: string } }>(
    'mutation($s: String!) { deploy(input: {name: "e2e-secret", product: "demo", version: "1.0.0", replicas: 1, secretEnv: [{name: "DB_PASSWORD", value: $s}]}) { id } }', { s: secret });
  expect(deployed.errors).toBeUndefined();
  const id = deployed.data!.deploy.id;
  const [running] = await waitFor('the container with its secret', async () => {
    const list = await containersOf(id);
    return list.length === 1 && list[0].State === 'running' ? list : undefined;
  });
  const env = (await docker.getContainer(running.Id).inspect()).Config.Env;
  expect(env).toContain(`DB_PASSWORD=${secret}`);
  expect((await stack.graphql(`mutation { deleteRelease(id: "${id}") { id } }`)).errors).toBeUndefined();
  await waitUntil('the secret\'s container removed', async () => (await containersOf(id)).length === 0);
  // Every file of the stack: its log (API, store, runner; this stack logs at debug), the store's files, runner state.
  const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((f) => f.isFile()).map((f) => join(f.parentPath ?? f.path, f.name));
  expect(files.some((f) => f.endsWith('stack.log'))).toBe(true);
  const holding = (text: string) => files.filter((f) => readFileSync(f).includes(text)).map((f) => f.slice(dir.length + 1));
  // The search sees what the stack wrote: the release's id is in its store files and its logs, the secret nowhere.
  expect(holding(id).length).toBeGreaterThan(1);
  expect(holding(secret)).toEqual([]);
});
