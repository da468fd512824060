import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { controlPlaneOf, pushImages, startFleet, type Fleet, type FleetHost } from '../support/fleet';
import { waitUntil } from '../support/wait';

/**
 * The fleet proof on three hosts (network namespaces, each with its own empty engine and runner; the control plane
 * and the platform registry on the bridge): the demo product ×3 spreads one per host, each host pulls and runs its
 * own; a host that loses power (runner, engine and containers killed) has its instance run elsewhere; when it comes
 * back, its stale copy is removed and every instance runs exactly once. The same for a host whose link is cut.
 */
let fleet: Fleet;
let stack: Stack;
let dir: string | undefined;

interface HostView { id: string; name: string; status: string }
const hosts = async () => (await stack.graphql<{ hosts: HostView[] }>('{ hosts { id name status } }')).data!.hosts;
const running = async (host: FleetHost, releaseId: string) =>
  (await host.docker.listContainers({ filters: { label: [`fangzhou.release=${releaseId}`] } }).catch(() => []))
    .map((c) => c.Labels['fangzhou.instance']);
const everywhere = async (releaseId: string) => (await Promise.all(fleet.hosts.map((h) => running(h, releaseId)))).flat().sort();

beforeAll(async () => {
  fleet = await startFleet({ hosts: 3, prefix: 'loss' });
  dir = mkdtempSync(join(tmpdir(), 'fz-fleet-loss-'));
  stack = await startStack({
    dataDir: dir, listenHost: fleet.bridgeAddress, httpPort: 3370, wsPort: 3371, lambdaPort: 3372, storePort: 4870,
    registry: { host: fleet.bridgeAddress, port: Number(fleet.registry.split(':')[1]) }, output: join(dir, 'stack.log'),
  });
  await pushImages(stack.registry!, ['fangzhou/demo:1']);
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  fleet.attach(controlPlaneOf(stack));
  for (const host of fleet.hosts) await host.startRunner();
  await waitUntil('three hosts READY', async () => (await hosts()).filter((h) => h.status === 'READY').length === 3, 120_000);
}, 400_000);

afterAll(async () => {
  await stack?.stop();
  await fleet?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a lost host’s instance runs elsewhere; back, its stale copy is removed and nothing is duplicated', async () => {
  const deployed = await stack.graphql<{ deploy: { id: string } }>(
    'mutation { deploy(input: {name: "spread", product: "demo", version: "1.0.0", replicas: 3, placement: {strategy: SPREAD}}) { id } }');
  expect(deployed.errors).toBeUndefined();
  const id = deployed.data!.deploy.id;
  // Each engine started empty: it pulled the image from the platform registry and runs its own instance.
  await waitUntil('one instance running on each host', async () =>
    (await Promise.all(fleet.hosts.map((h) => running(h, id)))).every((list) => list.length === 1), 180_000);

  const [lost, ...others] = fleet.hosts;
  const [lostInstance] = await running(lost, id);
  const lostId = (await hosts()).find((h) => h.name === lost.name)!.id;
  const lostAt = Date.now();
  await lost.killRunner();
  await lost.killEngine();
  // Measured, not asserted (bench-style figure): when the host went DOWN, and when its instance ran elsewhere.
  const down = waitUntil('the lost host DOWN', async () => (await hosts()).find((h) => h.id === lostId)?.status === 'DOWN', 120_000, 100)
    .then(() => Date.now() - lostAt);
  await waitUntil(`${lostInstance} running on another host`, async () =>
    (await Promise.all(others.map((h) => running(h, id)))).flat().includes(lostInstance), 120_000, 100);
  const elsewhere = Date.now() - lostAt;
  process.stdout.write(`fleet host loss: DOWN after ${await down} ms, ${lostInstance} running elsewhere after ${elsewhere} ms\n`);
  expect((await hosts()).find((h) => h.id === lostId)!.status).toBe('DOWN');

  // Power back: Docker restarts the old container (restart policy); the runner finds it moved away and removes it.
  await lost.startEngine();
  await lost.startRunner();
  await waitUntil('the lost host READY again', async () => (await hosts()).find((h) => h.id === lostId)?.status === 'READY', 60_000);
  await waitUntil('no stale copy on the host that came back', async () =>
    (await lost.docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${id}`] } })).length === 0, 60_000);
  expect(await everywhere(id)).toEqual([`${id}-0`, `${id}-1`, `${id}-2`]);
  const alarms = await stack.graphql<{ alarms: { nodes: { kind: string; host: { name: string } | null }[] } }>(
    '{ alarms { nodes { kind host { name } } } }');
  // Only the lost host was ever declared DOWN.
  expect(alarms.data!.alarms.nodes.filter((a) => a.kind === 'HOST_DOWN').map((a) => a.host?.name)).toEqual([lost.name]);
}, 600_000);

test('a host cut off by its link (its notification socket left half-open) is DOWN and its instances run elsewhere; linked again, it keeps no stale copy', async () => {
  const id = (await stack.graphql<{ releases: { id: string; name: string }[] }>('{ releases { id name } }')).data!.releases.find((r) => r.name === 'spread')!.id;
  const counts = await Promise.all(fleet.hosts.map((h) => running(h, id)));
  const cut = fleet.hosts[counts.findIndex((list) => list.length > 0)];
  const cutInstances = await running(cut, id);
  const cutId = (await hosts()).find((h) => h.name === cut.name)!.id;
  const others = fleet.hosts.filter((h) => h !== cut);
  const cutAt = Date.now();
  // No FIN, no RST: the API's end of the runner's socket stays open; only the probe going unanswered tells.
  cut.linkDown();
  try {
    const down = waitUntil('the cut host DOWN', async () => (await hosts()).find((h) => h.id === cutId)?.status === 'DOWN', 120_000, 100)
      .then(() => Date.now() - cutAt);
    await waitUntil(`${cutInstances.join(', ')} running on the hosts still linked`, async () => {
      const elsewhere = (await Promise.all(others.map((h) => running(h, id)))).flat();
      return cutInstances.every((i) => elsewhere.includes(i));
    }, 120_000, 100);
    process.stdout.write(`fleet link cut: DOWN after ${await down} ms, ${cutInstances.join(', ')} running elsewhere after ${Date.now() - cutAt} ms\n`);
  } finally {
    cut.linkUp();
  }
  // Linked again: the runner is heard again and removes the copies that moved away while it could not be told.
  await waitUntil('the cut host READY again', async () => (await hosts()).find((h) => h.id === cutId)?.status === 'READY', 120_000);
  await waitUntil('no stale copy on the host that was cut off', async () => (await running(cut, id)).length === 0, 120_000);
  expect(await everywhere(id)).toEqual([`${id}-0`, `${id}-1`, `${id}-2`]);
  const alarms = await stack.graphql<{ alarms: { nodes: { kind: string; host: { name: string } | null }[] } }>('{ alarms { nodes { kind host { name } } } }');
  expect(alarms.data!.alarms.nodes.filter((a) => a.kind === 'HOST_DOWN').map((a) => a.host?.name).sort()).toEqual([...new Set([fleet.hosts[0].name, cut.name])].sort());
}, 600_000);
