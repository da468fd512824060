import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';

/**
 * Bad input through the real gateway over HTTP: each gets a coded error with a message that says what to fix, and
 * nothing is half-written. No Docker needed: a host is registered through the API as its runner would.
 */
let stack: Stack;
let dir: string;
let hostId: string;
let hostToken: string;
let heartbeat: NodeJS.Timeout;

const codeOf = (res: { errors?: { extensions?: { code?: string } }[] }) => res.errors?.[0]?.extensions?.code;
const messageOf = (res: { errors?: { message: string }[] }) => res.errors?.[0]?.message ?? '';
const snapshot = async () => (await stack.graphql('{ releases { name replicas instances { id } } hosts { name labels { key value } allocated { cpuMillis memoryMb } } }')).data;
const deploy = (input: Record<string, unknown>) =>
  stack.graphql('mutation($input: DeployInput!) { deploy(input: $input) { id } }', { input: { product: 'demo', ...input } });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fz-bad-'));
  stack = await startStack({ dataDir: dir, httpPort: 3310, wsPort: 3311, lambdaPort: 3312, storePort: 4810, output: join(dir, 'stack.log') });
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  const join_ = await stack.graphql<{ createJoinToken: { token: string } }>('mutation { createJoinToken { token } }');
  const registered = await stack.graphql<{ registerHost: { host: { id: string }; hostToken: string } }>(
    'mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken } }',
    { input: { joinToken: join_.data!.createJoinToken.token, name: 'bad-input-host', address: '127.0.0.1', capacity: { cpuMillis: 1000, memoryMb: 256 } } }, null);
  expect(registered.errors).toBeUndefined();
  ({ hostToken } = registered.data!.registerHost);
  hostId = registered.data!.registerHost.host.id;
  // Its runner's sync every second keeps the host READY however slowly the tests run (the placement refusals below
  // must be about memory, not about a host gone DOWN for want of a runner).
  const sync = () => stack.graphql('mutation { runnerSync(input: {observed: []}) { hostId } }', {}, hostToken).catch(() => undefined);
  await sync();
  heartbeat = setInterval(sync, 1000);
  expect((await deploy({ name: 'taken', version: '1.0.0', replicas: 1 })).errors).toBeUndefined();
}, 240_000);

afterAll(async () => {
  clearInterval(heartbeat);
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test.each([
  ['an unknown product', { name: 'x1', product: 'nosuch' }, 'NOT_FOUND', /product "nosuch" does not exist/],
  ['an unknown version', { name: 'x2', version: '9.9.9' }, 'BAD_USER_INPUT', /no version "9.9.9"; available: 1.0.0, 2.0.0, 3.0.0-unhealthy/],
  ['negative replicas', { name: 'x3', replicas: -1 }, 'BAD_USER_INPUT', /replicas must be an integer from 0 to 100, got -1/],
  ['absurd replicas', { name: 'x4', replicas: 100000 }, 'BAD_USER_INPUT', /replicas must be an integer from 0 to 100/],
  ['a name that is not a DNS label', { name: 'Bad_Name' }, 'BAD_USER_INPUT', /name "Bad_Name" must be 1-40 lowercase letters/],
  ['malformed placement labels', { name: 'x5', placement: { requiredLabels: [{ key: 'zone!', value: 'a' }] } }, 'BAD_USER_INPUT', /placement.requiredLabels\[0\].key "zone!"/],
  ['a duplicate release name', { name: 'taken' }, 'CONFLICT', /a release named "taken" already exists/],
  ['more than any host can hold', { name: 'x6', version: '1.0.0', replicas: 3, resources: { cpuMillis: 100, memoryMb: 200 } }, 'UNSCHEDULABLE', /cannot be placed: 0\/1 hosts can run it: 1 insufficient memory/],
  ['a wrongly typed field', { name: 'x7', replicas: 'three' }, 'BAD_USER_INPUT', /Int cannot represent/],
])('deploy with %s is refused with a coded error and changes nothing', async (_what, input, code, message) => {
  const before = await snapshot();
  const res = await deploy(input);
  expect(codeOf(res)).toBe(code);
  expect(messageOf(res)).toMatch(message);
  expect(await snapshot()).toEqual(before);
});

test('after a refused deploy the same name can be deployed (the name claim was released)', async () => {
  expect(codeOf(await deploy({ name: 'retry-me', version: '1.0.0', replicas: 3, resources: { cpuMillis: 100, memoryMb: 200 } }))).toBe('UNSCHEDULABLE');
  const ok = await deploy({ name: 'retry-me', version: '1.0.0', replicas: 1 });
  expect(ok.errors).toBeUndefined();
});

test('malformed host labels are refused and the old labels stay', async () => {
  const res = await stack.graphql('mutation($id: ID!) { labelHost(id: $id, labels: [{key: "zone", value: "a b"}]) { id } }', { id: hostId });
  expect(codeOf(res)).toBe('BAD_USER_INPUT');
  expect(messageOf(res)).toMatch(/labels\[0\].value "a b" for key "zone"/);
  const host = await stack.graphql<{ host: { labels: unknown[] } }>('query($id: ID!) { host(id: $id) { labels { key value } } }', { id: hostId });
  expect(host.data?.host.labels).toEqual([]);
});

test('an invalid join token cannot register a host', async () => {
  const res = await stack.graphql('mutation { registerHost(input: {joinToken: "fzj_forged", name: "intruder", address: "10.0.0.1", capacity: {cpuMillis: 1, memoryMb: 6}}) { hostToken } }', {}, null);
  expect(codeOf(res)).toBe('UNAUTHENTICATED');
  expect(messageOf(res)).toMatch(/join token is not valid/);
  const hosts = await stack.graphql<{ hosts: { name: string }[] }>('{ hosts { name } }');
  expect(hosts.data?.hosts.map((h) => h.name)).toEqual(['bad-input-host']);
});

test('a second host cannot take a registered name', async () => {
  const token = (await stack.graphql<{ createJoinToken: { token: string } }>('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
  const res = await stack.graphql('mutation($t: String!) { registerHost(input: {joinToken: $t, name: "bad-input-host", address: "127.0.0.2", capacity: {cpuMillis: 1, memoryMb: 6}}) { hostToken } }', { t: token }, null);
  expect(codeOf(res)).toBe('CONFLICT');
});

test('an invalid host token cannot sync, and a host token cannot act as an operator', async () => {
  const sync = 'mutation { runnerSync(input: {observed: []}) { hostId desired { instanceId } } }';
  expect(codeOf(await stack.graphql(sync, {}, 'fzh_forged'))).toBe('UNAUTHENTICATED');
  const own = await stack.graphql<{ runnerSync: { hostId: string; desired: unknown[] } }>(sync, {}, hostToken);
  expect(own.data?.runnerSync.hostId).toBe(hostId);
  expect(codeOf(await stack.graphql('{ releases { name } }', {}, hostToken))).toBe('FORBIDDEN');
  expect(codeOf(await stack.graphql('mutation { createJoinToken { token } }', {}, hostToken))).toBe('FORBIDDEN');
});

test('nothing is reachable without a credential, through the gateway or on a subgraph directly', async () => {
  expect(codeOf(await stack.graphql('{ releases { name } }', {}, null))).toBe('UNAUTHENTICATED');
  expect(codeOf(await stack.graphql('{ releases { name } }', {}, 'fza_wrong'))).toBe('UNAUTHENTICATED');
  const direct = await fetch(stack.url.replace('/graphql', '/subgraphs/butler'), {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: `{ _entities(representations: [{__typename: "Host", id: "${hostId}"}]) { ... on Host { containers { name } } } }` }),
  });
  const body = await direct.json() as { data?: { _entities: unknown[] }; errors?: { extensions?: { code?: string } }[] };
  expect(codeOf(body)).toBe('UNAUTHENTICATED');
  expect(body.data?._entities?.[0] ?? null).toBeNull();
});

test('a malformed query gets BAD_USER_INPUT, not an internal error', async () => {
  const res = await stack.graphql('{ releases { nosuchfield } }');
  expect(codeOf(res)).toBe('BAD_USER_INPUT');
  expect(messageOf(res)).toMatch(/nosuchfield/);
});

test('GraphiQL is served from local assets, not a CDN', async () => {
  const page = await (await fetch(stack.url, { headers: { accept: 'text/html' } })).text();
  expect(page).toContain('/graphiql/graphiql.js');
  expect(page).not.toMatch(/https?:\/\/(?!localhost)/);
  const js = await fetch(stack.url.replace('/graphql', '/graphiql/graphiql.js'));
  expect(js.status).toBe(200);
  expect((await js.text()).length).toBeGreaterThan(100_000);
});
