import { Gauge } from 'prom-client';
import { registry } from '../../lib/metrics';
import type { Store } from '../../lib/store';
import { instancesOfRelease, isServing, listContainers, listHosts } from '../ark';
import { listReleases } from '../panama';
import { unpublishedEvents } from './events';

/** Fleet figures for /metrics, read from the store when Prometheus scrapes. */
const gauge = (name: string, help: string, labelNames: string[]) => new Gauge({ name: `fangzhou_${name}`, help, labelNames, registers: [registry] });
const INSTANCE = ['release', 'instance', 'host'];
const g = {
  cpu: gauge('instance_cpu_percent', 'CPU use of the instance\'s container, percent of one core', INSTANCE),
  memory: gauge('instance_memory_bytes', 'memory use of the instance\'s container', INSTANCE),
  memoryLimit: gauge('instance_memory_limit_bytes', 'memory limit of the instance\'s container', INSTANCE),
  restarts: gauge('instance_restarts', 'restarts of the instance\'s container counted by its engine', INSTANCE),
  healthy: gauge('instance_healthy', '1 when the instance\'s container runs and passes its healthcheck, else 0', INSTANCE),
  hostUp: gauge('host_ready', '1 when the host is READY, 0 when DOWN, CORDONED or DRAINING', ['host']),
  hostCapacity: gauge('host_capacity', 'what the host offers', ['host', 'resource']),
  hostAllocated: gauge('host_allocated', 'what placed instances hold on the host', ['host', 'resource']),
  releaseDesired: gauge('release_replicas_desired', 'replicas the release asks for', ['release']),
  releaseHealthy: gauge('release_replicas_healthy', 'replicas of the release that run healthy', ['release']),
  publisherLag: gauge('publisher_lag_seconds', 'age of the oldest event not yet fanned out to subscribers', []),
};

export async function collectFleetMetrics(store: Store, now = new Date()): Promise<void> {
  const [hosts, releases, containers, pending] = await Promise.all([
    listHosts(store), listReleases(store), listContainers(store), unpublishedEvents(store, 1),
  ]);
  const instances = (await Promise.all(releases.map((r) => instancesOfRelease(store, r.id)))).flat();
  for (const x of Object.values(g)) x.reset();
  const hostName = new Map(hosts.map((h) => [h.id, h.name]));
  const byInstance = new Map(containers.map((c) => [c.instanceId, c]));
  for (const i of instances) {
    const labels = { release: i.releaseName, instance: i.domainName, host: hostName.get(i.hostId) ?? i.hostId };
    const c = byInstance.get(i.id);
    g.memoryLimit.set(labels, i.spec.memoryMb * 1024 * 1024);
    g.healthy.set(labels, c && isServing(c) ? 1 : 0);
    if (!c) continue;
    g.restarts.set(labels, c.restartCount);
    if (c.stats) { g.cpu.set(labels, c.stats.cpuPercent); g.memory.set(labels, c.stats.memoryBytes); }
  }
  for (const h of hosts) {
    g.hostUp.set({ host: h.name }, h.status === 'READY' ? 1 : 0);
    g.hostCapacity.set({ host: h.name, resource: 'cpu_millis' }, h.capacity.cpuMillis);
    g.hostCapacity.set({ host: h.name, resource: 'memory_mb' }, h.capacity.memoryMb);
    g.hostAllocated.set({ host: h.name, resource: 'cpu_millis' }, h.allocated.cpuMillis);
    g.hostAllocated.set({ host: h.name, resource: 'memory_mb' }, h.allocated.memoryMb);
  }
  for (const r of releases) {
    g.releaseDesired.set({ release: r.name }, r.replicas);
    g.releaseHealthy.set({ release: r.name }, instances.filter((i) => i.releaseId === r.id && byInstance.has(i.id) && isServing(byInstance.get(i.id)!)).length);
  }
  const oldest = pending[0]?.at;
  g.publisherLag.set(oldest ? Math.max(0, (now.getTime() - Date.parse(oldest)) / 1000) : 0);
}
