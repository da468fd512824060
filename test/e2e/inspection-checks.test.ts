import Docker from 'dockerode';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { deployOne, removeRelease } from '../support/deploy';
import { clearReleaseNames } from '../support/docker';
import { waitUntil } from '../support/wait';

/**
 * The daily inspection's checks that need a real fleet to go wrong, made to go wrong for real: a config file edited
 * inside a running container with `docker exec` (the runner reads the files back and reports the drift), a
 * container whose healthcheck fails and passes by turns (its `/healthz` taken away, Butler replacing it), and a runner process stopped
 * (SIGSTOP) long enough to leave a gap between its heartbeats. Each shows up in `runInspection` and its report with
 * a severity, the path or figures an operator needs, and never the content of a config file.
 */
const docker = new Docker();
const RELEASE = 'insp';
const CONFIG_PATH = '/etc/fz/app.conf';
let stack: Stack;
let dir: string;
let runner: ChildProcess;
let releaseId: string;
let instanceId: string;

const PRODUCT = {
  ...DEMO_PRODUCT,
  name: 'demo-conf',
  configTemplates: [{ path: CONFIG_PATH, template: 'name={{release.name}}\npassword=seed-{{instance.ordinal}}\n' }],
};

type Finding = { severity: string; check: string; subject: string; message: string };
const INSPECT = 'mutation { runInspection { id findings { severity check subject message } report(format: MARKDOWN) } }';
const inspect = async () => {
  const res = await stack.graphql<{ runInspection: { id: string; findings: Finding[]; report: string } }>(INSPECT);
  expect(res.errors).toBeUndefined();
  return res.data!.runInspection;
};

beforeAll(async () => {
  await clearReleaseNames(docker, RELEASE);
  dir = mkdtempSync(join(tmpdir(), 'fz-insp-'));
  stack = await startStack({ dataDir: dir, httpPort: 3480, wsPort: 3481, lambdaPort: 3482, storePort: 4980, output: join(dir, 'stack.log') });
  expect((await stack.graphql(DEFINE_PRODUCT, { input: PRODUCT })).errors).toBeUndefined();
  // The runner reads config files back every second here (every minute by default).
  ({ runner, releaseId, instanceId } = await deployOne(stack, {
    host: `insp-${process.pid}`, labels: 'zone=insp', runnerEnv: { FZ_CONFIG_CHECK_SECONDS: '1' }, release: RELEASE, product: 'demo-conf', version: '1.0.0',
  }));
}, 240_000);

afterAll(async () => {
  if (runner?.pid) process.kill(runner.pid, 'SIGCONT');
  if (releaseId) await removeRelease(stack, releaseId);
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs a shell command in the instance's current container. */
async function exec(command: string) {
  const [container] = await docker.listContainers({ filters: { label: [`fangzhou.instance=${instanceId}`] } });
  const run = await docker.getContainer(container.Id).exec({ Cmd: ['sh', '-c', command], AttachStdout: true, AttachStderr: true });
  const stream = await run.start({});
  await new Promise((resolve) => { stream.on('end', resolve); stream.on('close', resolve); stream.resume(); });
}

const status = async () => (await stack.graphql<{ instance: { status: { health: string; configDrift: string[] | null } | null } }>(
  'query($id: ID!) { instance(id: $id) { status { health configDrift } } }', { id: instanceId })).data!.instance.status;

test('a config file edited inside the container is reported as drift, with its path and never its content', async () => {
  const clean = await inspect();
  expect(clean.findings.filter((f) => f.check === 'instance.config-drift')).toEqual([]);

  await exec(`echo password=changed-by-hand > ${CONFIG_PATH}`);
  await waitUntil('the runner to report the drift', async () => (await status())?.configDrift?.includes(CONFIG_PATH) ?? false, 30_000, 250);
  const found = await inspect();
  const drift = found.findings.find((f) => f.check === 'instance.config-drift');
  expect(drift).toMatchObject({ severity: 'WARNING', subject: `instance/${RELEASE}-0.${RELEASE}.fz.internal` });
  expect(drift!.message).toContain(CONFIG_PATH);
  expect(drift!.message).toContain('restartInstance');
  expect(found.report).toContain(CONFIG_PATH);
  for (const text of [drift!.message, found.report]) {
    expect(text).not.toContain('changed-by-hand');
    expect(text).not.toContain('seed-0');
  }

  // The rendered file put back by hand: the drift is gone from the next inspection.
  await exec(`printf 'name=${RELEASE}\\npassword=seed-0\\n' > ${CONFIG_PATH}`);
  await waitUntil('the drift to clear', async () => !(await status())?.configDrift, 30_000, 250);
  expect((await inspect()).findings.filter((f) => f.check === 'instance.config-drift')).toEqual([]);
}, 90_000);

test('a container whose healthcheck fails and passes by turns is reported as flapping', async () => {
  const unhealthyEvents = async () => (await stack.graphql<{ events: { nodes: { message: string }[] } }>(
    'query($id: ID!) { events(filter: {instanceId: $id, kind: "CONTAINER_STATUS"}, first: 200) { nodes { message } } }', { id: instanceId }))
    .data!.events.nodes.filter((e) => /: RUNNING\/UNHEALTHY \(was RUNNING\/(HEALTHY|STARTING)\)/.test(e.message)).length;
  const containers = () => docker.listContainers({ all: true, filters: { label: [`fangzhou.instance=${instanceId}`] } });
  for (let flap = 1; flap <= 3; flap++) {
    await exec('mv /www/healthz /www/healthz.off');
    // Seen in the events: Butler replaces an unhealthy container at once, so the status may never show it.
    await waitUntil(`unhealthy (${flap})`, async () => (await unhealthyEvents()) >= flap, 60_000, 250);
    // Butler replaces the unhealthy container with a fresh one (3 times in 10 minutes at most), which passes again.
    await waitUntil(`a fresh healthy container (${flap})`, async () => (await status())?.health === 'HEALTHY' && (await containers()).length === 1, 60_000, 250);
  }
  const { findings, report } = await inspect();
  const flaps = findings.find((f) => f.check === 'instance.health-flaps');
  expect(flaps).toMatchObject({ severity: 'WARNING', subject: `instance/${RELEASE}-0.${RELEASE}.fz.internal` });
  expect(flaps!.message).toMatch(/turned unhealthy [3-9] times in 24 h/);
  expect(report).toContain('instance.health-flaps');
}, 240_000);

test('a runner that stalls leaves a gap between heartbeats, reported as jitter before the host is lost', async () => {
  const hostName = `insp-${process.pid}`;
  expect((await inspect()).findings.filter((f) => f.check === 'host.heartbeat-jitter')).toEqual([]);
  // 3.5 s without a beat: more than half of the 5 s that declare a host DOWN, not all of it.
  process.kill(runner.pid!, 'SIGSTOP');
  await new Promise((resolve) => setTimeout(resolve, 3500));
  process.kill(runner.pid!, 'SIGCONT');
  const since = Date.now();
  await waitUntil('two beats after the stall', async () => {
    const host = (await stack.graphql<{ hosts: { lastHeartbeatAt: string; status: string }[] }>('{ hosts { lastHeartbeatAt status } }')).data!.hosts[0];
    return Date.parse(host.lastHeartbeatAt) > since + 1000;
  }, 30_000, 250);
  const { findings, report } = await inspect();
  const jitter = findings.find((f) => f.check === 'host.heartbeat-jitter');
  expect(jitter).toMatchObject({ severity: 'WARNING', subject: `host/${hostName}` });
  expect(jitter!.message).toMatch(/a gap of [3-9]\.\d s between two heartbeats/);
  expect(report).toContain('host.heartbeat-jitter');
  const hosts = (await stack.graphql<{ hosts: { status: string }[] }>('{ hosts { status } }')).data!.hosts;
  expect(hosts[0].status).toBe('READY');
}, 90_000);
