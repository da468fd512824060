/**
 * Throughput of the pure scheduler (subgraphs/ark/scheduler.ts): 10,000 instances of 40 releases placed in one call
 * on synthetic fleets of 1,000 and 5,000 hosts, built with a seeded PRNG so every run sees the same input.
 * Fleets mix statuses, zones (2% of hosts without one), disk/arch labels, hosts dedicated to kafka or etcd, three
 * sizes and up to 30% already allocated; releases mix products, resources, required labels (disk=ssd, arch=arm64),
 * kafka on exclusive hosts, spreadBy zone and SPREAD/BINPACK; the last 50 instances require a label no host has.
 * One warm-up call per fleet, then RUNS timed calls; placements/s = instances decided / median call time.
 * Every result is checked (no host over-committed, every instance placed or refused once) before it is reported.
 * `node --import tsx bench/scheduler.ts`
 */
import { schedule, type PlacementRequest, type SchedulableHost } from '../subgraphs/ark/scheduler';
import { ms, now, roundStats, runBench, stats } from './lib';

const INSTANCES = 10_000;
const RELEASES = 40;
const FLEETS = [1_000, 5_000];
const RUNS = 7;

/** mulberry32: a small seeded PRNG. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)] };
}

function fleet(size: number): SchedulableHost[] {
  const rnd = prng(size);
  return Array.from({ length: size }, (_, i) => {
    const cpu = rnd.pick([8000, 16000, 32000]);
    const mem = rnd.pick([16384, 32768, 65536]);
    const used = rnd.next() * 0.3;
    const s = rnd.next();
    const x = rnd.next();
    const labels = [
      ...(rnd.next() < 0.98 ? [{ key: 'zone', value: rnd.pick(['z1', 'z1', 'z2', 'z2', 'z3', 'z4']) }] : []),
      { key: 'disk', value: rnd.next() < 0.4 ? 'ssd' : 'hdd' },
      { key: 'arch', value: rnd.next() < 0.15 ? 'arm64' : 'amd64' },
    ];
    return {
      id: `host-${i}`, status: s < 0.95 ? 'READY' : s < 0.97 ? 'DOWN' : s < 0.99 ? 'CORDONED' : 'DRAINING', labels,
      exclusiveFor: x < 0.08 ? 'kafka' : x < 0.12 ? 'etcd' : null,
      capacity: { cpuMillis: cpu, memoryMb: mem },
      allocated: { cpuMillis: Math.round(cpu * used), memoryMb: Math.round(mem * used) },
      releaseCounts: {},
    };
  });
}

function requests(): PlacementRequest[] {
  const rnd = prng(42);
  const out: PlacementRequest[] = [];
  for (let r = 0; r < RELEASES; r++) {
    const replicas = r === RELEASES - 1 ? INSTANCES - out.length : Math.round((INSTANCES / RELEASES) * (0.5 + rnd.next()));
    const product = rnd.pick(['redis', 'kafka', 'etcd', 'nats', 'rocketmq', 'mysql']);
    const l = rnd.next();
    const base = {
      releaseId: `release-${r}`, product,
      resources: { cpuMillis: rnd.pick([250, 500, 1000, 2000]), memoryMb: rnd.pick([256, 512, 1024, 2048, 4096]) },
      requiredLabels: l < 0.3 ? [{ key: 'disk', value: 'ssd' }] : l < 0.35 ? [{ key: 'arch', value: 'arm64' }] : [],
      exclusive: product === 'kafka' && rnd.next() < 0.5,
      spreadBy: rnd.next() < 0.5 ? 'zone' : null,
      strategy: rnd.next() < 0.3 ? 'BINPACK' as const : 'SPREAD' as const,
    };
    for (let n = 0; n < replicas && out.length < INSTANCES; n++) out.push({ ...base, instanceId: `release-${r}-${n}` });
  }
  // The last 50 ask for a label no host has, so refusals (and their reasons) are measured too.
  for (const r of out.slice(-50)) r.requiredLabels = [{ key: 'gpu', value: 'true' }];
  return out;
}

/** Throws unless every request is placed or refused exactly once and no host holds more than it has free. */
function check(hosts: SchedulableHost[], reqs: PlacementRequest[], result: ReturnType<typeof schedule>) {
  const seen = new Set([...result.placements.map((p) => p.instanceId), ...result.unschedulable.map((u) => u.instanceId)]);
  if (seen.size !== reqs.length || result.placements.length + result.unschedulable.length !== reqs.length) throw new Error('an instance was lost or decided twice');
  const byId = new Map(reqs.map((r) => [r.instanceId, r]));
  const free = new Map(hosts.map((h) => [h.id, { cpu: h.capacity.cpuMillis - h.allocated.cpuMillis, mem: h.capacity.memoryMb - h.allocated.memoryMb }]));
  for (const p of result.placements) {
    const f = free.get(p.hostId)!;
    f.cpu -= byId.get(p.instanceId)!.resources.cpuMillis;
    f.mem -= byId.get(p.instanceId)!.resources.memoryMb;
    if (f.cpu < 0 || f.mem < 0) throw new Error(`${p.hostId} is over-committed`);
  }
}

runBench('scheduler', 170_000, async () => {
  const reqs = requests();
  const figures = [];
  for (const size of FLEETS) {
    const hosts = fleet(size);
    const warm = schedule(hosts, reqs);
    check(hosts, reqs, warm);
    const samples: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = now();
      const result = schedule(hosts, reqs);
      samples.push(now() - t);
      if (result.placements.length !== warm.placements.length) throw new Error('schedule() is not deterministic');
    }
    const s = stats(samples);
    const perSec = reqs.length / (s.p50 / 1000);
    const reasons = new Map<string, number>();
    for (const u of warm.unschedulable) reasons.set(u.reason, (reasons.get(u.reason) ?? 0) + 1);
    const [topReason, topCount] = [...reasons].sort((a, b) => b[1] - a[1])[0] ?? ['-', 0];
    console.log(`${String(size).padStart(5)} hosts  ${reqs.length} instances  placed ${warm.placements.length}  unschedulable ${warm.unschedulable.length}  `
      + `median ${ms(s.p50)} (min ${ms(s.min)}, max ${ms(s.max)})  ${Math.round(perSec).toLocaleString('en')} placements/s`);
    console.log(`      most common refusal (${topCount}x): ${topReason}`);
    figures.push({
      hosts: size, instances: reqs.length, placed: warm.placements.length, unschedulable: warm.unschedulable.length,
      ms: roundStats(s), placementsPerSec: Math.round(perSec),
    });
  }
  return { runs: RUNS, target: '>= 10000 placements/s at 1000 hosts', fleets: figures, meetsTarget: figures[0].placementsPerSec >= 10_000 };
});
