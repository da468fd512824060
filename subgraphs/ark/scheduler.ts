import type { Label, Resources } from '../../lib/validate';

/**
 * Placement as a pure function of hosts and requests, so it can be tested and benchmarked without a store.
 * Each request either gets a host or a reason that says which constraint ruled out how many hosts.
 *
 * Requests are placed one after another; each placement holds its resources and counts as a replica of its release
 * for the requests after it, so one call never over-commits a host.
 *
 * 1. Filters, in this order. A host is counted under the first one it fails, and an unschedulable request's reason
 *    lists those counts in this order, as Kubernetes and Nomad do (`0/5 hosts can run it: 2 not READY, 3 insufficient
 *    memory`): not READY · dedicated to another product · not dedicated to <product> (exclusive requests) · missing
 *    required labels · missing label <spreadBy> · insufficient CPU · insufficient memory.
 * 2. Among the hosts left, the lowest of these keys wins (the first host in the list on a tie):
 *    - spreadBy set: replicas of the release on all hosts with the host's value of that label (zone balance), then
 *    - SPREAD: replicas of the release on the host (anti-affinity), then minus its free memory (the emptiest host);
 *    - BINPACK: the share of CPU plus the share of memory the host has left after this placement (the fullest host
 *      that fits). Replicas may share a host.
 *
 * Speed: the first five filters depend only on a host and a request's constraints, never on what this call placed,
 * so they run once per distinct set of constraints and leave the list of eligible host indexes. Each request then
 * checks free resources and scores over that list, reading typed arrays, with no allocation per host.
 */

export interface SchedulableHost {
  id: string;
  status: 'READY' | 'DOWN' | 'CORDONED' | 'DRAINING';
  labels: Label[];
  exclusiveFor: string | null;
  capacity: Resources;
  allocated: Resources;
  /** Instances already on the host, by release id (replicas of one release are spread apart). */
  releaseCounts: Record<string, number>;
}

export type PlacementStrategy = 'SPREAD' | 'BINPACK';

export interface PlacementRequest {
  instanceId: string;
  releaseId: string;
  product: string;
  resources: Resources;
  requiredLabels: Label[];
  /** Only on hosts dedicated to `product` (`exclusiveFor === product`). */
  exclusive: boolean;
  /** A host label key (e.g. `zone`): the value holding the fewest replicas of the release first; hosts without the key are out. */
  spreadBy: string | null;
  /** SPREAD: fewest replicas of the release on the host, then most free memory. BINPACK: the host left fullest. */
  strategy: PlacementStrategy;
}

export interface Placement {
  instanceId: string;
  hostId: string;
}

export interface Unschedulable {
  instanceId: string;
  reason: string;
}

const NO_HOSTS = 'no hosts are registered: start a host runner (npm run runner) first';

/** A host with its labels indexed once: `key\0value` pairs, and the first value of each key. */
interface IndexedHost {
  host: SchedulableHost;
  pairs: Set<string>;
  values: Map<string, string>;
}

const pairOf = (l: Label) => `${l.key}\u0000${l.value}`;

/** The filters that do not depend on what was placed (see the order above); CPU and memory come after them. */
const STATIC_FILTERS: { name: (r: PlacementRequest) => string; rejects: (h: IndexedHost, r: PlacementRequest) => boolean }[] = [
  { name: () => 'not READY', rejects: (h) => h.host.status !== 'READY' },
  { name: () => 'dedicated to another product', rejects: (h, r) => h.host.exclusiveFor !== null && h.host.exclusiveFor !== r.product },
  { name: (r) => `not dedicated to ${r.product}`, rejects: (h, r) => r.exclusive && h.host.exclusiveFor !== r.product },
  { name: () => 'missing required labels', rejects: (h, r) => !r.requiredLabels.every((l) => h.pairs.has(pairOf(l))) },
  { name: (r) => `missing label ${r.spreadBy}`, rejects: (h, r) => r.spreadBy !== null && !h.values.has(r.spreadBy) },
];

/** Hosts that pass the static filters for one set of constraints, and how many each filter rejected. */
interface Eligible {
  hosts: Int32Array;
  rejected: number[];
}

/** Where each host stands on one spread label: the index of its value (-1 without the label), and how many values. */
interface SpreadKey {
  valueOf: Int32Array;
  size: number;
}

/** Replicas of one release: per host, and per value of each spread label asked for so far. */
interface ReleaseCounts {
  onHost: Int32Array;
  byValue: Map<string, Float64Array>;
}

/** The working state of one call: free resources shrink and counts grow as requests are placed. */
class Fleet {
  readonly indexed: IndexedHost[];
  readonly freeCpu: Float64Array;
  readonly freeMem: Float64Array;
  /** 1 / capacity (0 for a zero capacity), to score the share left after a placement. */
  readonly perCpu: Float64Array;
  readonly perMem: Float64Array;
  private readonly eligibles = new Map<string, Eligible>();
  private readonly spreadKeys = new Map<string, SpreadKey>();
  private readonly releases = new Map<string, ReleaseCounts>();

  constructor(readonly hosts: SchedulableHost[]) {
    const n = hosts.length;
    this.freeCpu = new Float64Array(n);
    this.freeMem = new Float64Array(n);
    this.perCpu = new Float64Array(n);
    this.perMem = new Float64Array(n);
    this.indexed = hosts.map((host, i) => {
      this.freeCpu[i] = host.capacity.cpuMillis - host.allocated.cpuMillis;
      this.freeMem[i] = host.capacity.memoryMb - host.allocated.memoryMb;
      this.perCpu[i] = host.capacity.cpuMillis > 0 ? 1 / host.capacity.cpuMillis : 0;
      this.perMem[i] = host.capacity.memoryMb > 0 ? 1 / host.capacity.memoryMb : 0;
      const values = new Map<string, string>();
      for (const l of host.labels) if (!values.has(l.key)) values.set(l.key, l.value);
      return { host, pairs: new Set(host.labels.map(pairOf)), values };
    });
  }

  /** The hosts that pass the static filters for the request's constraints (computed once per distinct set). */
  eligible(r: PlacementRequest): Eligible {
    const key = JSON.stringify([r.product, r.exclusive, r.spreadBy, r.requiredLabels.map(pairOf)]);
    let found = this.eligibles.get(key);
    if (!found) {
      const hosts: number[] = [];
      const rejected = STATIC_FILTERS.map(() => 0);
      this.indexed.forEach((h, i) => {
        const failed = STATIC_FILTERS.findIndex((f) => f.rejects(h, r));
        if (failed < 0) hosts.push(i);
        else rejected[failed]++;
      });
      found = { hosts: Int32Array.from(hosts), rejected };
      this.eligibles.set(key, found);
    }
    return found;
  }

  release(releaseId: string): ReleaseCounts {
    let found = this.releases.get(releaseId);
    if (!found) {
      found = { onHost: Int32Array.from(this.hosts, (h) => h.releaseCounts[releaseId] ?? 0), byValue: new Map() };
      this.releases.set(releaseId, found);
    }
    return found;
  }

  private spreadKey(key: string): SpreadKey {
    let found = this.spreadKeys.get(key);
    if (!found) {
      const index = new Map<string, number>();
      const valueOf = Int32Array.from(this.indexed, (h) => {
        const value = h.values.get(key);
        if (value === undefined) return -1;
        if (!index.has(value)) index.set(value, index.size);
        return index.get(value)!;
      });
      found = { valueOf, size: index.size };
      this.spreadKeys.set(key, found);
    }
    return found;
  }

  /** Each host's value index for the label and the release's replicas per value, counting what this call placed. */
  spread(release: ReleaseCounts, key: string): { valueOf: Int32Array; replicas: Float64Array } {
    const { valueOf, size } = this.spreadKey(key);
    let replicas = release.byValue.get(key);
    if (!replicas) {
      replicas = new Float64Array(size);
      for (let h = 0; h < valueOf.length; h++) if (valueOf[h] >= 0) replicas[valueOf[h]] += release.onHost[h];
      release.byValue.set(key, replicas);
    }
    return { valueOf, replicas };
  }

  place(h: number, r: PlacementRequest, release: ReleaseCounts) {
    this.freeCpu[h] -= r.resources.cpuMillis;
    this.freeMem[h] -= r.resources.memoryMb;
    release.onHost[h]++;
    for (const [key, replicas] of release.byValue) {
      const value = this.spreadKey(key).valueOf[h];
      if (value >= 0) replicas[value]++;
    }
  }
}

const NO_SPREAD = { valueOf: null, replicas: new Float64Array(0) };

/** The index of the best eligible host that fits the request, or -1. */
function pick(fleet: Fleet, eligible: Int32Array, r: PlacementRequest, release: ReleaseCounts): number {
  const cpu = r.resources.cpuMillis;
  const mem = r.resources.memoryMb;
  const { freeCpu, freeMem, perCpu, perMem } = fleet;
  const onHost = release.onHost;
  // Without spreadBy the balance is 0 on every host and never decides.
  const { valueOf, replicas } = r.spreadBy === null ? NO_SPREAD : fleet.spread(release, r.spreadBy);
  const binpack = r.strategy === 'BINPACK';
  let best = -1;
  let bestBalance = 0;
  let bestScore = 0;
  let bestTie = 0;
  for (let i = 0; i < eligible.length; i++) {
    const h = eligible[i];
    if (freeCpu[h] < cpu || freeMem[h] < mem) continue;
    // Lexicographic key, lower wins: (replicas on this spread value, score, tie-break).
    const balance = valueOf ? replicas[valueOf[h]] : 0;
    const score = binpack ? (freeCpu[h] - cpu) * perCpu[h] + (freeMem[h] - mem) * perMem[h] : onHost[h];
    const tie = binpack ? 0 : -freeMem[h];
    if (best < 0 || balance < bestBalance || (balance === bestBalance && (score < bestScore || (score === bestScore && tie < bestTie)))) {
      best = h;
      bestBalance = balance;
      bestScore = score;
      bestTie = tie;
    }
  }
  return best;
}

/** `0/N hosts can run it: …`: the hosts each filter ruled out first, in filter order. */
function reason(fleet: Fleet, eligible: Eligible, r: PlacementRequest): string {
  let cpu = 0;
  let mem = 0;
  for (const h of eligible.hosts) {
    if (fleet.freeCpu[h] < r.resources.cpuMillis) cpu++;
    else if (fleet.freeMem[h] < r.resources.memoryMb) mem++;
  }
  const counts: [number, string][] = [
    ...STATIC_FILTERS.map((f, i): [number, string] => [eligible.rejected[i], f.name(r)]),
    [cpu, 'insufficient CPU'],
    [mem, 'insufficient memory'],
  ];
  const why = counts.filter(([count]) => count > 0).map(([count, name]) => `${count} ${name}`).join(', ');
  return `0/${fleet.hosts.length} hosts can run it${why ? `: ${why}` : ''}`;
}

export function schedule(hosts: SchedulableHost[], requests: PlacementRequest[]): { placements: Placement[]; unschedulable: Unschedulable[] } {
  const placements: Placement[] = [];
  const unschedulable: Unschedulable[] = [];
  if (!hosts.length) {
    return { placements, unschedulable: requests.map((r) => ({ instanceId: r.instanceId, reason: NO_HOSTS })) };
  }
  const fleet = new Fleet(hosts);
  for (const r of requests) {
    const eligible = fleet.eligible(r);
    const release = fleet.release(r.releaseId);
    const h = pick(fleet, eligible.hosts, r, release);
    if (h < 0) {
      unschedulable.push({ instanceId: r.instanceId, reason: reason(fleet, eligible, r) });
      continue;
    }
    fleet.place(h, r, release);
    placements.push({ instanceId: r.instanceId, hostId: hosts[h].id });
  }
  return { placements, unschedulable };
}
