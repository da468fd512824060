/**
 * The store contract (lib/store.ts) that the rest of the platform relies on, checked against both local
 * DynamoDB-protocol servers the data layer must run unchanged on: dynalite and Amazon's DynamoDB Local.
 */
import { randomUUID } from 'node:crypto';
import { DescribeTableCommand, ListTablesCommand, QueryCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ConditionFailed, Store, createClient, ensureTables, type Table } from '../../lib/store';
import tables from '../../lib/tables.json';
import { startDynalite, startDynamoDbLocal, type DynamoDbServer } from '../support/dynamodb';

type TableDef = { key: string; indexes?: Record<string, string | { hash: string; range?: string }> };
const defs = tables as unknown as Record<Table, TableDef>;

interface Product { name: string; description: string; seq: number }
interface Counter { key: string; count: number; seq: number }
interface Instance { id: string; releaseId: string; hostId?: string; padding: string; seq: number }

const newPrefix = () => `fz-test-${randomUUID().slice(0, 8)}-`;

/** Every table under `prefix`, as ListTables sees it (follows pagination). */
async function listTables(client: DynamoDBClient, prefix: string): Promise<string[]> {
  const names: string[] = [];
  let start: string | undefined;
  do {
    const out = await client.send(new ListTablesCommand({ ExclusiveStartTableName: start }));
    names.push(...(out.TableNames ?? []));
    start = out.LastEvaluatedTableName;
  } while (start);
  return names.filter((n) => n.startsWith(prefix)).sort();
}

/** Asserts that every table of lib/tables.json exists under `prefix`, active, with its key and indexes. */
async function expectSchema(client: DynamoDBClient, prefix: string) {
  expect(await listTables(client, prefix)).toEqual(Object.keys(defs).map((t) => `${prefix}${t}`).sort());
  for (const [name, def] of Object.entries(defs)) {
    const { Table: table } = await client.send(new DescribeTableCommand({ TableName: `${prefix}${name}` }));
    expect(table?.TableStatus).toBe('ACTIVE');
    expect(table?.KeySchema).toEqual([{ AttributeName: def.key, KeyType: 'HASH' }]);
    const indexes = (table?.GlobalSecondaryIndexes ?? []).map((i) => ({
      name: i.IndexName,
      key: i.KeySchema,
      projection: i.Projection?.ProjectionType,
      status: i.IndexStatus,
    }));
    expect(indexes.sort((a, b) => String(a.name).localeCompare(String(b.name)))).toEqual(
      Object.entries(def.indexes ?? {}).map(([indexName, index]) => ({
        name: indexName,
        key: typeof index === 'string' ? [{ AttributeName: index, KeyType: 'HASH' }]
          : [{ AttributeName: index.hash, KeyType: 'HASH' }, ...(index.range ? [{ AttributeName: index.range, KeyType: 'RANGE' }] : [])],
        projection: 'ALL',
        status: 'ACTIVE',
      })).sort((a, b) => a.name.localeCompare(b.name)),
    );
  }
}

describe.each([
  ['dynalite', startDynalite],
  ['DynamoDB Local', () => startDynamoDbLocal()],
] as const)('store on %s', (_name, start) => {
  let server: DynamoDbServer;
  let client: DynamoDBClient;
  let store: Store;
  const prefix = newPrefix();
  const clients: DynamoDBClient[] = [];
  /** A client of its own (closed after the suite), like a second Lambda instance would have. */
  const connect = () => {
    const c = createClient(server.endpoint, 'local');
    clients.push(c);
    return c;
  };
  /** A key no other test uses. */
  const key = (label: string) => `${label}-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    server = await start();
    client = connect();
    store = new Store(client, prefix);
    await ensureTables(client, prefix);
  }, 90_000);

  afterAll(async () => {
    for (const c of clients) c.destroy();
    await server?.stop();
  });

  describe('ensureTables', () => {
    it('creates every table of lib/tables.json with its key and indexes', async () => {
      await expectSchema(client, prefix);
    });

    it('is a no-op when the tables already exist, keeping their items', async () => {
      const name = key('kept');
      await store.create('products', { name, description: 'before' });
      await ensureTables(client, prefix);
      await expectSchema(client, prefix);
      expect(await store.get<Product>('products', name)).toEqual({ name, description: 'before', seq: 1 });
    });

    it('is safe to run concurrently against a fresh prefix', async () => {
      const fresh = newPrefix();
      await Promise.all([ensureTables(client, fresh), ensureTables(connect(), fresh)]);
      await expectSchema(client, fresh);
      // The tables are usable right after it resolves.
      const other = new Store(client, fresh);
      expect(await other.create('claims', { key: 'k' })).toEqual({ key: 'k', seq: 1 });
    });
  });

  describe('scan', () => {
    it('reads every item, or only the attributes asked for, nested ones too (names DynamoDB reserves included)', async () => {
      const prefixed = new Store(client, newPrefix());
      await ensureTables(client, prefixed.prefix);
      for (let i = 0; i < 3; i++) await prefixed.create('products', { name: `p${i}`, description: `d${i}`, status: 'ok' });
      const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
      expect((await prefixed.scan<Product>('products')).sort(byName)).toEqual([0, 1, 2].map((i) => ({ name: `p${i}`, description: `d${i}`, status: 'ok', seq: 1 })));
      // `status` and `name` are reserved words: the projection must name them through placeholders.
      expect((await prefixed.scan<Product & { status: string }>('products', ['name', 'status'])).sort(byName)).toEqual([0, 1, 2].map((i) => ({ name: `p${i}`, status: 'ok' })));
      await prefixed.create('instances', { id: 'i-1', hostId: 'h-1', spec: { cpuMillis: 100, memoryMb: 64, env: [{ name: 'A', value: 'b' }] } });
      expect(await prefixed.scan('instances', ['id', 'spec.cpuMillis', 'spec.memoryMb'])).toEqual([{ id: 'i-1', spec: { cpuMillis: 100, memoryMb: 64 } }]);
    });
  });

  describe('increment', () => {
    it('counts from 1, and 40 concurrent writers from two clients lose no step', async () => {
      const name = key('counter');
      expect(await store.increment('claims', name, 'serial')).toBe(1);
      const other = new Store(connect(), prefix);
      const seen = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? other : store).increment('claims', name, 'serial')));
      expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i + 2));
      expect(await store.get('claims', name)).toEqual({ key: name, serial: 41 });
    });
  });

  describe('countInWindow', () => {
    it('counts up to the limit in a window that opens at the first call, refuses past it without a write, and opens a new window once it closed', async () => {
      const name = key('rate');
      const t0 = 1_000_000;
      for (let i = 0; i < 3; i++) expect(await store.countInWindow('ratelimits', name, 3, 60_000, t0 + i)).toBeNull();
      expect(await store.countInWindow('ratelimits', name, 3, 60_000, t0 + 10)).toBe(t0 + 60_000);
      expect(await store.get('ratelimits', name)).toEqual({ key: name, windowStart: t0, count: 3 });
      expect(await store.countInWindow('ratelimits', name, 3, 60_000, t0 + 60_000)).toBeNull();
      expect(await store.get('ratelimits', name)).toEqual({ key: name, windowStart: t0 + 60_000, count: 1 });
    });

    it('lets exactly the limit through when 30 callers on two clients race for a fresh counter', async () => {
      const name = key('rate-race');
      const other = new Store(connect(), prefix);
      const now = Date.now();
      const outcomes = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? other : store).countInWindow('ratelimits', name, 10, 60_000, now)));
      expect(outcomes.filter((o) => o === null)).toHaveLength(10);
      expect(outcomes.filter((o) => o === now + 60_000)).toHaveLength(20);
      expect(await store.get('ratelimits', name)).toMatchObject({ count: 10 });
    });
  });

  describe('create', () => {
    it('writes a new item at seq 1 and returns it', async () => {
      const name = key('redis');
      const created = await store.create('products', { name, description: 'first' });
      expect(created).toEqual({ name, description: 'first', seq: 1 });
      expect(await store.get<Product>('products', name)).toEqual(created);
    });

    it('returns undefined for a second item with the same key and keeps the first one', async () => {
      const name = key('nats');
      await store.create('products', { name, description: 'first' });
      expect(await store.create('products', { name, description: 'second' })).toBeUndefined();
      expect(await store.get<Product>('products', name)).toEqual({ name, description: 'first', seq: 1 });
    });

    it('lets exactly one of many concurrent creates of one key win', async () => {
      const name = key('race');
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => store.create('products', { name, description: `writer ${i}` })),
      );
      const winners = results.filter((r): r is Product => r !== undefined);
      expect(winners).toHaveLength(1);
      expect(await store.get<Product>('products', name)).toEqual(winners[0]);
    });
  });

  describe('get', () => {
    it('returns undefined for a missing item', async () => {
      expect(await store.get('products', key('missing'))).toBeUndefined();
    });
  });

  describe('replace', () => {
    it('writes over the item at its current seq and bumps seq', async () => {
      const name = key('mq');
      const created = (await store.create('products', { name, description: 'v1' }))!;
      const replaced = await store.replace('products', { ...created, description: 'v2' });
      expect(replaced).toEqual({ name, description: 'v2', seq: 2 });
      expect(await store.get<Product>('products', name)).toEqual(replaced);
    });

    it('throws ConditionFailed at a stale seq and writes nothing', async () => {
      const name = key('etcd');
      const v1 = (await store.create('products', { name, description: 'v1' }))!;
      const v2 = await store.replace('products', { ...v1, description: 'v2' });
      const stale = store.replace('products', { ...v1, description: 'lost update' });
      await expect(stale).rejects.toBeInstanceOf(ConditionFailed);
      await expect(stale).rejects.toMatchObject({ table: 'products', key: name });
      expect(await store.get<Product>('products', name)).toEqual(v2);
    });

    it('throws ConditionFailed for an item that does not exist', async () => {
      const name = key('ghost');
      await expect(store.replace('products', { name, description: 'x', seq: 1 })).rejects.toBeInstanceOf(ConditionFailed);
      expect(await store.get('products', name)).toBeUndefined();
    });
  });

  describe('mutate', () => {
    it('lands every one of 20 concurrent increments of one counter (no lost update)', async () => {
      const k = key('counter');
      const increment = (current: Counter | undefined) => ({ key: k, count: (current?.count ?? 0) + 1 });
      // The item does not exist yet: the first writer creates it, the others retry onto replace.
      const results = await Promise.all(Array.from({ length: 20 }, () => store.mutate<Counter>('claims', k, increment)));
      expect(results.map((r) => r?.count).sort((a, b) => a! - b!)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(await store.get<Counter>('claims', k)).toEqual({ key: k, count: 20, seq: 20 });
    });

    it('writes nothing and returns the current item when the change returns undefined', async () => {
      const k = key('noop');
      expect(await store.mutate<Counter>('claims', k, () => undefined)).toBeUndefined();
      expect(await store.get('claims', k)).toBeUndefined();
      await store.create('claims', { key: k, count: 5 });
      expect(await store.mutate<Counter>('claims', k, () => undefined)).toEqual({ key: k, count: 5, seq: 1 });
    });
  });

  describe('remove', () => {
    it('deletes the item at its current seq', async () => {
      const name = key('zk');
      const created = (await store.create('products', { name, description: 'x' }))!;
      await store.remove('products', name, created.seq);
      expect(await store.get('products', name)).toBeUndefined();
    });

    it('throws ConditionFailed at a stale seq and keeps the item', async () => {
      const name = key('rabbit');
      const v1 = (await store.create('products', { name, description: 'v1' }))!;
      const v2 = await store.replace('products', { ...v1, description: 'v2' });
      await expect(store.remove('products', name, v1.seq)).rejects.toBeInstanceOf(ConditionFailed);
      expect(await store.get<Product>('products', name)).toEqual(v2);
    });

    it('is fine for a missing item without a seq', async () => {
      await expect(store.remove('products', key('absent'))).resolves.toBeUndefined();
    });

    it('with a seq, throws ConditionFailed when the item is already gone (it is not at that write)', async () => {
      const name = key('gone');
      const created = (await store.create('products', { name, description: 'x' }))!;
      await store.remove('products', name);
      await expect(store.remove('products', name, created.seq)).rejects.toBeInstanceOf(ConditionFailed);
    });

    it('deletes unconditionally without a seq', async () => {
      const name = key('any');
      const v1 = (await store.create('products', { name, description: 'v1' }))!;
      await store.replace('products', { ...v1, description: 'v2' });
      await store.remove('products', name);
      expect(await store.get('products', name)).toBeUndefined();
    });
  });

  describe('query and scan over many pages', () => {
    // 40 items of ~40 KB on one host and one release: ~1.6 MB, more than DynamoDB's 1 MB per Query/Scan page.
    const run = randomUUID().slice(0, 8);
    const hostA = `host-a-${run}`;
    const hostB = `host-b-${run}`;
    const releaseA = `release-a-${run}`;
    const releaseB = `release-b-${run}`;
    const padding = 'x'.repeat(40 * 1024);
    const onA = Array.from({ length: 40 }, (_, i) => ({ id: `inst-a-${run}-${i}`, hostId: hostA, releaseId: releaseA, padding }));
    const onB = Array.from({ length: 3 }, (_, i) => ({ id: `inst-b-${run}-${i}`, hostId: hostB, releaseId: releaseB, padding: 'small' }));
    // Not scheduled yet: no hostId, so it is absent from byHost (a sparse index) but present in byRelease.
    const unplaced = { id: `inst-u-${run}`, releaseId: releaseB, padding: 'small' };
    const ids = (items: { id: string }[]) => items.map((i) => i.id).sort();

    beforeAll(async () => {
      const all = [...onA, ...onB, unplaced];
      for (let i = 0; i < all.length; i += 10) {
        const created = await Promise.all(all.slice(i, i + 10).map((item) => store.create('instances', item)));
        expect(created.every(Boolean)).toBe(true);
      }
    });

    it('the server really splits this index query into pages (precondition)', async () => {
      const first = await client.send(new QueryCommand({
        TableName: store.tableName('instances'),
        IndexName: 'byHost',
        KeyConditionExpression: '#a = :v',
        ExpressionAttributeNames: { '#a': 'hostId' },
        ExpressionAttributeValues: { ':v': { S: hostA } },
      }));
      expect(first.LastEvaluatedKey).toBeDefined();
      expect(first.Items!.length).toBeLessThan(onA.length);
    });

    it('query byHost returns every matching item across pages and nothing else', async () => {
      const found = await store.query<Instance>('instances', 'byHost', hostA);
      expect(ids(found)).toEqual(ids(onA));
      expect(found.every((i) => i.padding.length === padding.length && i.seq === 1)).toBe(true);
      expect(ids(await store.query<Instance>('instances', 'byHost', hostB))).toEqual(ids(onB));
      expect(await store.query('instances', 'byHost', `host-none-${run}`)).toEqual([]);
    });

    it('query byRelease returns every matching item, including ones without a host', async () => {
      expect(ids(await store.query<Instance>('instances', 'byRelease', releaseA))).toEqual(ids(onA));
      expect(ids(await store.query<Instance>('instances', 'byRelease', releaseB))).toEqual(ids([...onB, unplaced]));
    });

    it('query on an index the table does not declare throws', async () => {
      await expect(store.query('instances', 'byNothing', 'x')).rejects.toThrow(/no index byNothing/);
      await expect(store.query('products', 'byHost', 'x')).rejects.toThrow(/no index byHost/);
    });

    it('scan returns every item of the table across pages', async () => {
      const mine = (await store.scan<Instance>('instances')).filter((i) => i.id.includes(run));
      expect(ids(mine)).toEqual(ids([...onA, ...onB, unplaced]));
    });
  });

  describe('durability across clients', () => {
    it('a second client and Store see the same items, and their writes are seen back', async () => {
      const name = key('shared');
      const hostId = key('host');
      const created = (await store.create('products', { name, description: 'from first' }))!;
      await store.create('instances', { id: key('inst'), hostId, releaseId: 'r', padding: '' });

      const other = new Store(connect(), prefix);
      expect(await other.get<Product>('products', name)).toEqual(created);
      expect(await other.query<Instance>('instances', 'byHost', hostId)).toHaveLength(1);
      const replaced = await other.replace('products', { ...created, description: 'from second' });

      expect(await store.get<Product>('products', name)).toEqual(replaced);
      await expect(store.replace('products', { ...created, description: 'stale' })).rejects.toBeInstanceOf(ConditionFailed);
    });

    it('tables under another prefix are separate', async () => {
      const name = key('isolated');
      await store.create('products', { name, description: 'x' });
      const fresh = newPrefix();
      await ensureTables(client, fresh);
      expect(await new Store(client, fresh).get('products', name)).toBeUndefined();
    });
  });
});
