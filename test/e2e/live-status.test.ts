import Docker from 'dockerode';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { createClient as createDbClient, Store } from '../../lib/store';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { clearReleaseNames } from '../support/docker';
import { waitFor, waitUntil } from '../support/wait';

/**
 * Live operations over real WebSocket subscriptions (graphql-ws client against serverless-offline): a container
 * killed on the real engine reaches a containerStatusChanged subscriber and raises an alarm that resolves fields of
 * all three subgraphs; the scripted upgrade example follows releaseProgress and exits 0, or 1 after a rollback; a
 * releaseProgress subscriber gets each step of a rollback.
 */
const docker = new Docker();
let stack: Stack;
let dir: string;
let client: Client;
let releaseId: string;
let db: Store;
let lastId = '';
const hostName = `live-${process.pid}`;

function collect<T>(query: string, variables: Record<string, unknown>) {
  const received: T[] = [];
  const dispose = client.subscribe<T>({ query, variables }, { next: ({ data }) => { received.push(data!); }, error: () => undefined, complete: () => undefined });
  return { received, dispose, id: lastId };
}

/** The $default handler stores each subscribe message; until then nothing is published to it (the protocol has no "subscribed"). */
const stored = (...ids: string[]) => waitUntil(`subscriptions ${ids.join(', ')} to be stored`, async () => {
  const records = await db.scan<{ kind: string; subscriptionId: string }>('subscriptions');
  return ids.every((id) => records.some((r) => r.kind === 'subscription' && r.subscriptionId === id));
}, 20_000, 100);

beforeAll(async () => {
  await clearReleaseNames(docker, 'live');
  dir = mkdtempSync(join(tmpdir(), 'fz-live-'));
  stack = await startStack({ dataDir: dir, httpPort: 3370, wsPort: 3371, lambdaPort: 3372, storePort: 4870, output: join(dir, 'stack.log') });
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  await stack.startRunner(hostName, ['--labels', 'zone=live']);
  await waitUntil('the runner', async () => ((await stack.graphql<{ hosts: unknown[] }>('{ hosts { id } }')).data?.hosts.length ?? 0) > 0);
  releaseId = (await stack.graphql<{ deploy: { id: string } }>('mutation { deploy(input: {name: "live", product: "demo", version: "1.0.0", replicas: 2}) { id } }')).data!.deploy.id;
  await waitUntil('RUNNING', async () => (await stack.graphql<{ release: { status: string } }>('query($id: ID!) { release(id: $id) { status } }', { id: releaseId })).data!.release.status === 'RUNNING', 60_000);
  client = createClient({ url: stack.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${stack.adminToken}` }, retryAttempts: 0, generateID: () => (lastId = randomUUID()) });
  db = new Store(createDbClient(stack.env.DYNAMODB_ENDPOINT, 'local'), stack.env.FZ_TABLE_PREFIX);
}, 240_000);

afterAll(async () => {
  await client?.dispose();
  if (releaseId) {
    await stack?.graphql('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: releaseId });
    await waitUntil('containers removed', async () => (await docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${releaseId}`] } })).length === 0, 60_000).catch(() => undefined);
  }
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('killing a container reaches a containerStatusChanged subscriber and an alarmRaised subscriber, with fields from all subgraphs', async () => {
  type Status = { containerStatusChanged: { state: string; restartCount: number; instance: { id: string; domainName: string }; host: { name: string } } };
  type Raised = { alarmRaised: { kind: string; severity: string; instance: { id: string } | null; host: { name: string } | null; release: { name: string } | null } };
  const statuses = collect<Status>('subscription($r: ID) { containerStatusChanged(releaseId: $r) { state restartCount instance { id domainName } host { name } } }', { r: releaseId });
  const alarms = collect<Raised>('subscription { alarmRaised(minSeverity: WARNING) { kind severity instance { id } host { name } release { name } } }', {});
  await stored(statuses.id, alarms.id);

  const [victim] = await docker.listContainers({ filters: { label: [`fangzhou.release=${releaseId}`] } });
  const instanceId = victim.Labels['fangzhou.instance'];
  await docker.getContainer(victim.Id).kill();

  const seen = await waitFor('a containerStatusChanged for the killed container', async () =>
    statuses.received.find((s) => s.containerStatusChanged.instance.id === instanceId && s.containerStatusChanged.host.name === hostName), 30_000, 100);
  expect(seen.containerStatusChanged.instance.domainName).toMatch(/^live-\d\.live\.fz\.internal$/);
  const alarm = await waitFor('an alarm for the killed container', async () =>
    alarms.received.find((a) => a.alarmRaised.instance?.id === instanceId), 30_000, 100);
  // Docker leaves a killed container stopped and its runner starts it again; its healthcheck may fail first: either alarm is right.
  expect(['CONTAINER_RESTARTED', 'CONTAINER_UNHEALTHY']).toContain(alarm.alarmRaised.kind);
  expect(alarm.alarmRaised).toMatchObject({ severity: 'WARNING', host: { name: hostName }, release: { name: 'live' } });
  statuses.dispose();
  alarms.dispose();
});

function runExample(version: string): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', resolve(__dirname, '../../examples/upgrade.ts'), 'live', version, '1'], {
      env: { ...process.env, FZ_API_URL: stack.url, FZ_WS_URL: stack.wsUrl, FZ_TOKEN: stack.adminToken },
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('exit', (code) => done({ code: code ?? -1, out }));
  });
}

test('the scripted upgrade example draws progress and exits 0 on success, 1 after an automatic rollback', async () => {
  const ok = await runExample('2.0.0');
  expect(ok.out).toContain(`[${'#'.repeat(30)}] 2/2`);
  expect(ok.out).toContain('live is on 2.0.0');
  expect(ok.code).toBe(0);
  const failed = await runExample('3.0.0-unhealthy');
  expect(failed.out).toContain('ROLLBACK_STARTED');
  expect(failed.out).toContain('live was not upgraded to 3.0.0-unhealthy');
  expect(failed.code).toBe(1);
}, 240_000);

test('a releaseProgress subscriber gets every step of a rollback, in order, with the release and its progress', async () => {
  type Step = { releaseProgress: { kind: string; message: string; release: { name: string } | null; progress: { done: number; total: number } | null } };
  const steps = collect<Step>('subscription($r: ID!) { releaseProgress(releaseId: $r) { kind message release { name } progress { done total } } }', { r: releaseId });
  await stored(steps.id);
  const started = await stack.graphql('mutation($id: ID!) { rollbackRelease(id: $id, revision: 1) { id } }', { id: releaseId });
  expect(started.errors).toBeUndefined();
  await waitUntil('UPGRADE_DONE delivered to the subscriber', async () => steps.received.some((s) => s.releaseProgress.kind === 'UPGRADE_DONE'), 100_000, 200);
  steps.dispose();
  const received = steps.received.map((s) => s.releaseProgress);
  console.log(`releaseProgress delivered:\n  ${received.map((s) => `${s.kind} ${s.progress?.done}/${s.progress?.total}: ${s.message}`).join('\n  ')}`);
  const kinds = received.map((s) => s.kind);
  expect(kinds[0]).toBe('ROLLBACK_STARTED');
  expect(kinds[kinds.length - 1]).toBe('UPGRADE_DONE');
  expect(kinds.filter((k) => k === 'INSTANCE_REPLACED')).toHaveLength(2);
  expect(kinds.filter((k) => k === 'HEALTH_PASSED')).toHaveLength(2);
  expect(new Set(received.map((s) => s.release?.name))).toEqual(new Set(['live']));
  const done = received.map((s) => s.progress!.done);
  expect(done).toEqual([...done].sort((a, b) => a - b)); // never goes back
  expect(received[received.length - 1].progress).toEqual({ done: 2, total: 2 });
}, 150_000);

test('running containers report CPU and memory figures', async () => {
  const stats = await waitFor('stats for every instance', async () => {
    const res = await stack.graphql<{ release: { instances: { status: { stats: { cpuPercent: number; memoryBytes: number } | null } | null }[] } }>(
      'query($id: ID!) { release(id: $id) { instances { status { stats { cpuPercent memoryBytes } } } } }', { id: releaseId });
    const all = res.data!.release.instances.map((i) => i.status?.stats);
    return all.every((s) => s && s.memoryBytes > 0) && all;
  }, 60_000, 1000);
  for (const s of stats) {
    expect(s!.cpuPercent).toBeGreaterThanOrEqual(0);
    expect(s!.memoryBytes).toBeGreaterThan(10_000); // busybox httpd: tens of KiB at least
    expect(s!.memoryBytes).toBeLessThan(32 * 1024 * 1024); // within the demo's 32 MiB limit
  }
});
