import type { Store } from '../../lib/store';
import { networkFor as networkOf } from '../../subgraphs/ark/discovery';
import type { Host } from '../../subgraphs/ark/hosts';

/** Only what the network needs of a host (id, name, address, subnet). */
const networkFor = (store: Store, h: { id: string; subnet: string }, serial: number | null) => networkOf(store, h as unknown as Host & { subnet: string }, serial);

/**
 * The fleet network a runner gets with its sync (subgraphs/ark/discovery.ts): read once per serial and process, and
 * while joins move the serial again and again, at most once a second, each answer still as new as the serial the
 * sync saw. A store stand-in in memory that counts the whole-table reads.
 */
function fleet() {
  const hosts: { id: string; name: string; address: string; subnet: string }[] = [];
  let serial = 0;
  const scans: Record<string, number> = {};
  const store = {
    async get(_table: string, key: string) { return key.includes('serial') ? { serial } : undefined; },
    async scan(table: string) {
      scans[table] = (scans[table] ?? 0) + 1;
      await new Promise((r) => setTimeout(r, 20));
      return table === 'hosts' ? hosts.map((h) => ({ ...h })) : [];
    },
  } as unknown as Store;
  /** A host joins: written first, the serial moves after (as registerHost does). */
  const join = () => {
    const k = hosts.length + 1;
    hosts.push({ id: `h-${k}`, name: `h-${k}`, address: `10.77.0.${k}`, subnet: `10.244.${k}.0/24` });
    serial++;
  };
  return { store, join, scans, hosts };
}

test('syncs that find their serial stale at the same time share one read of the fleet', async () => {
  const { store, join, scans, hosts } = fleet();
  for (let k = 0; k < 5; k++) join();
  const answers = await Promise.all(hosts.map((h) => networkFor(store, h, null)));
  expect(scans).toEqual({ hosts: 1, instances: 1, containers: 1 });
  for (const a of answers) expect(a.routes).toHaveLength(4);
  // The serial they now hold is current: no read, no routes.
  expect((await networkFor(store, hosts[0], answers[0].serial)).routes).toBeNull();
  expect(scans.hosts).toBe(1);
});

test('while joins move the serial on and on, the fleet is read at most once a second, and every answer holds the hosts its serial counts', async () => {
  const { store, join, scans, hosts } = fleet();
  join();
  const started = Date.now();
  const answers: Promise<{ routes: unknown[] | null; joined: number }>[] = [];
  // 30 joins over ~1.5 s; after each, the first host's runner syncs with a stale serial.
  for (let k = 0; k < 30; k++) {
    join();
    const joined = hosts.length;
    answers.push(networkFor(store, hosts[0], 0).then((a) => ({ routes: a.routes, joined })));
    await new Promise((r) => setTimeout(r, 50));
  }
  const done = await Promise.all(answers);
  const seconds = (Date.now() - started) / 1000;
  // One read at once, then at most one per second that passed (plus the one pending at the end).
  expect(scans.hosts).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
  expect(scans.hosts).toBeGreaterThanOrEqual(2);
  // Never older than the serial the sync saw: every host that had joined by then has its route.
  for (const a of done) expect(a.routes!.length).toBeGreaterThanOrEqual(a.joined - 1);
});
