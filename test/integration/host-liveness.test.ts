import { store } from '../../lib/store';
import { recordSocketAnswer } from '../../subgraphs/ark';
import { watchHosts } from '../../subgraphs/butler/watchdog';
import { asHost, startInProcess } from '../support/inprocess';

/**
 * The watchdog's evidence, judged by the API's clock (each tick is given its time; defaults: beats every 1 s, hosts
 * DOWN after 5 s): a host whose runner holds no notification socket any more is DOWN after three missed beats; one
 * whose socket stays open but does not answer the probe only after 5 s; one whose socket answers is never DOWN,
 * whatever its HTTP beats do. The socket witness is a function here standing in for the graphql-ws ping (the real
 * socket is exercised by test/e2e/fleet-host-loss.test.ts). And two bad inputs of the heartbeat: a host clock far off
 * (judged by the API's clock, only reported) and a second runner started with a host token already in use.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;

beforeAll(async () => {
  api = await startInProcess('evidence-');
});

afterAll(async () => {
  await api?.stop();
});

test('a closed socket and three missed beats make a host DOWN; a silent socket needs 5 s; an answering one never', async () => {
  const [closed, silent, answering] = await Promise.all(['ev-closed', 'ev-silent', 'ev-answering'].map((name) => api.registerHost(name)));
  await Promise.all([closed, silent, answering].map(async (id) => {
    const beat = await api.run('mutation($input: RunnerHeartbeatInput!) { runnerHeartbeat(input: $input) { hostId } }',
      { input: { session: `s-${id}`, sentAt: new Date().toISOString() } }, asHost(id));
    expect(beat.errors).toBeUndefined();
  }));
  // Times below count from the last of the three beats, as the API recorded them.
  const beats = ((await api.run('{ hosts { lastHeartbeatAt } }')).data!.hosts as { lastHeartbeatAt: string }[]).map((h) => Date.parse(h.lastHeartbeatAt));
  const lastBeat = Math.max(...beats);
  expect(lastBeat - Math.min(...beats)).toBeLessThan(500);
  let clock = new Date(lastBeat);
  const probe = async (hostId: string) => {
    if (hostId === closed) return 'closed' as const;
    if (hostId === answering) await recordSocketAnswer(store(), hostId, new Date(clock.getTime() + 100));
    return 'sent' as const;
  };
  const statusesAfter = async (seconds: number) => {
    clock = new Date(lastBeat + seconds * 1000);
    await watchHosts(store(), probe, clock);
    const hosts = (await api.run('{ hosts { id status } }')).data!.hosts as { id: string; status: string }[];
    return [closed, silent, answering].map((id) => hosts.find((h) => h.id === id)!.status);
  };

  // The watchdog was already ticking before the beats stopped (silence nobody watched is no evidence).
  await statusesAfter(-2);
  for (const s of [-1, 0, 0.5, 1, 1.5, 2]) expect(await statusesAfter(s)).toEqual(['READY', 'READY', 'READY']);
  expect(await statusesAfter(3.2)).toEqual(['DOWN', 'READY', 'READY']);
  for (const s of [3.5, 4]) expect(await statusesAfter(s)).toEqual(['DOWN', 'READY', 'READY']);
  // The silent socket's probe went out at 2.5 s and was not answered within 2 s; its beats are 5 s old.
  expect(await statusesAfter(5.2)).toEqual(['DOWN', 'DOWN', 'READY']);
  for (const s of [6, 7, 8, 9, 10]) expect(await statusesAfter(s)).toEqual(['DOWN', 'DOWN', 'READY']);
});

const BEAT = 'mutation($input: RunnerHeartbeatInput!) { runnerHeartbeat(input: $input) { clockSkewSeconds } }';

test('a host whose clock is an hour off is judged by the API’s clock: its skew is reported, and it stays READY while it beats', async () => {
  const [ahead, behind] = await Promise.all(['skew-ahead', 'skew-behind'].map((name) => api.registerHost(name)));
  const hour = 3600_000;
  for (let i = 0; i < 3; i++) {
    const sent = await Promise.all([[ahead, hour], [behind, -hour]].map(async ([id, offset]) =>
      api.run(BEAT, { input: { session: `s-${id}`, sentAt: new Date(Date.now() + (offset as number)).toISOString() } }, asHost(id as string))));
    for (const beat of sent) expect(beat.errors).toBeUndefined();
    expect(Math.round(sent[0].data!.runnerHeartbeat.clockSkewSeconds / 60)).toBe(60);
    expect(Math.round(sent[1].data!.runnerHeartbeat.clockSkewSeconds / 60)).toBe(-60);
    await watchHosts(store(), async () => 'closed');
  }
  const hosts = (await api.run('{ hosts { id status clockSkewSeconds } }')).data!.hosts as { id: string; status: string; clockSkewSeconds: number }[];
  expect(hosts.filter((h) => h.id === ahead || h.id === behind).map((h) => [h.status, Math.round(h.clockSkewSeconds / 60)]).sort())
    .toEqual([['READY', -60], ['READY', 60]]);
});

test('a second runner with the same host token is refused (CONFLICT, saying what to do) and changes nothing', async () => {
  const id = await api.registerHost('twice');
  expect((await api.run(BEAT, { input: { session: 'first', sentAt: new Date().toISOString() } }, asHost(id))).errors).toBeUndefined();
  const before = (await api.run('query($id: ID!) { host(id: $id) { status lastHeartbeatAt } }', { id })).data!.host;

  const second = await api.run(BEAT, { input: { session: 'second', sentAt: new Date().toISOString() } }, asHost(id));
  expect(second.errors?.[0]).toMatchObject({
    extensions: { code: 'CONFLICT' },
    message: expect.stringMatching(/^host twice is already served by another runner .*stop the other runner, or give this one its own host/),
  });
  const sync = await api.run('mutation($input: RunnerSyncInput!) { runnerSync(input: $input) { hostId } }',
    { input: { observed: [], session: 'second' } }, asHost(id));
  expect(sync.errors?.[0].extensions?.code).toBe('CONFLICT');
  expect((await api.run('query($id: ID!) { host(id: $id) { status lastHeartbeatAt } }', { id })).data!.host).toEqual(before);
  // The first runner carries on.
  expect((await api.run(BEAT, { input: { session: 'first', sentAt: new Date().toISOString() } }, asHost(id))).errors).toBeUndefined();
});
