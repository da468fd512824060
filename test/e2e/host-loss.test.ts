import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { startEngine, type Engine } from '../support/engine';
import { waitUntil } from '../support/wait';

/**
 * Host loss with two real Docker engines, each with its own runner: kill one host's runner and engine, and the
 * platform marks it DOWN, raises HOST_DOWN and runs its instances on the other host; when the host comes back, its
 * runner removes the stale copies, so each instance runs exactly once.
 */
let stack: Stack;
let dir: string;
let engineA: Engine;
let engineB: Engine;
let runnerA: ChildProcess;

const hosts = async () => (await stack.graphql<{ hosts: { id: string; name: string; status: string }[] }>('{ hosts { id name status } }')).data!.hosts;
const running = async (engine: Engine, releaseId: string) =>
  (await engine.docker.listContainers({ filters: { label: [`fangzhou.release=${releaseId}`] } })).map((c) => c.Labels['fangzhou.instance']).sort();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fz-loss-'));
  [engineA, engineB] = await Promise.all([
    startEngine('a', '10.201.0.0/16', ['fangzhou/demo:1']),
    startEngine('b', '10.202.0.0/16', ['fangzhou/demo:1']),
  ]);
  stack = await startStack({ dataDir: dir, httpPort: 3340, wsPort: 3341, lambdaPort: 3342, storePort: 4840, output: join(dir, 'stack.log') });
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  runnerA = await stack.startRunner('loss-a', ['--labels', 'zone=x', '--docker-socket', engineA.socket, '--cpu-millis', '4000', '--memory-mb', '4096']);
  await stack.startRunner('loss-b', ['--labels', 'zone=x', '--docker-socket', engineB.socket, '--cpu-millis', '4000', '--memory-mb', '4096']);
  await waitUntil('both hosts READY', async () => (await hosts()).filter((h) => h.status === 'READY').length === 2);
}, 240_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  await Promise.all([engineA?.stop(), engineB?.stop()]);
});

test('a lost host is marked DOWN and its instances run on the other host, and come back without duplicates', async () => {
  const [a, b] = await hosts();
  // Everything on host a first: b is cordoned during the deploy.
  await stack.graphql('mutation($id: ID!) { cordonHost(id: $id) { id } }', { id: b.id });
  const deployed = await stack.graphql<{ deploy: { id: string } }>('mutation { deploy(input: {name: "loss", product: "demo", version: "1.0.0", replicas: 2}) { id } }');
  const id = deployed.data!.deploy.id;
  await stack.graphql('mutation($id: ID!) { uncordonHost(id: $id) { id } }', { id: b.id });
  await waitUntil('2 instances running on engine a', async () => (await running(engineA, id)).length === 2);
  const status = async () => (await stack.graphql<{ release: { status: string; instances: { id: string; host: { name: string } }[] } }>(
    'query($id: ID!) { release(id: $id) { status instances { id host { name } } } }', { id })).data!.release;
  await waitUntil('the release RUNNING', async () => (await status()).status === 'RUNNING');

  const lostAt = Date.now();
  runnerA.kill('SIGKILL');
  await engineA.kill();

  await waitUntil('host a DOWN', async () => (await hosts()).find((h) => h.id === a.id)?.status === 'DOWN', 30_000);
  const detected = Date.now() - lostAt;
  await waitUntil('both instances running on engine b', async () => (await running(engineB, id)).length === 2, 60_000);
  await waitUntil('the release RUNNING on host b', async () => {
    const r = await status();
    return r.status === 'RUNNING' && r.instances.every((i) => i.host.name === 'loss-b');
  }, 60_000);
  const recovered = Date.now() - lostAt;
  process.stdout.write(`host loss: DOWN after ${detected} ms, all instances RUNNING elsewhere after ${recovered} ms\n`);

  const alarms = await stack.graphql<{ alarms: { nodes: { kind: string; state: string; host: { name: string } | null }[] } }>(
    '{ alarms { nodes { kind state host { name } } } }');
  expect(alarms.data!.alarms.nodes).toEqual(expect.arrayContaining([{ kind: 'HOST_DOWN', state: 'FIRING', host: { name: 'loss-a' } }]));
  expect(alarms.data!.alarms.nodes.filter((n) => n.kind === 'INSTANCE_MIGRATED')).toHaveLength(2);

  // Host a comes back: Docker restarts its old containers, and its runner removes them (they moved away).
  await engineA.restart();
  runnerA = await stack.startRunner('loss-a', ['--labels', 'zone=x', '--docker-socket', engineA.socket]);
  await waitUntil('host a READY again', async () => (await hosts()).find((h) => h.id === a.id)?.status === 'READY', 30_000);
  await waitUntil('no stale copies on engine a', async () => (await running(engineA, id)).length === 0
    && (await engineA.docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${id}`] } })).length === 0, 60_000);
  expect(await running(engineB, id)).toEqual([`${id}-0`, `${id}-1`]);
  const after = await stack.graphql<{ alarms: { nodes: { kind: string; state: string }[] } }>('{ alarms(filter: {state: FIRING}) { nodes { kind state } } }');
  expect(after.data!.alarms.nodes.filter((n) => n.kind === 'HOST_DOWN')).toEqual([]);
});
