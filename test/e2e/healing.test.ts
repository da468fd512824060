import Docker from 'dockerode';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { clearReleaseNames } from '../support/docker';
import { waitFor, waitUntil } from '../support/wait';

/**
 * Butler heals what Docker does not: a container that stays unhealthy is replaced, a crash loop stops being replaced
 * and raises a CRITICAL alarm, a container killed from outside is reported and back, and restartInstance replaces a
 * container on demand. Real stack, real runner, real engine.
 */
const docker = new Docker();
let stack: Stack;
let dir: string;
const hostName = `heal-${process.pid}`;

const containersOf = (releaseId: string) => docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${releaseId}`] } });
const events = async (releaseId: string) => (await stack.graphql<{ events: { nodes: { kind: string; message: string }[] } }>(
  'query($r: ID!) { events(filter: {releaseId: $r}, first: 200) { nodes { kind message } } }', { r: releaseId })).data!.events.nodes;
const alarms = async (releaseId: string) => (await stack.graphql<{ alarms: { nodes: { id: string; kind: string; state: string; severity: string; instance: { id: string } | null }[] } }>(
  'query($r: ID!) { alarms(filter: {releaseId: $r}) { nodes { id kind state severity instance { id } } } }', { r: releaseId })).data!.alarms.nodes;
const deploy = async (name: string, version: string) => {
  const res = await stack.graphql<{ deploy: { id: string } }>('mutation($n: String!, $v: String!) { deploy(input: {name: $n, product: "demo", version: $v, replicas: 1}) { id } }', { n: name, v: version });
  expect(res.errors).toBeUndefined();
  return res.data!.deploy.id;
};

beforeAll(async () => {
  await clearReleaseNames(docker, 'heal-sick', 'heal-kill', 'heal-manual');
  dir = mkdtempSync(join(tmpdir(), 'fz-heal-'));
  stack = await startStack({
    dataDir: dir, httpPort: 3350, wsPort: 3351, lambdaPort: 3352, storePort: 4850, output: join(dir, 'stack.log'),
    // Healing is about containers, not hosts: a heartbeat slowed past the 5 s default by a loaded CI machine must not
    // mark the only host DOWN (deploys then answer UNSCHEDULABLE, "1 not READY").
    env: { FZ_HOST_DOWN_SECONDS: '120' },
  });
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  await stack.startRunner(hostName, ['--labels', 'zone=heal']);
  await waitUntil('the runner to register and its host to be READY', async () =>
    (await stack.graphql<{ hosts: { name: string; status: string }[] }>('{ hosts { name status } }')).data?.hosts.some((h) => h.name === hostName && h.status === 'READY'));
}, 240_000);

afterAll(async () => {
  await stack?.stop(); // the runner first, or it would bring the containers back
  if (dir) rmSync(dir, { recursive: true, force: true });
  await clearReleaseNames(docker, 'heal-sick', 'heal-kill', 'heal-manual');
});

test('an instance that stays unhealthy is replaced a few times, then left with a CONTAINER_CRASH_LOOP alarm', async () => {
  const id = await deploy('heal-sick', '3.0.0-unhealthy');
  const loop = await waitFor('a crash-loop alarm', async () => (await alarms(id)).find((a) => a.kind === 'CONTAINER_CRASH_LOOP'), 180_000, 1000);
  expect(loop).toMatchObject({ state: 'FIRING', severity: 'CRITICAL', instance: { id: `${id}-0` } });
  const restarts = (await events(id)).filter((e) => e.kind === 'RESTARTED');
  expect(restarts).toHaveLength(3);
  expect((await alarms(id)).filter((a) => a.kind === 'CONTAINER_UNHEALTHY' && a.state === 'FIRING')).toHaveLength(1);
  // Never more than one container for the instance, and no more replacing once the loop is declared.
  expect(await containersOf(id)).toHaveLength(1);
  const containerId = (await containersOf(id))[0].Id;
  // Docker goes on failing its healthcheck (three more failures counted), and the same container stays: not replaced.
  const failures = async () => (await docker.getContainer(containerId).inspect()).State.Health?.FailingStreak ?? 0;
  const from = await failures();
  await waitUntil('three more failed healthchecks', async () => (await failures()) >= from + 3, 30_000, 500);
  expect((await containersOf(id)).map((c) => c.Id)).toEqual([containerId]);
  expect((await events(id)).filter((e) => e.kind === 'RESTARTED')).toHaveLength(3);
}, 240_000); // four unhealthy containers in a row, each given its healthcheck's retries; the wait above says where it stood

test('a container killed from outside is reported as no longer serving, started again, and the instance serves again', async () => {
  const id = await deploy('heal-kill', '1.0.0');
  const status = async () => (await stack.graphql<{ release: { status: string } }>('query($id: ID!) { release(id: $id) { status } }', { id })).data!.release.status;
  await waitUntil('RUNNING', async () => (await status()) === 'RUNNING', 120_000);
  const [container] = await containersOf(id);
  const leftServing = async () => (await events(id)).filter((e) => e.kind === 'CONTAINER_STATUS' && e.message.endsWith('(was RUNNING/HEALTHY)')).length;
  const before = await leftServing();
  await docker.getContainer(container.Id).kill();
  // The engine does not restart a killed container (it counts as stopped by hand); the runner starts it again, often
  // before it next looks, so what is reported is the instance leaving RUNNING/HEALTHY (EXITED, or STARTING again).
  await waitUntil('the change to be reported', async () => (await leftServing()) > before);
  await waitUntil('RUNNING again', async () => (await status()) === 'RUNNING', 60_000);
  const after = await containersOf(id);
  expect(after).toHaveLength(1);
  expect(after[0].State).toBe('running');
}, 240_000);

test('restartInstance replaces the container on demand', async () => {
  const id = await deploy('heal-manual', '1.0.0');
  const release = async () => (await stack.graphql<{ release: { status: string; instances: { status: { containerId: string } | null }[] } }>(
    'query($id: ID!) { release(id: $id) { status instances { status { containerId } } } }', { id })).data!.release;
  await waitUntil('RUNNING', async () => (await release()).status === 'RUNNING', 120_000);
  const before = (await release()).instances[0].status!.containerId;
  const res = await stack.graphql('mutation($i: ID!) { restartInstance(id: $i) { id } }', { i: `${id}-0` });
  expect(res.errors).toBeUndefined();
  await waitUntil('a new container RUNNING', async () => {
    const r = await release();
    return r.status === 'RUNNING' && r.instances[0].status!.containerId !== before;
  }, 60_000);
  expect((await containersOf(id)).map((c) => c.Id)).not.toContain(before);
  expect((await events(id)).some((e) => e.kind === 'RESTARTED' && e.message.includes('restartInstance'))).toBe(true);
}, 240_000);
