import {
  ConditionalCheckFailedException, CreateTableCommand, DescribeTableCommand, DynamoDBClient, ResourceInUseException, UpdateTableCommand,
} from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, ScanCommand, UpdateCommand, type QueryCommandInput } from '@aws-sdk/lib-dynamodb';
import tables from './tables.json';
import { createTableInputs } from './tables';
import { config } from './config';

/**
 * The one store client. Every write is a single item with a condition (DESIGN.md): `create` only when absent,
 * `replace` and `remove` only at the version that was read. Items carry a `seq` write counter for that.
 */
export type Table = keyof typeof tables;
type IndexKey = { hash: string; range?: string; rangeType?: string };
type TableDef = { key: string; indexes?: Record<string, string | IndexKey> };
const defs = tables as unknown as Record<Table, TableDef>;

function indexOf(table: Table, index: string): IndexKey {
  const def = defs[table].indexes?.[index];
  if (!def) throw new Error(`table ${table} has no index ${index}`);
  return typeof def === 'string' ? { hash: def } : def;
}

/** One page of a Query on an index with a range key, in range order. */
export interface RangeQuery {
  /** At most this many items. */
  limit: number;
  /** Newest (highest range) first. */
  descending?: boolean;
  /** Only items whose range key is strictly below / above this (a cursor, or a time bound). */
  below?: string | number;
  above?: string | number;
  /** Only items whose attributes equal these (a filter applied to what the index yields). */
  where?: Record<string, string | number | boolean>;
}

export interface Versioned {
  /** Write counter of the item, for conditional writes. */
  seq: number;
}

/** A conditional write lost a race or found the item in another state; callers decide what it means. */
export class ConditionFailed extends Error {
  constructor(readonly table: Table, readonly key: string) {
    super(`conditional write on ${table}/${key} failed`);
  }
}

/** DynamoDB's partition keys are 1 to 2048 bytes: a key outside that names no item. */
const storable = (key: string) => key !== '' && Buffer.byteLength(key) <= 2048;

const isConditionFailure = (err: unknown) =>
  err instanceof ConditionalCheckFailedException || (err as { name?: string })?.name === 'ConditionalCheckFailedException';

export class Store {
  readonly doc: DynamoDBDocumentClient;

  constructor(readonly client: DynamoDBClient, readonly prefix: string) {
    this.doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  }

  tableName(table: Table) {
    return `${this.prefix}${table}`;
  }

  async get<T>(table: Table, key: string): Promise<T | undefined> {
    // DynamoDB refuses an empty or over-long key (ValidationException) rather than finding nothing: no item has one.
    if (!storable(key)) return undefined;
    const out = await this.doc.send(new GetCommand({ TableName: this.tableName(table), Key: { [defs[table].key]: key }, ConsistentRead: true }));
    return out.Item as T | undefined;
  }

  /** Writes the item only if no item with its key exists; returns undefined when one does. */
  async create<T extends object>(table: Table, item: T): Promise<T & Versioned | undefined> {
    const keyName = defs[table].key;
    const stored = { ...item, seq: 1 };
    try {
      await this.doc.send(new PutCommand({
        TableName: this.tableName(table),
        Item: stored,
        ConditionExpression: 'attribute_not_exists(#k)',
        ExpressionAttributeNames: { '#k': keyName },
      }));
      return stored;
    } catch (err) {
      if (isConditionFailure(err)) return undefined;
      throw err;
    }
  }

  /** Writes the item over the stored one at `item.seq`; throws ConditionFailed if someone wrote in between. */
  async replace<T extends Versioned>(table: Table, item: T): Promise<T> {
    const keyName = defs[table].key;
    const stored = { ...item, seq: item.seq + 1 };
    try {
      await this.doc.send(new PutCommand({
        TableName: this.tableName(table),
        Item: stored,
        ConditionExpression: '#v = :v',
        ExpressionAttributeNames: { '#v': 'seq' },
        ExpressionAttributeValues: { ':v': item.seq },
      }));
      return stored;
    } catch (err) {
      if (isConditionFailure(err)) throw new ConditionFailed(table, String((item as Record<string, unknown>)[keyName]));
      throw err;
    }
  }

  /**
   * Read-modify-write with optimistic concurrency: `change` gets the current item (or undefined) and returns the
   * new one, or undefined to write nothing. Retried on a lost race, so `change` must be a pure function of its input.
   */
  async mutate<T extends Versioned>(table: Table, key: string, change: (current: T | undefined) => Omit<T, 'seq'> & Partial<Versioned> | undefined, attempts = 20): Promise<T | undefined> {
    for (let attempt = 0; attempt < attempts; attempt++) {
      const current = await this.get<T>(table, key);
      const next = change(current);
      if (!next) return current;
      if (!current) {
        const created = await this.create(table, next);
        if (created) return created as unknown as T;
      } else {
        try {
          return await this.replace(table, { ...next, seq: current.seq } as T);
        } catch (err) {
          if (!(err instanceof ConditionFailed)) throw err;
        }
      }
      await new Promise((r) => setTimeout(r, Math.random() * 10 * (attempt + 1)));
    }
    throw new ConditionFailed(table, key);
  }

  /**
   * Adds one to a counter item's `attribute` in a single atomic write (created at 1) and returns the new value. For
   * a counter many writers move at once, where read-modify-write would lose most of its races: never conflicts. The
   * item is a counter only (no `seq`): never `mutate` it.
   */
  async increment(table: Table, key: string, attribute: string): Promise<number> {
    const out = await this.doc.send(new UpdateCommand({
      TableName: this.tableName(table),
      Key: { [defs[table].key]: key },
      UpdateExpression: 'ADD #a :one',
      ExpressionAttributeNames: { '#a': attribute },
      ExpressionAttributeValues: { ':one': 1 },
      ReturnValues: 'UPDATED_NEW',
    }));
    return Number(out.Attributes?.[attribute]);
  }

  /**
   * Counts one call against a fixed-window limit: a counter item (`windowStart`, `count`, no `seq`) whose window
   * opens at the first call and lasts `windowMs`. While the window is open and under `limit` that is one conditional
   * write; a new window is one more read and write. Returns null when counted, else when the window closes (a
   * refused call writes nothing). A counter so contended that every attempt lost its race counts as counted.
   */
  async countInWindow(table: Table, key: string, limit: number, windowMs: number, now = Date.now()): Promise<number | null> {
    const keyName = defs[table].key;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.doc.send(new UpdateCommand({
          TableName: this.tableName(table), Key: { [keyName]: key },
          UpdateExpression: 'SET #c = #c + :one',
          ConditionExpression: '#w > :opened AND #c < :limit',
          ExpressionAttributeNames: { '#c': 'count', '#w': 'windowStart' },
          ExpressionAttributeValues: { ':one': 1, ':opened': now - windowMs, ':limit': limit },
        }));
        return null;
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
      }
      const current = await this.get<{ windowStart: number; count: number }>(table, key);
      if (current && current.windowStart > now - windowMs) {
        if (current.count >= limit) return current.windowStart + windowMs;
        continue;
      }
      try {
        await this.doc.send(new PutCommand({
          TableName: this.tableName(table), Item: { [keyName]: key, windowStart: now, count: 1 },
          ConditionExpression: 'attribute_not_exists(#k) OR #w <= :opened',
          ExpressionAttributeNames: { '#k': keyName, '#w': 'windowStart' },
          ExpressionAttributeValues: { ':opened': now - windowMs },
        }));
        return null;
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
      }
    }
    return null;
  }

  /** Removes the item; with `seq`, only if it is still at that write (then an absent item fails too). */
  async remove(table: Table, key: string, seq?: number): Promise<void> {
    try {
      await this.doc.send(new DeleteCommand({
        TableName: this.tableName(table),
        Key: { [defs[table].key]: key },
        ...(seq === undefined ? {} : {
          ConditionExpression: '#v = :v',
          ExpressionAttributeNames: { '#v': 'seq' },
          ExpressionAttributeValues: { ':v': seq },
        }),
      }));
    } catch (err) {
      if (isConditionFailure(err)) throw new ConditionFailed(table, key);
      throw err;
    }
  }

  /**
   * Every item of the table; with `attributes`, only those attributes of each, a dotted one naming a nested field
   * (`spec.cpuMillis`): a projection, so a tick that reads a few fields of every host or instance moves and decodes
   * a fraction of the bytes.
   */
  async scan<T>(table: Table, attributes?: readonly string[]): Promise<T[]> {
    const items: T[] = [];
    const names = [...new Set(attributes?.flatMap((a) => a.split('.')))];
    const projection = attributes?.length ? {
      ProjectionExpression: attributes.map((a) => a.split('.').map((n) => `#p${names.indexOf(n)}`).join('.')).join(', '),
      ExpressionAttributeNames: Object.fromEntries(names.map((n, k) => [`#p${k}`, n])),
    } : {};
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(new ScanCommand({ TableName: this.tableName(table), ExclusiveStartKey: start, ConsistentRead: true, ...projection }));
      items.push(...((out.Items ?? []) as T[]));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  }

  /** How many items the table holds, counted by the store (a Scan that returns no items). */
  async count(table: Table): Promise<number> {
    let total = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(new ScanCommand({ TableName: this.tableName(table), ExclusiveStartKey: start, Select: 'COUNT' }));
      total += out.Count ?? 0;
      start = out.LastEvaluatedKey;
    } while (start);
    return total;
  }

  /**
   * One page of a Scan, for maintenance that must visit a whole table once (never a request path); with `missing`,
   * only the items that lack that attribute come back. `next` continues where this page stopped.
   */
  async scanPage<T>(table: Table, opts: { missing?: string; start?: Record<string, unknown>; limit?: number } = {}): Promise<{ items: T[]; next?: Record<string, unknown> }> {
    const out = await this.doc.send(new ScanCommand({
      TableName: this.tableName(table),
      ExclusiveStartKey: opts.start,
      Limit: opts.limit ?? 100,
      ...(opts.missing ? { FilterExpression: 'attribute_not_exists(#m)', ExpressionAttributeNames: { '#m': opts.missing } } : {}),
    }));
    return { items: (out.Items ?? []) as T[], next: out.LastEvaluatedKey };
  }

  /** All items whose indexed attribute equals `value`. Index reads are eventually consistent on DynamoDB. */
  async query<T>(table: Table, index: string, value: string): Promise<T[]> {
    const attribute = indexOf(table, index).hash;
    if (!storable(value)) return [];
    return this.queryPages<T>({
      TableName: this.tableName(table), IndexName: index, KeyConditionExpression: '#a = :v',
      ExpressionAttributeNames: { '#a': attribute }, ExpressionAttributeValues: { ':v': value },
    });
  }

  /** Query pages one after another until the index has no more, or `limit` says how many more to read is 0. */
  private async queryPages<T>(input: Omit<QueryCommandInput, 'ExclusiveStartKey' | 'Limit'>, limit?: (read: number) => number): Promise<T[]> {
    const items: T[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(new QueryCommand({ ...input, ...(limit ? { Limit: limit(items.length) } : {}), ExclusiveStartKey: start }));
      items.push(...((out.Items ?? []) as T[]));
      start = out.LastEvaluatedKey;
    } while (start && (!limit || limit(items.length) > 0));
    return items;
  }

  /**
   * Up to `limit` items of one hash value of an index, in the order of its range key, from a bound on. Reads only as
   * far as the page needs (plus what `where` skips): its cost does not grow with the table.
   */
  async queryRange<T>(table: Table, index: string, value: string, q: RangeQuery): Promise<T[]> {
    const key = indexOf(table, index);
    if (!key.range) throw new Error(`index ${index} of ${table} has no range key`);
    if (!storable(value) || q.limit <= 0) return [];
    const names: Record<string, string> = { '#h': key.hash, ...(q.below !== undefined || q.above !== undefined ? { '#r': key.range } : {}) };
    const values: Record<string, unknown> = { ':h': value };
    const conditions = ['#h = :h'];
    if (q.below !== undefined && q.above !== undefined) {
      conditions.push('#r BETWEEN :a AND :b');
      Object.assign(values, { ':a': q.above, ':b': q.below });
    } else if (q.below !== undefined) {
      conditions.push('#r < :b');
      values[':b'] = q.below;
    } else if (q.above !== undefined) {
      conditions.push('#r > :a');
      values[':a'] = q.above;
    }
    const filters = Object.entries(q.where ?? {}).map(([attribute, v], n) => {
      names[`#w${n}`] = attribute;
      values[`:w${n}`] = v;
      return `#w${n} = :w${n}`;
    });
    const items = await this.queryPages<T>({
      TableName: this.tableName(table),
      IndexName: index,
      KeyConditionExpression: conditions.join(' AND '),
      ...(filters.length ? { FilterExpression: filters.join(' AND ') } : {}),
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
      ScanIndexForward: !q.descending,
      // Without a filter every item read is kept: read no more than the page.
    }, (read) => (read >= q.limit ? 0 : Math.min(filters.length ? Math.max(q.limit - read, 100) : q.limit - read, 1000)));
    // BETWEEN includes its bounds; the bounds asked for are exclusive.
    const kept = q.below !== undefined && q.above !== undefined
      ? items.filter((i) => { const r = (i as Record<string, unknown>)[key.range!]; return r !== q.below && r !== q.above; })
      : items;
    return kept.slice(0, q.limit);
  }
}

/**
 * Creates the tables that do not exist yet, adds the indexes a table lacks (a store made by an older version), and
 * waits until all are active. Safe to run concurrently.
 */
export async function ensureTables(client: DynamoDBClient, prefix: string): Promise<void> {
  for (const input of createTableInputs(prefix)) {
    try {
      await client.send(new CreateTableCommand(input));
    } catch (err) {
      if (!(err instanceof ResourceInUseException) && (err as { name?: string }).name !== 'ResourceInUseException') throw err;
    }
    await waitActive(client, input.TableName!);
    for (const index of input.GlobalSecondaryIndexes ?? []) {
      const { Table } = await client.send(new DescribeTableCommand({ TableName: input.TableName }));
      if ((Table?.GlobalSecondaryIndexes ?? []).some((i) => i.IndexName === index.IndexName)) continue;
      const used = new Set(index.KeySchema!.map((k) => k.AttributeName));
      try {
        // One index per update: DynamoDB refuses more.
        await client.send(new UpdateTableCommand({
          TableName: input.TableName,
          AttributeDefinitions: input.AttributeDefinitions!.filter((a) => used.has(a.AttributeName)),
          GlobalSecondaryIndexUpdates: [{ Create: { IndexName: index.IndexName, KeySchema: index.KeySchema, Projection: index.Projection } }],
        }));
      } catch (err) {
        // Another process added it meanwhile.
        if (!/already exists|ResourceInUse/i.test(`${(err as Error).name} ${(err as Error).message}`)) throw err;
      }
      await waitActive(client, input.TableName!);
    }
  }
}

async function waitActive(client: DynamoDBClient, tableName: string) {
  // Real DynamoDB takes seconds to minutes for a table with indexes; local stores are immediate.
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    const active = Table?.TableStatus === 'ACTIVE' && (Table.GlobalSecondaryIndexes ?? []).every((i) => i.IndexStatus === 'ACTIVE');
    if (active) return;
    if (Date.now() > deadline) throw new Error(`table ${tableName} is not ACTIVE after 5 minutes`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function createClient(endpoint = config().dynamodbEndpoint, region = config().region): DynamoDBClient {
  return new DynamoDBClient({
    region,
    endpoint,
    // A local endpoint (dynalite, DynamoDB Local) accepts any key; real AWS uses the default credential chain.
    ...(endpoint && !process.env.AWS_ACCESS_KEY_ID ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } } : {}),
  });
}

let shared: Store | undefined;
/** The process-wide store, built from the environment on first use (module-level caches are fine in Lambda). */
export function store(): Store {
  shared ??= new Store(createClient(), config().tablePrefix);
  return shared;
}
