import type { Store } from '../../lib/store';
import { getInstance, listContainers } from '../ark';
import { raise, resolveAlarm } from './alarms';

/**
 * Threshold rules on the figures runners report (every 10 s): a container above 90 % of its memory limit for 2
 * minutes raises MEMORY_HIGH; it resolves when the container drops below. When the high spell began is a claim item
 * per instance, so any tick on any replica judges the same spell.
 */
export const MEMORY_HIGH_RATIO = 0.9;
export const MEMORY_HIGH_FOR_MS = 2 * 60_000;

export type MemoryVerdict = 'OK' | 'HIGH_SINCE_NOW' | 'HIGH' | 'ALARM';

/** Pure: what one sample means, given when the high spell began (if it did). */
export function memoryVerdict(usedBytes: number, limitMb: number, highSince: string | undefined, now: Date): MemoryVerdict {
  if (usedBytes < MEMORY_HIGH_RATIO * limitMb * 1024 * 1024) return 'OK';
  if (!highSince) return 'HIGH_SINCE_NOW';
  return now.getTime() - Date.parse(highSince) >= MEMORY_HIGH_FOR_MS ? 'ALARM' : 'HIGH';
}

const spellKey = (instanceId: string) => `memory-high#${instanceId}`;

export async function checkMemory(store: Store, now = new Date()): Promise<void> {
  const containers = (await listContainers(store)).filter((c) => c.stats);
  for (const c of containers) {
    const [instance, spell] = await Promise.all([getInstance(store, c.instanceId), store.get<{ since: string }>('butlerClaims', spellKey(c.instanceId))]);
    if (!instance) continue;
    const verdict = memoryVerdict(c.stats!.memoryBytes, instance.spec.memoryMb, spell?.since, now);
    if (verdict === 'OK' && spell) {
      await store.remove('butlerClaims', spellKey(c.instanceId));
      await resolveAlarm(store, 'MEMORY_HIGH', c.instanceId, now);
    } else if (verdict === 'HIGH_SINCE_NOW') {
      await store.create('butlerClaims', { key: spellKey(c.instanceId), since: now.toISOString() });
    } else if (verdict === 'ALARM') {
      const mb = Math.round(c.stats!.memoryBytes / 1024 / 1024);
      await raise(store, {
        kind: 'MEMORY_HIGH', severity: 'WARNING', cause: c.instanceId, hostId: c.hostId, releaseId: c.releaseId, instanceId: c.instanceId,
        message: `${instance.domainName} has used more than ${MEMORY_HIGH_RATIO * 100}% of its ${instance.spec.memoryMb} MB memory limit since ${spell!.since} (now ${mb} MB)`,
      }, now);
    }
  }
}
