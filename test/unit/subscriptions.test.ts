import { BOOTSTRAP_ADMIN } from '../../lib/auth';
import type { ApolloGateway } from '@apollo/gateway';
import { parse, validate, type GraphQLSchema } from 'graphql';
import { createGateway } from '../../gateway/gateway';
import { groupDeliveries, publishEvent, publishPending, type Execute } from '../../gateway/publisher';
import {
  CloseCode, connect, handleMessage, LOG_TAIL, matches, parseClientMessage, prepareSubscription, topicsOfEvent,
  type Connections, type PreparedSubscription, type ProtocolContext, type SubscriptionRecord,
} from '../../gateway/subscriptions';
import { hashSecret } from '../../lib/ids';
import { log } from '../../lib/log';
import { ConditionFailed, type Store } from '../../lib/store';
import tables from '../../lib/tables.json';
import { indexed, type PlatformEvent } from '../../subgraphs/butler/events';

/** The protocol, the rewrite, the matching and the de-duplication, on an in-memory store and a recording socket. */

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
  async remove(name: string, key: string, seq?: number) {
    if (seq !== undefined && this.table(name).get(key)?.seq !== seq) throw new ConditionFailed(name as never, key);
    this.table(name).delete(key);
  }
  async scan<T>(name: string) {
    return [...this.table(name).values()].map((i) => structuredClone(i) as T);
  }
  async query<T>(name: string, index: string, value: string) {
    const attribute = (tables as unknown as Record<string, { indexes?: Record<string, string> }>)[name].indexes![index];
    return [...this.table(name).values()].filter((i) => i[attribute] === value).map((i) => structuredClone(i) as T);
  }
  async queryRange<T>(name: string, index: string, value: string, q: { limit: number; descending?: boolean; below?: string; above?: string; where?: Record<string, unknown> }) {
    const key = (tables as unknown as Record<string, { indexes?: Record<string, { hash: string; range: string }> }>)[name].indexes![index];
    const range = (i: Record<string, unknown>) => String(i[key.range]);
    return [...this.table(name).values()]
      .filter((i) => i[key.hash] === value && (q.below === undefined || range(i) < q.below) && (q.above === undefined || range(i) > q.above)
        && Object.entries(q.where ?? {}).every(([a, v]) => i[a] === v))
      .sort((a, b) => (range(a) < range(b) ? -1 : 1) * (q.descending ? -1 : 1))
      .slice(0, q.limit).map((i) => structuredClone(i) as T);
  }
  subscriptions() {
    return [...this.table('subscriptions').values()];
  }
}

class RecordingSocket implements Connections {
  sent: { connectionId: string; message: any }[] = [];
  closed: string[] = [];
  gone = new Set<string>();
  async post(_endpoint: string, connectionId: string, message: object) {
    if (this.gone.has(connectionId) || this.closed.includes(connectionId)) return 'gone' as const;
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

const setup = () => {
  const store = new MemoryStore();
  const socket = new RecordingSocket();
  const ctx: ProtocolContext = { store: store as unknown as Store, connections: socket, schema: async () => schema };
  const open = async (connectionId: string) => {
    expect((await connect(ctx, { connectionId, endpoint: 'http://ws', protocols: ['graphql-transport-ws'] })).statusCode).toBe(200);
    return (message: unknown) => handleMessage(ctx, connectionId, 'http://ws', typeof message === 'string' ? message : JSON.stringify(message));
  };
  const acked = async (connectionId: string) => {
    const send = await open(connectionId);
    await send({ type: 'connection_init', payload: { authorization: 'Bearer fza_unit' } });
    expect(socket.to(connectionId)).toEqual([{ type: 'connection_ack' }]);
    return send;
  };
  return { store, socket, ctx, open, acked };
};

const ALARM = 'subscription { alarmRaised { id kind host { name } } }';

describe('parseClientMessage', () => {
  test.each([
    ['{"type":"connection_init"}', 'connection_init'],
    ['{"type":"connection_init","payload":{"authorization":"Bearer x"}}', 'connection_init'],
    ['{"type":"ping","payload":{"n":1}}', 'ping'],
    ['{"type":"pong"}', 'pong'],
    ['{"type":"subscribe","id":"1","payload":{"query":"subscription { alarmRaised { id } }","variables":null}}', 'subscribe'],
    ['{"type":"complete","id":"1"}', 'complete'],
  ])('accepts %s', (body, type) => {
    const parsed = parseClientMessage(body);
    expect('message' in parsed && parsed.message.type).toBe(type);
  });

  test.each([
    ['{not json', /not JSON/],
    ['[]', /expected an object, got array/],
    ['{"id":"1"}', /'type' must be a string/],
    ['{"type":"subscribe","payload":{"query":"x"}}', /requires a non-empty string 'id'/],
    ['{"type":"subscribe","id":"","payload":{"query":"x"}}', /non-empty string 'id'/],
    ['{"type":"subscribe","id":"1","payload":{"query":5}}', /'query' to be a string/],
    ['{"type":"subscribe","id":"1","payload":{"query":"x","variables":[1]}}', /payload.variables/],
    ['{"type":"subscribe","id":"1","payload":{"query":"x","operationName":3}}', /operationName/],
    ['{"type":"connection_init","payload":"token"}', /'payload' to be an object/],
    ['{"type":"next","id":"1","payload":{}}', /Unexpected message of type next/],
    ['{"type":"connection_ack"}', /Unexpected message of type connection_ack/],
    ['{"type":"start","id":"1"}', /unknown type "start"/],
    [JSON.stringify({ type: 'complete', id: 'x'.repeat(300) }), /longer than 256/],
  ])('refuses %s', (body, reason) => {
    const parsed = parseClientMessage(body);
    expect('error' in parsed && parsed.error).toMatch(reason);
  });
});

describe('prepareSubscription', () => {
  const prepare = (query: string, variables?: Record<string, unknown>, operationName?: string) =>
    prepareSubscription(schema, { query, variables, operationName }) as PreparedSubscription;
  const errorsOf = (query: string, variables?: Record<string, unknown>, operationName?: string) =>
    (prepareSubscription(schema, { query, variables, operationName }) as { errors: { message: string; extensions?: Record<string, unknown> }[] }).errors;

  test('alarmRaised becomes a lookup of the alarm by the event\'s alarm id, under the same response key', () => {
    const p = prepare('subscription Watch($min: Severity) { alarmRaised(minSeverity: $min) { id host { name } release { name } } }', { min: 'WARNING' });
    expect(p).toMatchObject({ field: 'alarmRaised', topic: 'alarm', filter: { minSeverity: 'WARNING' }, responseKey: 'alarmRaised', lookupVariable: 'fzLookupId', variables: {} });
    expect(p.query).toBe('query Watch($fzLookupId: ID!) {\n  alarmRaised: alarm(id: $fzLookupId) {\n    id\n    host {\n      name\n    }\n    release {\n      name\n    }\n  }\n}');
    expect(validate(schema, parse(p.query))).toEqual([]);
  });

  test('the default minSeverity is INFO; aliases, fragments and variables used below the root are kept', () => {
    expect(prepare('subscription { alarmRaised { id } }').filter).toEqual({ minSeverity: 'INFO' });
    const p = prepare(`subscription ($withHost: Boolean!, $fzLookupId: Severity) { a: alarmRaised(minSeverity: $fzLookupId) { ...A host @include(if: $withHost) { name } } }
      fragment A on Alarm { id ...B } fragment B on Alarm { kind }`, { withHost: true, fzLookupId: 'CRITICAL' });
    expect(p).toMatchObject({ filter: { minSeverity: 'CRITICAL' }, responseKey: 'a', lookupVariable: 'fzLookupId_', variables: { withHost: true } });
    expect(p.query).toContain('a: alarm(id: $fzLookupId_)');
    expect(p.query).toContain('fragment A on Alarm');
    expect(p.query).toContain('fragment B on Alarm');
    expect(p.query).not.toMatch(/\$fzLookupId: Severity/);
    expect(validate(schema, parse(p.query))).toEqual([]);
  });

  test('a root field inside a fragment on Subscription is found', () => {
    const p = prepare('subscription { ...S } fragment S on Subscription { alarmRaised(minSeverity: CRITICAL) { id } }');
    expect(p).toMatchObject({ field: 'alarmRaised', filter: { minSeverity: 'CRITICAL' } });
    expect(p.query).not.toContain('Subscription');
    expect(validate(schema, parse(p.query))).toEqual([]);
  });

  test('containerStatusChanged and releaseProgress: topics, filters and lookups', () => {
    const c = prepare('subscription { containerStatusChanged(releaseId: "r-1") { state instance { id } } }');
    expect(c).toMatchObject({ field: 'containerStatusChanged', topic: 'container', filter: { releaseId: 'r-1', hostId: null } });
    expect(c.query).toContain('containerStatusChanged: containerStatus(instanceId: $fzLookupId)');
    const r = prepare('subscription P($r: ID!) { releaseProgress(releaseId: $r) { kind message release { name } } }', { r: 'r-2' });
    expect(r).toMatchObject({ field: 'releaseProgress', topic: 'release:r-2', variables: {} });
    expect(r.query).toContain('releaseProgress: event(id: $fzLookupId)');
    for (const q of [c.query, r.query]) expect(validate(schema, parse(q))).toEqual([]);
  });

  test('instanceLogTail: a lookup of the chunk on the instance\'s own topic, for an operator and above only', () => {
    const t = prepare('subscription T($i: ID!) { instanceLogTail(instanceId: $i) { lines { text } dropped ended } }', { i: 'r-1-0' });
    expect(t).toMatchObject({ field: 'instanceLogTail', topic: 'logs:r-1-0', filter: { instanceId: 'r-1-0' } });
    expect(t.query).toContain('instanceLogTail: logTail(id: $fzLookupId)');
    expect(validate(schema, parse(t.query))).toEqual([]);
    const query = 'subscription { instanceLogTail(instanceId: "r-1-0") { lines { text } } }';
    const viewer = prepareSubscription(schema, { query }, { kind: 'operator', id: 'k-view', role: 'VIEWER' }) as { errors: { message: string; extensions?: Record<string, unknown> }[] };
    expect(viewer.errors[0]).toMatchObject({ message: 'instanceLogTail needs the OPERATOR role; k-view has VIEWER', extensions: { code: 'FORBIDDEN' } });
    expect(prepareSubscription(schema, { query }, { kind: 'operator', id: 'k-op', role: 'OPERATOR' })).toMatchObject({ topic: 'logs:r-1-0' });
  });

  test('invalid documents, variables and operations are refused with GraphQL errors', () => {
    expect(errorsOf('subscription { alarmRaised { nosuch } }')[0]).toMatchObject({
      message: 'Cannot query field "nosuch" on type "Alarm".', extensions: { code: 'BAD_USER_INPUT', reason: 'GRAPHQL_VALIDATION_FAILED' },
    });
    expect(errorsOf('subscription { alarmRaised(minSeverity: LOUD) { id } }')[0].message).toMatch(/Value "LOUD" does not exist in "Severity" enum/);
    expect(errorsOf('subscription {')[0]).toMatchObject({ extensions: { reason: 'GRAPHQL_PARSE_FAILED' } });
    expect(errorsOf('subscription ($m: Severity) { alarmRaised(minSeverity: $m) { id } }', { m: 'LOUD' })[0].message).toMatch(/Variable "\$m" got invalid value "LOUD"/);
    expect(errorsOf('subscription { alarmRaised { id } containerStatusChanged { state } }')[0].message).toMatch(/must select only one top level field/);
    expect(errorsOf('query { hosts { id } }')[0].message).toMatch(/only subscriptions are served over the WebSocket; send this query to POST \/graphql/);
    expect(errorsOf('subscription A { alarmRaised { id } } subscription B { alarmRaised { kind } }')[0].message).toMatch(/Must provide operation name/);
    expect(errorsOf('subscription A { alarmRaised { id } }', {}, 'C')[0].message).toMatch(/Unknown operation named "C"/);
    expect(errorsOf('subscription { releaseProgress { id } }')[0].message).toMatch(/argument "releaseId" of type "ID!" is required/);
  });
});

/** An event as recordEvent writes it, with its index keys. */
const event = (overrides: Partial<PlatformEvent>): PlatformEvent => indexed({
  id: `${new Date().toISOString()}~abcd`, at: new Date().toISOString(), kind: 'ALARM_RAISED', message: 'm', severity: 'WARNING',
  hostId: 'h-1', releaseId: 'r-1', instanceId: 'r-1-0', alarmId: 'a-1', topics: ['alarm'], published: false, seq: 1, ...overrides,
});

const record = (id: string, connectionId: string, query: string, variables?: Record<string, unknown>): SubscriptionRecord => ({
  ...(prepareSubscription(schema, { query, variables }) as PreparedSubscription),
  id: `sub#${connectionId}#${id}`, kind: 'subscription', connectionId, subscriptionId: id, endpoint: 'http://ws',
  principal: BOOTSTRAP_ADMIN, createdAt: new Date(Date.now() - 60_000).toISOString(), seq: 1,
});

describe('matching', () => {
  test('an event reaches its topics and their prefixes', () => {
    expect(topicsOfEvent(['container:r-1:h-1', 'alarm'])).toEqual(['container', 'container:r-1', 'container:r-1:h-1', 'alarm']);
  });

  test('filters: severity, release and host, and an id to look up', () => {
    const critical = record('1', 'c', 'subscription { alarmRaised(minSeverity: CRITICAL) { id } }');
    const warning = record('2', 'c', 'subscription { alarmRaised(minSeverity: WARNING) { id } }');
    expect(matches(critical, event({ severity: 'WARNING' }))).toBe(false);
    expect(matches(warning, event({ severity: 'WARNING' }))).toBe(true);
    expect(matches(warning, event({ severity: 'CRITICAL', alarmId: null }))).toBe(false);
    const onHost = record('3', 'c', 'subscription { containerStatusChanged(hostId: "h-1") { state } }');
    const onRelease = record('4', 'c', 'subscription { containerStatusChanged(releaseId: "r-2", hostId: "h-1") { state } }');
    const container = event({ kind: 'CONTAINER_STATUS', topics: ['container:r-1:h-1'], alarmId: null });
    expect(matches(onHost, container)).toBe(true);
    expect(matches(onRelease, container)).toBe(false);
    expect(matches(onHost, event({ topics: ['alarm'] }))).toBe(false);
    const progress = record('5', 'c', 'subscription { releaseProgress(releaseId: "r-1") { id } }');
    expect(matches(progress, event({ topics: ['release:r-1'] }))).toBe(true);
    expect(matches(progress, event({ topics: ['release:r-10'] }))).toBe(false);
  });

  test('a log tail subscription gets only the chunks of its own instance, never an event of the same topic', () => {
    const sub = { field: 'instanceLogTail' as const, topic: 'logs:r-1-0', filter: { instanceId: 'r-1-0' }, createdAt: '2026-12-02T00:00:00Z' };
    const chunk = { id: 'tail#1', at: '2026-12-02T00:00:01Z', kind: LOG_TAIL, severity: 'INFO' as const, topics: ['logs:r-1-0'], alarmId: null, instanceId: 'r-1-0', releaseId: 'r-1', hostId: null };
    expect(matches(sub, chunk)).toBe(true);
    expect(matches(sub, { ...chunk, kind: 'CONTAINER_STATUS' })).toBe(false);
    expect(matches(sub, { ...chunk, instanceId: 'r-1-1', topics: ['logs:r-1-1'] })).toBe(false);
  });

  test('an event from before the subscription existed is not replayed to it', () => {
    const sub = { ...record('1', 'c', ALARM), createdAt: new Date().toISOString() };
    expect(matches(sub, event({ at: new Date(Date.now() - 60_000).toISOString() }))).toBe(false);
  });
});

describe('groupDeliveries (de-duplication)', () => {
  test('identical subscriptions are executed once, distinct ones separately, non-matching ones not at all', () => {
    const same1 = record('1', 'conn-a', ALARM);
    const same2 = record('7', 'conn-b', ALARM);
    const other = record('1', 'conn-c', 'subscription { alarmRaised { id message } }');
    const criticalOnly = record('2', 'conn-c', 'subscription { alarmRaised(minSeverity: CRITICAL) { id } }');
    const groups = groupDeliveries([same1, same2, other, criticalOnly, same1], event({ severity: 'WARNING' }));
    expect(groups).toHaveLength(2);
    expect(groups[0].targets).toEqual([
      { connectionId: 'conn-a', subscriptionId: '1', endpoint: 'http://ws' },
      { connectionId: 'conn-b', subscriptionId: '7', endpoint: 'http://ws' },
    ]);
    expect(groups[0].variables).toEqual({ fzLookupId: 'a-1' });
    expect(groups[1].targets).toEqual([{ connectionId: 'conn-c', subscriptionId: '1', endpoint: 'http://ws' }]);
  });

  test('the same document with other variable values is another execution', () => {
    const q = 'subscription ($h: Boolean!) { alarmRaised { id host @include(if: $h) { name } } }';
    expect(groupDeliveries([record('1', 'a', q, { h: true }), record('1', 'b', q, { h: false })], event({}))).toHaveLength(2);
  });
});

describe('the protocol', () => {
  test('$connect needs the graphql-transport-ws subprotocol', async () => {
    const { ctx } = setup();
    expect((await connect(ctx, { connectionId: 'x', endpoint: 'e', protocols: ['graphql-ws'] })).statusCode).toBe(400);
    expect(await connect(ctx, { connectionId: 'y', endpoint: 'e', protocols: ['graphql-transport-ws'] })).toEqual({ statusCode: 200, headers: { 'Sec-WebSocket-Protocol': 'graphql-transport-ws' } });
  });

  test('connection_init with an operator token is acknowledged; ping gets pong; subscribe stores the subscription; complete removes it', async () => {
    const { store, socket, acked } = setup();
    const send = await acked('c1');
    await send({ type: 'ping', payload: { n: 1 } });
    expect(socket.to('c1').at(-1)).toEqual({ type: 'pong', payload: { n: 1 } });
    await send({ type: 'subscribe', id: 's1', payload: { query: ALARM } });
    expect(store.subscriptions().map((s) => s.id).sort()).toEqual(['conn#c1', 'sub#c1#s1']);
    await send({ type: 'complete', id: 's1' });
    await send({ type: 'complete', id: 'never-subscribed' });
    expect(store.subscriptions().map((s) => s.id)).toEqual(['conn#c1']);
    expect(socket.closed).toEqual([]);
  });

  test.each([
    ['no credentials', {}, CloseCode.Unauthorized, /connection_init needs payload \{authorization/],
    ['a wrong operator token', { authorization: 'Bearer fza_wrong' }, CloseCode.Unauthorized, /admin token is not valid/],
    ['a malformed header', { authorization: 'Basic abc' }, CloseCode.Unauthorized, /must be "Bearer <token>"/],
    ['a non-string authorization', { authorization: 42 }, CloseCode.BadRequest, /must be a string/],
  ])('connection_init with %s is closed', async (_what, payload, code, reason) => {
    const { store, socket, open } = setup();
    const send = await open('c1');
    await send({ type: 'connection_init', payload });
    expect(socket.closeNotice('c1')).toMatchObject({ code });
    expect(socket.closeNotice('c1')!.reason).toMatch(reason);
    expect(socket.closed).toEqual(['c1']);
    expect(store.subscriptions()).toEqual([]);
  });

  test('bad protocol use: subscribe before ack 4401, a second init 4429, a duplicate id 4409, malformed 4400', async () => {
    const { socket, open, acked } = setup();
    await (await open('early'))({ type: 'subscribe', id: '1', payload: { query: ALARM } });
    expect(socket.closeNotice('early')).toEqual({ code: 4401, reason: 'Unauthorized' });

    const twice = await acked('twice');
    await twice({ type: 'connection_init', payload: { authorization: 'Bearer fza_unit' } });
    expect(socket.closeNotice('twice')).toEqual({ code: 4429, reason: 'Too many initialisation requests' });

    const dup = await acked('dup');
    await dup({ type: 'subscribe', id: 'same', payload: { query: ALARM } });
    await dup({ type: 'subscribe', id: 'same', payload: { query: ALARM } });
    expect(socket.closeNotice('dup')).toEqual({ code: 4409, reason: 'Subscriber for same already exists' });

    const bad = await acked('bad');
    await bad('{"type":"subscribe"');
    expect(socket.closeNotice('bad')).toMatchObject({ code: 4400, reason: 'Invalid message received: not JSON' });
    expect(socket.closed.sort()).toEqual(['bad', 'dup', 'early', 'twice']);
  });

  test('an invalid document gets an error message and the connection stays usable', async () => {
    const { store, socket, acked } = setup();
    const send = await acked('c1');
    await send({ type: 'subscribe', id: 'bad', payload: { query: 'subscription { alarmRaised { nosuch } }' } });
    const error = socket.to('c1').at(-1);
    expect(error).toMatchObject({ id: 'bad', type: 'error', payload: [{ message: 'Cannot query field "nosuch" on type "Alarm".', extensions: { code: 'BAD_USER_INPUT' } }] });
    await send({ type: 'subscribe', id: 'good', payload: { query: ALARM } });
    expect(store.subscriptions().map((s) => s.id).sort()).toEqual(['conn#c1', 'sub#c1#good']);
    expect(socket.closed).toEqual([]);
  });

  test('filters that name nothing are refused with NOT_FOUND', async () => {
    const { ctx, socket, acked } = setup();
    ctx.checkFilter = async (filter) => (filter.releaseId === 'r-missing' ? { message: 'release "r-missing" does not exist', extensions: { code: 'NOT_FOUND' } } : null);
    const send = await acked('c1');
    await send({ type: 'subscribe', id: '1', payload: { query: 'subscription { releaseProgress(releaseId: "r-missing") { id } }' } });
    expect(socket.to('c1').at(-1)).toMatchObject({ id: '1', type: 'error', payload: [{ extensions: { code: 'NOT_FOUND' } }] });
  });
});

describe('publishEvent', () => {
  test('identical subscriptions run once; every subscriber gets next; a gone connection is removed with its subscriptions', async () => {
    const { store, socket, ctx, acked } = setup();
    for (const c of ['a', 'b', 'gone']) {
      const send = await acked(c);
      await send({ type: 'subscribe', id: `${c}1`, payload: { query: ALARM } });
    }
    await (await acked('d'))({ type: 'subscribe', id: 'd1', payload: { query: 'subscription { alarmRaised { id message } }' } });
    // Created a minute ago, so the event is not older than the subscriptions.
    for (const item of store.subscriptions()) item.createdAt = new Date(Date.now() - 60_000).toISOString();
    socket.gone.add('gone');
    const executed: string[] = [];
    const execute: Execute = async (query, variables) => {
      executed.push(query);
      return { data: { alarmRaised: { id: variables.fzLookupId, kind: 'TEST', message: 'm', host: { name: 'h' } } } };
    };
    const report = await publishEvent({ store: ctx.store as Store, connections: socket, execute }, event({}));
    expect(executed).toHaveLength(2);
    expect(report).toMatchObject({ subscriptions: 4, executions: 2, deliveries: 3, gone: 1, failed: 0 });
    expect(socket.to('a').at(-1)).toEqual({ id: 'a1', type: 'next', payload: { data: { alarmRaised: { id: 'a-1', kind: 'TEST', message: 'm', host: { name: 'h' } } } } });
    expect(socket.to('d').at(-1)).toMatchObject({ id: 'd1', type: 'next' });
    expect(store.subscriptions().some((s) => s.connectionId === 'gone')).toBe(false);
  });

  test('a failing execution does not stop the others; a lookup that finds nothing sends nothing', async () => {
    const { store, socket, ctx, acked } = setup();
    await (await acked('a'))({ type: 'subscribe', id: '1', payload: { query: ALARM } });
    await (await acked('b'))({ type: 'subscribe', id: '1', payload: { query: 'subscription { alarmRaised { id } }' } });
    await (await acked('c'))({ type: 'subscribe', id: '1', payload: { query: 'subscription { alarmRaised { kind } }' } });
    for (const item of store.subscriptions()) item.createdAt = new Date(Date.now() - 60_000).toISOString();
    const execute: Execute = async (query) => {
      if (query.includes('host')) throw new Error('boom');
      if (query.includes('kind')) return { data: { alarmRaised: null } };
      return { data: { alarmRaised: { id: 'a-1' } } };
    };
    const logged = jest.spyOn(log, 'error').mockImplementation(() => undefined);
    const report = await publishEvent({ store: ctx.store as Store, connections: socket, execute }, event({}));
    expect(logged).toHaveBeenCalledWith(expect.objectContaining({ err: new Error('boom') }), 'subscription query failed');
    logged.mockRestore();
    expect(report).toMatchObject({ executions: 3, deliveries: 1, failed: 1 });
    expect(socket.to('b').at(-1)).toEqual({ id: '1', type: 'next', payload: { data: { alarmRaised: { id: 'a-1' } } } });
    expect(socket.to('c').filter((m) => m.type === 'next')).toEqual([]);
  });
});

describe('publishPending', () => {
  test('events go out oldest first and are marked; a run that finds the lease held makes the holder look again', async () => {
    const { store, socket, ctx, acked } = setup();
    await (await acked('a'))({ type: 'subscribe', id: '1', payload: { query: ALARM } });
    for (const item of store.subscriptions()) item.createdAt = new Date(Date.now() - 60_000).toISOString();
    const at = new Date().toISOString();
    const first = event({ id: `${at}~0001`, alarmId: 'a-1' });
    const second = event({ id: `${at}~0002`, alarmId: 'a-2' });
    const late = event({ id: `${at}~0003`, alarmId: 'a-3' });
    await store.create('events', second);
    await store.create('events', first);
    const deps = { store: ctx.store as Store, connections: socket, execute: (async (_q, variables) => ({ data: { alarmRaised: { id: variables.fzLookupId } } })) as Execute };

    // When the holder is about to give the lease up, an event arrives and its kicked publisher finds the lease held.
    const get = store.get.bind(store);
    let arrived: unknown;
    store.get = async <T>(name: string, key: string) => {
      if (key === 'lease#publisher' && !arrived && (await get<{ published: boolean }>('events', second.id))?.published) {
        arrived = true;
        await store.create('events', late);
        arrived = await publishPending(deps);
      }
      return get<T>(name, key);
    };
    expect(await publishPending(deps)).toEqual({ events: 3, deliveries: 3 });
    expect(arrived).toMatchObject({ events: 0, skipped: expect.stringMatching(/another publisher is running/) });
    expect(socket.to('a').filter((m) => m.type === 'next').map((m) => m.payload.data.alarmRaised.id)).toEqual(['a-1', 'a-2', 'a-3']);
    expect((await store.scan<{ published: boolean }>('events')).every((e) => e.published)).toBe(true);
    expect(await get('subscriptions', 'lease#publisher')).toBeUndefined();
  });
});
