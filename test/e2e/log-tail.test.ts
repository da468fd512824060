import Docker from 'dockerode';
import { createClient, type Client } from 'graphql-ws';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { createClient as createDbClient, Store } from '../../lib/store';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { deployOne, deployRunning, removeRelease } from '../support/deploy';
import { clearReleaseNames } from '../support/docker';
import { waitUntil } from '../support/wait';

/**
 * Following a container's output live (the subscription instanceLogTail), end to end on the runtime the stack runs
 * (FZ_RUNTIME: server mode by default, `offline` for serverless-offline): a real runner on the local engine, the
 * demo product's container, lines printed into its output with `docker exec`, and a real graphql-ws client that
 * receives them as they are printed. A viewer and a key scoped to another product are refused; a flood is capped;
 * when the subscriber leaves, nothing of the follow or its lines stays in the store.
 */
const docker = new Docker();
let stack: Stack;
let dir: string;
let db: Store;
let releaseId: string;
let instanceId: string;
let quietReleaseId: string | undefined;
const clients: Client[] = [];

type Tail = { instanceLogTail: { instance: { domainName: string }; lines: { at: string; stream: string; text: string }[]; dropped: number; ended: string | null } };
const TAIL = 'subscription($id: ID!) { instanceLogTail(instanceId: $id) { instance { domainName } lines { at stream text } dropped ended } }';

beforeAll(async () => {
  await clearReleaseNames(docker, 'tail');
  await clearReleaseNames(docker, 'quiet');
  dir = mkdtempSync(join(tmpdir(), 'fz-tail-'));
  // A follow without a line for 4 s ends (300 s by default): the demo's healthcheck prints a line every 2 s.
  stack = await startStack({ dataDir: dir, httpPort: 3470, wsPort: 3471, lambdaPort: 3472, storePort: 4970, output: join(dir, 'stack.log'), env: { FZ_LOG_FOLLOW_IDLE_SECONDS: '4' } });
  db = new Store(createDbClient(stack.env.DYNAMODB_ENDPOINT, 'local'), stack.env.FZ_TABLE_PREFIX);
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  ({ releaseId, instanceId } = await deployOne(stack, { host: `tail-${process.pid}`, labels: 'zone=tail', release: 'tail', product: 'demo', version: '1.0.0' }));
}, 240_000);

afterAll(async () => {
  for (const c of clients) await c.dispose();
  for (const id of [releaseId, quietReleaseId]) if (id) await removeRelease(stack, id);
  db?.client.destroy();
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function connect(token: string): Client {
  const client = createClient({ url: stack.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0 });
  clients.push(client);
  return client;
}

interface Sub {
  results: { data?: Tail | null; errors?: { message: string; extensions?: { code?: string } }[] }[];
  error?: { message: string; extensions?: { code?: string } }[];
  completed: boolean;
  dispose: () => void;
}

function follow(client: Client, id = instanceId): Sub {
  const sub: Sub = { results: [], completed: false, dispose: () => undefined };
  sub.dispose = client.subscribe({ query: TAIL, variables: { id } }, {
    next: (value) => sub.results.push(value as Sub['results'][number]),
    error: (err) => { sub.error = err as Sub['error']; },
    complete: () => { sub.completed = true; },
  });
  return sub;
}

const received = (sub: Sub) => sub.results.flatMap((r) => r.data?.instanceLogTail.lines ?? []);

/** Prints a line into the container's output, as its main process would (PID 1's stdout). */
async function print(text: string) {
  const [container] = await docker.listContainers({ filters: { label: [`fangzhou.instance=${instanceId}`] } });
  const exec = await docker.getContainer(container.Id).exec({ Cmd: ['sh', '-c', `{ ${text}; } > /proc/1/fd/1`], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  await new Promise((resolve) => { stream.on('end', resolve); stream.on('close', resolve); stream.resume(); });
}

const logItems = async () => (await db.scan<{ id: string; kind: string }>('logs'));
const logSubscriptions = async () => (await db.scan<{ kind: string; field?: string }>('subscriptions')).filter((i) => i.kind === 'subscription' && i.field === 'instanceLogTail');

test('an operator subscribed to instanceLogTail receives the lines the container prints, as it prints them', async () => {
  const sub = follow(connect(stack.adminToken));
  // The follow starts once the runner has it: print until the first marker comes through.
  let n = 0;
  await waitUntil('a first line printed after subscribing to arrive', async () => {
    if (sub.error) throw new Error(JSON.stringify(sub.error));
    await print(`echo tail-marker-${++n}`);
    return received(sub).some((l) => l.text.startsWith('tail-marker-'));
  }, 30_000, 500);
  expect(await logItems()).toContainEqual(expect.objectContaining({ kind: 'follow' }));

  // Now live: each new line arrives, in order, without asking again.
  for (const word of ['alpha', 'beta', 'gamma']) {
    await print(`echo live-${word}`);
    await waitUntil(`live-${word} to arrive`, async () => received(sub).some((l) => l.text === `live-${word}`), 15_000, 50);
  }
  const texts = received(sub).map((l) => l.text);
  expect(texts.indexOf('live-alpha')).toBeLessThan(texts.indexOf('live-beta'));
  expect(texts.indexOf('live-beta')).toBeLessThan(texts.indexOf('live-gamma'));
  const first = sub.results.find((r) => r.data?.instanceLogTail.lines.length)!;
  expect(first.errors).toBeUndefined();
  expect(first.data!.instanceLogTail.instance.domainName).toBe('tail-0.tail.fz.internal');
  const alpha = received(sub).find((l) => l.text === 'live-alpha')!;
  expect(alpha.stream).toBe('STDOUT');
  expect(Number.isNaN(Date.parse(alpha.at))).toBe(false);

  // A flood is capped per second: the rest is dropped, and the next message says how many.
  await print('i=0; while [ $i -lt 600 ]; do echo flood-$i; i=$((i+1)); done');
  const dropped = () => sub.results.reduce((sum, r) => sum + (r.data?.instanceLogTail.dropped ?? 0), 0);
  await waitUntil('the dropped lines to be counted', async () => dropped() > 0, 20_000, 100);
  const flood = received(sub).filter((l) => l.text.startsWith('flood-'));
  expect(flood.length).toBeGreaterThan(0);
  expect(flood.length + dropped()).toBe(600);
  expect(flood.map((l) => l.text)).toEqual(flood.map((_, i) => `flood-${i}`));

  // A long line is cut at 4 KiB.
  await waitUntil('a long line to arrive', async () => {
    await print("printf 'long-%05000d\\n' 0");
    return received(sub).some((l) => l.text.startsWith('long-'));
  }, 20_000, 1000);
  expect(received(sub).find((l) => l.text.startsWith('long-'))!.text.length).toBe(4096);

  // The subscriber leaves: the follow ends and nothing of it, nor of the lines, stays in the store.
  sub.dispose();
  await waitUntil('the follow and its lines to be gone', async () => (await logItems()).length === 0 && (await logSubscriptions()).length === 0, 20_000, 100);
}, 120_000);

test('a viewer, and a key scoped to another product, may not follow a container', async () => {
  const viewerKey = await stack.graphql<{ createApiKey: { secret: string } }>('mutation { createApiKey(input: {name: "tail-viewer", role: VIEWER}) { secret } }');
  const scopedKey = await stack.graphql<{ createApiKey: { secret: string } }>(
    'mutation { createApiKey(input: {name: "tail-scoped", role: OPERATOR, scope: {products: ["redis"]}}) { secret } }');
  expect(viewerKey.errors).toBeUndefined();
  expect(scopedKey.errors).toBeUndefined();
  for (const [who, secret] of [['viewer', viewerKey.data!.createApiKey.secret], ['scoped', scopedKey.data!.createApiKey.secret]]) {
    const sub = follow(connect(secret));
    await waitUntil(`the ${who} to be refused`, async () => sub.error !== undefined, 15_000, 50);
    expect(sub.error![0]).toMatchObject({ extensions: { code: 'FORBIDDEN' } });
    expect(sub.error![0].message).toContain(who === 'viewer' ? 'OPERATOR role' : 'outside it');
  }
  expect(await logItems()).toEqual([]);
  expect(await logSubscriptions()).toEqual([]);
}, 60_000);

test('a follow of a container that prints nothing ends after the idle time: the last message says why, then the subscription completes', async () => {
  // The demo without a healthcheck: its httpd prints a line only per request, and none comes.
  expect((await stack.graphql(DEFINE_PRODUCT, { input: { ...DEMO_PRODUCT, name: 'demo-quiet', defaults: { ...DEMO_PRODUCT.defaults, healthcheck: null } } })).errors).toBeUndefined();
  const quiet = await deployRunning(stack, { name: 'quiet', product: 'demo-quiet', version: '1.0.0', replicas: 1 });
  quietReleaseId = quiet.releaseId;

  const sub = follow(connect(stack.adminToken), quiet.instanceIds[0]);
  await waitUntil('the follow to end for want of lines', async () => sub.completed, 30_000, 100);
  expect(sub.error).toBeUndefined();
  const last = sub.results[sub.results.length - 1].data!.instanceLogTail;
  expect(last.lines).toEqual([]);
  expect(last.ended).toBe('nothing was printed for 4 s: the follow ended; follow again to go on');
  await waitUntil('nothing of the follow left', async () => (await logItems()).length === 0 && (await logSubscriptions()).length === 0, 20_000, 100);
}, 120_000);
