import { schedule, type PlacementRequest, type SchedulableHost } from '../../subgraphs/ark/scheduler';

const host = (id: string, over: Partial<SchedulableHost> = {}): SchedulableHost => ({
  id, status: 'READY', labels: [], exclusiveFor: null,
  capacity: { cpuMillis: 1000, memoryMb: 1024 }, allocated: { cpuMillis: 0, memoryMb: 0 }, releaseCounts: {}, ...over,
});
const request = (n: number, over: Partial<PlacementRequest> = {}): PlacementRequest => ({
  instanceId: `r-${n}`, releaseId: 'r', product: 'redis', resources: { cpuMillis: 100, memoryMb: 100 }, requiredLabels: [], ...over,
});

test('spreads replicas of one release across hosts before doubling up', () => {
  const { placements } = schedule([host('a'), host('b'), host('c')], [0, 1, 2].map((n) => request(n)));
  expect(new Set(placements.map((p) => p.hostId))).toEqual(new Set(['a', 'b', 'c']));
});

test('places only on hosts that carry every required label', () => {
  const hosts = [host('a', { labels: [{ key: 'zone', value: 'a' }] }), host('b', { labels: [{ key: 'zone', value: 'b' }] })];
  const { placements } = schedule(hosts, [0, 1].map((n) => request(n, { requiredLabels: [{ key: 'zone', value: 'b' }] })));
  expect(placements.map((p) => p.hostId)).toEqual(['b', 'b']);
});

test('never places more than a host has room for, counting what it placed itself', () => {
  const { placements, unschedulable } = schedule([host('a', { capacity: { cpuMillis: 250, memoryMb: 1024 } })], [0, 1, 2].map((n) => request(n)));
  expect(placements).toHaveLength(2);
  expect(unschedulable).toEqual([{ instanceId: 'r-2', reason: '0/1 hosts can run it: 1 insufficient CPU' }]);
});

test('says which constraint ruled out how many hosts', () => {
  const hosts = [
    host('down', { status: 'DOWN' }),
    host('other', { exclusiveFor: 'kafka' }),
    host('small', { capacity: { cpuMillis: 1000, memoryMb: 50 } }),
    host('nolabel'),
  ];
  const { unschedulable } = schedule(hosts, [request(0, { requiredLabels: [{ key: 'disk', value: 'ssd' }] })]);
  expect(unschedulable[0].reason).toBe('0/4 hosts can run it: 1 not READY, 1 dedicated to another product, 2 missing required labels');
});

test('tells the user to start a runner when no host is registered', () => {
  expect(schedule([], [request(0)]).unschedulable[0].reason).toMatch(/no hosts are registered/);
});

test('a host dedicated to a product takes that product', () => {
  const { placements } = schedule([host('a', { exclusiveFor: 'redis' })], [request(0)]);
  expect(placements).toEqual([{ instanceId: 'r-0', hostId: 'a' }]);
});
