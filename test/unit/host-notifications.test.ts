import type { ApolloGateway } from '@apollo/gateway';
import { parse, validate, type GraphQLSchema } from 'graphql';
import { createGateway } from '../../gateway/gateway';
import { groupDeliveries } from '../../gateway/publisher';
import {
  CloseCode, connect, handleMessage, matches, prepareSubscription,
  type Connections, type PreparedSubscription, type ProtocolContext, type SubscriptionRecord,
} from '../../gateway/subscriptions';
import { BOOTSTRAP_ADMIN, type Principal } from '../../lib/auth';
import { AppError } from '../../lib/errors';
import { hashSecret } from '../../lib/ids';
import { ConditionFailed, type Store } from '../../lib/store';
import tables from '../../lib/tables.json';
import type { Host } from '../../subgraphs/ark/hosts';
import {
  announcePendingNetwork, HOST_DESIRED_CHANGED, migrateInstance, networkChanged, placeInstances, removeInstance, respecInstance,
  type ContainerSpec, type Instance, type PlacementConstraints, type UnplacedInstance,
} from '../../subgraphs/ark/instances';
import type { PlatformEvent } from '../../subgraphs/butler/events';
// Loading the platform registers Butler's hooks: Ark reports its notices, Butler records them as events.
import '../../subgraphs';

/**
 * Push notices for runners: which events Ark writes when a host's desired containers change, and how a host
 * runner's `hostDesiredStateChanged` subscription is admitted, scoped to its own host and matched. In memory.
 */

let gateway: ApolloGateway;
let schema: GraphQLSchema;

beforeAll(async () => {
  process.env.FZ_ADMIN_TOKEN_HASH = hashSecret('fza_unit');
  gateway = createGateway('http', 'http://127.0.0.1:9/none');
  schema = (await gateway.load()).schema;
});

afterAll(() => gateway.stop());

/** Just enough of Store: single items with a seq, and the GSIs of tables.json. */
class MemoryStore {
  items = new Map<string, Map<string, Record<string, unknown>>>();
  private table(name: string) {
    if (!this.items.has(name)) this.items.set(name, new Map());
    return this.items.get(name)!;
  }
  private keyOf(name: string) {
    return (tables as Record<string, { key: string }>)[name].key;
  }
  async get<T>(name: string, key: string) {
    const item = this.table(name).get(key);
    return item && (structuredClone(item) as T);
  }
  async create<T extends object>(name: string, item: T) {
    const key = String((item as Record<string, unknown>)[this.keyOf(name)]);
    if (this.table(name).has(key)) return undefined;
    const stored = { ...item, seq: 1 };
    this.table(name).set(key, structuredClone(stored));
    return stored;
  }
  async mutate<T extends { seq: number }>(name: string, key: string, change: (current: T | undefined) => Omit<T, 'seq'> | undefined) {
    const current = await this.get<T>(name, key);
    const next = change(current);
    if (!next) return current;
    const stored = { ...next, seq: (current?.seq ?? 0) + 1 } as T;
    this.table(name).set(key, structuredClone(stored) as Record<string, unknown>);
    return stored;
  }
  async replace<T extends { seq: number }>(name: string, item: T) {
    const key = String((item as Record<string, unknown>)[this.keyOf(name)]);
    if (this.table(name).get(key)?.seq !== item.seq) throw new ConditionFailed(name as never, key);
    const stored = { ...item, seq: item.seq + 1 };
    this.table(name).set(key, structuredClone(stored));
    return stored;
  }
  async remove(name: string, key: string) {
    this.table(name).delete(key);
  }
  async increment(name: string, key: string, attribute: string) {
    const item = this.table(name).get(key) ?? { [this.keyOf(name)]: key };
    item[attribute] = Number(item[attribute] ?? 0) + 1;
    this.table(name).set(key, item);
    return item[attribute] as number;
  }
  async scan<T>(name: string) {
    return [...this.table(name).values()].map((i) => structuredClone(i) as T);
  }
  async count(name: string) {
    return this.table(name).size;
  }
  async query<T>(name: string, index: string, value: string) {
    const attribute = (tables as unknown as Record<string, { indexes?: Record<string, string> }>)[name].indexes![index];
    return [...this.table(name).values()].filter((i) => i[attribute] === value).map((i) => structuredClone(i) as T);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The events Ark writes

const host = (id: string, memoryMb = 1024): Omit<Host, 'seq'> => ({
  id, name: id, address: '127.0.0.1', labels: [], exclusiveFor: null, capacity: { cpuMillis: 4000, memoryMb },
  reservations: {}, allocated: { cpuMillis: 0, memoryMb: 0 }, status: 'READY', lastHeartbeatAt: null, engine: null, createdAt: '2026-01-01T00:00:00.000Z',
});

const spec = (memoryMb = 64): ContainerSpec => ({ image: 'fangzhou/demo:1', env: [], ports: [], cpuMillis: 100, memoryMb, healthcheck: null, configFiles: [] });

const unplaced = (releaseId: string, ordinals: number[], memoryMb = 64): UnplacedInstance[] => ordinals.map((ordinal) => ({
  id: `${releaseId}-${ordinal}`, releaseId, releaseName: 'web', product: 'demo', ordinal, domainName: `web-${ordinal}.web.fz.internal`,
  desiredState: 'RUNNING', spec: spec(memoryMb), createdAt: '2026-01-01T00:00:00.000Z',
}));

const SPREAD: PlacementConstraints = { requiredLabels: [], exclusive: false, spreadBy: null, strategy: 'SPREAD' };

async function ark(...hosts: Omit<Host, 'seq'>[]) {
  const memory = new MemoryStore();
  for (const h of hosts) await memory.create('hosts', h);
  const store = memory as unknown as Store;
  const notices = async () => (await memory.scan<PlatformEvent>('events')).filter((e) => e.kind === HOST_DESIRED_CHANGED)
    .sort((a, b) => a.id.localeCompare(b.id));
  return { memory, store, notices };
}

describe('HOST_DESIRED_CHANGED events', () => {
  test('placing instances writes one event per host (not per instance), on its host topic, at the time of writing', async () => {
    const { store, notices } = await ark(host('h-a'), host('h-b'));
    const long_ago = new Date('2020-01-01T00:00:00.000Z');
    const placed = await placeInstances(store, unplaced('r-1', [0, 1, 2, 3]), SPREAD, long_ago);
    expect(new Set(placed.map((i) => i.hostId))).toEqual(new Set(['h-a', 'h-b']));
    const events = await notices();
    expect(events).toHaveLength(2);
    for (const e of events) {
      expect(e).toMatchObject({ severity: 'INFO', topics: [`host:${e.hostId}`], published: false, releaseId: null, instanceId: null });
      expect(Date.now() - Date.parse(e.at)).toBeLessThan(60_000);
      const names = placed.filter((i) => i.hostId === e.hostId).map((i) => `placed web-${i.ordinal}`);
      expect(e.message).toBe(`desired containers changed: ${names.join(', ')}`);
    }
    expect(events.map((e) => e.hostId).sort()).toEqual(['h-a', 'h-b']);
  });

  test('a refused placement announces nothing (and writes nothing)', async () => {
    const { store, memory, notices } = await ark(host('h-a', 100));
    await expect(placeInstances(store, unplaced('r-1', [0, 1]), SPREAD)).rejects.toThrow(AppError);
    expect(await notices()).toEqual([]);
    expect(await memory.scan('instances')).toEqual([]);
  });

  test('a move tells both hosts; a changed spec and a removal tell the instance\'s host; an unchanged spec tells no one', async () => {
    const { store, memory, notices } = await ark(host('h-a'), host('h-b'));
    // The events one step wrote (several can share a millisecond, so not by position).
    let seen = new Set<string>();
    const step = async (action: () => Promise<unknown>) => {
      await action();
      const fresh = (await notices()).filter((e) => !seen.has(e.id));
      seen = new Set([...seen, ...fresh.map((e) => e.id)]);
      return fresh.map((e) => ({ hostId: e.hostId, topics: e.topics, message: e.message })).sort((a, b) => a.message.localeCompare(b.message) || a.hostId!.localeCompare(b.hostId!));
    };
    let instance!: Instance;
    expect(await step(async () => ([instance] = await placeInstances(store, unplaced('r-1', [0]), SPREAD)))).toHaveLength(1);
    const from = instance.hostId;
    let to = '';
    expect(await step(async () => (to = await migrateInstance(store, instance, SPREAD)))).toEqual([
      { hostId: to, topics: [`host:${to}`], message: `desired containers changed: web-0 moved here from ${from}` },
      { hostId: from, topics: [`host:${from}`], message: `desired containers changed: web-0 moved to ${to}` },
    ]);
    expect(to).not.toBe(from);

    const current = (await memory.get<Instance>('instances', instance.id))!;
    expect(await step(() => respecInstance(store, instance.id, current.spec))).toEqual([]);
    expect(await step(() => respecInstance(store, instance.id, { ...current.spec, generation: 1 }))).toEqual([
      { hostId: to, topics: [`host:${to}`], message: expect.stringMatching(/^desired containers changed: web-0 changed \(spec [0-9a-f]{8}\)$/) },
    ]);
    // Its address (given at placement) leaves the zone too: every live host hears of the DNS change.
    expect(await step(async () => removeInstance(store, (await memory.get<Instance>('instances', instance.id))!))).toEqual([
      { hostId: to, topics: [`host:${to}`], message: 'desired containers changed: removed web-0' },
      // One event for the round, on the topic of every live host.
      { hostId: null, topics: ['host:h-a', 'host:h-b'], message: 'network changed, told to 2 host(s): web-0 removed' },
    ]);
  });

  test('a long list of changes is summed up', async () => {
    const { store, notices } = await ark(host('h-a', 4096));
    await placeInstances(store, unplaced('r-1', [0, 1, 2, 3, 4, 5, 6]), SPREAD);
    expect((await notices())[0].message).toBe('desired containers changed: placed web-0, placed web-1, placed web-2, placed web-3, placed web-4 and 2 more');
  });
});

describe('network changes', () => {
  test('every live host hears of a burst of DNS changes twice at most: the first at once, the rest together a second later', async () => {
    const { store, notices } = await ark(host('h-a'), host('h-b'), { ...host('h-down'), status: 'DOWN' });
    const at = (ms: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + ms);
    // A round is one event about no host in particular, on the topic of every live host.
    const told = async () => (await notices()).map((e) => ({ hostId: e.hostId, topics: [...e.topics].sort(), message: e.message }));
    const live = ['host:h-a', 'host:h-b'];
    await networkChanged(store, 'web-0 serves', at(0));
    expect(await told()).toEqual([{ hostId: null, topics: live, message: 'network changed, told to 2 host(s): web-0 serves' }]);
    // 99 more changes within the second: no notice now, and none at a tick before the second is over.
    for (let i = 1; i < 100; i++) await networkChanged(store, `web-${i} serves`, at(5 * i));
    await announcePendingNetwork(store, at(900));
    expect(await told()).toHaveLength(1);
    await announcePendingNetwork(store, at(1000));
    expect((await told())[1]).toEqual({
      hostId: null, topics: live,
      message: 'network changed, told to 2 host(s): web-80 serves, web-81 serves, web-82 serves, web-83 serves, web-84 serves and 15 more',
    });
    // Nothing left: the next tick tells no one.
    await announcePendingNetwork(store, at(5000));
    expect(await told()).toHaveLength(2);
    // A fleet this small takes a round at once: no runner is asked to spread its sync.
    expect((await notices()).map((e) => e.spreadSeconds ?? 0)).toEqual([0, 0]);
  });

  test('past FZ_MAX_NOTICES_PER_SECOND a round asks every runner to spread its sync over the gap between rounds; a placement does not', async () => {
    process.env.FZ_MAX_NOTICES_PER_SECOND = '1';
    try {
      const { store, notices } = await ark(host('h-a'), host('h-b'), host('h-c'));
      await networkChanged(store, 'web-0 serves');
      expect((await notices()).map((e) => [e.hostId, [...e.topics].sort(), e.spreadSeconds])).toEqual([[null, ['host:h-a', 'host:h-b', 'host:h-c'], 3]]);
      await placeInstances(store, unplaced('r1', [0]), SPREAD);
      const placed = (await notices()).filter((e) => e.message.includes('placed'));
      expect(placed).toHaveLength(1);
      expect(placed[0].spreadSeconds).toBeUndefined();
    } finally {
      delete process.env.FZ_MAX_NOTICES_PER_SECOND;
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The subscription

const asHost = (hostId: string): Principal => ({ kind: 'host', hostId });
const QUERY = 'subscription { hostDesiredStateChanged { hostId at } }';

describe('prepareSubscription for hostDesiredStateChanged', () => {
  test('a host runner\'s subscription is about its own host and becomes a lookup of the event', () => {
    const p = prepareSubscription(schema, { query: QUERY }, asHost('h-1')) as PreparedSubscription;
    expect(p).toMatchObject({ field: 'hostDesiredStateChanged', topic: 'host:h-1', filter: { hostId: 'h-1' }, responseKey: 'hostDesiredStateChanged', variables: {} });
    expect(p.query).toBe('query ($fzLookupId: ID!) {\n  hostDesiredStateChanged: hostDesiredStateChange(eventId: $fzLookupId) {\n    hostId\n    at\n  }\n}');
    expect(validate(schema, parse(p.query))).toEqual([]);
  });

  test('an operator cannot subscribe to it', () => {
    expect(prepareSubscription(schema, { query: QUERY }, BOOTSTRAP_ADMIN)).toEqual({
      errors: [{ message: expect.stringMatching(/^hostDesiredStateChanged is for host runners/), extensions: { code: 'FORBIDDEN' } }],
    });
  });
});

const notice = (overrides: Partial<PlatformEvent> = {}): PlatformEvent => ({
  id: `${new Date().toISOString()}~beef`, at: new Date().toISOString(), kind: HOST_DESIRED_CHANGED, message: 'm', severity: 'INFO',
  hostId: 'h-1', releaseId: null, instanceId: null, alarmId: null, topics: ['host:h-1'], published: false, seq: 1, ...overrides,
});

const record = (connectionId: string, principal: Principal): SubscriptionRecord => ({
  ...(prepareSubscription(schema, { query: QUERY }, principal) as PreparedSubscription),
  id: `sub#${connectionId}#1`, kind: 'subscription', connectionId, subscriptionId: '1', endpoint: 'http://ws',
  principal, createdAt: new Date(Date.now() - 60_000).toISOString(), seq: 1,
});

describe('matching', () => {
  test('a notice reaches the subscription of its host only, looked up by the event id, as that host', () => {
    const one = record('c1', asHost('h-1'));
    const other = record('c2', asHost('h-10'));
    const event = notice();
    expect(matches(one, event)).toBe(true);
    expect(matches(other, event)).toBe(false);
    expect(matches(one, notice({ hostId: 'h-2', topics: ['host:h-2'] }))).toBe(false);
    expect(matches(one, notice({ kind: 'HOST_DOWN' }))).toBe(false);
    const groups = groupDeliveries([one, other], event);
    expect(groups).toHaveLength(1);
    expect(groups[0]).toMatchObject({ variables: { fzLookupId: event.id }, principal: asHost('h-1'), targets: [{ connectionId: 'c1', subscriptionId: '1' }] });
  });

  test('a round of network notices reaches the subscription of every host it names, each looked up as its own host', () => {
    const [one, ten, two] = [record('c1', asHost('h-1')), record('c10', asHost('h-10')), record('c2', asHost('h-2'))];
    const round = notice({ hostId: null, topics: ['host:h-1', 'host:h-10'] });
    expect([one, ten, two].map((sub) => matches(sub, round))).toEqual([true, true, false]);
    const groups = groupDeliveries([one, ten, two], round);
    expect(groups.map((g) => g.principal)).toEqual([asHost('h-1'), asHost('h-10')]);
    expect(groups.every((g) => g.variables.fzLookupId === round.id)).toBe(true);
  });
});

class RecordingSocket implements Connections {
  sent: { connectionId: string; message: any }[] = [];
  closed: string[] = [];
  async post(_endpoint: string, connectionId: string, message: object) {
    if (this.closed.includes(connectionId)) return 'gone' as const;
    this.sent.push({ connectionId, message });
    return 'sent' as const;
  }
  async close(_endpoint: string, connectionId: string) {
    this.closed.push(connectionId);
  }
  to(connectionId: string) {
    return this.sent.filter((s) => s.connectionId === connectionId).map((s) => s.message);
  }
  closeNotice(connectionId: string) {
    return this.to(connectionId).find((m) => m.type === 'ping' && m.payload?.close)?.payload.close as { code: number; reason: string } | undefined;
  }
}

describe('the protocol with a host token', () => {
  const setup = () => {
    const store = new MemoryStore();
    const socket = new RecordingSocket();
    const ctx: ProtocolContext = {
      store: store as unknown as Store, connections: socket, schema: async () => schema,
      authenticate: async (authorization) => {
        if (authorization === 'Bearer fzh_one') return asHost('h-1');
        if (authorization === 'Bearer fza_unit') return BOOTSTRAP_ADMIN;
        throw new Error('the host token is not valid');
      },
    };
    const acked = async (connectionId: string, token: string) => {
      await connect(ctx, { connectionId, endpoint: 'http://ws', protocols: ['graphql-transport-ws'] });
      const send = (message: unknown) => handleMessage(ctx, connectionId, 'http://ws', JSON.stringify(message));
      await send({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
      return send;
    };
    const subscriptions = () => [...(store.items.get('subscriptions')?.values() ?? [])].filter((i) => i.kind === 'subscription');
    return { ctx, socket, acked, subscriptions };
  };

  test('is acknowledged and may subscribe to hostDesiredStateChanged, stored under its own host\'s topic', async () => {
    const { socket, acked, subscriptions } = setup();
    const send = await acked('c1', 'fzh_one');
    expect(socket.to('c1')).toEqual([{ type: 'connection_ack' }]);
    await send({ type: 'subscribe', id: 's1', payload: { query: QUERY } });
    expect(subscriptions()).toEqual([expect.objectContaining({ field: 'hostDesiredStateChanged', topic: 'host:h-1', principal: asHost('h-1') })]);
    expect(socket.closed).toEqual([]);
  });

  test('anything else closes the connection with 4403, as before', async () => {
    const { socket, acked, subscriptions } = setup();
    const send = await acked('c1', 'fzh_one');
    await send({ type: 'subscribe', id: 's1', payload: { query: 'subscription { alarmRaised { id } }' } });
    expect(socket.closeNotice('c1')).toEqual({ code: CloseCode.Forbidden, reason: 'Forbidden: only an operator may subscribe' });
    expect(socket.closed).toEqual(['c1']);
    expect(subscriptions()).toEqual([]);
  });

  test('an operator asking for it gets a FORBIDDEN error and keeps the connection', async () => {
    const { socket, acked, subscriptions } = setup();
    const send = await acked('c1', 'fza_unit');
    await send({ type: 'subscribe', id: 's1', payload: { query: QUERY } });
    expect(socket.to('c1').at(-1)).toMatchObject({ id: 's1', type: 'error', payload: [{ extensions: { code: 'FORBIDDEN' } }] });
    expect(socket.closed).toEqual([]);
    expect(subscriptions()).toEqual([]);
  });

  test('a token that is not valid is closed with 4401', async () => {
    const { socket, acked } = setup();
    await acked('c1', 'fzh_revoked');
    expect(socket.closeNotice('c1')).toMatchObject({ code: CloseCode.Unauthorized, reason: 'Unauthorized: the host token is not valid' });
  });
});
