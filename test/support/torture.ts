/**
 * What the torture and crash tests share: a seeded script of random mutations, the way one is sent, and the
 * invariants the books must satisfy once the ticks have converged.
 */
import type { Store } from '../../lib/store';
import type { ContainerRecord, Host, Instance } from '../../subgraphs/ark';
import type { Release } from '../../subgraphs/panama/releases';
import type { connectInProcess } from './inprocess';

type Api = Awaited<ReturnType<typeof connectInProcess>>;

/** mulberry32: a small seeded generator, so a seed replays the same choices (the interleaving still varies). */
export function random(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const NAMES = ['t-a', 't-b', 't-c', 't-d', 't-e', 't-f'];

export const PRODUCT = (extra: string[]) => ({
  name: 'tort', versions: ['1.0.0', '2.0.0', ...extra].map((version) => ({ version, image: `fangzhou/demo:${version}` })),
  defaults: { replicas: 1, resources: { cpuMillis: 50, memoryMb: 16 } },
});

export interface Mutation {
  op: 'deploy' | 'scale' | 'configure' | 'upgrade' | 'rollback' | 'delete' | 'define';
  name: string;
  n: number;
  v: string;
  /** A deploy's idempotency key, when it has one: a retry of the same deploy sends the same key. */
  key?: string;
}

/** The whole script, drawn up front from the seed. With `keys`, every other deploy carries an idempotency key. */
export function mutationScript(rnd: () => number, count: number, { keys = false } = {}): Mutation[] {
  const pick = <T>(list: readonly T[]) => list[Math.floor(rnd() * list.length)];
  return Array.from({ length: count }, (_, index) => {
    const m: Mutation = {
      op: pick(['deploy', 'deploy', 'scale', 'scale', 'configure', 'upgrade', 'rollback', 'delete', 'define'] as const),
      name: pick(NAMES), n: Math.floor(rnd() * 4), v: pick(['1.0.0', '2.0.0']),
    };
    if (keys && m.op === 'deploy' && rnd() < 0.5) m.key = `key-${m.name}-${index}`;
    return m;
  });
}

/** The codes a mutation may be refused with; anything else (INTERNAL above all) is a failure of the platform. */
const REFUSALS = ['CONFLICT', 'NOT_FOUND', 'BAD_USER_INPUT', 'UNSCHEDULABLE'];

/** Sends one mutation as an operator would; says whether it was applied, refused, or failed (`internal: …`). */
export async function runMutation(api: Api, { op, name, n, v, key }: Mutation): Promise<string> {
  const id = op === 'deploy' || op === 'define' ? undefined
    : ((await api.run('{ releases { id name } }')).data!.releases as { id: string; name: string }[]).find((r) => r.name === name)?.id;
  const res = op === 'deploy' ? await api.run('mutation($input: DeployInput!) { deploy(input: $input) { id } }',
    { input: { name, product: 'tort', version: v, replicas: n, ...(key ? { idempotencyKey: key } : {}) } })
    : op === 'define' ? await api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: PRODUCT(n % 2 ? ['3.0.0'] : []) })
    : !id ? undefined
    : op === 'scale' ? await api.run('mutation($id: ID!, $n: Int!) { scaleRelease(id: $id, replicas: $n) { id } }', { id, n })
    : op === 'configure' ? await api.run('mutation($id: ID!, $v: String!) { configureRelease(id: $id, env: [{name: "N", value: $v}]) { id } }', { id, v: String(n) })
    : op === 'upgrade' ? await api.run('mutation($id: ID!, $v: String!) { upgradeRelease(id: $id, version: $v) { id } }', { id, v })
    : op === 'rollback' ? await api.run('mutation($id: ID!) { rollbackRelease(id: $id, revision: 1) { id } }', { id })
    : await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
  const failure = res?.errors?.find((e) => !REFUSALS.includes(e.extensions?.code ?? ''));
  if (failure) return `internal: ${op} ${name}: ${failure.message}`;
  return res && !res.errors ? 'applied' : 'refused';
}

/**
 * What must hold once the ticks have converged, as a list of problems (empty when all hold): every release settled
 * (none DELETING, no upgrade in progress) with as many instances as replicas; no instance or container record whose
 * release or instance is gone; each host's `allocated` the sum of the instances placed on it; each release owning
 * its name claim and (when it has one) its idempotency key claim.
 */
export async function invariants(store: Store): Promise<string[]> {
  const [releases, instances, containers, hosts, claims] = await Promise.all([
    store.scan<Release>('releases'), store.scan<Instance>('instances'), store.scan<ContainerRecord & { instanceId: string }>('containers'),
    store.scan<Host>('hosts'), store.scan<{ key: string; releaseId: string }>('panamaClaims')]);
  const problems: string[] = [];
  const byRelease = new Map<string, Instance[]>();
  for (const i of instances) byRelease.set(i.releaseId, [...(byRelease.get(i.releaseId) ?? []), i]);
  const claimOf = new Map(claims.map((c) => [c.key, c.releaseId]));
  for (const r of releases) {
    if (r.phase === 'DELETING') problems.push(`release ${r.name} still DELETING`);
    else if ((byRelease.get(r.id) ?? []).length !== r.replicas) problems.push(`release ${r.name}: replicas ${r.replicas}, instances ${(byRelease.get(r.id) ?? []).length}`);
    if (r.upgrade && ['RUNNING', 'ROLLING_BACK'].includes(r.upgrade.state)) problems.push(`release ${r.name}: upgrade still ${r.upgrade.state}`);
    if (claimOf.get(`release-name#${r.name}`) !== r.id) problems.push(`release ${r.name} (${r.id}): its name is claimed by ${claimOf.get(`release-name#${r.name}`) ?? 'nobody'}`);
    if (r.idempotencyKey && claimOf.get(`deploy-key#${r.idempotencyKey}`) !== r.id) {
      problems.push(`release ${r.name} (${r.id}): its idempotency key ${r.idempotencyKey} is claimed by ${claimOf.get(`deploy-key#${r.idempotencyKey}`) ?? 'nobody'}`);
    }
  }
  const live = new Set(releases.map((r) => r.id));
  for (const i of instances) if (!live.has(i.releaseId)) problems.push(`orphan instance ${i.id}`);
  const placed = new Set(instances.map((i) => i.id));
  for (const c of containers) if (!placed.has(c.instanceId)) problems.push(`orphan container record ${c.instanceId} on ${c.hostId}`);
  for (const h of hosts) {
    const sum = instances.filter((i) => i.hostId === h.id).reduce((a, i) => a + i.spec.cpuMillis, 0);
    if (h.allocated.cpuMillis !== sum) problems.push(`host ${h.name}: allocated ${h.allocated.cpuMillis}m, instances hold ${sum}m`);
  }
  return problems;
}
