import type { Store } from '../../lib/store';
import type { Resources } from '../../lib/validate';
import type { Host, Reservation } from './hosts';
import type { Instance } from './instances';

export type DriftKind = 'LEAKED_RESERVATION' | 'MISSING_RESERVATION' | 'WRONG_RESERVATION' | 'WRONG_TOTAL';

export interface LedgerDrift {
  hostId: string;
  kind: DriftKind;
  instanceId: string | null;
  message: string;
  /** True when this call rewrote the host to the books' answer. */
  repaired: boolean;
}

const sum = (list: Resources[]) => list.reduce((a, r) => ({ cpuMillis: a.cpuMillis + r.cpuMillis, memoryMb: a.memoryMb + r.memoryMb }), { cpuMillis: 0, memoryMb: 0 });
const same = (a: Resources | undefined, b: Resources) => !!a && a.cpuMillis === b.cpuMillis && a.memoryMb === b.memoryMb;
const show = (r: Resources) => `${r.cpuMillis}m CPU/${r.memoryMb} MB`;
const held = (i: Placed): Resources => ({ cpuMillis: i.spec.cpuMillis, memoryMb: i.spec.memoryMb });

/** A host's books: what the ledger check reads of every host (a projection, not the whole item). */
type Books = Pick<Host, typeof BOOKS[number]>;
const BOOKS = ['id', 'name', 'reservations', 'allocated', 'seq'] as const;
/** What the books hold of an instance: where it is placed and what it holds there. */
type Placed = Pick<Instance, 'id' | 'hostId'> & { spec: Pick<Instance['spec'], 'cpuMillis' | 'memoryMb'> };
const PLACED = ['id', 'hostId', 'spec.cpuMillis', 'spec.memoryMb'];

/**
 * What a host's books should say: one reservation per instance placed on it, of the instance's resources, and
 * `allocated` their sum. A reservation of an instance that does not exist (yet) is leaked only once it is older than
 * `graceMs`, because a placement reserves before it writes its instance; younger ones stay in the books.
 */
function driftOf(host: Books, instances: Placed[], graceMs: number, now: Date): { drift: Omit<LedgerDrift, 'repaired'>[]; reservations: Record<string, Reservation> } {
  const reservations: Record<string, Reservation> = Object.fromEntries(instances.map((i) => [i.id, held(i)]));
  const drift: Omit<LedgerDrift, 'repaired'>[] = [];
  for (const i of instances) {
    const have = host.reservations[i.id];
    if (!have) drift.push({ hostId: host.id, kind: 'MISSING_RESERVATION', instanceId: i.id, message: `${i.id} runs on ${host.name} but holds nothing there (needs ${show(held(i))})` });
    else if (!same(have, held(i))) drift.push({ hostId: host.id, kind: 'WRONG_RESERVATION', instanceId: i.id, message: `${i.id} holds ${show(have)} on ${host.name} but needs ${show(held(i))}` });
  }
  const young = (r: Reservation) => !!r.reservedAt && now.getTime() - Date.parse(r.reservedAt) < graceMs;
  for (const [id, r] of Object.entries(host.reservations).filter(([id]) => !reservations[id])) {
    if (young(r)) reservations[id] = r;
    else drift.push({ hostId: host.id, kind: 'LEAKED_RESERVATION', instanceId: id, message: `${host.name} holds ${show(r)} for ${id}, which is not placed there` });
  }
  const total = sum(Object.values(host.reservations));
  if (!same(host.allocated, total)) {
    drift.push({ hostId: host.id, kind: 'WRONG_TOTAL', instanceId: null, message: `${host.name} says ${show(host.allocated)} allocated; its reservations add up to ${show(total)}` });
  }
  return { drift, reservations };
}

/**
 * The ledger invariant, `host.allocated` equals the sum of the resources of the instances placed on the host, checked
 * on every host. With `repair`, a drifted host is rewritten by a conditional write at the version that was checked: a
 * host that changed meanwhile is left alone (repaired: false) and the next run checks it again. Only the books of each
 * host are read (a projection): this runs at every reconcile tick, over the whole fleet.
 */
export async function checkLedger(store: Store, repair: boolean, graceMs = 5000, now = new Date()): Promise<LedgerDrift[]> {
  const out: LedgerDrift[] = [];
  // Hosts first, then every instance in one read (not a query per host): an instance placed in between holds a
  // reservation younger than graceMs or shows up as one the next run sees.
  const hosts = await store.scan<Host>('hosts', BOOKS);
  const byHost = new Map<string, Placed[]>();
  for (const i of await store.scan<Placed>('instances', PLACED)) {
    const list = byHost.get(i.hostId);
    if (list) list.push(i);
    else byHost.set(i.hostId, [i]);
  }
  for (const host of hosts) {
    const { drift, reservations } = driftOf(host, byHost.get(host.id) ?? [], graceMs, now);
    if (!drift.length) continue;
    let repaired = false;
    if (repair) {
      await store.mutate<Host>('hosts', host.id, (h) => {
        repaired = h?.seq === host.seq;
        return repaired ? { ...h!, reservations, allocated: sum(Object.values(reservations)) } : undefined;
      });
    }
    out.push(...drift.map((d) => ({ ...d, repaired })));
  }
  return out;
}
