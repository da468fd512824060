import { store } from '../../lib/store';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';
import { startInProcess } from '../support/inprocess';

/**
 * Integrity under concurrency (in-process gateway, dynalite): one writer per release, idempotency keys bound to
 * their request, product versions that releases use. Requests race for real through the API; the reconcile tick is
 * called directly.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
let hostId: string;
const PRODUCT = { name: 'kv', versions: [{ version: '1.0.0', image: 'fangzhou/demo:1' }, { version: '2.0.0', image: 'fangzhou/demo:2' }],
  defaults: { replicas: 1, resources: { cpuMillis: 100, memoryMb: 32 } } };
const define = (input: Record<string, unknown>) => api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name versions { version } } }', { input });
const releases = async () => (await api.run('{ releases { id name replicas revision instances { ordinal } } }')).data!.releases as
  { id: string; name: string; replicas: number; revision: number; instances: { ordinal: number }[] }[];
const codeOf = (res: { errors?: { extensions?: { code?: string } }[] }) => res.errors?.[0].extensions?.code;

beforeAll(async () => {
  api = await startInProcess('integrity-');
  hostId = await api.registerHost('integrity-host', { cpuMillis: 8000, memoryMb: 8192 });
  expect((await define(PRODUCT)).errors).toBeUndefined();
});

afterAll(async () => {
  await api?.stop();
});

test('six parallel deploys with one idempotencyKey create one release and all answer it', async () => {
  const deploy = () => api.run('mutation { deploy(input: {name: "once", product: "kv", version: "1.0.0", idempotencyKey: "deploy-once-1"}) { id } }');
  const answers = await Promise.all(Array.from({ length: 6 }, deploy));
  expect(answers.map((a) => a.errors)).toEqual(Array(6).fill(undefined));
  expect(new Set(answers.map((a) => a.data!.deploy.id)).size).toBe(1);
  expect((await releases()).filter((r) => r.name === 'once')).toHaveLength(1);
});

test('the same idempotencyKey with different input is a CONFLICT and writes nothing', async () => {
  const before = await releases();
  const res = await api.run('mutation { deploy(input: {name: "twice", product: "kv", idempotencyKey: "deploy-once-1"}) { id } }');
  expect(codeOf(res)).toBe('CONFLICT');
  expect(res.errors![0].message).toMatch(/idempotencyKey "deploy-once-1" was already used for a different deploy \(release "once"\)/);
  expect(await releases()).toEqual(before);
});

test('concurrent scales serialize: every one is a revision, and the instances match the last count', async () => {
  const { id, revision } = (await releases()).find((r) => r.name === 'once')!;
  const counts = [5, 2, 4, 3];
  const answers = await Promise.all(counts.map((n) => api.run('mutation($id: ID!, $n: Int!) { scaleRelease(id: $id, replicas: $n) { replicas } }', { id, n })));
  expect(answers.map((a) => a.errors)).toEqual(Array(counts.length).fill(undefined));
  await reconcileReleases(store());
  const after = (await releases()).find((r) => r.id === id)!;
  expect(after.revision).toBe(revision + counts.length);
  expect(after.instances.map((i) => i.ordinal).sort()).toEqual(Array.from({ length: after.replicas }, (_, n) => n));
});

test('configure and scale during an upgrade are refused naming the upgrade, and write nothing', async () => {
  const { id } = (await releases()).find((r) => r.name === 'once')!;
  const up = await api.run('mutation($id: ID!) { upgradeRelease(id: $id, version: "2.0.0") { upgrade { state } } }', { id });
  expect(up.errors).toBeUndefined();
  const before = (await releases()).find((r) => r.id === id)!;
  const configure = await api.run('mutation($id: ID!) { configureRelease(id: $id, env: [{name: "A", value: "1"}]) { id } }', { id });
  expect(codeOf(configure)).toBe('CONFLICT');
  expect(configure.errors![0].message).toMatch(/cannot configure release "once": it is being upgraded to 2\.0\.0 \(0 of \d+ done\)/);
  const scale = await api.run('mutation($id: ID!) { scaleRelease(id: $id, replicas: 1) { id } }', { id });
  expect(codeOf(scale)).toBe('CONFLICT');
  expect((await releases()).find((r) => r.id === id)).toEqual(before);
});

test('dropping a version a release runs is refused naming the release; the product keeps it', async () => {
  const res = await define({ ...PRODUCT, versions: [PRODUCT.versions[1]] });
  expect(codeOf(res)).toBe('CONFLICT');
  expect(res.errors![0].message).toMatch(/cannot remove version 1\.0\.0 of kv: in use by release "once" \(1\.0\.0\)/);
  const product = await api.run('{ product(name: "kv") { versions { version } } }');
  expect(product.data!.product.versions).toEqual([{ version: '1.0.0' }, { version: '2.0.0' }]);
});

test('deleteProduct is refused while a release uses it, and removes it once none does', async () => {
  const refused = await api.run('mutation { deleteProduct(name: "kv") { name } }');
  expect(codeOf(refused)).toBe('CONFLICT');
  expect(refused.errors![0].message).toMatch(/product kv is used by release "once"/);
  for (const r of await releases()) {
    expect((await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: r.id })).errors).toBeUndefined();
  }
  await api.reportAllRunning(hostId);
  await reconcileReleases(store());
  expect(await releases()).toEqual([]);
  const deleted = await api.run('mutation { deleteProduct(name: "kv") { name } }');
  expect(deleted.errors).toBeUndefined();
  expect((await api.run('{ product(name: "kv") { name } }')).data!.product).toBeNull();
});
