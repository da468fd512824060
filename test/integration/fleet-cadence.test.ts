import { store } from '../../lib/store';
import { watchHosts } from '../../subgraphs/butler/watchdog';
import { asHost, startInProcess } from '../support/inprocess';

/**
 * A large fleet beats less often (subgraphs/ark/cadence.ts): past FZ_MAX_HEARTBEATS_PER_SECOND the API tells every
 * runner a longer interval, and a silent host is judged by the interval it was told. Here the budget is one beat a
 * second, so a fleet of 4 beats every 4 s, polls at the poll budget, and a host is DOWN only after 5 of those beats
 * (3 with its socket closed). Each watchdog tick is given its time.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
const saved = { beats: process.env.FZ_MAX_HEARTBEATS_PER_SECOND, polls: process.env.FZ_MAX_POLLS_PER_SECOND };

beforeAll(async () => {
  process.env.FZ_MAX_HEARTBEATS_PER_SECOND = '1';
  process.env.FZ_MAX_POLLS_PER_SECOND = '0.5';
  api = await startInProcess('cadence-');
});

afterAll(async () => {
  await api?.stop();
  for (const [name, value] of [['FZ_MAX_HEARTBEATS_PER_SECOND', saved.beats], ['FZ_MAX_POLLS_PER_SECOND', saved.polls]] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

const BEAT = 'mutation($input: RunnerHeartbeatInput!) { runnerHeartbeat(input: $input) { intervalSeconds } }';
const SYNC = 'mutation($input: RunnerSyncInput!) { runnerSync(input: $input) { pollSeconds } }';

test('a fleet past the heartbeat budget is told to beat and poll less often, and its hosts get as much longer before DOWN', async () => {
  const ids = await Promise.all(['wide-1', 'wide-2', 'wide-3', 'wide-4'].map((name) => api.registerHost(name)));
  const [closed, silent] = ids;
  for (const id of ids) {
    const beat = await api.run(BEAT, { input: { session: `s-${id}`, sentAt: new Date().toISOString() } }, asHost(id));
    expect(beat.errors).toBeUndefined();
    expect(beat.data!.runnerHeartbeat.intervalSeconds).toBe(4);
    const sync = await api.run(SYNC, { input: { observed: [], session: `s-${id}` } }, asHost(id));
    expect(sync.errors).toBeUndefined();
    expect(sync.data!.runnerSync.pollSeconds).toBe(8);
  }
  const lastBeat = async (id: string) => Date.parse((await api.run('query($id: ID!) { host(id: $id) { lastHeartbeatAt } }', { id })).data!.host.lastHeartbeatAt);
  const from = Math.max(await lastBeat(closed), await lastBeat(silent));
  const statusesAfter = async (seconds: number) => {
    const at = new Date(from + seconds * 1000);
    await watchHosts(store(), async (hostId) => (hostId === closed ? 'closed' : 'sent'), at);
    const hosts = (await api.run('{ hosts { id status } }')).data!.hosts as { id: string; status: string }[];
    return [closed, silent].map((id) => hosts.find((h) => h.id === id)!.status);
  };
  // The watchdog was ticking before the beats stopped; at the default cadence (1 s beats, DOWN after 5 s) both
  // hosts would be DOWN by 6 s.
  for (const s of [-1, 0, 2, 4, 6, 8, 11]) expect(await statusesAfter(s)).toEqual(['READY', 'READY']);
  // Closed socket: three missed beats of 4 s.
  expect(await statusesAfter(12.5)).toEqual(['DOWN', 'READY']);
  for (const s of [14, 16, 18, 19.5]) expect(await statusesAfter(s)).toEqual(['DOWN', 'READY']);
  // A socket that does not answer: the full host-down time, 5 beats of 4 s.
  expect(await statusesAfter(20.5)).toEqual(['DOWN', 'DOWN']);
});
