import type { Label, Resources } from '../../lib/validate';

/**
 * Placement as a pure function of hosts and requests, so it can be tested and benchmarked without a store.
 * Each request either gets a host or a reason that says which constraint ruled out how many hosts.
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

export interface PlacementRequest {
  instanceId: string;
  releaseId: string;
  product: string;
  resources: Resources;
  requiredLabels: Label[];
}

export interface Placement {
  instanceId: string;
  hostId: string;
}

export interface Unschedulable {
  instanceId: string;
  reason: string;
}

type Filter = { name: string; rejects: (h: SchedulableHost, r: PlacementRequest) => boolean };

const FILTERS: Filter[] = [
  { name: 'not READY', rejects: (h) => h.status !== 'READY' },
  { name: 'dedicated to another product', rejects: (h, r) => h.exclusiveFor !== null && h.exclusiveFor !== r.product },
  { name: 'missing required labels', rejects: (h, r) => !r.requiredLabels.every((l) => h.labels.some((hl) => hl.key === l.key && hl.value === l.value)) },
  { name: 'insufficient CPU', rejects: (h, r) => h.capacity.cpuMillis - h.allocated.cpuMillis < r.resources.cpuMillis },
  { name: 'insufficient memory', rejects: (h, r) => h.capacity.memoryMb - h.allocated.memoryMb < r.resources.memoryMb },
];

/** Fewer replicas of the same release first, then the host with the most free memory. */
const better = (a: SchedulableHost, b: SchedulableHost, releaseId: string) => {
  const ca = a.releaseCounts[releaseId] ?? 0;
  const cb = b.releaseCounts[releaseId] ?? 0;
  if (ca !== cb) return ca < cb;
  return a.capacity.memoryMb - a.allocated.memoryMb > b.capacity.memoryMb - b.allocated.memoryMb;
};

export function schedule(hosts: SchedulableHost[], requests: PlacementRequest[]): { placements: Placement[]; unschedulable: Unschedulable[] } {
  const state = hosts.map((h) => ({ ...h, allocated: { ...h.allocated }, releaseCounts: { ...h.releaseCounts } }));
  const placements: Placement[] = [];
  const unschedulable: Unschedulable[] = [];
  for (const request of requests) {
    let best: SchedulableHost | undefined;
    const rejected = new Map<string, number>();
    for (const host of state) {
      const failed = FILTERS.find((f) => f.rejects(host, request));
      if (failed) {
        rejected.set(failed.name, (rejected.get(failed.name) ?? 0) + 1);
      } else if (!best || better(host, best, request.releaseId)) {
        best = host;
      }
    }
    if (!best) {
      if (!state.length) {
        unschedulable.push({ instanceId: request.instanceId, reason: 'no hosts are registered: start a host runner (npm run runner) first' });
        continue;
      }
      const why = [...rejected].map(([name, count]) => `${count} ${name}`).join(', ');
      unschedulable.push({ instanceId: request.instanceId, reason: `0/${state.length} hosts can run it${why ? `: ${why}` : ''}` });
      continue;
    }
    best.allocated.cpuMillis += request.resources.cpuMillis;
    best.allocated.memoryMb += request.resources.memoryMb;
    best.releaseCounts[request.releaseId] = (best.releaseCounts[request.releaseId] ?? 0) + 1;
    placements.push({ instanceId: request.instanceId, hostId: best.id });
  }
  return { placements, unschedulable };
}
