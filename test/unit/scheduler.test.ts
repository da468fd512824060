import { schedule, type Placement, type PlacementRequest, type SchedulableHost, type Unschedulable } from '../../subgraphs/ark/scheduler';

const host = (id: string, over: Partial<SchedulableHost> = {}): SchedulableHost => ({
  id, status: 'READY', labels: [], exclusiveFor: null,
  capacity: { cpuMillis: 1000, memoryMb: 1024 }, allocated: { cpuMillis: 0, memoryMb: 0 }, releaseCounts: {}, ...over,
});
const request = (n: number, over: Partial<PlacementRequest> = {}): PlacementRequest => ({
  instanceId: `r-${n}`, releaseId: 'r', product: 'redis', resources: { cpuMillis: 100, memoryMb: 100 }, requiredLabels: [],
  exclusive: false, spreadBy: null, strategy: 'SPREAD', ...over,
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

test('lists the hosts ruled out per constraint in filter order, whatever the host order', () => {
  const hosts = [host('small', { capacity: { cpuMillis: 1000, memoryMb: 50 } }), host('down', { status: 'DOWN' }), host('busy', { allocated: { cpuMillis: 1000, memoryMb: 0 } })];
  expect(schedule(hosts, [request(0)]).unschedulable[0].reason).toBe('0/3 hosts can run it: 1 not READY, 1 insufficient CPU, 1 insufficient memory');
});

// ---- exclusive hosts ----

const zone = (value: string) => [{ key: 'zone', value }];
const hostsOf = (placements: Placement[]) => placements.map((p) => p.hostId);
const tally = (values: string[]) => values.reduce<Record<string, number>>((acc, v) => ({ ...acc, [v]: (acc[v] ?? 0) + 1 }), {});

test('an exclusive request lands only on hosts dedicated to its product', () => {
  const hosts = [host('shared'), host('dedicated', { exclusiveFor: 'redis' }), host('kafka', { exclusiveFor: 'kafka' })];
  const { placements } = schedule(hosts, [0, 1, 2].map((n) => request(n, { exclusive: true })));
  expect(hostsOf(placements)).toEqual(['dedicated', 'dedicated', 'dedicated']);
});

test('an exclusive request with no dedicated host says so', () => {
  const hosts = [host('shared'), host('kafka', { exclusiveFor: 'kafka' })];
  const { placements, unschedulable } = schedule(hosts, [request(0, { exclusive: true })]);
  expect(placements).toEqual([]);
  expect(unschedulable).toEqual([{ instanceId: 'r-0', reason: '0/2 hosts can run it: 1 dedicated to another product, 1 not dedicated to redis' }]);
});

test('a host dedicated to one product never takes another, even when it alone has room', () => {
  const hosts = [host('kafka', { exclusiveFor: 'kafka', capacity: { cpuMillis: 64000, memoryMb: 65536 } }), host('shared', { capacity: { cpuMillis: 200, memoryMb: 1024 } })];
  const { placements, unschedulable } = schedule(hosts, [0, 1, 2].map((n) => request(n)));
  expect(hostsOf(placements)).toEqual(['shared', 'shared']);
  expect(unschedulable).toEqual([{ instanceId: 'r-2', reason: '0/2 hosts can run it: 1 dedicated to another product, 1 insufficient CPU' }]);
});

// ---- spread across a label ----

test('spreadBy zone spreads 6 replicas 2/2/2 over three zones with 3, 2 and 1 hosts', () => {
  const hosts = [
    host('a1', { labels: zone('a') }), host('a2', { labels: zone('a') }), host('a3', { labels: zone('a') }),
    host('b1', { labels: zone('b') }), host('b2', { labels: zone('b') }),
    host('c1', { labels: zone('c') }),
  ];
  const { placements } = schedule(hosts, [0, 1, 2, 3, 4, 5].map((n) => request(n, { spreadBy: 'zone' })));
  expect(tally(hostsOf(placements).map((id) => id[0]))).toEqual({ a: 2, b: 2, c: 2 });
  // within a zone, replicas still go to different hosts
  expect(new Set(hostsOf(placements)).size).toBe(5);
});

test('spreadBy counts replicas the release already has in each zone', () => {
  const hosts = [host('a', { labels: zone('a'), releaseCounts: { r: 2 } }), host('b', { labels: zone('b') }), host('c', { labels: zone('c'), releaseCounts: { r: 1 } })];
  const { placements } = schedule(hosts, [0, 1, 2].map((n) => request(n, { spreadBy: 'zone' })));
  expect(hostsOf(placements)).toEqual(['b', 'c', 'b']); // a already has 2, c 1: the zones end at 2/2/2
});

test('hosts without the spread label are left out', () => {
  const hosts = [host('unlabelled', { capacity: { cpuMillis: 64000, memoryMb: 65536 } }), host('a', { labels: zone('a') })];
  const { placements } = schedule(hosts, [0, 1, 2].map((n) => request(n, { spreadBy: 'zone' })));
  expect(hostsOf(placements)).toEqual(['a', 'a', 'a']);
  const none = schedule([host('x'), host('y')], [request(0, { spreadBy: 'zone' })]);
  expect(none.unschedulable[0].reason).toBe('0/2 hosts can run it: 2 missing label zone');
});

// ---- strategy ----

test('BINPACK fills one host before using the next while SPREAD uses all', () => {
  const hosts = [host('a'), host('b'), host('c')];
  const requests = [0, 1, 2, 3].map((n) => request(n, { resources: { cpuMillis: 300, memoryMb: 100 } }));
  expect(hostsOf(schedule(hosts, requests.map((r) => ({ ...r, strategy: 'BINPACK' as const }))).placements)).toEqual(['a', 'a', 'a', 'b']);
  expect(new Set(hostsOf(schedule(hosts, requests).placements))).toEqual(new Set(['a', 'b', 'c']));
});

test('BINPACK picks the host that is fullest after the placement', () => {
  const hosts = [host('empty'), host('half', { allocated: { cpuMillis: 500, memoryMb: 512 } }), host('full', { allocated: { cpuMillis: 950, memoryMb: 0 } })];
  const { placements } = schedule(hosts, [request(0, { strategy: 'BINPACK' })]);
  expect(placements).toEqual([{ instanceId: 'r-0', hostId: 'half' }]);
});

test('BINPACK with spreadBy keeps the zones balanced and packs within a zone', () => {
  const hosts = [host('a1', { labels: zone('a') }), host('a2', { labels: zone('a') }), host('b1', { labels: zone('b') }), host('b2', { labels: zone('b') })];
  const { placements } = schedule(hosts, [0, 1, 2, 3].map((n) => request(n, { spreadBy: 'zone', strategy: 'BINPACK' })));
  expect(hostsOf(placements).sort()).toEqual(['a1', 'a1', 'b1', 'b1']);
});

// ---- property: random fleets and requests ----

/** mulberry32: a small seeded PRNG, so a failing case can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)];
  return { next, int, pick };
}

const PRODUCTS = ['redis', 'kafka', 'nats'] as const;
const STATUSES = ['READY', 'READY', 'READY', 'READY', 'READY', 'READY', 'DOWN', 'CORDONED', 'DRAINING'] as const;

function randomFleet(seed: number, hostCount: number, requestCount: number) {
  const rnd = prng(seed);
  const hosts: SchedulableHost[] = Array.from({ length: hostCount }, (_, i) => {
    const cpu = rnd.pick([2000, 4000, 8000]);
    const mem = rnd.pick([2048, 4096, 8192]);
    const labels = [];
    if (rnd.next() < 0.9) labels.push({ key: 'zone', value: rnd.pick(['a', 'b', 'c', 'd']) });
    if (rnd.next() < 0.7) labels.push({ key: 'disk', value: rnd.pick(['ssd', 'hdd']) });
    if (rnd.next() < 0.3) labels.push({ key: 'rack', value: `r${rnd.int(1, 3)}` });
    const x = rnd.next();
    return {
      id: `h${i}`, status: rnd.pick(STATUSES), labels, exclusiveFor: x < 0.1 ? 'kafka' : x < 0.15 ? 'redis' : null,
      capacity: { cpuMillis: cpu, memoryMb: mem },
      allocated: { cpuMillis: rnd.int(0, cpu / 2), memoryMb: rnd.int(0, mem / 2) },
      releaseCounts: rnd.next() < 0.2 ? { [`rel${rnd.int(0, 9)}`]: rnd.int(1, 3) } : {},
    };
  });
  const requests: PlacementRequest[] = Array.from({ length: requestCount }, (_, n) => {
    const release = rnd.int(0, 9);
    const s = rnd.next();
    return {
      instanceId: `i${n}`, releaseId: `rel${release}`, product: PRODUCTS[release % 3],
      resources: { cpuMillis: rnd.int(0, 20) * 100, memoryMb: rnd.int(1, 16) * 128 },
      requiredLabels: rnd.next() < 0.3 ? [{ key: 'disk', value: 'ssd' }] : [],
      exclusive: rnd.next() < 0.15,
      spreadBy: s < 0.4 ? 'zone' : s < 0.5 ? 'rack' : null,
      strategy: rnd.next() < 0.5 ? 'SPREAD' : 'BINPACK',
    };
  });
  return { hosts, requests };
}

test.each([1, 2, 3, 4, 5])('random fleet (seed %i): no host over-committed, every placement satisfies its constraints and ranks best', (seed) => {
  const { hosts, requests } = randomFleet(seed, 300, 600);
  const before = JSON.stringify(hosts);
  const { placements, unschedulable } = schedule(hosts, requests);
  expect(JSON.stringify(hosts)).toBe(before); // pure: the input is not touched

  const placed = new Map(placements.map((p) => [p.instanceId, p.hostId]));
  const refused = new Map(unschedulable.map((u: Unschedulable) => [u.instanceId, u.reason]));
  expect(placed.size + refused.size).toBe(requests.length);
  expect(placed.size).toBeGreaterThan(100);
  expect(refused.size).toBeGreaterThan(10);

  // Replay the requests in order against a plain model of the fleet, written independently of the scheduler.
  const byId = new Map(hosts.map((h) => [h.id, h]));
  const free = new Map(hosts.map((h) => [h.id, { cpu: h.capacity.cpuMillis - h.allocated.cpuMillis, mem: h.capacity.memoryMb - h.allocated.memoryMb }]));
  const replicas = new Map(hosts.map((h) => [h.id, { ...h.releaseCounts }]));
  const label = (h: SchedulableHost, key: string) => h.labels.find((l) => l.key === key)?.value;
  const fits = (h: SchedulableHost, r: PlacementRequest) =>
    h.status === 'READY'
    && (h.exclusiveFor === null || h.exclusiveFor === r.product)
    && (!r.exclusive || h.exclusiveFor === r.product)
    && r.requiredLabels.every((l) => label(h, l.key) === l.value)
    && (r.spreadBy === null || label(h, r.spreadBy) !== undefined)
    && free.get(h.id)!.cpu >= r.resources.cpuMillis
    && free.get(h.id)!.mem >= r.resources.memoryMb;
  const inValue = (r: PlacementRequest, value: string) =>
    hosts.filter((h) => label(h, r.spreadBy!) === value).reduce((sum, h) => sum + (replicas.get(h.id)![r.releaseId] ?? 0), 0);
  const rank = (h: SchedulableHost, r: PlacementRequest): [number, number, number] => {
    const f = free.get(h.id)!;
    const balance = r.spreadBy === null ? 0 : inValue(r, label(h, r.spreadBy)!);
    return r.strategy === 'BINPACK'
      ? [balance, (f.cpu - r.resources.cpuMillis) / (h.capacity.cpuMillis || Infinity) + (f.mem - r.resources.memoryMb) / (h.capacity.memoryMb || Infinity), 0]
      : [balance, replicas.get(h.id)![r.releaseId] ?? 0, -f.mem];
  };
  const beats = (a: [number, number, number], b: [number, number, number]) =>
    a[0] < b[0] || (a[0] === b[0] && (a[1] < b[1] - 1e-9 || (Math.abs(a[1] - b[1]) <= 1e-9 && a[2] < b[2])));

  for (const r of requests) {
    const feasible = hosts.filter((h) => fits(h, r));
    const hostId = placed.get(r.instanceId);
    if (hostId === undefined) {
      expect(feasible.map((h) => h.id)).toEqual([]);
      const reason = refused.get(r.instanceId)!;
      expect(reason).toMatch(new RegExp(`^0/${hosts.length} hosts can run it: `));
      const counted = [...reason.split(': ')[1].matchAll(/(\d+) [a-zA-Z]/g)].reduce((sum, m) => sum + Number(m[1]), 0);
      expect(counted).toBe(hosts.length);
      continue;
    }
    const chosen = byId.get(hostId)!;
    expect(fits(chosen, r)).toBe(true);
    const best = rank(chosen, r);
    expect(feasible.filter((h) => beats(rank(h, r), best)).map((h) => h.id)).toEqual([]);
    free.get(hostId)!.cpu -= r.resources.cpuMillis;
    free.get(hostId)!.mem -= r.resources.memoryMb;
    replicas.get(hostId)![r.releaseId] = (replicas.get(hostId)![r.releaseId] ?? 0) + 1;
  }
  for (const h of hosts) {
    expect(free.get(h.id)!.cpu).toBeGreaterThanOrEqual(0);
    expect(free.get(h.id)!.mem).toBeGreaterThanOrEqual(0);
  }
});
