import type { Store, Versioned } from '../../lib/store';
import { indexedAlarm, type Alarm } from './alarms';
import { indexed, type PlatformEvent } from './events';
import { inspectionKeys, type Inspection } from './inspection';

/**
 * Alarms, events and inspections written before their lists were Queries lack the index keys (`stream` and the
 * rest): the watchdog tick gives them those, a few pages per tick, once per store. Events already past the
 * retention are removed instead. A cursor in `butlerClaims` remembers how far each table got; once a table is done
 * the tick reads one item for it.
 */
type Marker = { key: string; done: boolean; start?: Record<string, unknown> } & Versioned;

const TABLES = {
  alarms: (a: Alarm) => indexedAlarm(a),
  events: (e: PlatformEvent) => indexed(e),
  inspections: (i: Inspection) => ({ ...i, ...inspectionKeys(i) }),
} as const;

export async function backfillIndexes(store: Store, retentionDays: number, now = new Date(), pages = 5): Promise<void> {
  const cutoff = new Date(now.getTime() - retentionDays * 86_400_000).toISOString();
  for (const table of Object.keys(TABLES) as (keyof typeof TABLES)[]) {
    const key = `index-backfill#${table}`;
    let marker = await store.get<Marker>('butlerClaims', key);
    if (marker?.done) continue;
    marker ??= await store.create('butlerClaims', { key, done: false }) ?? await store.get<Marker>('butlerClaims', key);
    if (!marker || marker.done) continue;
    let start = marker.start;
    let finished = false;
    for (let page = 0; page < pages && !finished; page++) {
      const { items, next } = await store.scanPage<{ id: string; stream?: string; at?: string } & Versioned>(table, { missing: 'stream', start });
      for (const item of items) {
        if (table === 'events' && item.at && item.at < cutoff) {
          await store.remove(table, item.id);
          continue;
        }
        const withKeys = TABLES[table] as unknown as (x: typeof item) => typeof item;
        await store.mutate<typeof item>(table, item.id, (x) => x && !x.stream ? withKeys(x) : undefined);
      }
      start = next;
      finished = !next;
    }
    // Another tick moving the same cursor is harmless: both give items the same keys.
    await store.replace<Marker>('butlerClaims', { ...marker, done: finished, start: finished ? undefined : start }).catch(() => undefined);
  }
}
