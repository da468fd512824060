import { store } from '../../lib/store';
import { raise } from '../../subgraphs/butler/alarms';
import { markPublished, recordEvent, unpublishedEvents, type PlatformEvent } from '../../subgraphs/butler/events';
import type { Host } from '../../subgraphs/ark/hosts';
import { releaseCause } from '../../subgraphs/panama/releases';
import { startInProcess } from '../support/inprocess';

/**
 * A store that grows (in-process gateway, dynalite): events are kept for the retention and the watchdog tick prunes
 * older ones; the publisher reads only what it has not sent; alarms of a release that is gone resolve even when the
 * hook that resolves them never ran; items written before the lists were Queries are indexed by the tick; and the
 * daily inspection reports a host whose books drifted. The watchdog tick is the deployed handler, called directly.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
let hostId: string;
let watchdog: () => Promise<unknown>;
const DAY = 86_400_000;

beforeAll(async () => {
  process.env.FZ_EVENT_RETENTION_DAYS = '7';
  api = await startInProcess('growth-');
  ({ handler: watchdog } = await import('../../handlers/watchdog'));
  hostId = await api.registerHost('growth-host', { cpuMillis: 4000, memoryMb: 4096 });
  const defined = await api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', {
    input: { name: 'kv', versions: [{ version: '1.0.0', image: 'fangzhou/kv:1' }], defaults: { replicas: 1, resources: { cpuMillis: 100, memoryMb: 32 } } },
  });
  expect(defined.errors).toBeUndefined();
});

afterAll(async () => {
  await api?.stop();
  delete process.env.FZ_EVENT_RETENTION_DAYS;
});

const eventMessages = async (filter = '{}') =>
  ((await api.run(`{ events(filter: ${filter}, first: 500) { nodes { message } } }`)).data!.events.nodes as { message: string }[]).map((e) => e.message);

test('alarms, events and inspections written before their lists were Queries appear in the lists once the tick indexed them', async () => {
  // First in this file: a store's first ticks index what it held before (then the tick only checks a marker).
  const now = new Date();
  // Their shape then: no index keys.
  await store().create('alarms', {
    id: 'a-before', kind: 'HOST_DOWN', severity: 'CRITICAL', message: 'written before', cause: 'host:h-before', hostId: 'h-before', instanceId: null, releaseId: null,
    state: 'FIRING', raisedAt: new Date(now.getTime() - DAY).toISOString(), acknowledgedAt: null, resolvedAt: null, notifications: [],
  });
  const event = (id: string, at: Date, message: string) => ({
    id: `${at.toISOString()}~${id}`, at: at.toISOString(), kind: 'TEST', message, severity: 'INFO', hostId: null, releaseId: null, instanceId: null,
    alarmId: null, topics: [], published: true,
  });
  await store().create('events', event('recent', new Date(now.getTime() - DAY), 'event written before'));
  await store().create('events', event('stale', new Date(now.getTime() - 20 * DAY), 'stale event written before'));
  await store().create('inspections', { id: 'insp-before', trigger: 'ON_DEMAND', startedAt: new Date(now.getTime() - DAY).toISOString(), finishedAt: now.toISOString(), score: 90, findings: [] });
  const listed = async () => (await api.run('{ alarms(filter: {state: FIRING}) { nodes { id } } } ')).data!.alarms.nodes.map((a: { id: string }) => a.id);
  expect(await listed()).not.toContain('a-before');

  await watchdog();
  expect(await listed()).toContain('a-before');
  expect((await api.run('{ alarms(filter: {hostId: "h-before"}) { nodes { id } } }')).data!.alarms.nodes).toEqual([{ id: 'a-before' }]);
  const messages = await eventMessages('{kind: "TEST"}');
  expect(messages).toContain('event written before');
  expect(messages).not.toContain('stale event written before');
  expect((await api.run('{ inspections { nodes { id } } }')).data!.inspections.nodes).toContainEqual({ id: 'insp-before' });
});

test('the watchdog tick removes events older than FZ_EVENT_RETENTION_DAYS and keeps the newer ones', async () => {
  const now = Date.now();
  for (const days of [30, 9, 8]) await recordEvent(store(), { kind: 'RETENTION', message: `old ${days}d`, releaseId: 'r-gone' }, new Date(now - days * DAY));
  for (const days of [6, 1]) await recordEvent(store(), { kind: 'RETENTION', message: `kept ${days}d`, releaseId: 'r-gone' }, new Date(now - days * DAY));
  expect(await eventMessages('{kind: "RETENTION"}')).toEqual(['kept 1d', 'kept 6d', 'old 8d', 'old 9d', 'old 30d']);

  await watchdog();
  expect(await eventMessages('{kind: "RETENTION"}')).toEqual(['kept 1d', 'kept 6d']);
  expect(await eventMessages('{releaseId: "r-gone"}')).toEqual(['kept 1d', 'kept 6d']);
});

test('the publisher reads only unpublished events, oldest first, and a published one leaves that list', async () => {
  for (const e of await unpublishedEvents(store(), 500)) await markPublished(store(), e.id);
  const a = await recordEvent(store(), { kind: 'TEST', message: 'first' });
  const b = await recordEvent(store(), { kind: 'TEST', message: 'second' });
  expect((await unpublishedEvents(store())).map((e) => e.id)).toEqual([a.id, b.id]);
  await markPublished(store(), a.id);
  expect((await unpublishedEvents(store())).map((e) => e.id)).toEqual([b.id]);
  expect((await store().get<PlatformEvent>('events', a.id))!.published).toBe(true);
  // Still listed: publishing changes nothing a reader sees.
  expect(await eventMessages('{kind: "TEST"}')).toEqual(expect.arrayContaining(['first', 'second']));
});

test('alarms of a release removed without its releaseDeleted hook (a crash in between) resolve at the next tick', async () => {
  const deploy = async (name: string) => (await api.run(`mutation { deploy(input: {name: "${name}", product: "kv", replicas: 0}) { id } }`)).data!.deploy.id as string;
  const gone = await deploy('gone');
  const kept = await deploy('kept');
  for (const id of [gone, kept]) await raise(store(), { kind: 'UPGRADE_ROLLED_BACK', severity: 'WARNING', cause: releaseCause(id), releaseId: id, message: `rolled back ${id}` });
  // What a crash right after the release's removal leaves: the release is gone, its alarm was never resolved.
  await store().remove('releases', gone);
  const states = async () => Object.fromEntries(((await api.run('{ alarms(filter: {}, first: 500) { nodes { state release { id } message } } }')).data!.alarms.nodes as
    { state: string; message: string }[]).filter((a) => /^rolled back/.test(a.message)).map((a) => [a.message.replace(/^rolled back /, ''), a.state]));
  expect(await states()).toEqual({ [gone]: 'FIRING', [kept]: 'FIRING' });

  await watchdog();
  expect(await states()).toEqual({ [gone]: 'RESOLVED', [kept]: 'FIRING' });
  const firing = (await api.run(`{ alarms(filter: {state: FIRING, releaseId: "${gone}"}) { nodes { id } } }`)).data!.alarms.nodes;
  expect(firing).toEqual([]);
  // A new fault of the same cause raises a new alarm: the old one's claim went with it.
  expect(await raise(store(), { kind: 'UPGRADE_ROLLED_BACK', severity: 'WARNING', cause: releaseCause(gone), releaseId: gone, message: 'again' })).toBeDefined();
});

test('the daily inspection reports a host whose allocated resources drifted from its instances', async () => {
  await api.reportAllRunning(hostId); // the runner is back after the watchdog ticks above found it silent
  const deployed = await api.run('mutation { deploy(input: {name: "books", product: "kv", replicas: 2}) { id } }');
  expect(deployed.errors).toBeUndefined();
  const clean = await api.run('mutation { runInspection { findings { severity subject message } } }');
  expect(clean.data!.runInspection.findings.filter((f: { message: string }) => /allocated/.test(f.message))).toEqual([]);

  const host = (await store().get<Host>('hosts', hostId))!;
  await store().replace<Host>('hosts', { ...host, allocated: { cpuMillis: host.allocated.cpuMillis + 500, memoryMb: host.allocated.memoryMb } });
  const drifted = await api.run('mutation { runInspection { score findings { severity subject message } } }');
  expect(drifted.errors).toBeUndefined();
  expect(drifted.data!.runInspection.findings).toContainEqual({
    severity: 'WARNING', subject: 'host/growth-host',
    message: `its allocated resources do not match its instances: growth-host says ${host.allocated.cpuMillis + 500}m CPU/${host.allocated.memoryMb} MB allocated; `
      + `its reservations add up to ${host.allocated.cpuMillis}m CPU/${host.allocated.memoryMb} MB; run fz doctor --repair`,
  });
  await api.run('mutation { repairLedger { kind } }');
  const repaired = await api.run('mutation { runInspection { findings { subject message } } }');
  expect(repaired.data!.runInspection.findings.filter((f: { message: string }) => /allocated resources/.test(f.message))).toEqual([]);
});
