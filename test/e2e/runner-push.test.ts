import Docker from 'dockerode';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { clearReleaseNames } from '../support/docker';
import { waitFor, waitUntil } from '../support/wait';

/**
 * The runner hears of its host's desired-state changes over the WebSocket (hostDesiredStateChanged) instead of at
 * its next poll. The stack answers runners with a 10 min poll interval, far beyond any wait here, so a container
 * that appears at all after a deploy or a restartInstance can only be the push at work: Ark writes a
 * HOST_DESIRED_CHANGED event, the publisher sends it to the runner's subscription, the runner syncs at once. How long
 * that took is printed (a figure, not a pass mark: it depends on the machine's load). Real stack, real runner (its
 * WebSocket URL derived from its API URL), real engine.
 */
const docker = new Docker();
const RELEASE = 'push-web';
const POLL_SECONDS = 600;
/** Every wait for the runner's reaction ends well before its next poll could have come. */
const REACTION_WAIT_MS = 90_000;
const hostName = `push-${process.pid}`;
let stack: Stack;
let dataDir: string;
let logFile: string;
let hostId: string;
let releaseId: string | undefined;

/**
 * Lets a sync in flight finish, so the runner's loop is asleep and only a push can wake it. A fixed pause because the
 * runner reports no "asleep" state to observe; it bounds no measured figure (the poll is minutes away).
 */
const quiet = () => new Promise((r) => setTimeout(r, 3000));

const containersOf = (id: string) => docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${id}`] } });

const logLines = () => readFileSync(logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => {
  try {
    return JSON.parse(l) as Record<string, any>;
  } catch {
    return {};
  }
});

/** Polls fast, so the time printed is the platform's, not the test's. */
async function timed<T extends object>(what: string, since: number, check: () => Promise<T | undefined | false>): Promise<{ value: T; ms: number }> {
  const value = await waitFor(what, check, REACTION_WAIT_MS, 50);
  return { value, ms: Date.now() - since };
}


beforeAll(async () => {
  await clearReleaseNames(docker, RELEASE);
  dataDir = mkdtempSync(join(tmpdir(), 'fz-push-'));
  logFile = join(dataDir, 'stack.log');
  stack = await startStack({
    dataDir, httpPort: 3380, wsPort: 3381, lambdaPort: 3382, storePort: 4880, output: logFile,
    // A runner that missed its push would wait 10 min; the host must not go DOWN meanwhile (heartbeats are separate).
    env: { FZ_RUNNER_POLL_SECONDS: String(POLL_SECONDS), FZ_HOST_DOWN_SECONDS: '300' },
  });
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  await stack.startRunner(hostName, ['--labels', 'zone=push'], { LOG_LEVEL: 'info' });
  hostId = (await waitFor('the runner to register', async () =>
    (await stack.graphql<{ hosts: { id: string; name: string; status: string }[] }>('{ hosts { id name status } }')).data?.hosts
      .find((h) => h.name === hostName && h.status === 'READY'), 120_000)).id;
  // The runner's subscription is stored under its own host's topic (ws handler), after it said it is connected.
  await waitUntil('the runner to connect for push notices', async () => logLines().some((l) => l.msg?.startsWith('notifications connected') && l.hostId === hostId), 30_000, 100);
  await waitUntil('the runner\'s subscription to be stored', async () => logLines().some((l) => l.msg === 'subscribed' && l.topic === `host:${hostId}`), 30_000, 100);
  await quiet();
}, 240_000);

afterAll(async () => {
  try {
    if (releaseId && stack) {
      const deleted = await stack.graphql('mutation($id: ID!) { deleteRelease(id: $id) { status } }', { id: releaseId });
      expect(deleted.errors).toBeUndefined();
      const since = Date.now();
      await waitUntil('the containers to be removed', async () => (await containersOf(releaseId!)).length === 0, REACTION_WAIT_MS, 50);
      console.log(`push reaction: deleteRelease → containers removed in ${Date.now() - since} ms`);
    }
  } finally {
    await stack?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    await clearReleaseNames(docker, RELEASE);
  }
}, 120_000);

test('a deploy reaches the sleeping runner by push: its container exists long before its 10 min poll', async () => {
  const started = Date.now();
  const deployed = await stack.graphql<{ deploy: { id: string } }>(
    `mutation { deploy(input: {name: "${RELEASE}", product: "demo", version: "1.0.0", replicas: 1}) { id } }`);
  expect(deployed.errors).toBeUndefined();
  releaseId = deployed.data!.deploy.id;
  const answered = Date.now() - started;
  const created = await timed('the container to exist', started, async () => (await containersOf(releaseId!))[0]);
  console.log(`push reaction: deploy → container exists in ${created.ms} ms (deploy mutation answered in ${answered} ms)`);
  // The notice went out as a HOST_DESIRED_CHANGED event to exactly this runner's subscription.
  const published = await waitFor('the publisher report', async () =>
    logLines().find((l) => l.msg === 'published event' && l.kind === 'HOST_DESIRED_CHANGED' && l.deliveries >= 1), 10_000, 100);
  expect(published).toMatchObject({ failed: 0 });
  await waitUntil('the release to be RUNNING', async () =>
    (await stack.graphql<{ release: { status: string } }>('query($id: ID!) { release(id: $id) { status } }', { id: releaseId })).data?.release.status === 'RUNNING',
  60_000, 250);
});

test('restartInstance reaches the runner by push: the fresh container appears long before the next poll', async () => {
  expect(releaseId).toBeDefined();
  const [before] = await containersOf(releaseId!);
  expect(before).toBeDefined();
  await quiet();
  const started = Date.now();
  const restarted = await stack.graphql('mutation($id: ID!) { restartInstance(id: $id) { id } }', { id: `${releaseId}-0` });
  expect(restarted.errors).toBeUndefined();
  const fresh = await timed('a fresh container', started, async () =>
    (await containersOf(releaseId!)).find((c) => c.Id !== before.Id));
  console.log(`push reaction: restartInstance → fresh container in ${fresh.ms} ms`);
  await waitUntil('the old container to be gone', async () => !(await containersOf(releaseId!)).some((c) => c.Id === before.Id), 30_000, 100);
});

// The lookup is for runners only (CONTRACT: hostDesiredStateChanged is "runners only"; README: a runner acts only for its
// own host): an operator is refused, and so is the runner of another host.
test('the lookup behind the subscription: a host reads its own changes; an operator and another host are refused', async () => {
  const { hostToken } = JSON.parse(readFileSync(join(dataDir, 'runners', `${hostName}.json`), 'utf8')) as { hostToken: string };
  const events = await stack.graphql<{ events: { nodes: { id: string; host: { id: string } | null }[] } }>(
    '{ events(filter: {kind: "HOST_DESIRED_CHANGED"}, first: 50) { nodes { id host { id } } } }');
  // Notices about this host, and rounds of network notices (no host of their own: told to every live host).
  const latest = events.data!.events.nodes.find((n) => n.host)!;
  const round = events.data!.events.nodes.find((n) => !n.host)!;
  expect(latest.host!.id).toBe(hostId);
  expect(round).toBeDefined();
  const LOOKUP = 'query($e: ID!) { hostDesiredStateChange(eventId: $e) { hostId at } }';
  const asHost = await stack.graphql(LOOKUP, { e: latest.id }, hostToken);
  expect(asHost).toEqual({ data: { hostDesiredStateChange: { hostId, at: expect.any(String) } } });
  const asOperator = await stack.graphql(LOOKUP, { e: latest.id });
  expect(asOperator.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  expect(asOperator.data?.hostDesiredStateChange ?? null).toBeNull();
  // A second host (registered, no runner; too small to be given anything) may not read the first host's changes.
  const invite = await stack.graphql<{ createJoinToken: { token: string } }>('mutation { createJoinToken { token } }');
  const other = await stack.graphql<{ registerHost: { hostToken: string } }>(
    'mutation($i: RegisterHostInput!) { registerHost(input: $i) { hostToken } }',
    { i: { joinToken: invite.data!.createJoinToken.token, name: `${hostName}-other`, address: '127.0.0.2', capacity: { cpuMillis: 1, memoryMb: 6 } } });
  expect(other.errors).toBeUndefined();
  const asOther = await stack.graphql(LOOKUP, { e: latest.id }, other.data!.registerHost.hostToken);
  expect(asOther.errors?.[0]).toMatchObject({ extensions: { code: 'FORBIDDEN' }, message: expect.stringContaining('its own host') });
  // A round is read by a host it was told to as a change of its own; a host that joined later was not told it.
  expect(await stack.graphql(LOOKUP, { e: round.id }, hostToken)).toEqual({ data: { hostDesiredStateChange: { hostId, at: expect.any(String) } } });
  expect((await stack.graphql(LOOKUP, { e: round.id }, other.data!.registerHost.hostToken)).errors?.[0].extensions?.code).toBe('FORBIDDEN');
  // Not a change of desired state: nothing to tell. And a host token still reaches nothing else.
  expect((await stack.graphql(LOOKUP, { e: 'no-such-event' }, hostToken)).data).toEqual({ hostDesiredStateChange: null });
  expect((await stack.graphql('{ hosts { id } }', {}, hostToken)).errors?.[0].extensions?.code).toBe('FORBIDDEN');
});

test('tokens are redacted from the logs: neither the host token nor the admin token appears in what the API and runner wrote', async () => {
  const { hostToken } = JSON.parse(readFileSync(join(dataDir, 'runners', `${hostName}.json`), 'utf8')) as { hostToken: string };
  const written = readFileSync(logFile, 'utf8');
  // The search sees both writers: the API's start and the runner's registration are in the same file.
  const messages = logLines().map((l) => l.msg);
  expect(messages).toEqual(expect.arrayContaining(['server mode up', 'registered host']));
  expect(written).not.toContain(hostToken);
  expect(written).not.toContain(stack.adminToken);
});
