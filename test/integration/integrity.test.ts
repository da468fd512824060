import { store } from '../../lib/store';
import { doctor } from '../../cli/doctor';
import { markDown, type Host } from '../../subgraphs/ark/hosts';
import { raise, type Alarm } from '../../subgraphs/butler/alarms';
import { watchHosts } from '../../subgraphs/butler/watchdog';
import { releaseCause } from '../../subgraphs/panama/releases';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';
import { asHost, startInProcess } from '../support/inprocess';

/**
 * Integrity under concurrency and crashes (in-process gateway, dynalite): one writer per release, idempotency keys
 * bound to their request, product versions that releases use, alarm claims and host states that survive a crash
 * between two writes, input lengths. Requests race for real through the API; the ticks are called directly, and a
 * crash between two writes is the first write made alone.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
let hostId: string;
const PRODUCT = { name: 'kv', versions: [{ version: '1.0.0', image: 'fangzhou/demo:1' }, { version: '2.0.0', image: 'fangzhou/demo:2' }],
  defaults: { replicas: 1, resources: { cpuMillis: 100, memoryMb: 32 } } };
const define = (input: Record<string, unknown>) => api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name versions { version } } }', { input });
const releases = async () => (await api.run('{ releases { id name replicas revision instances { ordinal } } }')).data!.releases as
  { id: string; name: string; replicas: number; revision: number; instances: { ordinal: number }[] }[];
const codeOf = (res: { errors?: { extensions?: { code?: string } }[] }) => res.errors?.[0].extensions?.code;

beforeAll(async () => {
  api = await startInProcess('integrity-');
  hostId = await api.registerHost('integrity-host', { cpuMillis: 8000, memoryMb: 8192 });
  expect((await define(PRODUCT)).errors).toBeUndefined();
});

afterAll(async () => {
  await api?.stop();
});

test('six parallel deploys with one idempotencyKey create one release and all answer it', async () => {
  const deploy = () => api.run('mutation { deploy(input: {name: "once", product: "kv", version: "1.0.0", idempotencyKey: "deploy-once-1"}) { id } }');
  const answers = await Promise.all(Array.from({ length: 6 }, deploy));
  expect(answers.map((a) => a.errors)).toEqual(Array(6).fill(undefined));
  expect(new Set(answers.map((a) => a.data!.deploy.id)).size).toBe(1);
  expect((await releases()).filter((r) => r.name === 'once')).toHaveLength(1);
});

test('the same idempotencyKey with different input is a CONFLICT and writes nothing', async () => {
  const before = await releases();
  const res = await api.run('mutation { deploy(input: {name: "twice", product: "kv", idempotencyKey: "deploy-once-1"}) { id } }');
  expect(codeOf(res)).toBe('CONFLICT');
  expect(res.errors![0].message).toMatch(/idempotencyKey "deploy-once-1" was already used for a different deploy \(release "once"\)/);
  expect(await releases()).toEqual(before);
});

test('concurrent scales serialize: every one is a revision, and the instances match the last count', async () => {
  const { id, revision } = (await releases()).find((r) => r.name === 'once')!;
  const counts = [5, 2, 4, 3];
  const answers = await Promise.all(counts.map((n) => api.run('mutation($id: ID!, $n: Int!) { scaleRelease(id: $id, replicas: $n) { replicas } }', { id, n })));
  expect(answers.map((a) => a.errors)).toEqual(Array(counts.length).fill(undefined));
  await reconcileReleases(store());
  const after = (await releases()).find((r) => r.id === id)!;
  expect(after.revision).toBe(revision + counts.length);
  expect(after.instances.map((i) => i.ordinal).sort()).toEqual(Array.from({ length: after.replicas }, (_, n) => n));
});

test('configure and scale during an upgrade are refused naming the upgrade, and write nothing', async () => {
  const { id } = (await releases()).find((r) => r.name === 'once')!;
  const up = await api.run('mutation($id: ID!) { upgradeRelease(id: $id, version: "2.0.0") { upgrade { state } } }', { id });
  expect(up.errors).toBeUndefined();
  const before = (await releases()).find((r) => r.id === id)!;
  const configure = await api.run('mutation($id: ID!) { configureRelease(id: $id, env: [{name: "A", value: "1"}]) { id } }', { id });
  expect(codeOf(configure)).toBe('CONFLICT');
  expect(configure.errors![0].message).toMatch(/cannot configure release "once": it is being upgraded to 2\.0\.0 \(0 of \d+ done\)/);
  const scale = await api.run('mutation($id: ID!) { scaleRelease(id: $id, replicas: 1) { id } }', { id });
  expect(codeOf(scale)).toBe('CONFLICT');
  expect((await releases()).find((r) => r.id === id)).toEqual(before);
});

test('dropping a version a release runs is refused naming the release; the product keeps it', async () => {
  const res = await define({ ...PRODUCT, versions: [PRODUCT.versions[1]] });
  expect(codeOf(res)).toBe('CONFLICT');
  expect(res.errors![0].message).toMatch(/cannot remove version 1\.0\.0 of kv: in use by release "once" \(1\.0\.0\)/);
  const product = await api.run('{ product(name: "kv") { versions { version } } }');
  expect(product.data!.product.versions).toEqual([{ version: '1.0.0' }, { version: '2.0.0' }]);
});

test('deleteProduct is refused while a release uses it, and removes it once none does', async () => {
  const refused = await api.run('mutation { deleteProduct(name: "kv") { name } }');
  expect(codeOf(refused)).toBe('CONFLICT');
  expect(refused.errors![0].message).toMatch(/product kv is used by release "once"/);
  for (const r of await releases()) {
    expect((await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: r.id })).errors).toBeUndefined();
  }
  await api.reportAllRunning(hostId);
  await reconcileReleases(store());
  expect(await releases()).toEqual([]);
  const deleted = await api.run('mutation { deleteProduct(name: "kv") { name } }');
  expect(deleted.errors).toBeUndefined();
  expect((await api.run('{ product(name: "kv") { name } }')).data!.product).toBeNull();
});

const MB = 'x'.repeat(1 << 20);
const firing = async (kind: string) => (await api.run('{ alarms(filter: {state: FIRING}) { nodes { kind host { id } release { id } } } }')).data!.alarms.nodes
  .filter((a: { kind: string }) => a.kind === kind) as { host: { id: string } | null; release: { id: string } | null }[];

test('a 1 MB value is BAD_USER_INPUT naming the field and the limit, never echoed, and nothing is written', async () => {
  expect((await define(PRODUCT)).errors).toBeUndefined();
  const cases = [
    ['description', await define({ ...PRODUCT, name: 'big', description: MB }), /^description is 1048576 characters long; at most 4096 are accepted$/],
    ['name', await api.run('mutation($n: String!) { deploy(input: {name: $n, product: "kv"}) { id } }', { n: MB }), /^name is 1048576 characters long; at most 1024 are accepted$/],
    ['env[1].value', await api.run('mutation($v: String!) { deploy(input: {name: "big", product: "kv", env: [{name: "A", value: "1"}, {name: "B", value: $v}]}) { id } }', { v: MB }),
      /^env\[1\]\.value is 1048576 characters long; at most 32768 are accepted$/],
    // A literal in the document is checked as a variable is.
    ['defaults.env[0].value', await api.run(`mutation { defineProduct(input: {name: "big", versions: [{version: "1.0.0", image: "i"}], defaults: {env: [{name: "A", value: "${'y'.repeat(40000)}"}]}}) { name } }`),
      /^defaults\.env\[0\]\.value is 40000 characters long; at most 32768 are accepted$/],
  ] as const;
  for (const [field, res, message] of cases) {
    expect(res.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
    expect(res.errors![0].message).toMatch(message);
  }
  expect((await api.run('{ product(name: "big") { name } }')).data!.product).toBeNull();
  expect((await releases()).filter((r) => r.name === 'big')).toEqual([]);
  // Under the length limit but not a name: the message shows the start of the value only.
  const long = await api.run('mutation($n: String!) { deploy(input: {name: $n, product: "kv"}) { id } }', { n: 'Q'.repeat(1000) });
  expect(long.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'name' });
  expect(long.errors![0].message.length).toBeLessThan(200);
  // The name was never claimed: a deploy with it (once valid) goes through.
  const deployed = await api.run('mutation { deploy(input: {name: "big", product: "kv", replicas: 0}) { id } }');
  expect(deployed.errors).toBeUndefined();
  const before = (await releases()).find((r) => r.name === 'big');
  const configure = await api.run('mutation($id: ID!, $v: String!) { configureRelease(id: $id, env: [{name: "A", value: $v}]) { id } }', { id: deployed.data!.deploy.id, v: MB });
  expect(configure.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'env[0].value' });
  expect((await releases()).find((r) => r.name === 'big')).toEqual(before);
  expect((await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: deployed.data!.deploy.id })).errors).toBeUndefined();
  await reconcileReleases(store());
});

test('a cordoned host that goes DOWN comes back CORDONED, and its HOST_DOWN alarm is raised even if the marker crashed', async () => {
  const id = await api.registerHost('integrity-down', { cpuMillis: 1000, memoryMb: 1024 });
  expect((await api.run('mutation($id: ID!) { cordonHost(id: $id) { status } }', { id })).data!.cordonHost.status).toBe('CORDONED');
  // The watchdog marked it DOWN and crashed before raising the alarm.
  expect(await markDown(store(), id, new Date(Date.now() + 3600_000).toISOString())).toBe(true);
  expect((await firing('HOST_DOWN')).filter((a) => a.host?.id === id)).toEqual([]);
  await watchHosts(store());
  await watchHosts(store());
  expect((await firing('HOST_DOWN')).filter((a) => a.host?.id === id)).toHaveLength(1);
  await api.run('mutation { runnerSync(input: {observed: []}) { hostId } }', {}, asHost(id));
  expect((await api.run('query($id: ID!) { host(id: $id) { status } }', { id })).data!.host.status).toBe('CORDONED');
});

test('an alarm claim left by a resolved alarm or a crashed raiser does not swallow a new fault', async () => {
  const alarm = { kind: 'CONTAINER_OOM' as const, severity: 'CRITICAL' as const, message: 'ran out of memory', hostId };
  // The resolver marked the alarm RESOLVED and crashed before dropping the claim.
  const first = await raise(store(), { ...alarm, cause: 'instance:left-0' });
  await store().mutate<Alarm>('alarms', first!.id, (a) => a && { ...a, state: 'RESOLVED' });
  expect((await raise(store(), { ...alarm, cause: 'instance:left-0' }))?.id).not.toBe(first!.id);
  // The raiser claimed the cause and crashed before writing the alarm, longer ago than the claim lease.
  await store().create('butlerClaims', { key: 'alarm-cause#CONTAINER_OOM#instance:crashed-0', alarmId: 'a-never-written', claimedAt: new Date(Date.now() - 120_000).toISOString() });
  expect(await raise(store(), { ...alarm, cause: 'instance:crashed-0' })).toBeDefined();
});

test('an UPGRADE_ROLLED_BACK alarm resolves when its release is deleted', async () => {
  const id = (await api.run('mutation { deploy(input: {name: "rolled", product: "kv", replicas: 0}) { id } }')).data!.deploy.id;
  await raise(store(), { kind: 'UPGRADE_ROLLED_BACK', severity: 'WARNING', cause: releaseCause(id), releaseId: id, message: 'rolled back' });
  expect((await firing('UPGRADE_ROLLED_BACK')).filter((a) => a.release?.id === id)).toHaveLength(1);
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
  await reconcileReleases(store());
  expect(await releases()).not.toContainEqual(expect.objectContaining({ id }));
  const open = await api.run('{ alarms { nodes { kind state } } }');
  expect(open.data!.alarms.nodes.filter((a: { kind: string; state: string }) => a.kind === 'UPGRADE_ROLLED_BACK' && a.state !== 'RESOLVED')).toEqual([]);
});

const hostsNow = async () => (await api.run('{ hosts { id name status subnet } }')).data!.hosts as { id: string; name: string; status: string; subnet: string }[];
const hostOf = async (instanceId: string) => (await api.run('query($id: ID!) { instance(id: $id) { host { id } } }', { id: instanceId })).data!.instance?.host.id as string | undefined;
const instancesOf = async (releaseId: string) => (await api.run('query($id: ID!) { release(id: $id) { instances { id host { id } } } }', { id: releaseId }))
  .data!.release.instances as { id: string; host: { id: string } }[];
/** Runs `fn` while every READY host but `hostId` is cordoned, so that what it deploys lands on `hostId`. */
async function onlyOn<T>(hostId: string, fn: () => Promise<T>): Promise<T> {
  const others = (await hostsNow()).filter((h) => h.id !== hostId && h.status === 'READY');
  for (const h of others) await api.run('mutation($id: ID!) { cordonHost(id: $id) { id } }', { id: h.id });
  try {
    return await fn();
  } finally {
    for (const h of others) await api.run('mutation($id: ID!) { uncordonHost(id: $id) { id } }', { id: h.id });
  }
}
const deploy = async (name: string, extra = '', replicas = 1) => {
  const res = await api.run(`mutation { deploy(input: {name: "${name}", product: "kv", replicas: ${replicas}${extra}}) { id } }`);
  expect(res.errors).toBeUndefined();
  return res.data!.deploy.id as string;
};
const FUTURE = () => new Date(Date.now() + 3600_000).toISOString();

test('deleting a release whose instance sits on a DOWN host completes, and the returning runner is told to remove it', async () => {
  const lost = await api.registerHost('integrity-lost', { cpuMillis: 1000, memoryMb: 1024 }, [{ key: 'zone', value: 'lost' }]);
  const id = await deploy('stranded', ', placement: {requiredLabels: [{key: "zone", value: "lost"}]}');
  const [running] = await api.reportAllRunning(lost);
  expect(await markDown(store(), lost, FUTURE())).toBe(true);
  await watchHosts(store()); // nowhere to move it
  expect((await instancesOf(id)).map((i) => i.host.id)).toEqual([lost]);
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
  await reconcileReleases(store());
  expect((await releases()).map((r) => r.id)).not.toContain(id);
  // The host returns with the container still running: nothing desires it, and no record of it comes back.
  const back = await api.run('mutation($o: [ObservedContainerInput!]!) { runnerSync(input: {observed: $o}) { desired { instanceId } } }', { o: [{
    containerId: 'c-stranded', instanceId: running.instanceId, specHash: 'old', name: running.name, state: 'RUNNING', health: 'HEALTHY',
    restartCount: 0, oomKilled: false, ports: [],
  }] }, asHost(lost));
  expect(back.data!.runnerSync.desired).toEqual([]);
  expect((await api.run('query($id: ID!) { containerStatus(instanceId: $id) { state } }', { id: running.instanceId })).data!.containerStatus).toBeNull();
});

test('a drain goes on when an instance it moved earlier was deleted, and forgets what it moved once done', async () => {
  const drained = await api.registerHost('integrity-drain', { cpuMillis: 1000, memoryMb: 1024 });
  const [x, y] = await onlyOn(drained, async () => [await deploy('drain-x'), await deploy('drain-y')]);
  await api.reportAllRunning(drained);
  expect((await api.run('mutation($id: ID!) { drainHost(id: $id) { status } }', { id: drained })).data!.drainHost.status).toBe('DRAINING');
  await watchHosts(store());
  const [first, second] = (await instancesOf(x))[0].host.id !== drained ? [x, y] : [y, x];
  expect((await instancesOf(second))[0].host.id).toBe(drained);
  // The moved one is deleted before it ever served on its new host: nothing is left to wait for.
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: first });
  await reconcileReleases(store());
  await watchHosts(store());
  expect((await instancesOf(second))[0].host.id).not.toBe(drained);
  await watchHosts(store());
  expect(await store().get('butlerClaims', `drained-from#${drained}`)).toBeUndefined();
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: second });
  await reconcileReleases(store());
});

test('removeHost moves what can move, forgets the rest, and frees the name, subnet and token', async () => {
  const gone = await api.registerHost('integrity-gone', { cpuMillis: 1000, memoryMb: 1024 }, [{ key: 'zone', value: 'gone' }]);
  const { subnet } = (await hostsNow()).find((h) => h.id === gone)!;
  const [free, pinned] = await onlyOn(gone, async () => [await deploy('free'), await deploy('pinned', ', placement: {requiredLabels: [{key: "zone", value: "gone"}]}')]);
  const [freeInstance, pinnedInstance] = [(await instancesOf(free))[0].id, (await instancesOf(pinned))[0].id];
  expect(await markDown(store(), gone, FUTURE())).toBe(true);
  const removed = await api.run('mutation($id: ID!) { removeHost(id: $id) { hostId name moved forgotten } }', { id: gone });
  expect(removed.errors).toBeUndefined();
  expect(removed.data!.removeHost).toEqual({ hostId: gone, name: 'integrity-gone', moved: [freeInstance], forgotten: [pinnedInstance] });
  expect((await hostsNow()).map((h) => h.id)).not.toContain(gone);
  expect(await hostOf(freeInstance)).not.toBe(gone);
  expect(await instancesOf(pinned)).toEqual([]);
  expect((await firing('HOST_DOWN')).filter((a) => a.host?.id === gone)).toEqual([]);
  // A runner of the removed host is refused.
  const sync = await api.run('mutation { runnerSync(input: {observed: []}) { hostId } }', {}, asHost(gone));
  expect(sync.errors?.[0].extensions?.code).toMatch(/NOT_FOUND|UNAUTHENTICATED|FORBIDDEN/);
  // The name and the subnet are free: a new host takes both.
  const again = await api.registerHost('integrity-gone', { cpuMillis: 1000, memoryMb: 1024 });
  expect((await hostsNow()).find((h) => h.id === again)!.subnet).toBe(subnet);
  expect((await api.run('mutation($id: ID!) { removeHost(id: $id) { forgotten } }', { id: 'h-nonexistent' })).errors![0].extensions!.code).toBe('NOT_FOUND');
  for (const id of [free, pinned]) await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
  await reconcileReleases(store());
});

test('fz doctor finds a host whose books drifted from its instances, and --repair makes them agree', async () => {
  const ledger = await api.registerHost('integrity-ledger', { cpuMillis: 2000, memoryMb: 2048 });
  const id = await onlyOn(ledger, () => deploy('booked', '', 2));
  const [a, b] = (await instancesOf(id)).map((i) => i.id);
  // A crash between removing an instance and giving back what it held; another instance's reservation lost.
  await store().mutate<Host>('hosts', ledger, (h) => {
    const { [b]: _lost, ...kept } = h!.reservations;
    return { ...h!, reservations: { ...kept, 'r-crashed-0': { cpuMillis: 300, memoryMb: 64 } }, allocated: { cpuMillis: 1, memoryMb: 1 } };
  });
  const cli = { url: 'in-process', request: (q: string) => api.run(q) } as Parameters<typeof doctor>[0];
  const lines: string[] = [];
  expect(await doctor(cli, false, (l) => lines.push(l))).toBe(false);
  const found = lines.filter((l) => l.includes('integrity-ledger')).map((l) => l.split('  ').slice(0, 3).join(' '));
  expect(found.sort()).toEqual(['drift integrity-ledger LEAKED_RESERVATION', 'drift integrity-ledger MISSING_RESERVATION', 'drift integrity-ledger WRONG_TOTAL']);
  lines.length = 0;
  expect(await doctor(cli, true, (l) => lines.push(l))).toBe(true);
  expect(lines.filter((l) => l.includes('integrity-ledger')).every((l) => l.startsWith('repaired'))).toBe(true);
  const host = (await api.run('query($id: ID!) { host(id: $id) { allocated { cpuMillis memoryMb } } }', { id: ledger })).data!.host;
  expect(host.allocated).toEqual({ cpuMillis: 200, memoryMb: 64 });
  expect((await store().get<Host>('hosts', ledger))!.reservations).toEqual({ [a]: { cpuMillis: 100, memoryMb: 32 }, [b]: { cpuMillis: 100, memoryMb: 32 } });
  expect((await api.run('{ ledgerDrift { kind } }')).data!.ledgerDrift).toEqual([]);
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
  await reconcileReleases(store());
});
