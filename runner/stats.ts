import type Docker from 'dockerode';
import { log } from '../lib/log';
import type { ContainerStats, ObservedContainer } from '../lib/runner-protocol';

/**
 * Periodic CPU and memory figures of our running containers. Sampling runs beside the sync loop (one stats call takes
 * about a second: Docker waits for a second reading to compute CPU), and each sync reports the latest figures.
 */

/** CPU use as `docker stats` shows it: share of one CPU, × 100, so 2 busy CPUs read 200. */
export function cpuPercent(s: Docker.ContainerStats): number {
  const cpu = s.cpu_stats.cpu_usage.total_usage - (s.precpu_stats?.cpu_usage?.total_usage ?? 0);
  const system = (s.cpu_stats.system_cpu_usage ?? 0) - (s.precpu_stats?.system_cpu_usage ?? 0);
  const cpus = s.cpu_stats.online_cpus ?? s.cpu_stats.cpu_usage.percpu_usage?.length ?? 1;
  if (cpu <= 0 || system <= 0) return 0;
  return Math.round((cpu / system) * cpus * 100 * 100) / 100;
}

/** Memory in use without the page cache, as `docker stats` shows it. */
export function memoryBytes(s: Docker.ContainerStats): number {
  const stats = (s.memory_stats?.stats ?? {}) as Record<string, number>;
  const cache = stats.inactive_file ?? stats.total_inactive_file ?? stats.cache ?? 0;
  return Math.max(0, (s.memory_stats?.usage ?? 0) - cache);
}

export class StatsSampler {
  private latest = new Map<string, ContainerStats>();
  private lastRun = 0;
  private running = false;

  constructor(private readonly docker: Docker, private readonly everyMs = 10_000) {}

  /** The observations with the latest figures of each container, if any. */
  attach(observed: ObservedContainer[]): ObservedContainer[] {
    return observed.map((o) => ({ ...o, stats: this.latest.get(o.containerId) ?? null }));
  }

  /** Starts a new round of sampling in the background when one is due; never blocks the caller. */
  refresh(observed: ObservedContainer[]): void {
    if (this.running || Date.now() - this.lastRun < this.everyMs) return;
    this.running = true;
    this.lastRun = Date.now();
    const running = observed.filter((o) => o.state === 'RUNNING' && o.containerId);
    void Promise.all(running.map(async (o) => {
      try {
        const s = await this.docker.getContainer(o.containerId).stats({ stream: false }) as Docker.ContainerStats;
        this.latest.set(o.containerId, { cpuPercent: cpuPercent(s), memoryBytes: memoryBytes(s) });
      } catch (err) {
        log.debug({ containerId: o.containerId, err: err instanceof Error ? err.message : String(err) }, 'no stats');
      }
    })).finally(() => {
      const alive = new Set(running.map((o) => o.containerId));
      for (const id of this.latest.keys()) if (!alive.has(id)) this.latest.delete(id);
      this.running = false;
    });
  }
}
