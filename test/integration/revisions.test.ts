import { store } from '../../lib/store';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';
import type { Release } from '../../subgraphs/panama/releases';
import { startInProcess } from '../support/inprocess';

/**
 * Revisions as items of their own (in-process gateway, dynalite): a release's history does not grow its item, so a
 * release whose env is near DynamoDB's 400 KB item limit takes change after change; every revision stays listed,
 * pages by `first`/`after`, and an old one can still be rolled back to. Releases written before revisions were items
 * keep their history.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
let hostId: string;
const ITEM_LIMIT = 400 * 1024;

beforeAll(async () => {
  api = await startInProcess('rev-');
  hostId = await api.registerHost('rev-host', { cpuMillis: 4000, memoryMb: 4096 });
  const defined = await api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', {
    input: { name: 'big', versions: [{ version: '1.0.0', image: 'fangzhou/big:1' }, { version: '2.0.0', image: 'fangzhou/big:2' }],
      defaults: { replicas: 1, resources: { cpuMillis: 100, memoryMb: 32 } } },
  });
  expect(defined.errors).toBeUndefined();
});

afterAll(async () => {
  await api?.stop();
});

const revisions = async (id: string, args = '') =>
  (await api.run(`query($id: ID!) { release(id: $id) { revision version revisions${args} { revision version reason } } }`, { id })).data!.release as
    { revision: number; version: string; revisions: { revision: number; version: string; reason: string }[] };
/** What DynamoDB counts, near enough: attribute names and values (JSON adds a few quotes and commas more). */
const itemBytes = async (id: string) => JSON.stringify(await store().get<Release>('releases', id)).length;

async function upgradeToEnd(id: string, version: string) {
  const started = await api.run('mutation($id: ID!, $v: String!) { upgradeRelease(id: $id, version: $v, strategy: {maxUnavailable: 1}) { id } }', { id, v: version });
  expect(started.errors).toBeUndefined();
  for (let i = 0; i < 10; i++) {
    await reconcileReleases(store());
    await api.reportAllRunning(hostId);
    const state = (await api.run('query($id: ID!) { release(id: $id) { upgrade { state } } }', { id })).data!.release.upgrade.state;
    if (state === 'SUCCEEDED') return;
  }
  throw new Error(`the upgrade of ${id} to ${version} did not finish`);
}

test('a release near the item size limit takes many large configure calls, lists every revision, and rolls back to an old one', async () => {
  // Twelve 32 KiB values and one more that brings the release item within 2 KB of the limit: with its history inside
  // the item, some 25 more revisions broke every mutation of the release (INTERNAL from the store).
  const big = (name: string, n: number, size = 32 * 1024) => ({ name, value: `${n}`.padEnd(size, name) });
  const env = (n: number, pad: number) => [...'ABCDEFGHIJKL'].map((name, i) => big(name, i === 0 ? n : i)).concat(pad > 0 ? [big('PAD', 0, pad)] : []);
  const deployed = await api.run('mutation($env: [EnvVarInput!]) { deploy(input: {name: "big", product: "big", version: "1.0.0", replicas: 1, env: $env}) { id } }', { env: env(0, 0) });
  expect(deployed.errors).toBeUndefined();
  const id = deployed.data!.deploy.id as string;
  await reconcileReleases(store());
  await api.reportAllRunning(hostId);
  await upgradeToEnd(id, '2.0.0');
  const pad = ITEM_LIMIT - 2048 - (await itemBytes(id));
  expect(pad).toBeGreaterThan(1000);

  const configure = (n: number) => api.run('mutation($id: ID!, $env: [EnvVarInput!]!) { configureRelease(id: $id, env: $env) { revision } }', { id, env: env(n, pad) });
  const first = await configure(1);
  expect(first.errors).toBeUndefined();
  const sizeAfterFirst = await itemBytes(id);
  expect(sizeAfterFirst).toBeGreaterThan(ITEM_LIMIT - 2048);
  const calls = 45;
  for (let n = 2; n <= calls; n++) {
    const res = await configure(n);
    expect(res.errors).toBeUndefined();
    expect(res.data!.configureRelease.revision).toBe(n + 2);
  }
  // The release item does not grow with its history (revision numbers may add a digit).
  expect(await itemBytes(id)).toBeLessThanOrEqual(sizeAfterFirst + 8);

  const all = await revisions(id);
  expect(all.revision).toBe(calls + 2);
  expect(all.revisions.map((r) => r.revision)).toEqual(Array.from({ length: calls + 2 }, (_, i) => i + 1));
  expect(all.revisions.slice(0, 3)).toEqual([
    { revision: 1, version: '1.0.0', reason: 'deploy' },
    { revision: 2, version: '2.0.0', reason: 'upgrade 1.0.0 → 2.0.0' },
    { revision: 3, version: '2.0.0', reason: 'config change' },
  ]);
  expect((await revisions(id, '(first: 5, after: 20)')).revisions.map((r) => r.revision)).toEqual([21, 22, 23, 24, 25]);
  expect((await revisions(id, `(first: 5, after: ${calls})`)).revisions.map((r) => r.revision)).toEqual([calls + 1, calls + 2]);

  const rolledBack = await api.run('mutation($id: ID!) { rollbackRelease(id: $id, revision: 1) { version revision upgrade { state } } }', { id });
  expect(rolledBack.errors).toBeUndefined();
  expect(rolledBack.data!.rollbackRelease).toEqual({ version: '1.0.0', revision: calls + 3, upgrade: { state: 'RUNNING' } });
  expect((await revisions(id, `(after: ${calls + 2})`)).revisions).toEqual([{ revision: calls + 3, version: '1.0.0', reason: 'rollback 2.0.0 → 1.0.0' }]);
  const missing = await api.run('mutation($id: ID!) { rollbackRelease(id: $id, revision: 999) { id } }', { id });
  expect(missing.errors?.[0]).toMatchObject({ message: `release "big" has no revision 999; it has revisions 1 to ${calls + 3}`, extensions: { code: 'BAD_USER_INPUT' } });
}, 120_000);

test('a release written with its revisions inside its item keeps them, and its next change stores them as items', async () => {
  const deployed = await api.run('mutation { deploy(input: {name: "old", product: "big", version: "1.0.0", replicas: 1}) { id } }');
  const id = deployed.data!.deploy.id as string;
  // The shape releases had before revisions were items: the whole history in `revisions`, no `lastRevision`.
  const current = (await store().get<Release>('releases', id))!;
  const { lastRevision: _, ...rest } = current;
  const history = [
    { revision: 1, version: '2.0.0', createdAt: '2026-01-01T00:00:00.000Z', reason: 'deploy' },
    { revision: 2, version: '1.0.0', createdAt: '2026-01-02T00:00:00.000Z', reason: 'rollback 2.0.0 → 1.0.0' },
    { revision: 3, version: '1.0.0', createdAt: '2026-01-03T00:00:00.000Z', reason: 'scale 2 → 1' },
  ];
  await store().replace<Release>('releases', { ...rest, revision: 3, revisions: history });
  expect((await revisions(id)).revisions.map((r) => r.reason)).toEqual(['deploy', 'rollback 2.0.0 → 1.0.0', 'scale 2 → 1']);

  const configured = await api.run('mutation($id: ID!) { configureRelease(id: $id, env: [{name: "X", value: "1"}]) { revision } }', { id });
  expect(configured.errors).toBeUndefined();
  const written = (await store().get<Release>('releases', id))!;
  expect(written.revisions).toBeUndefined();
  expect(written.lastRevision).toMatchObject({ revision: 4, reason: 'config change' });
  expect((await revisions(id)).revisions.map((r) => [r.revision, r.version])).toEqual([[1, '2.0.0'], [2, '1.0.0'], [3, '1.0.0'], [4, '1.0.0']]);
  await reconcileReleases(store());
  await api.reportAllRunning(hostId);
  const rolledBack = await api.run('mutation($id: ID!) { rollbackRelease(id: $id, revision: 1) { version revision } }', { id });
  expect(rolledBack.data!.rollbackRelease).toEqual({ version: '2.0.0', revision: 5 });
});
