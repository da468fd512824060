import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { store } from '../../lib/store';
import { raise } from '../../subgraphs/butler/alarms';
import { AUTO_RESTART, reactToChanges } from '../../subgraphs/butler/watch';
import { watchHosts } from '../../subgraphs/butler/watchdog';
import { getContainer } from '../../subgraphs/ark';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';
import { asHost, startInProcess } from '../support/inprocess';

/**
 * Operations through the API (in-process gateway, dynalite), with runner reports sent as a runner would and the
 * ticks called directly: draining a host, alarm deduplication and acknowledgement, and an upgrade that pauses,
 * resumes and survives a crash between any two ticks.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
let hostA: string;
let hostB: string;
const tick = async () => {
  await watchHosts(store());
  await reconcileReleases(store());
};

/**
 * The ticks in a child process (test/support/tick-process.ts) on the same store. `tick` runs one there; `crash` kills
 * the child with SIGKILL, between two ticks, and the next `tick` starts a new one.
 */
function tickProcess() {
  let child: ReturnType<typeof spawn> | undefined;
  let lines: AsyncIterator<string> | undefined;
  const next = async () => {
    const line = await lines!.next();
    if (line.done) throw new Error('the tick process ended without answering');
    return line.value;
  };
  return {
    async tick() {
      if (!child) {
        child = spawn(process.execPath, ['--import', 'tsx', 'test/support/tick-process.ts'], {
          // The test's own environment (the store startInProcess set up), which jest keeps apart from the real one.
          cwd: resolve(__dirname, '../..'), env: { ...process.env }, stdio: ['pipe', 'pipe', 'inherit'],
        });
        lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
        expect(await next()).toBe('ready');
      }
      child.stdin!.write('tick\n');
      expect(await next()).toBe('ticked');
    },
    async crash() {
      if (!child) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      expect(await exited).toEqual([null, 'SIGKILL']);
      child = undefined;
    },
  };
}

const ticks = tickProcess();
const instancesOn = async (releaseId: string) => (await api.run('query($id: ID!) { release(id: $id) { instances { id host { name } } } }', { id: releaseId }))
  .data!.release.instances.map((i: { host: { name: string } }) => i.host.name);

beforeAll(async () => {
  api = await startInProcess('ops-');
  hostA = await api.registerHost('ops-a', { cpuMillis: 2000, memoryMb: 2048 });
  hostB = await api.registerHost('ops-b', { cpuMillis: 2000, memoryMb: 2048 });
  await api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: {
    name: 'svc', versions: [{ version: '1.0.0', image: 'fangzhou/svc:1' }, { version: '2.0.0', image: 'fangzhou/svc:2' }],
    defaults: { replicas: 3, resources: { cpuMillis: 100, memoryMb: 32 } },
  } });
});

afterAll(async () => {
  await ticks.crash(); // a tick process left by a failed test
  await api?.stop();
});

test('draining a host moves its instances away one at a time, each only after the previous one serves again', async () => {
  await api.run('mutation($id: ID!) { cordonHost(id: $id) { id } }', { id: hostB });
  const id = (await api.run('mutation { deploy(input: {name: "drained", product: "svc", replicas: 2}) { id } }')).data!.deploy.id;
  await api.run('mutation($id: ID!) { uncordonHost(id: $id) { id } }', { id: hostB });
  expect(await instancesOn(id)).toEqual(['ops-a', 'ops-a']);
  await api.reportAllRunning(hostA);

  expect((await api.run('mutation($id: ID!) { drainHost(id: $id) { status } }', { id: hostA })).data!.drainHost.status).toBe('DRAINING');
  await watchHosts(store());
  expect((await instancesOn(id)).sort()).toEqual(['ops-a', 'ops-b']);
  await watchHosts(store()); // the moved one is not serving on b yet: nothing else moves
  expect((await instancesOn(id)).sort()).toEqual(['ops-a', 'ops-b']);
  await api.reportAllRunning(hostB);
  await api.reportAllRunning(hostA);
  await watchHosts(store());
  expect(await instancesOn(id)).toEqual(['ops-b', 'ops-b']);
  const host = await api.run('query($id: ID!) { host(id: $id) { status instances { id } allocated { cpuMillis } } }', { id: hostA });
  expect(host.data!.host).toEqual({ status: 'DRAINING', instances: [], allocated: { cpuMillis: 0 } });
  await api.run('mutation($id: ID!) { uncordonHost(id: $id) { id } }', { id: hostA });
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
});

test('one firing alarm per cause; acknowledging keeps it open, and a resolved alarm cannot be acknowledged', async () => {
  const alarm = { kind: 'CONTAINER_OOM' as const, severity: 'CRITICAL' as const, cause: 'instance:x-0', message: 'x-0 ran out of memory', hostId: hostA };
  const first = await raise(store(), alarm);
  expect(await raise(store(), alarm)).toBeUndefined();
  const listed = await api.run('{ alarms(filter: {state: FIRING}) { nodes { id kind message host { name } } } }');
  expect(listed.data!.alarms.nodes.filter((a: { kind: string }) => a.kind === 'CONTAINER_OOM')).toEqual([{ id: first!.id, kind: 'CONTAINER_OOM', message: 'x-0 ran out of memory', host: { name: 'ops-a' } }]);
  const acked = await api.run('mutation($id: ID!) { acknowledgeAlarm(id: $id) { state acknowledgedAt } }', { id: first!.id });
  expect(acked.data!.acknowledgeAlarm.state).toBe('ACKNOWLEDGED');
  expect(await raise(store(), alarm)).toBeUndefined(); // still open: no second alarm
  const { resolveAlarm } = await import('../../subgraphs/butler/alarms');
  await resolveAlarm(store(), 'CONTAINER_OOM', 'instance:x-0');
  const again = await api.run('mutation($id: ID!) { acknowledgeAlarm(id: $id) { state } }', { id: first!.id });
  expect(again.errors?.[0].extensions?.code).toBe('CONFLICT');
  expect((await raise(store(), alarm))?.id).not.toBe(first!.id); // a new occurrence after resolution is a new alarm
});

test('an upgrade pauses, resumes, and carries on after a crash between ticks, health-gated batch by batch', async () => {
  // The ticks run in a child process that is killed (SIGKILL) after every tick and started anew for the next.
  const id = (await api.run('mutation { deploy(input: {name: "rolling", product: "svc", version: "1.0.0", replicas: 3}) { id } }')).data!.deploy.id;
  const reportAll = async () => { await api.reportAllRunning(hostA); await api.reportAllRunning(hostB); };
  await reportAll();
  const state = async () => (await api.run('query($id: ID!) { release(id: $id) { status version upgrade { state done total batch } } }', { id })).data!.release;
  expect((await state()).status).toBe('RUNNING');

  const started = await api.run('mutation($id: ID!) { upgradeRelease(id: $id, version: "2.0.0", strategy: {maxUnavailable: 1}) { upgrade { state } } }', { id });
  expect(started.errors).toBeUndefined();
  expect(started.data!.upgradeRelease.upgrade.state).toBe('RUNNING');
  await ticks.tick();
  await ticks.crash();
  expect(await state()).toMatchObject({ status: 'UPGRADING', version: '2.0.0', upgrade: { done: 0, total: 3, batch: [`${id}-0`] } });
  await ticks.tick(); // not healthy yet: the batch waits
  await ticks.crash();
  expect((await state()).upgrade.batch).toEqual([`${id}-0`]);

  await api.run('mutation($id: ID!) { pauseUpgrade(id: $id) { id } }', { id });
  await reportAll();
  await ticks.tick();
  await ticks.crash();
  expect(await state()).toMatchObject({ upgrade: { state: 'PAUSED', done: 0 } });
  expect((await api.run('mutation($id: ID!) { pauseUpgrade(id: $id) { id } }', { id })).errors?.[0].extensions?.code).toBe('CONFLICT');
  await api.run('mutation($id: ID!) { resumeUpgrade(id: $id) { id } }', { id });

  for (let i = 0; i < 10 && (await state()).upgrade.state !== 'SUCCEEDED'; i++) {
    await ticks.tick();
    await ticks.crash();
    await reportAll();
  }
  expect(await state()).toMatchObject({ status: 'RUNNING', upgrade: { state: 'SUCCEEDED', done: 3, total: 3 } });
  const desired = (await api.run('mutation { runnerSync(input: {observed: []}) { desired { releaseId image } } }', {}, asHost(hostA))).data!.runnerSync.desired
    .filter((d: { releaseId: string }) => d.releaseId === id);
  expect(desired.every((d: { image: string }) => d.image === 'fangzhou/svc:2')).toBe(true);
});

test('with autoRollback false a failed health gate stops the upgrade where it is: FAILED, nothing put back', async () => {
  const id = (await api.run('mutation { deploy(input: {name: "manual", product: "svc", version: "1.0.0", replicas: 2}) { id } }')).data!.deploy.id;
  const report = async (as: (d: { instanceId: string }) => Record<string, unknown> = () => ({})) => {
    await api.reportAllRunning(hostA, as);
    await api.reportAllRunning(hostB, as);
  };
  const state = async () => (await api.run(`query($id: ID!) { release(id: $id) {
    version upgrade { state reason } instances { id image } } }`, { id })).data!.release;
  await report();
  const started = await api.run('mutation($id: ID!) { upgradeRelease(id: $id, version: "2.0.0", strategy: {maxUnavailable: 1, autoRollback: false}) { id } }', { id });
  expect(started.errors).toBeUndefined();
  await tick();
  await report((d) => (d.instanceId === `${id}-0` ? { health: 'UNHEALTHY' } : {}));
  await tick();
  await tick(); // a stopped upgrade stays stopped
  const after = await state();
  expect(after).toMatchObject({ version: '2.0.0', upgrade: { state: 'FAILED', reason: 'manual-0: running, unhealthy' } });
  // The failed instance keeps the new version for the operator to look at; the other was never touched.
  expect(after.instances).toEqual([{ id: `${id}-0`, image: 'fangzhou/svc:2' }, { id: `${id}-1`, image: 'fangzhou/svc:1' }]);
  const kinds = (await api.run('query($r: ID!) { events(filter: {releaseId: $r}, first: 100) { nodes { kind } } }', { r: id })).data!.events.nodes.map((e: { kind: string }) => e.kind);
  expect(kinds).toContain('UPGRADE_FAILED');
  expect(kinds).not.toContain('ROLLBACK_STARTED');
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
});

test('an upgrade rolled back by itself leaves the release RUNNING on the version it runs, and the record says why and which version failed', async () => {
  const id = (await api.run('mutation { deploy(input: {name: "fallback", product: "svc", version: "1.0.0", replicas: 2}) { id } }')).data!.deploy.id;
  const report = async (as: (d: { instanceId: string }) => Record<string, unknown> = () => ({})) => {
    await api.reportAllRunning(hostA, as);
    await api.reportAllRunning(hostB, as);
  };
  const state = async () => (await api.run(`query($id: ID!) { release(id: $id) {
    status statusMessage version health { healthy } upgrade { state fromVersion toVersion failedVersion reason message }
    instances { id image status { state health containerId specHash } } } }`, { id })).data!.release;
  await report();
  expect((await state()).status).toBe('RUNNING');

  expect((await api.run('mutation($id: ID!) { upgradeRelease(id: $id, version: "2.0.0", strategy: {maxUnavailable: 1}) { id } }', { id })).errors).toBeUndefined();
  await tick();
  // Instance 0 has the new spec, but only the old container has reported: its status must not be the old one's.
  const respecced = (await state()).instances.find((i: { id: string }) => i.id === `${id}-0`);
  expect(respecced).toMatchObject({ image: 'fangzhou/svc:2', status: { state: 'PENDING', health: 'STARTING', containerId: null } });
  expect((await state()).health.healthy).toBe(1);

  await report((d) => (d.instanceId === `${id}-0` ? { health: 'UNHEALTHY' } : {}));
  await tick();
  expect(await state()).toMatchObject({ status: 'ROLLING_BACK', version: '1.0.0', upgrade: { state: 'ROLLING_BACK', failedVersion: '2.0.0', reason: "fallback-0: running, unhealthy" } });

  // A failure report while the old version comes back is no verdict on the rollback.
  await report((d) => (d.instanceId === `${id}-0` ? { state: 'EXITED', error: 'port 8080 is already allocated' } : {}));
  await tick();
  expect((await state()).upgrade.state).toBe('ROLLING_BACK');

  await report();
  await tick();
  expect(await state()).toMatchObject({
    status: 'RUNNING', statusMessage: null, version: '1.0.0',
    upgrade: { state: 'ROLLED_BACK', fromVersion: '1.0.0', toVersion: '2.0.0', failedVersion: '2.0.0', reason: "fallback-0: running, unhealthy",
      message: `rolled back to 1.0.0: 2.0.0 failed its health gate (fallback-0: running, unhealthy)` },
  });
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
});

test('a container that stays unhealthy is replaced at most 3 times in 10 minutes, then left alone with a CONTAINER_CRASH_LOOP alarm', async () => {
  expect(AUTO_RESTART).toEqual({ max: 3, windowMs: 10 * 60_000 }); // what the README promises
  const id = (await api.run('mutation { deploy(input: {name: "flaky", product: "svc", version: "1.0.0", replicas: 1}) { id } }')).data!.deploy.id;
  const instanceId = `${id}-0`;
  // As its runner reports it: each generation (spec hash) is a new container, which starts, then fails its healthcheck.
  const report = async (health: string) => {
    for (const host of [hostA, hostB]) await api.reportAllRunning(host, (d) => (d.instanceId === instanceId ? { containerId: `c-${d.specHash}`, health } : {}));
  };
  const kinds = async () => (await api.run('query($r: ID!) { events(filter: {releaseId: $r}, first: 500) { nodes { kind } } }', { r: id }))
    .data!.events.nodes.map((e: { kind: string }) => e.kind) as string[];
  const replaced = async () => (await kinds()).filter((k) => k === 'RESTARTED').length;
  const crashLoops = async () => (await api.run('query($r: ID!) { alarms(filter: {releaseId: $r}) { nodes { kind state message } } }', { r: id }))
    .data!.alarms.nodes.filter((a: { kind: string }) => a.kind === 'CONTAINER_CRASH_LOOP');

  await report('HEALTHY');
  for (let round = 1; round <= 3; round++) {
    await report('STARTING');
    await report('UNHEALTHY');
    expect(await replaced()).toBe(round);
    expect(await crashLoops()).toEqual([]);
  }
  // The fourth time within 10 minutes: no replacement, an alarm instead; reporting it again changes nothing.
  await report('STARTING');
  await report('UNHEALTHY');
  await report('STARTING');
  await report('UNHEALTHY');
  expect(await replaced()).toBe(3);
  expect(await crashLoops()).toEqual([{ kind: 'CONTAINER_CRASH_LOOP', state: 'FIRING',
    message: 'fz-flaky-0 stays unhealthy after 3 restarts in 10 min; no more automatic restarts until it recovers or is restarted by hand' }]);

  // Ten minutes after those replacements (the store has no clock of its own: Butler is told the time), one is allowed again.
  const record = (await getContainer(store(), instanceId))!;
  await reactToChanges(store(), record.hostId, [{ instanceId, releaseId: id, before: { ...record, health: 'STARTING' }, after: { ...record, health: 'UNHEALTHY' } }],
    new Date(Date.now() + AUTO_RESTART.windowMs + 1000));
  expect(await replaced()).toBe(4);
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
});

test('a container that stops without being asked to raises CONTAINER_RESTARTED, whether Docker or its runner starts it again', async () => {
  const id = (await api.run('mutation { deploy(input: {name: "bouncy", product: "svc", version: "1.0.0", replicas: 1}) { id } }')).data!.deploy.id;
  const instanceId = `${id}-0`;
  let host = '';
  let desired: { instanceId: string; name: string; specHash: string } | undefined;
  for (const h of [hostA, hostB]) {
    const found = (await api.reportAllRunning(h)).find((d) => d.instanceId === instanceId);
    if (found) [host, desired] = [h, found as typeof desired];
  }
  // As its runner reports it, each report after the one before: the same container all along (no new generation).
  const report = async (fields: Record<string, unknown>) => {
    const observed = [{ containerId: 'c-bouncy', ...desired, state: 'RUNNING', health: 'HEALTHY', restartCount: 0, oomKilled: false, ports: [], ...fields }];
    expect((await api.run('mutation($o: [ObservedContainerInput!]!) { runnerSync(input: {observed: $o}) { hostId } }', { o: observed }, asHost(host))).errors).toBeUndefined();
  };
  const restarts = async () => (await api.run('query($r: ID!) { alarms(filter: {releaseId: $r}) { nodes { kind state message raisedAt } } }', { r: id }))
    .data!.alarms.nodes.filter((a: { kind: string }) => a.kind === 'CONTAINER_RESTARTED')
    .sort((a: { raisedAt: string }, b: { raisedAt: string }) => a.raisedAt.localeCompare(b.raisedAt))
    .map(({ state, message }: { state: string; message: string }) => ({ state, message }));

  await report({ startedAt: '2026-01-01T00:00:00Z' });
  await report({ startedAt: '2026-01-01T00:00:00Z' });
  expect(await restarts()).toEqual([]);

  // Killed from outside (`docker kill`): Docker leaves it stopped, its runner starts it again. Same restart count.
  await report({ startedAt: '2026-01-01T00:05:00Z', health: 'STARTING' });
  expect(await restarts()).toEqual([{ state: 'FIRING', message: 'fz-bouncy-0 stopped without being asked to and was started again' }]);
  await report({ startedAt: '2026-01-01T00:05:00Z', health: 'HEALTHY' });
  expect(await restarts()).toEqual([{ state: 'RESOLVED', message: 'fz-bouncy-0 stopped without being asked to and was started again' }]);

  // It exits by itself while it should run, then Docker restarts it (its restart count goes up): one alarm for both.
  await report({ startedAt: '2026-01-01T00:05:00Z', state: 'EXITED', health: 'NONE', exitCode: 137 });
  await report({ startedAt: '2026-01-01T00:06:00Z', health: 'STARTING', restartCount: 1 });
  expect(await restarts()).toEqual([
    { state: 'RESOLVED', message: 'fz-bouncy-0 stopped without being asked to and was started again' },
    { state: 'FIRING', message: 'fz-bouncy-0 exited (code 137) while it should run; its runner starts it again' },
  ]);
  // Started again and serving at once (no healthcheck): the restart is still on record, already resolved.
  await report({ startedAt: '2026-01-01T00:06:00Z', health: 'HEALTHY', restartCount: 1 });
  await report({ startedAt: '2026-01-01T00:07:00Z', health: 'NONE', restartCount: 2 });
  expect(await restarts()).toEqual([
    { state: 'RESOLVED', message: 'fz-bouncy-0 stopped without being asked to and was started again' },
    { state: 'RESOLVED', message: 'fz-bouncy-0 exited (code 137) while it should run; its runner starts it again' },
    { state: 'RESOLVED', message: 'fz-bouncy-0 exited and was restarted by Docker (2 restarts)' },
  ]);
  await api.run('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
});

test('events and alarms page with first and after: every item once, newest first, and the last page says so', async () => {
  for (let n = 0; n < 5; n++) {
    await raise(store(), { kind: 'CONTAINER_OOM', severity: 'WARNING', cause: `instance:paged-${n}`, message: `paged-${n} ran out of memory`, hostId: 'h-paged' },
      new Date(Date.UTC(2026, 0, 1, 0, 0, n)));
  }
  type Page = { nodes: { id: string }[]; pageInfo: { endCursor: string | null; hasNextPage: boolean } };
  const walk = async (field: 'events' | 'alarms', filter: Record<string, unknown>) => {
    const query = `query($f: ${field === 'events' ? 'EventFilter' : 'AlarmFilter'}, $n: Int, $a: String) {
      ${field}(filter: $f, first: $n, after: $a) { nodes { id } pageInfo { endCursor hasNextPage } } }`;
    const page = async (first: number, after: string | null) => (await api.run(query, { f: filter, n: first, a: after })).data![field] as Page;
    const all = (await page(500, null)).nodes.map((x) => x.id);
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const p = await page(2, after);
      pages += 1;
      seen.push(...p.nodes.map((x) => x.id));
      if (!p.pageInfo.hasNextPage) break;
      after = p.pageInfo.endCursor;
    }
    return { all, seen, pages };
  };
  const alarms = await walk('alarms', { hostId: 'h-paged' });
  expect(alarms.all).toHaveLength(5);
  expect(alarms).toEqual({ all: alarms.all, seen: alarms.all, pages: 3 });
  const events = await walk('events', {});
  expect(events.all.length).toBeGreaterThan(10); // the upgrades above left plenty
  expect(events.seen).toEqual(events.all);
  expect(events.pages).toBe(Math.ceil(events.all.length / 2));
  expect([...events.all].sort().reverse()).toEqual(events.all); // newest first: ids start with the time
});
