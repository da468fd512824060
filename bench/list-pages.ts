/**
 * First-page latency of the `events` and `alarms` lists as the tables grow: 1k, 10k and 100k events and as many
 * alarms, seeded straight into dynalite with BatchWriteItem (items as recordEvent and raiseAlarm write them, with
 * their index keys; times spread over the last 6 days, 20 releases on 10 hosts, 1 alarm in 10 open), then each list's
 * first page (first: 50) asked for through the in-process gateway, 200 times one after another, at each size.
 * For contrast, one Scan of the whole table (what the lists did before) is timed at each size.
 * `node --import tsx bench/list-pages.ts` (no Docker, no ports but dynalite's on loopback)
 */
import { randomBytes } from 'node:crypto';
import { BatchWriteCommand } from '@aws-sdk/lib-dynamodb';
import { store } from '../lib/store';
import { indexedAlarm, type Alarm } from '../subgraphs/butler/alarms';
import { indexed, type PlatformEvent } from '../subgraphs/butler/events';
import { startInProcess } from '../test/support/inprocess';
import { ms, now, printStats, roundStats, runBench, sequential, stats } from './lib';

const SIZES = [1_000, 10_000, 100_000];
const SAMPLES = 200;
const DAY = 86_400_000;

const QUERIES = {
  'events(first: 50)': '{ events(first: 50) { nodes { id at kind message severity } pageInfo { endCursor hasNextPage } } }',
  'events(filter: {releaseId}, first: 50)': '{ events(filter: {releaseId: "r-bench-7"}, first: 50) { nodes { id at kind message } pageInfo { endCursor hasNextPage } } }',
  'alarms(first: 50)': '{ alarms(first: 50) { nodes { id kind severity state message raisedAt } pageInfo { endCursor hasNextPage } } }',
  'alarms(filter: {state: FIRING}, first: 50)': '{ alarms(filter: {state: FIRING}, first: 50) { nodes { id kind state raisedAt } pageInfo { endCursor hasNextPage } } }',
};

function event(n: number, at: Date): Omit<PlatformEvent, 'seq'> & { seq: number } {
  return {
    ...indexed({
      id: `${at.toISOString()}~${randomBytes(4).toString('hex')}`, at: at.toISOString(), kind: 'CONTAINER_STATUS', message: `bench event ${n}`,
      severity: 'INFO', hostId: `h-bench-${n % 10}`, releaseId: `r-bench-${n % 20}`, instanceId: `r-bench-${n % 20}-${n % 3}`, alarmId: null,
      topics: [], published: true,
    }),
    seq: 1,
  };
}

function alarm(n: number, at: Date): Omit<Alarm, 'seq'> & { seq: number } {
  const open = n % 10 === 0;
  return {
    ...indexedAlarm({
      id: `a-bench-${n}-${randomBytes(3).toString('hex')}`, kind: 'CONTAINER_UNHEALTHY', severity: n % 3 ? 'WARNING' : 'CRITICAL', message: `bench alarm ${n}`,
      cause: `instance:r-bench-${n % 20}-${n % 3}`, hostId: `h-bench-${n % 10}`, instanceId: `r-bench-${n % 20}-${n % 3}`, releaseId: `r-bench-${n % 20}`,
      state: open ? 'FIRING' : 'RESOLVED', raisedAt: at.toISOString(), acknowledgedAt: null, resolvedAt: open ? null : at.toISOString(), notifications: [],
    }),
    seq: 1,
  };
}

/** Writes `items` 25 to a request, 8 requests at a time, retrying what the store hands back unprocessed. */
async function seed(table: 'events' | 'alarms', items: Record<string, unknown>[]) {
  const s = store();
  const batches: Record<string, unknown>[][] = [];
  for (let i = 0; i < items.length; i += 25) batches.push(items.slice(i, i + 25));
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < batches.length) {
      let requests = batches[next++].map((Item) => ({ PutRequest: { Item } }));
      while (requests.length) {
        const out = await s.doc.send(new BatchWriteCommand({ RequestItems: { [s.tableName(table)]: requests } }));
        requests = (out.UnprocessedItems?.[s.tableName(table)] ?? []) as typeof requests;
      }
    }
  }));
}

runBench('list-pages', 1_500_000, async () => {
  const api = await startInProcess('bench-');
  const figures: Record<string, unknown>[] = [];
  let seeded = 0;
  const start = Date.now();
  for (const size of SIZES) {
    const count = size - seeded;
    // Times spread evenly over the last 6 days, so every size mixes old and new items.
    const at = (n: number) => new Date(start - 6 * DAY + Math.floor(((n * 7919) % size) / size * 6 * DAY));
    const t0 = now();
    await seed('events', Array.from({ length: count }, (_, i) => event(seeded + i, at(seeded + i))));
    await seed('alarms', Array.from({ length: count }, (_, i) => alarm(seeded + i, at(seeded + i))));
    const seedSeconds = (now() - t0) / 1000;
    seeded = size;
    console.log(`\n${size.toLocaleString('en')} events and ${size.toLocaleString('en')} alarms (seeded ${count * 2} items in ${seedSeconds.toFixed(1)} s)`);
    const row: Record<string, unknown> = { size, seedSeconds: Number(seedSeconds.toFixed(1)) };
    for (const [label, query] of Object.entries(QUERIES)) {
      const res = await api.run(query);
      if (res.errors) throw new Error(`${label}: ${res.errors[0].message}`);
      const samples = await sequential(SAMPLES, () => api.run(query));
      const s = stats(samples);
      printStats(`  ${label}`, s);
      row[label] = roundStats(s);
    }
    for (const table of ['events', 'alarms'] as const) {
      const t = now();
      const all = await store().scan(table);
      const took = now() - t;
      console.log(`  one Scan of ${table} (${all.length} items, what the list read before): ${ms(took)}`);
      row[`scan ${table} ms`] = Number(took.toFixed(1));
    }
    figures.push(row);
  }
  await api.stop();
  return { samples: SAMPLES, pageSize: 50, sizes: figures };
});
