import { store } from '../../lib/store';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';
import { startInProcess } from '../support/inprocess';

/**
 * Orchestration through the API (in-process gateway, dynalite): dependency-driven deploys that wait for what they
 * need, exclusive hosts, config changes. Runner reports are sent as a runner would send them; the reconciler's tick is
 * called directly.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
let hostId: string;
const define = (name: string, dependencies: { product: string; versionRange: string }[] = [], extra: Record<string, unknown> = {}) =>
  api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', {
    input: { name, versions: [{ version: '1.0.0', image: `fangzhou/${name}:1` }, { version: '1.2.0', image: `fangzhou/${name}:1.2` }], dependencies,
      defaults: { replicas: 1, resources: { cpuMillis: 100, memoryMb: 32 } }, ...extra },
  });
const RELEASES = '{ releases { id name product { name } version status statusMessage instances { ordinal } } }';
const releases = async () => (await api.run(RELEASES)).data!.releases as { id: string; name: string; version: string; status: string; statusMessage: string | null; instances: unknown[] }[];
const byName = async (name: string) => (await releases()).find((r) => r.name === name)!;

beforeAll(async () => {
  api = await startInProcess('orch-');
  hostId = await api.registerHost('orch-host', { cpuMillis: 4000, memoryMb: 4096 });
  await define('db');
  await define('cache');
  await define('app', [{ product: 'db', versionRange: '^1.0' }, { product: 'cache', versionRange: '~1.0.0' }]);
});

afterAll(async () => {
  await api?.stop();
});

test('resolveDependencies lists dependencies first with the versions the dependants accept', async () => {
  const res = await api.run('{ resolveDependencies(products: ["app"]) { product { name } version requiredBy } }');
  expect(res.data!.resolveDependencies).toEqual([
    { product: { name: 'db' }, version: '1.2.0', requiredBy: ['app'] },
    { product: { name: 'cache' }, version: '1.0.0', requiredBy: ['app'] },
    { product: { name: 'app' }, version: '1.2.0', requiredBy: [] },
  ]);
});

test('a product whose dependencies have no release is refused without withDependencies, naming what is missing', async () => {
  const res = await api.run('mutation { deploy(input: {name: "app", product: "app"}) { id } }');
  expect(res.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  expect(res.errors?.[0].message).toBe('app needs db ^1.0, which has no release; deploy it first or pass withDependencies: true');
  expect(await releases()).toEqual([]);
});

test('withDependencies deploys what is missing, dependencies first, and the release waits until they run', async () => {
  const res = await api.run('mutation { deploy(input: {name: "shop", product: "app", withDependencies: true}) { name status statusMessage instances { id } } }');
  expect(res.errors).toBeUndefined();
  expect(res.data!.deploy).toMatchObject({ name: 'shop', status: 'PENDING', instances: [] });
  expect((await releases()).map((r) => [r.name, r.version, r.status])).toEqual([
    ['cache', '1.0.0', 'DEPLOYING'],
    ['db', '1.2.0', 'DEPLOYING'],
    ['shop', '1.2.0', 'PENDING'],
  ]);

  await reconcileReleases(store());
  expect((await byName('shop')).statusMessage).toMatch(/^waiting for (cache|db) \(DEPLOYING\)$/);
  expect((await byName('shop')).instances).toEqual([]);

  // The dependencies' runner reports them running and healthy; the next tick places the waiting release.
  await api.reportAllRunning(hostId);
  expect((await byName('db')).status).toBe('RUNNING');
  await reconcileReleases(store());
  const shop = await byName('shop');
  expect(shop.status).toBe('DEPLOYING');
  expect(shop.instances).toHaveLength(1);
  await api.reportAllRunning(hostId);
  expect((await byName('shop')).status).toBe('RUNNING');
});

test('a dependency in use cannot be deleted', async () => {
  const db = await byName('db');
  const res = await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: db.id });
  expect(res.errors?.[0].extensions?.code).toBe('CONFLICT');
  expect(res.errors?.[0].message).toBe('release "db" is needed by "shop"; delete those first');
});

test('a second dependant reuses the running dependencies instead of deploying them again', async () => {
  const res = await api.run('mutation { deploy(input: {name: "shop2", product: "app", withDependencies: true}) { status } }');
  expect(res.data!.deploy.status).toBe('PENDING');
  expect((await releases()).map((r) => r.name)).toEqual(['cache', 'db', 'shop', 'shop2']);
  await reconcileReleases(store());
  expect((await byName('shop2')).instances).toHaveLength(1);
});

test('a product that demands exclusive hosts goes only to hosts dedicated to it', async () => {
  await define('vault', [], { requiresExclusiveHosts: true });
  const refused = await api.run('mutation { deploy(input: {name: "vault", product: "vault"}) { id } }');
  expect(refused.errors?.[0].extensions?.code).toBe('UNSCHEDULABLE');
  expect(refused.errors?.[0].message).toMatch(/not dedicated to vault/);

  const busy = await api.run('mutation($id: ID!) { setHostExclusive(id: $id, product: "vault") { id } }', { id: hostId });
  expect(busy.errors?.[0].extensions?.code).toBe('CONFLICT');

  const dedicated = await api.registerHost('vault-host', { cpuMillis: 1000, memoryMb: 1024 });
  const set = await api.run('mutation($id: ID!) { setHostExclusive(id: $id, product: "vault") { exclusiveFor } }', { id: dedicated });
  expect(set.data!.setHostExclusive.exclusiveFor).toBe('vault');
  const placed = await api.run('mutation { deploy(input: {name: "vault", product: "vault"}) { instances { host { name } } } }');
  expect(placed.data!.deploy.instances).toEqual([{ host: { name: 'vault-host' } }]);
  // ...and a dedicated host takes nothing else.
  const other = await api.run('mutation { deploy(input: {name: "more-cache", product: "cache", replicas: 1, resources: {cpuMillis: 3900, memoryMb: 32}}) { id } }');
  expect(other.errors?.[0].message).toMatch(/1 dedicated to another product/);
});

test('configureRelease makes a revision and gives every instance a new spec, which the runner sees as a new hash', async () => {
  const cache = await byName('cache');
  const before = (await api.run('mutation { runnerSync(input: {observed: []}) { desired { instanceId specHash env { name value } } } }', {}, { principal: { kind: 'host', hostId } })).data!.runnerSync.desired
    .find((d: { instanceId: string }) => d.instanceId === `${cache.id}-0`);
  const res = await api.run('mutation($id: ID!) { configureRelease(id: $id, env: [{name: "MAXMEMORY", value: "16mb"}]) { revision revisions { reason } env { name value } } }', { id: cache.id });
  expect(res.data!.configureRelease).toEqual({ revision: 2, revisions: [{ reason: 'deploy' }, { reason: 'config change' }], env: [{ name: 'MAXMEMORY', value: '16mb' }] });
  const after = (await api.run('mutation { runnerSync(input: {observed: []}) { desired { instanceId specHash env { name value } } } }', {}, { principal: { kind: 'host', hostId } })).data!.runnerSync.desired
    .find((d: { instanceId: string }) => d.instanceId === `${cache.id}-0`);
  expect(after.specHash).not.toBe(before.specHash);
  expect(after.env).toEqual([{ name: 'MAXMEMORY', value: '16mb' }]);
});

test('config files are rendered per instance with the peers list, and a broken template is refused at its line', async () => {
  const broken = await define('zk-broken', [], { configTemplates: [{ path: '/conf/zoo.cfg', template: 'tickTime=2000\n{{#each peers}}server.{{number}}={{domainName}}:2888:3888\n{{/each}}myid={{instance.numbr}}\n' }] });
  expect(broken.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  expect(broken.errors?.[0].message).toMatch(/config template \/conf\/zoo.cfg, line 3, column 17: .*"numbr" is not defined on instance/);
  expect((await api.run('{ product(name: "zk-broken") { name } }')).data!.product).toBeNull();

  await define('zk', [], { configTemplates: [{ path: '/conf/zoo.cfg', template: '{{#each peers}}server.{{number}}={{domainName}}:2888:3888\n{{/each}}myid={{instance.number}}\n' }] });
  const id = (await api.run('mutation { deploy(input: {name: "zk", product: "zk", replicas: 3}) { id } }')).data!.deploy.id;
  const files = (await api.run('query($id: ID!) { configFiles(releaseId: $id) { ordinal domainName files { path content } } }', { id })).data!.configFiles;
  const servers = [1, 2, 3].map((n) => `server.${n}=zk-${n - 1}.zk.fz.internal:2888:3888`).join('\n');
  expect(files.map((f: { ordinal: number; files: unknown }) => [f.ordinal, f.files])).toEqual([0, 1, 2].map((n) => [n, [{ path: '/conf/zoo.cfg', content: `${servers}\nmyid=${n + 1}\n` }]]));

  // Scaling changes the peers: every remaining instance gets the new list.
  await api.run('mutation($id: ID!) { scaleRelease(id: $id, replicas: 2) { replicas } }', { id });
  const after = (await api.run('query($id: ID!) { configFiles(releaseId: $id) { files { content } } }', { id })).data!.configFiles;
  expect(after.map((f: { files: { content: string }[] }) => f.files[0].content)).toEqual([0, 1].map((n) =>
    `server.1=zk-0.zk.fz.internal:2888:3888\nserver.2=zk-1.zk.fz.internal:2888:3888\nmyid=${n + 1}\n`));
});

test('the deployment script, compose file and config summary describe what is deployed', async () => {
  const cache = await byName('cache');
  const shell = (await api.run('query($id: ID!) { deploymentScript(releaseId: $id, format: SHELL) }', { id: cache.id })).data!.deploymentScript;
  expect(shell).toMatch(/^#!\/bin\/sh/);
  expect(shell).toContain("'fz-cache-0'");
  expect(shell).toContain("'fangzhou/cache:1'");
  const compose = (await api.run('query($id: ID!) { deploymentScript(releaseId: $id, format: COMPOSE) }', { id: cache.id })).data!.deploymentScript;
  expect(compose).toContain('fz-cache-0');
  const csv = (await api.run('{ configSummary(format: CSV) }')).data!.configSummary as string;
  const lines = csv.trim().split(/\r?\n/);
  expect(lines[0]).toMatch(/^release,/);
  expect(lines.some((l) => l.startsWith('cache,') && l.includes('orch-host'))).toBe(true);
  const md = (await api.run('{ configSummary(format: MARKDOWN) }')).data!.configSummary as string;
  expect(md.split('\n')[1]).toMatch(/^\|[ -:|]+\|$/);
  expect((await api.run('{ deploymentScript(releaseId: "r-none", format: SHELL) }')).errors?.[0].extensions?.code).toBe('NOT_FOUND');
});
