import Docker from 'dockerode';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { clearReleaseNames } from '../support/docker';
import { waitFor, waitUntil } from '../support/wait';

/**
 * Rolling upgrades on the real engine with three image versions: v1 → v2 completes with at most maxUnavailable
 * instances down at any time (counted from the engine's event stream), v2 → v3 (whose healthcheck fails) rolls back to v2 by itself,
 * and a rollback to revision 1 works.
 */
const docker = new Docker();
let stack: Stack;
let dir: string;
let id: string;

const RELEASE = `query($id: ID!) { release(id: $id) {
  status version revision
  upgrade { kind state done total batch message reason failedVersion }
  instances { id status { state health } }
} }`;
type View = { status: string; version: string; revision: number; upgrade: { kind: string; state: string; done: number; total: number; batch: string[]; message: string | null; reason: string | null; failedVersion: string | null } | null; instances: { id: string; status: { state: string; health: string } | null }[] };
const view = async () => (await stack.graphql<{ release: View }>(RELEASE, { id })).data!.release;
/** The image each container was created from, by name (a listing shows an id instead once the tag has moved on). */
const images = async () => (await Promise.all((await docker.listContainers({ filters: { label: [`fangzhou.release=${id}`] } }))
  .map(async (c) => (await docker.getContainer(c.Id).inspect()).Config.Image))).sort();
const upgrade = (version: string, strategy: Record<string, unknown> = {}) =>
  stack.graphql('mutation($id: ID!, $v: String!, $s: UpgradeStrategyInput) { upgradeRelease(id: $id, version: $v, strategy: $s) { status upgrade { state } } }', { id, v: version, s: strategy });

/** Polls the release until `done`. */
async function watch(done: (v: View) => boolean, timeoutMs = 110_000) {
  const last = await waitFor('the upgrade to finish', async () => { const v = await view(); return done(v) && v; }, timeoutMs, 250);
  return { last };
}

/**
 * The engine's own account of the release while `during` runs, from its event stream (not sampled, so nothing is
 * missed): an instance serves while one of its containers runs and last reported healthy. A container stops serving
 * when it dies, is destroyed, reports another health, or (re)starts (a new generation serves once it reports healthy).
 * Counting starts once every replica serves, as inspected after subscribing, so the stream misses nothing after that.
 * Returns the most replicas not serving at once, and the timeline.
 */
async function countDown(replicas: number, during: () => Promise<void>) {
  const label = `fangzhou.release=${id}`;
  const stream = await docker.getEvents({ filters: { type: ['container'], label: [label] } }) as unknown as NodeJS.ReadableStream & { destroy(): void };
  const serving = new Map<string, string>(); // container id → instance id
  const timeline: string[] = [];
  let maxDown = 0;
  let buffer = '';
  const down = () => replicas - new Set(serving.values()).size;
  stream.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (!line) continue;
      const event = JSON.parse(line) as { Action: string; Actor: { ID: string; Attributes: Record<string, string> } };
      const action = event.Action;
      if (action === 'health_status: healthy') serving.set(event.Actor.ID, event.Actor.Attributes['fangzhou.instance']);
      else if (action.startsWith('health_status') || ['start', 'restart', 'die', 'oom', 'destroy'].includes(action)) serving.delete(event.Actor.ID);
      else continue;
      maxDown = Math.max(maxDown, down());
      timeline.push(`${action} ${event.Actor.Attributes.name} (${event.Actor.Attributes.image}) → ${down()} down`);
    }
  });
  try {
    await waitUntil(`all ${replicas} replicas serving before counting`, async () => {
      for (const c of await docker.listContainers({ filters: { label: [label] } })) {
        const info = await docker.getContainer(c.Id).inspect();
        if (info.State.Running && info.State.Health?.Status === 'healthy') serving.set(c.Id, c.Labels['fangzhou.instance']);
      }
      return down() === 0;
    }, 30_000, 250);
    maxDown = 0;
    await during();
    // The API derives RUNNING from the runner's reports of these very events; the stream may deliver them a moment later.
    await waitUntil('the event stream to show every replica serving again', async () => down() === 0, 15_000, 100);
  } finally {
    stream.destroy();
  }
  console.log(`engine events during the upgrade (most down at once: ${maxDown}):\n  ${timeline.join('\n  ')}`);
  return { maxDown, timeline };
}

beforeAll(async () => {
  await clearReleaseNames(docker, 'up');
  dir = mkdtempSync(join(tmpdir(), 'fz-upgrade-'));
  stack = await startStack({ dataDir: dir, httpPort: 3360, wsPort: 3361, lambdaPort: 3362, storePort: 4860, output: join(dir, 'stack.log') });
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  await stack.startRunner(`upgrade-${process.pid}`, ['--labels', 'zone=up']);
  await waitUntil('the runner', async () => ((await stack.graphql<{ hosts: unknown[] }>('{ hosts { id } }')).data?.hosts.length ?? 0) > 0);
  id = (await stack.graphql<{ deploy: { id: string } }>('mutation { deploy(input: {name: "up", product: "demo", version: "1.0.0", replicas: 3}) { id } }')).data!.deploy.id;
  await waitUntil('v1 RUNNING', async () => (await view()).status === 'RUNNING', 60_000);
}, 240_000);

afterAll(async () => {
  if (id) await stack?.graphql('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
  if (id) await waitUntil('containers removed', async () => (await images()).length === 0, 60_000).catch(() => undefined);
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('bad upgrade requests are refused with a code and change nothing', async () => {
  const codes = await Promise.all([
    upgrade('9.9.9'), upgrade('1.0.0'), upgrade('2.0.0', { maxUnavailable: 0 }), upgrade('2.0.0', { maxUnavailable: 4 }),
  ]);
  expect(codes.map((r) => r.errors?.[0].extensions?.code)).toEqual(['BAD_USER_INPUT', 'BAD_USER_INPUT', 'BAD_USER_INPUT', 'BAD_USER_INPUT']);
  expect(codes[1].errors?.[0].message).toBe('release "up" already runs 1.0.0');
  expect(codes[3].errors?.[0].message).toMatch(/strategy.maxUnavailable must be an integer from 1 to 3/);
  const v = await view();
  expect([v.version, v.revision, v.upgrade]).toEqual(['1.0.0', 1, null]);
});

test('v1 → v2 replaces instances batch by batch, never more than maxUnavailable down, and a second upgrade meanwhile is refused', async () => {
  let last!: View;
  const { maxDown, timeline } = await countDown(3, async () => {
    const started = await upgrade('2.0.0', { maxUnavailable: 1 });
    expect(started.errors).toBeUndefined();
    const second = await upgrade('3.0.0-unhealthy');
    expect(second.errors?.[0].extensions?.code).toBe('CONFLICT');
    ({ last } = await watch((v) => v.upgrade?.state === 'SUCCEEDED' && v.status === 'RUNNING'));
  });
  expect(maxDown).toBeLessThanOrEqual(1);
  // The count saw the upgrade: three v2 containers came up healthy (a counter that missed the events would say 0 down).
  expect(timeline.filter((t) => /^health_status: healthy .*fangzhou\/demo:2/.test(t))).toHaveLength(3);
  expect(last).toMatchObject({ version: '2.0.0', revision: 2, upgrade: { kind: 'UPGRADE', done: 3, total: 3, batch: [] } });
  expect(await images()).toEqual(['fangzhou/demo:2', 'fangzhou/demo:2', 'fangzhou/demo:2']);
});

test('v2 → v3 fails its health gate and rolls back to v2 by itself, with an UPGRADE_ROLLED_BACK alarm', async () => {
  expect((await upgrade('3.0.0-unhealthy', { maxUnavailable: 2, healthTimeoutSeconds: 60 })).errors).toBeUndefined();
  const { last } = await watch((v) => v.upgrade?.state === 'ROLLED_BACK' && v.status === 'RUNNING');
  expect(last.version).toBe('2.0.0');
  expect(last.upgrade).toMatchObject({ failedVersion: '3.0.0-unhealthy', reason: expect.stringMatching(/^up-\d: running, unhealthy$/) });
  expect(last.upgrade!.message).toMatch(/^rolled back to 2\.0\.0: 3\.0\.0-unhealthy failed its health gate \(up-\d: running, unhealthy\)$/);
  expect(await images()).toEqual(['fangzhou/demo:2', 'fangzhou/demo:2', 'fangzhou/demo:2']);
  const alarms = await stack.graphql<{ alarms: { nodes: { kind: string; release: { name: string } }[] } }>(
    'query($r: ID!) { alarms(filter: {releaseId: $r}) { nodes { kind release { name } } } }', { r: id });
  expect(alarms.data!.alarms.nodes.filter((a) => a.kind === 'UPGRADE_ROLLED_BACK')).toEqual([{ kind: 'UPGRADE_ROLLED_BACK', release: { name: 'up' } }]);
  const steps = await stack.graphql<{ events: { nodes: { kind: string }[] } }>('query($r: ID!) { events(filter: {releaseId: $r}, first: 500) { nodes { kind } } }', { r: id });
  const kinds = steps.data!.events.nodes.map((e) => e.kind);
  for (const kind of ['UPGRADE_STARTED', 'INSTANCE_REPLACED', 'HEALTH_FAILED', 'ROLLBACK_STARTED', 'UPGRADE_ROLLED_BACK']) expect(kinds).toContain(kind);
});

test('rollbackRelease to revision 1 brings v1 back', async () => {
  const res = await stack.graphql('mutation($id: ID!) { rollbackRelease(id: $id, revision: 1) { upgrade { kind } } }', { id });
  expect(res.errors).toBeUndefined();
  const { last } = await watch((v) => v.upgrade?.state === 'SUCCEEDED' && v.status === 'RUNNING');
  expect(last).toMatchObject({ version: '1.0.0', upgrade: { kind: 'ROLLBACK' } });
  expect(await images()).toEqual(['fangzhou/demo:1', 'fangzhou/demo:1', 'fangzhou/demo:1']);
  const revisions = await stack.graphql<{ release: { revisions: { revision: number; version: string; reason: string }[] } }>(
    'query($id: ID!) { release(id: $id) { revisions { revision version reason } } }', { id });
  expect(revisions.data!.release.revisions.map((r) => r.reason)).toEqual([
    'deploy', 'upgrade 1.0.0 → 2.0.0', 'upgrade 2.0.0 → 3.0.0-unhealthy', 'rolled back to 2.0.0 after a failed upgrade to 3.0.0-unhealthy', 'rollback 2.0.0 → 1.0.0',
  ]);
});
