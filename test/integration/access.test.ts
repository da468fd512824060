import { createClient as createWsClient, type Client } from 'graphql-ws';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { revokeApiKey } from '../../lib/apikeys';
import { VERIFIED_MS } from '../../lib/verified';
import { hashSecret } from '../../lib/ids';
import { revokeHost } from '../../subgraphs/ark';
import { createClient, ensureTables, Store } from '../../lib/store';
import { startDynalite, type DynamoDbServer } from '../support/dynamodb';
import { httpClient } from '../support/lambda';
import { waitFor, waitUntil } from '../support/wait';
import WebSocket from 'ws';

/**
 * Principals, roles, limits and rate limits at the edge: the real gateway Lambda handler (subgraphs in-process) on the
 * real store protocol, called with the events API Gateway sends, and JWTs verified against a JWKS served over HTTP.
 */
const ADMIN = 'fza_access-test-admin';
let db: DynamoDbServer;
let store: Store;
let gql: ReturnType<typeof httpClient>;
let idp: Server;
let sign: (claims: Record<string, unknown>, options?: { expiresIn?: string; issuer?: string }) => Promise<string>;

const codeOf = (res: { body: { errors?: { extensions?: { code?: string } }[] } }) => res.body.errors?.[0]?.extensions?.code;

beforeAll(async () => {
  db = await startDynalite();
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  idp = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
  await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
  const issuer = 'https://idp.example.test/';
  sign = (claims, options = {}) => new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setIssuedAt()
    .setIssuer(options.issuer ?? issuer).setAudience('fangzhou').setExpirationTime(options.expiresIn ?? '5m').sign(privateKey);
  Object.assign(process.env, {
    DYNAMODB_ENDPOINT: db.endpoint, FZ_TABLE_PREFIX: 'access-', FZ_ADMIN_TOKEN_HASH: hashSecret(ADMIN), FZ_SUBGRAPH_TRANSPORT: 'inprocess',
    FZ_JWT_JWKS_URL: `http://127.0.0.1:${(idp.address() as AddressInfo).port}/jwks.json`, FZ_JWT_ISSUER: issuer, FZ_JWT_AUDIENCE: 'fangzhou',
    FZ_JWT_ROLE_CLAIM: 'groups', FZ_JWT_ROLE_MAP: 'platform-team=ADMIN,oncall=OPERATOR',
  });
  await ensureTables(createClient(db.endpoint, 'local'), 'access-');
  store = new Store(createClient(db.endpoint, 'local'), 'access-');
  gql = httpClient((await import('../../handlers/gateway')).handler as never);
});

afterAll(async () => {
  await new Promise((resolve) => idp?.close(resolve));
  await db?.stop();
});

const createKey = async (name: string, role: string, scope?: Record<string, string[]>) => {
  const res = await gql({ query: 'mutation($i: ApiKeyInput!) { createApiKey(input: $i) { key { id name role } secret } }', variables: { i: { name, role, scope } } }, ADMIN);
  expect(res.body.errors).toBeUndefined();
  return res.body.data!.createApiKey as { key: { id: string; role: string }; secret: string };
};

const DEFINE = 'mutation { defineProduct(input: {name: "cache", description: "c", versions: [{version: "1.0.0", image: "fangzhou/demo:1"}], defaults: {replicas: 1, resources: {cpuMillis: 100, memoryMb: 64}}}) { name } }';

test('an API key is shown once, stored only as a hash, and its role decides what it may do', async () => {
  const viewer = await createKey('dashboard', 'VIEWER');
  expect(viewer.secret).toMatch(/^fzk_k-[0-9a-f]{12}_/);
  const items = JSON.stringify(await store.scan('apikeys'));
  expect(items).not.toContain(viewer.secret);
  const listed = await gql({ query: '{ apiKeys { id name role } }' }, ADMIN);
  expect(JSON.stringify(listed.body)).not.toContain(viewer.secret.slice(20));

  expect((await gql({ query: '{ products { name } }' }, viewer.secret)).body.data).toEqual({ products: [] });
  const denied = await gql({ query: DEFINE }, viewer.secret);
  expect(codeOf(denied)).toBe('FORBIDDEN');
  expect(denied.body.errors![0].message).toMatch(/defineProduct needs the ADMIN role; k-[0-9a-f]+ has VIEWER/);
  expect(codeOf(await gql({ query: '{ apiKeys { id } }' }, viewer.secret))).toBe('FORBIDDEN');
  expect((await gql({ query: DEFINE }, ADMIN)).body.errors).toBeUndefined();
});

test('a revoked key stops working at once', async () => {
  const ops = await createKey('ci', 'OPERATOR');
  expect((await gql({ query: '{ releases { id } }' }, ops.secret)).status).toBe(200);
  expect((await gql({ query: `mutation { revokeApiKey(id: "${ops.key.id}") { revokedAt } }` }, ADMIN)).body.errors).toBeUndefined();
  const after = await gql({ query: '{ releases { id } }' }, ops.secret);
  expect(after.status).toBe(401);
  expect(codeOf(after)).toBe('UNAUTHENTICATED');
  expect(codeOf(await gql({ query: '{ releases { id } }' }, `${ops.secret.slice(0, -1)}x`))).toBe('UNAUTHENTICATED');
});

test('a key revoked by another replica is refused here within a second', async () => {
  const ops = await createKey('nightly', 'OPERATOR');
  expect((await gql({ query: '{ releases { id } }' }, ops.secret)).status).toBe(200);
  // Revoked through a store client of its own, as another replica would: this process learns it only from the store.
  await revokeApiKey(store, ops.key.id);
  await new Promise((resolve) => setTimeout(resolve, VERIFIED_MS));
  const after = await gql({ query: '{ releases { id } }' }, ops.secret);
  expect(after.status).toBe(401);
  expect(codeOf(after)).toBe('UNAUTHENTICATED');
});

test('a scoped operator key may change only the products in its scope', async () => {
  const scoped = await createKey('cache-team', 'OPERATOR', { products: ['cache'] });
  const other = await gql({ query: 'mutation { deploy(input: {name: "q1", product: "queue", replicas: 1}) { id } }' }, scoped.secret);
  expect(codeOf(other)).toBe('FORBIDDEN');
  expect(other.body.errors![0].message).toMatch(/scoped to products \[cache\].*outside it/);
  const own = await gql({ query: 'mutation { deploy(input: {name: "c1", product: "cache", replicas: 1}) { id } }' }, scoped.secret);
  // No host is registered: the deploy itself is allowed and fails on placement, not on access.
  expect(codeOf(own)).not.toBe('FORBIDDEN');
});

test('a JWT of the identity provider is verified against its JWKS and its claim maps to a role', async () => {
  const oncall = await sign({ sub: 'alice', groups: ['staff', 'oncall'] });
  expect((await gql({ query: '{ releases { id } }' }, oncall)).body.errors).toBeUndefined();
  expect(codeOf(await gql({ query: DEFINE }, oncall))).toBe('FORBIDDEN');
  const admin = await sign({ sub: 'bob', groups: 'platform-team' });
  expect((await gql({ query: DEFINE }, admin)).body.errors).toBeUndefined();

  expect(codeOf(await gql({ query: '{ releases { id } }' }, await sign({ sub: 'eve', groups: ['staff'] })))).toBe('FORBIDDEN');
  expect(codeOf(await gql({ query: '{ releases { id } }' }, await sign({ sub: 'eve', groups: 'oncall' }, { issuer: 'https://evil.test/' })))).toBe('UNAUTHENTICATED');
  const expired = await gql({ query: '{ releases { id } }' }, await sign({ sub: 'alice', groups: 'oncall' }, { expiresIn: '-1m' }));
  expect(codeOf(expired)).toBe('UNAUTHENTICATED');
  expect(expired.body.errors![0].message).toMatch(/expired/);
});

test('anonymous callers are refused before a large document is parsed; introspection needs a credential', async () => {
  const big = `{ ${Array.from({ length: 5000 }, (_, i) => `a${i}: __typename`).join(' ')} }`;
  const anonymous = await gql({ query: big });
  expect(anonymous.status).toBe(401);
  expect(codeOf(anonymous)).toBe('UNAUTHENTICATED');
  const withKey = await gql({ query: big }, ADMIN);
  expect(withKey.status).toBe(400);
  expect(withKey.body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'ALIAS_LIMIT' });

  expect(codeOf(await gql({ query: '{ __schema { queryType { name } } }' }))).toBe('UNAUTHENTICATED');
  expect((await gql({ query: '{ __schema { queryType { name } } }' }, ADMIN)).body.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
  const deep = `{ ${'releases { instances { release { '.repeat(5)}id${' } } }'.repeat(5)} }`;
  expect((await gql({ query: deep }, ADMIN)).body.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'DEPTH_LIMIT' });
  const huge = await gql({ query: `{ releases { id } } # ${'x'.repeat(1.1 * 1024 * 1024)}` }, ADMIN);
  expect(huge.status).toBe(413);
});

test('mutations beyond the per-principal rate are refused with RATE_LIMITED and write nothing', async () => {
  const key = await createKey('busy-bot', 'ADMIN');
  const other = await createKey('calm-bot', 'ADMIN');
  process.env.FZ_RATE_MUTATIONS_PER_MINUTE = '3';
  try {
    const join = () => gql({ query: 'mutation { createJoinToken { token } }' }, key.secret);
    for (let i = 0; i < 3; i++) expect((await join()).body.errors).toBeUndefined();
    const claimsBefore = (await store.scan('claims')).length;
    const refused = await join();
    expect(refused.status).toBe(429);
    expect(refused.body.errors![0].extensions).toMatchObject({ code: 'RATE_LIMITED' });
    expect(refused.headers['retry-after']).toMatch(/^\d+$/);
    expect((await store.scan('claims')).length).toBe(claimsBefore);
    // Reads are not limited, and another principal has its own budget.
    expect((await gql({ query: '{ releases { id } }' }, key.secret)).body.errors).toBeUndefined();
    expect((await gql({ query: 'mutation { createJoinToken { token } }' }, other.secret)).body.errors).toBeUndefined();
  } finally {
    delete process.env.FZ_RATE_MUTATIONS_PER_MINUTE;
  }
});

test('a join token registers one host only, and a revoked host token stops working at once', async () => {
  const token = (await gql({ query: 'mutation { createJoinToken { token } }' }, ADMIN)).body.data!.createJoinToken.token;
  const register = (name: string) => gql({
    query: 'mutation($i: RegisterHostInput!) { registerHost(input: $i) { host { id } hostToken } }',
    variables: { i: { joinToken: token, name, address: '127.0.0.1', capacity: { cpuMillis: 1000, memoryMb: 512 } } },
  });
  const [a, b] = await Promise.all([register('join-a'), register('join-b')]);
  const outcomes = [a, b].map((r) => (r.body.errors ? codeOf(r) : 'OK')).sort();
  expect(outcomes).toEqual(['OK', 'UNAUTHENTICATED']);
  expect(codeOf(await register('join-c'))).toBe('UNAUTHENTICATED');

  const { host, hostToken } = (a.body.data ?? b.body.data)!.registerHost;
  // Neither token is kept in the clear: the store holds their hashes only.
  const stored = JSON.stringify([...await store.scan('hosts'), ...await store.scan('claims')]);
  expect(stored).not.toContain(hostToken);
  expect(stored).not.toContain(token);
  expect(stored).toContain(hashSecret(hostToken));
  const sync = { query: 'mutation { runnerSync(input: {observed: []}) { hostId } }' };
  expect((await gql(sync, hostToken)).body.data).toEqual({ runnerSync: { hostId: host.id } });
  expect((await gql({ query: `mutation { revokeHost(id: "${host.id}") { id } }` }, ADMIN)).body.errors).toBeUndefined();
  expect(codeOf(await gql(sync, hostToken))).toBe('UNAUTHENTICATED');
});

test('a host token revoked by another API process is refused here within a second', async () => {
  const token = (await gql({ query: 'mutation { createJoinToken { token } }' }, ADMIN)).body.data!.createJoinToken.token;
  const { host, hostToken } = (await gql({
    query: 'mutation($i: RegisterHostInput!) { registerHost(input: $i) { host { id } hostToken } }',
    variables: { i: { joinToken: token, name: 'revoked-elsewhere', address: '127.0.0.1', capacity: { cpuMillis: 1000, memoryMb: 512 } } },
  }, ADMIN)).body.data!.registerHost;
  const sync = { query: 'mutation { runnerSync(input: {observed: []}) { hostId } }' };
  expect((await gql(sync, hostToken)).body.data).toEqual({ runnerSync: { hostId: host.id } });
  // Revoked through a store client of its own, as another replica would: this process learns it from the store only.
  await revokeHost(store, host.id);
  await new Promise((resolve) => setTimeout(resolve, VERIFIED_MS));
  const after = await gql(sync, hostToken);
  expect(after.status).toBe(401);
  expect(codeOf(after)).toBe('UNAUTHENTICATED');
});

test('a join token expires: it lives ttlSeconds (at least a minute), and past its expiry it registers nothing', async () => {
  const create = (ttl: number) => gql({ query: `mutation { createJoinToken(ttlSeconds: ${ttl}) { token expiresAt } }` }, ADMIN);
  const tooShort = await create(5);
  expect(codeOf(tooShort)).toBe('BAD_USER_INPUT');
  expect(tooShort.body.errors![0].message).toMatch(/ttlSeconds must be an integer from 60 to 604800, got 5/);
  const { token, expiresAt } = (await create(90)).body.data!.createJoinToken as { token: string; expiresAt: string };
  expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(80_000);
  expect(Date.parse(expiresAt) - Date.now()).toBeLessThanOrEqual(90_000);
  // Time passing, simulated by moving the stored expiry into the past (waiting out the one-minute minimum would only
  // slow the suite); the API's clock then finds the token expired.
  const moved = await store.mutate<{ key: string; expiresAt: string; seq: number }>('claims', `join-token#${hashSecret(token)}`,
    (c) => c && { ...c, expiresAt: new Date(Date.now() - 1000).toISOString() });
  expect(moved).toBeDefined();
  const late = await gql({
    query: 'mutation($i: RegisterHostInput!) { registerHost(input: $i) { hostToken } }',
    variables: { i: { joinToken: token, name: 'join-late', address: '127.0.0.1', capacity: { cpuMillis: 1000, memoryMb: 512 } } },
  });
  expect(codeOf(late)).toBe('UNAUTHENTICATED');
  expect(late.body.errors![0].message).toMatch(/has expired: ask an admin for a new one/);
  const hosts = await gql({ query: '{ hosts { name } }' }, ADMIN);
  expect(hosts.body.data!.hosts.map((h: { name: string }) => h.name)).not.toContain('join-late');
});

test('webhook channels may not target loopback or metadata addresses, and a refused test send names no address', async () => {
  const create = (target: string) => gql({ query: 'mutation($i: AlertChannelInput!) { createAlertChannel(input: $i) { id } }', variables: { i: { name: `hook-${Date.now()}`, kind: 'WEBHOOK', target } } }, ADMIN);
  for (const target of ['http://127.0.0.1:9/hook', 'http://169.254.169.254/latest/meta-data/', 'http://localhost:3000/graphql', 'http://[::1]/x']) {
    const res = await create(target);
    expect([target, codeOf(res)]).toEqual([target, 'BAD_USER_INPUT']);
    expect(res.body.errors![0].message).toMatch(/^target must not be a (loopback|cloud metadata|local or metadata host)/);
  }
  // Allowed by configuration when created; refused again at send time once the configuration no longer allows it.
  process.env.FZ_WEBHOOK_ALLOW_LOCAL = 'true';
  const id = (await create('http://127.0.0.1:9/hook')).body.data!.createAlertChannel.id;
  delete process.env.FZ_WEBHOOK_ALLOW_LOCAL;
  const sent = await gql({ query: `mutation { testAlertChannel(id: "${id}") { delivered error } }` }, ADMIN);
  expect(sent.body.data!.testAlertChannel).toEqual({ delivered: false, error: 'refused: the target is a loopback address (FZ_WEBHOOK_ALLOW_LOCAL=true allows it)' });
});

test('a host that declared more capacity than its engine reports is capped at the engine at its first sync', async () => {
  const token = (await gql({ query: 'mutation { createJoinToken { token } }' }, ADMIN)).body.data!.createJoinToken.token;
  const registered = await gql({
    query: 'mutation($i: RegisterHostInput!) { registerHost(input: $i) { host { id } hostToken } }',
    variables: { i: { joinToken: token, name: 'greedy', address: '127.0.0.3', capacity: { cpuMillis: 512_000, memoryMb: 4_000_000 } } },
  });
  const { host, hostToken } = registered.body.data!.registerHost;
  const synced = await gql({ query: 'mutation { runnerSync(input: {observed: [], engine: {version: "26.1", os: "Debian", cpuMillis: 2000, memoryMb: 3900}}) { hostId } }' }, hostToken);
  expect(synced.body.errors).toBeUndefined();
  const seen = await gql({ query: `{ host(id: "${host.id}") { capacity { cpuMillis memoryMb } } }` }, ADMIN);
  expect(seen.body.data!.host.capacity).toEqual({ cpuMillis: 2000, memoryMb: 3900 });
});

describe('a key scoped to a product or a release reads only what belongs to it', () => {
  /**
   * Two teams' products on one shared host: "alpha" and "beta", a release of each, reported by the host's runner
   * (container events, and an unhealthy container raising an alarm for each release).
   */
  let hostId: string;
  let hostToken: string;
  const rel = { alpha: '', beta: '' };
  const inst = { alpha: '', beta: '' };
  const alarmOf = { alpha: '', beta: '' };
  let viewer: string;
  let operator: string;
  let unscoped: string;
  let desired: { instanceId: string; specHash: string; name: string }[] = [];
  const observed = new Map<string, Record<string, unknown>>();

  /** The host's runner reports its containers (as last told, with these changes) and learns what it should run. */
  const report = async (changes: Record<string, Record<string, unknown>> = {}) => {
    for (const [id, change] of Object.entries(changes)) observed.set(id, { ...observed.get(id), ...change });
    const containers = desired.map((d, n) => ({
      containerId: `c-${d.instanceId}`, instanceId: d.instanceId, specHash: d.specHash, name: d.name, state: 'RUNNING', health: 'HEALTHY',
      restartCount: 0, oomKilled: false, ports: [{ containerPort: 8080, protocol: 'tcp', hostPort: 41000 + n }], ...observed.get(d.instanceId),
    }));
    const res = await gql({ query: 'mutation($o: [ObservedContainerInput!]!) { runnerSync(input: {observed: $o}) { desired { instanceId specHash name } } }', variables: { o: containers } }, hostToken);
    expect(res.body.errors).toBeUndefined();
    desired = res.body.data!.runnerSync.desired;
  };

  const read = async (query: string, token: string, variables: Record<string, unknown> = {}) => {
    const res = await gql({ query, variables }, token);
    expect([query, res.body.errors]).toEqual([query, undefined]);
    return res.body.data!;
  };

  const refused = async (query: string, token: string, variables: Record<string, unknown> = {}) => {
    const res = await gql({ query, variables }, token);
    expect([query, codeOf(res)]).toEqual([query, 'FORBIDDEN']);
    expect(res.body.errors![0].message).toMatch(/is scoped to products \[.*\] and releases \[.*\]: .* is outside it/);
    return res;
  };

  beforeAll(async () => {
    for (const name of ['alpha', 'beta']) {
      const defined = await gql({ query: `mutation { defineProduct(input: {name: "${name}", description: "${name} team", versions: [{version: "1.0.0", image: "fangzhou/demo:1"}], defaults: {replicas: 1, resources: {cpuMillis: 100, memoryMb: 64}}}) { name } }` }, ADMIN);
      expect(defined.body.errors).toBeUndefined();
    }
    const token = (await gql({ query: 'mutation { createJoinToken { token } }' }, ADMIN)).body.data!.createJoinToken.token;
    const registered = await gql({
      query: 'mutation($i: RegisterHostInput!) { registerHost(input: $i) { host { id } hostToken } }',
      variables: { i: { joinToken: token, name: 'shared-host', address: '127.0.0.9', labels: [{ key: 'pool', value: 'scoped' }], capacity: { cpuMillis: 2000, memoryMb: 2048 } } },
    });
    ({ hostToken } = registered.body.data!.registerHost);
    hostId = registered.body.data!.registerHost.host.id;
    for (const name of ['alpha', 'beta'] as const) {
      const deployed = await gql({ query: `mutation { deploy(input: {name: "${name}-rel", product: "${name}", replicas: 1, placement: {requiredLabels: [{key: "pool", value: "scoped"}]}}) { id instances { id } } }` }, ADMIN);
      expect(deployed.body.errors).toBeUndefined();
      rel[name] = deployed.body.data!.deploy.id;
      inst[name] = deployed.body.data!.deploy.instances[0].id;
    }
    await report();
    await report();
    await report({ [inst.alpha]: { health: 'UNHEALTHY' }, [inst.beta]: { health: 'UNHEALTHY' } });
    const alarms = (await read('{ alarms { nodes { id release { id } } } }', ADMIN)).alarms.nodes as { id: string; release: { id: string } | null }[];
    for (const name of ['alpha', 'beta'] as const) alarmOf[name] = alarms.find((a) => a.release?.id === rel[name])!.id;
    expect(alarmOf.alpha && alarmOf.beta).toBeTruthy();

    viewer = (await createKey('alpha-dashboard', 'VIEWER', { products: ['alpha'] })).secret;
    operator = (await createKey('alpha-release-bot', 'OPERATOR', { releases: [rel.alpha] })).secret;
    unscoped = (await createKey('fleet-dashboard', 'VIEWER')).secret;
  });

  test('lists hold only the releases, instances, events, alarms and containers of the scope', async () => {
    const LISTS = `query($host: ID!) {
      products { name } releases { id name }
      host(id: $host) { name instances { id } containers { instance { id } } }
      events(first: 500) { nodes { release { id } instance { id } } }
      alarms { nodes { id release { id } } }
      unhealthyContainers { instance { id } }
    }`;
    for (const token of [viewer, operator]) {
      const seen = await read(LISTS, token, { host: hostId });
      expect(seen.products).toEqual([{ name: 'alpha' }]);
      expect(seen.releases).toEqual([{ id: rel.alpha, name: 'alpha-rel' }]);
      // The shared host itself is readable; only the scope's instance is on it.
      expect(seen.host).toEqual({ name: 'shared-host', instances: [{ id: inst.alpha }], containers: [{ instance: { id: inst.alpha } }] });
      expect(seen.events.nodes.length).toBeGreaterThan(0);
      expect(new Set(seen.events.nodes.map((e: { release: { id: string } }) => e.release.id))).toEqual(new Set([rel.alpha]));
      expect(seen.alarms.nodes).toEqual([{ id: alarmOf.alpha, release: { id: rel.alpha } }]);
      expect(seen.unhealthyContainers).toEqual([{ instance: { id: inst.alpha } }]);
    }
    // Unchanged for a key without a scope: both teams' releases and instances.
    const all = await read(LISTS, unscoped, { host: hostId });
    expect(all.releases.map((r: { name: string }) => r.name)).toEqual(expect.arrayContaining(['alpha-rel', 'beta-rel']));
    expect(all.host.instances.map((i: { id: string }) => i.id).sort()).toEqual([inst.alpha, inst.beta].sort());
    expect(all.alarms.nodes.map((a: { id: string }) => a.id)).toEqual(expect.arrayContaining([alarmOf.alpha, alarmOf.beta]));
    expect(all.events.nodes.some((e: { release: { id: string } | null }) => e.release?.id === rel.beta)).toBe(true);
  });

  test('a direct read of another product’s release, instance, alarm, event or artefact is FORBIDDEN', async () => {
    const betaEvent = (await read(`{ events(filter: {releaseId: "${rel.beta}"}, first: 1) { nodes { id } } }`, ADMIN)).events.nodes[0].id;
    for (const token of [viewer, operator]) {
      expect(await read(`{ release(id: "${rel.alpha}") { name product { name } instances { id } health { desired } } }`, token))
        .toEqual({ release: { name: 'alpha-rel', product: { name: 'alpha' }, instances: [{ id: inst.alpha }], health: { desired: 1 } } });
      expect((await read(`{ instance(id: "${inst.alpha}") { id status { health } } }`, token)).instance.id).toBe(inst.alpha);
      expect((await read(`{ alarm(id: "${alarmOf.alpha}") { id } }`, token)).alarm).toEqual({ id: alarmOf.alpha });

      await refused(`{ release(id: "${rel.beta}") { name } }`, token);
      await refused('{ product(name: "beta") { name } }', token);
      await refused(`{ instance(id: "${inst.beta}") { id } }`, token);
      await refused(`{ containerStatus(instanceId: "${inst.beta}") { state } }`, token);
      await refused(`{ alarm(id: "${alarmOf.beta}") { id } }`, token);
      await refused(`{ event(id: "${betaEvent}") { id } }`, token);
      await refused(`{ events(filter: {releaseId: "${rel.beta}"}) { nodes { id } } }`, token);
      await refused(`{ alarms(filter: {releaseId: "${rel.beta}"}) { nodes { id } } }`, token);
      await refused(`{ configFiles(releaseId: "${rel.beta}") { instanceId } }`, token);
      await refused(`{ deploymentScript(releaseId: "${rel.beta}", format: SHELL) }`, token);
      // Service discovery answers a name of another team's release as it answers a name of no release.
      expect(await read('{ resolveName(name: "beta-rel-0.beta-rel.fz.internal") { ip } }', token)).toEqual({ resolveName: [] });
      const summary = (await read('{ configSummary(format: CSV) }', token)).configSummary as string;
      expect(summary).toContain('alpha-rel');
      expect(summary).not.toContain('beta-rel');
    }
    // An unknown id is answered as for anyone (null), not FORBIDDEN.
    expect(await read('{ release(id: "r-nosuch") { id } }', viewer)).toEqual({ release: null });
    expect((await read(`{ release(id: "${rel.beta}") { name } }`, unscoped)).release).toEqual({ name: 'beta-rel' });
    expect((await read('{ resolveName(name: "beta-rel-0.beta-rel.fz.internal") { ip } }', unscoped)).resolveName).toHaveLength(1);
  });

  test('a subgraph called directly refuses an entity outside the scope (no gateway filter to rely on)', async () => {
    const butler = httpClient((await import('../../handlers/butler')).handler as never, '/subgraphs/butler');
    const entities = 'query($r: [_Any!]!) { _entities(representations: $r) { ... on Release { health { desired } } } }';
    const own = await butler({ query: entities, variables: { r: [{ __typename: 'Release', id: rel.alpha }] } }, viewer);
    expect(own.body.data).toEqual({ _entities: [{ health: { desired: 1 } }] });
    const other = await butler({ query: entities, variables: { r: [{ __typename: 'Release', id: rel.beta }] } }, viewer);
    expect(other.body.data).toEqual({ _entities: [null] });
    expect(other.body.errors![0]).toMatchObject({ extensions: { code: 'FORBIDDEN', reason: 'OUT_OF_SCOPE' } });
  });

  test('subscriptions deliver a scoped subscriber only the events of its scope (real graphql-ws client, server mode)', async () => {
    const { startServer } = await import('../../server/server');
    const server = await startServer({ host: '127.0.0.1', httpPort: 0, wsPort: 0, tickMs: 60_000, leaseMs: 120_000, ticks: false });
    const clients: Client[] = [];
    try {
      const subscribe = (token: string, query: string, variables?: Record<string, unknown>) => {
        const client = createWsClient({ url: server.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0 });
        clients.push(client);
        const sub = { results: [] as { data?: Record<string, any> | null; errors?: unknown[] }[], error: undefined as unknown };
        client.subscribe({ query, variables }, { next: (v) => sub.results.push(v as never), error: (e) => { sub.error = e; }, complete: () => undefined });
        return sub;
      };
      const ALARMS = 'subscription { alarmRaised { id kind release { name } } }';
      const scopedAlarms = subscribe(viewer, ALARMS);
      const scopedStatus = subscribe(operator, 'subscription { containerStatusChanged { instance { id } state } }');
      const adminAlarms = subscribe(ADMIN, ALARMS);
      const otherProgress = subscribe(viewer, 'subscription($r: ID!) { releaseProgress(releaseId: $r) { id } }', { r: rel.beta });
      await waitUntil('the three subscriptions to be stored', async () =>
        (await store.scan<{ kind: string }>('subscriptions')).filter((i) => i.kind === 'subscription').length === 3, 20_000, 100);
      expect(otherProgress.error).toEqual([expect.objectContaining({ extensions: { code: 'FORBIDDEN', reason: 'OUT_OF_SCOPE' } })]);

      const oom = { state: 'EXITED', health: 'NONE', oomKilled: true, exitCode: 137 };
      await report({ [inst.beta]: oom });
      const kindOf = (sub: typeof scopedAlarms, release: string) => sub.results.find((r) => r.data?.alarmRaised?.kind === 'CONTAINER_OOM' && r.data.alarmRaised.release.name === release);
      await waitFor('the admin to receive beta’s alarm', async () => kindOf(adminAlarms, 'beta-rel'), 20_000, 100);
      await report({ [inst.alpha]: oom });
      await waitFor('the scoped subscriber to receive alpha’s alarm', async () => kindOf(scopedAlarms, 'alpha-rel'), 20_000, 100);
      await waitFor('the admin to receive alpha’s alarm', async () => kindOf(adminAlarms, 'alpha-rel'), 20_000, 100);
      await waitFor('the scoped operator to receive alpha’s container change', async () =>
        scopedStatus.results.find((r) => r.data?.containerStatusChanged?.state === 'EXITED'), 20_000, 100);

      // Beta's events went out first (oldest first, one publisher): had they leaked, they would be here by now.
      // (Alarms raised moments before subscribing are delivered too: the publisher replays the last 2 s.)
      expect(scopedAlarms.results.map((r) => r.data?.alarmRaised.release.name)).toEqual(scopedAlarms.results.map(() => 'alpha-rel'));
      expect(adminAlarms.results.filter((r) => r.data?.alarmRaised.release.name === 'beta-rel').length).toBeGreaterThan(0);
      expect(scopedAlarms.results.every((r) => !r.errors)).toBe(true);
      expect(scopedStatus.results.length).toBeGreaterThan(0);
      expect(scopedStatus.results.map((r) => r.data?.containerStatusChanged.instance.id)).toEqual(scopedStatus.results.map(() => inst.alpha));
      expect(scopedAlarms.error ?? scopedStatus.error).toBeUndefined();
    } finally {
      for (const c of clients) await c.dispose();
      await server.close();
    }
  });
});

describe('a scoped key deploys with dependencies only within its scope', () => {
  /** "stream" is one team's product; it depends on "keeper", another team's. */
  const STREAM_DEPLOY = 'mutation($i: DeployInput!) { deploy(input: $i) { id name } }';
  const deployStream = (token: string, name: string, withDependencies = true) =>
    gql({ query: STREAM_DEPLOY, variables: { i: { name, product: 'stream', withDependencies } } }, token);
  /** Everything a deploy writes (releases, revisions, instances, host books, addresses, names, idempotency claims). */
  const written = async () => Object.fromEntries(await Promise.all(
    (['releases', 'revisions', 'instances', 'hosts', 'claims', 'panamaClaims', 'containers', 'events'] as const).map(async (t) => [t, await store.scan(t)] as const),
  ));
  const releasesOf = async () => (await store.scan<{ id: string; name: string; product: string; dependsOn: string[] }>('releases'));

  beforeAll(async () => {
    for (const [name, dependencies] of [['keeper', []], ['stream', [{ product: 'keeper', versionRange: '^1.0' }]]] as const) {
      const defined = await gql({
        query: 'mutation($i: ProductInput!) { defineProduct(input: $i) { name } }',
        variables: { i: { name, versions: [{ version: '1.0.0', image: `fangzhou/${name}:1` }], dependencies, defaults: { replicas: 1, resources: { cpuMillis: 50, memoryMb: 32 } } } },
      }, ADMIN);
      expect(defined.body.errors).toBeUndefined();
    }
    const token = (await gql({ query: 'mutation { createJoinToken { token } }' }, ADMIN)).body.data!.createJoinToken.token;
    const registered = await gql({
      query: 'mutation($i: RegisterHostInput!) { registerHost(input: $i) { host { id } } }',
      variables: { i: { joinToken: token, name: 'deps-host', address: '127.0.0.11', capacity: { cpuMillis: 4000, memoryMb: 4096 } } },
    });
    expect(registered.body.errors).toBeUndefined();
  });

  test('creating a release of a dependency outside the scope is FORBIDDEN and writes nothing; with the dependency in scope it deploys both', async () => {
    const stream = await createKey('stream-team', 'OPERATOR', { products: ['stream'] });
    const before = await written();
    const refused = await deployStream(stream.secret, 'stream-a');
    expect(refused.body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', reason: 'OUT_OF_SCOPE' });
    expect(refused.body.errors![0].message).toBe(`${stream.key.id} is scoped to products [stream] and releases []: deploy of stream needs a release of keeper, `
      + 'outside the scope: a scoped key creates releases only of the products it names and relies only on releases in its scope. To use a release of '
      + 'keeper, ask an admin to add it to this key\'s scope (releases), deploying it first with a key that covers keeper if there is none; or ask for '
      + 'a scope that includes the product keeper.');
    // Without withDependencies too: it would rely on a release outside the scope.
    expect((await deployStream(stream.secret, 'stream-a', false)).body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', reason: 'OUT_OF_SCOPE' });
    expect(await written()).toEqual(before);
    const audited = await gql({ query: `{ auditLog(filter: {principal: "${stream.key.id}", operation: "deploy"}) { nodes { outcome code } } }` }, ADMIN);
    expect(audited.body.data!.auditLog.nodes).toEqual([{ outcome: 'DENIED', code: 'FORBIDDEN' }, { outcome: 'DENIED', code: 'FORBIDDEN' }]);

    const both = await createKey('stream-and-keeper-team', 'OPERATOR', { products: ['stream', 'keeper'] });
    const deployed = await deployStream(both.secret, 'stream-a');
    expect(deployed.body.errors).toBeUndefined();
    const releases = await releasesOf();
    const keeper = releases.find((r) => r.product === 'keeper')!;
    expect(keeper.name).toBe('keeper');
    expect(releases.find((r) => r.name === 'stream-a')).toMatchObject({ product: 'stream', dependsOn: [keeper.id] });
  });

  test('another team’s existing release of the dependency is neither used nor revealed; named in the scope, it is used; its team learns no dependant’s name', async () => {
    const keeper = (await releasesOf()).find((r) => r.product === 'keeper')!;
    const stream = await createKey('stream-team-2', 'OPERATOR', { products: ['stream'] });
    const before = await written();
    const refused = await deployStream(stream.secret, 'stream-b');
    expect(refused.body.errors![0].extensions).toMatchObject({ code: 'FORBIDDEN', reason: 'OUT_OF_SCOPE' });
    // The very refusal of an empty platform: nothing says that a release of keeper exists, nor which.
    expect(refused.body.errors![0].message).toMatch(/: deploy of stream needs a release of keeper, outside the scope: .* or ask for a scope that includes the product keeper\.$/);
    expect(refused.body.errors![0].message).not.toContain(keeper.id);
    expect(refused.body.errors![0].message).not.toMatch(/1\.0\.0|keeper"|exists/);
    expect(await written()).toEqual(before);

    const allowed = await createKey('stream-team-3', 'OPERATOR', { products: ['stream'], releases: [keeper.id] });
    const deployed = await deployStream(allowed.secret, 'stream-c');
    expect(deployed.body.errors).toBeUndefined();
    const after = await releasesOf();
    expect(after.length).toBe(before.releases.length + 1);
    expect(after.find((r) => r.name === 'stream-c')).toMatchObject({ product: 'stream', dependsOn: [keeper.id] });

    // The keeper team cannot delete its release while others need it, and learns no names of theirs.
    const keeperTeam = await createKey('keeper-team', 'OPERATOR', { products: ['keeper'] });
    const kept = await gql({ query: `mutation { deleteRelease(id: "${keeper.id}") { id } }` }, keeperTeam.secret);
    expect(codeOf(kept)).toBe('CONFLICT');
    expect(kept.body.errors![0].message).toBe('release "keeper" is needed by 2 releases outside this key\'s scope; delete those first (those outside the scope with a key that covers them)');
  });
});
