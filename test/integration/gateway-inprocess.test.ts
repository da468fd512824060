import { DEMO_PRODUCT } from '../../scripts/demo-product';
import { anonymous, asHost, startInProcess } from '../support/inprocess';

/**
 * The single-process shape: the gateway runs the three subgraphs in-process (LocalGraphQLDataSource) on the real
 * store protocol. The same cross-subgraph query as over HTTP must resolve, and credentials are still checked.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
const run: typeof api.run = (...args) => api.run(...args);

beforeAll(async () => {
  api = await startInProcess('inproc-');
});

afterAll(async () => {
  await api?.stop();
});

test('a release resolves through Panama, Ark and Butler in one process', async () => {
  expect((await run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: DEMO_PRODUCT })).errors).toBeUndefined();
  const token = (await run('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
  const registered = await run(
    'mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken } }',
    { input: { joinToken: token, name: 'inproc-host', address: '127.0.0.1', capacity: { cpuMillis: 2000, memoryMb: 1024 } } },
    anonymous,
  );
  const hostId = registered.data!.registerHost.host.id;
  const deployed = await run('mutation { deploy(input: {name: "inproc", product: "demo", version: "2.0.0", replicas: 2}) { id status } }');
  expect(deployed.data!.deploy.status).toBe('DEPLOYING');
  const id = deployed.data!.deploy.id;

  // What the host's runner would report: both containers running and healthy.
  const desired = (await run('mutation { runnerSync(input: {observed: []}) { desired { instanceId specHash name } } }', {}, asHost(hostId))).data!.runnerSync.desired;
  expect(desired.map((d: { name: string }) => d.name)).toEqual(['fz-inproc-0', 'fz-inproc-1']);
  const observed = desired.map((d: { instanceId: string; specHash: string; name: string }, n: number) => ({
    containerId: `c${n}`, instanceId: d.instanceId, specHash: d.specHash, name: d.name, state: 'RUNNING', health: 'HEALTHY',
    restartCount: 0, oomKilled: false, ports: [{ containerPort: 8080, protocol: 'tcp', hostPort: 40000 + n }],
  }));
  await run('mutation($o: [ObservedContainerInput!]!) { runnerSync(input: {observed: $o}) { hostId } }', { o: observed }, asHost(hostId));

  const release = await run(`query($id: ID!) { release(id: $id) {
    status product { name } health { desired healthy }
    instances { ordinal image host { name allocated { cpuMillis memoryMb } } status { state containerId } ports { hostPort } }
  } }`, { id });
  expect(release.errors).toBeUndefined();
  expect(release.data!.release).toEqual({
    status: 'RUNNING',
    product: { name: 'demo' },
    health: { desired: 2, healthy: 2 },
    instances: [0, 1].map((n) => ({
      ordinal: n, image: 'fangzhou/demo:2',
      host: { name: 'inproc-host', allocated: { cpuMillis: 200, memoryMb: 64 } },
      status: { state: 'RUNNING', containerId: `c${n}` },
      ports: [{ hostPort: 40000 + n }],
    })),
  });
});

test('the in-process gateway still refuses a caller without a credential', async () => {
  const res = await run('{ releases { name } }', {}, anonymous);
  expect(res.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
});

test('parallel deploys never over-commit a host: reservations are conditional writes', async () => {
  const token = (await run('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
  await run('mutation($input: RegisterHostInput!) { registerHost(input: $input) { hostToken } }', {
    input: { joinToken: token, name: 'tight-host', address: '127.0.0.1', labels: [{ key: 'pool', value: 'tight' }], capacity: { cpuMillis: 1000, memoryMb: 4096 } },
  }, anonymous);
  const results = await Promise.all(Array.from({ length: 8 }, (_, n) => run(
    'mutation($input: DeployInput!) { deploy(input: $input) { id } }',
    { input: { name: `tight-${n}`, product: 'demo', version: '1.0.0', replicas: 2, resources: { cpuMillis: 100, memoryMb: 16 }, placement: { requiredLabels: [{ key: 'pool', value: 'tight' }] } } },
  )));
  const placed = results.filter((r) => !r.errors).length;
  const refused = results.filter((r) => r.errors?.[0].extensions?.code === 'UNSCHEDULABLE').length;
  expect(placed + refused).toBe(8);
  // 1000 millis hold at most five releases of 2 x 100; a deploy that loses a race mid-way is undone whole, so fewer
  // may win, but the host is never over-committed and a refused deploy leaves nothing held.
  expect(placed).toBeGreaterThanOrEqual(1);
  expect(placed).toBeLessThanOrEqual(5);
  const hosts = await run('{ hosts { name allocated { cpuMillis } instances { id } } }');
  const tight = hosts.data!.hosts.find((h: { name: string }) => h.name === 'tight-host');
  expect(tight.allocated.cpuMillis).toBe(placed * 200);
  expect(tight.instances).toHaveLength(placed * 2);
  const releases = (await run('{ releases { name } }')).data!.releases.filter((r: { name: string }) => r.name.startsWith('tight-'));
  expect(releases).toHaveLength(placed);
});

test('scaling places new instances, removes the highest ordinals first, and records each change as a revision', async () => {
  const token = (await run('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
  await run('mutation($input: RegisterHostInput!) { registerHost(input: $input) { hostToken } }', {
    input: { joinToken: token, name: 'scale-host', address: '127.0.0.1', labels: [{ key: 'pool', value: 'scale' }], capacity: { cpuMillis: 1000, memoryMb: 4096 } },
  }, anonymous);
  const placement = { requiredLabels: [{ key: 'pool', value: 'scale' }] };
  const id = (await run('mutation($p: PlacementInput) { deploy(input: {name: "scaled", product: "demo", version: "1.0.0", replicas: 2, resources: {cpuMillis: 100, memoryMb: 16}, placement: $p}) { id } }', { p: placement })).data!.deploy.id;
  const scale = (replicas: number) => run('mutation($id: ID!, $n: Int!) { scaleRelease(id: $id, replicas: $n) { replicas revision } }', { id, n: replicas });
  const ordinals = async () => (await run('query($id: ID!) { release(id: $id) { instances { ordinal } } }', { id })).data!.release.instances.map((i: { ordinal: number }) => i.ordinal);

  expect((await scale(4)).data!.scaleRelease).toEqual({ replicas: 4, revision: 2 });
  expect(await ordinals()).toEqual([0, 1, 2, 3]);
  expect((await scale(1)).data!.scaleRelease).toEqual({ replicas: 1, revision: 3 });
  expect(await ordinals()).toEqual([0]);

  // Beyond what the host holds: refused whole, nothing placed, no revision.
  const tooMany = await scale(11);
  expect(tooMany.errors?.[0].extensions?.code).toBe('UNSCHEDULABLE');
  expect(await ordinals()).toEqual([0]);
  const release = await run('query($id: ID!) { release(id: $id) { replicas revisions { revision reason } } }', { id });
  expect(release.data!.release).toEqual({
    replicas: 1,
    revisions: [{ revision: 1, reason: 'deploy' }, { revision: 2, reason: 'scale 2 → 4' }, { revision: 3, reason: 'scale 4 → 1' }],
  });
  expect((await scale(-1)).errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
});

test('a cordoned host takes no new instances until it is uncordoned', async () => {
  const hosts = (await run('{ hosts { id name } }')).data!.hosts;
  const scaleHost = hosts.find((h: { name: string }) => h.name === 'scale-host');
  expect((await run('mutation($id: ID!) { cordonHost(id: $id) { status } }', { id: scaleHost.id })).data!.cordonHost.status).toBe('CORDONED');
  const deploy = () => run('mutation { deploy(input: {name: "after-cordon", product: "demo", version: "1.0.0", replicas: 1, placement: {requiredLabels: [{key: "pool", value: "scale"}]}}) { id } }');
  const refused = await deploy();
  expect(refused.errors?.[0].extensions?.code).toBe('UNSCHEDULABLE');
  expect(refused.errors?.[0].message).toMatch(/1 not READY/);
  await run('mutation($id: ID!) { uncordonHost(id: $id) { status } }', { id: scaleHost.id });
  expect((await deploy()).errors).toBeUndefined();
});
