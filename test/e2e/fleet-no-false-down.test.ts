import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { controlPlaneOf, pushImages, startFleet, type Fleet } from '../support/fleet';
import { waitUntil } from '../support/wait';

/**
 * No false HOST_DOWN on a healthy fleet of two hosts (network namespaces with their own engines and runners) under
 * what used to trip the watchdog: PID 1s that take 30 s to stop, a CPU burner driving the load average to 4 and
 * beyond, and a 3 s outage of the API itself.
 */
let fleet: Fleet;
let stack: Stack;
let dir: string | undefined;

const hosts = async () => (await stack.graphql<{ hosts: { name: string; status: string; lastHeartbeatAt: string }[] }>(
  '{ hosts { name status lastHeartbeatAt } }')).data!.hosts;
const hostDownAlarms = async () => (await stack.graphql<{ alarms: { nodes: { kind: string }[] } }>('{ alarms { nodes { kind } } }'))
  .data!.alarms.nodes.filter((a) => a.kind === 'HOST_DOWN');

/** Samples the hosts every 250 ms while `during` runs; resolves with every status seen that was not READY. */
async function watchStatuses(during: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  let watching = true;
  const sampler = (async () => {
    while (watching) {
      for (const h of await hosts().catch(() => [])) if (h.status !== 'READY') seen.push(`${h.name} ${h.status}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  try {
    await during();
  } finally {
    watching = false;
    await sampler;
  }
  return seen;
}

beforeAll(async () => {
  fleet = await startFleet({ hosts: 2, prefix: 'calm' });
  dir = mkdtempSync(join(tmpdir(), 'fz-fleet-calm-'));
  stack = await startStack({
    dataDir: dir, listenHost: fleet.bridgeAddress, httpPort: 3380, wsPort: 3381, lambdaPort: 3382, storePort: 4880,
    registry: { host: fleet.bridgeAddress, port: Number(fleet.registry.split(':')[1]) }, output: join(dir, 'stack.log'),
  });
  await pushImages(stack.registry!, ['fangzhou/demo:1']);
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  fleet.attach(controlPlaneOf(stack));
  for (const host of fleet.hosts) await host.startRunner();
  await waitUntil('both hosts READY', async () => (await hosts()).filter((h) => h.status === 'READY').length === 2, 120_000);
}, 400_000);

afterAll(async () => {
  await stack?.stop();
  await fleet?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('PID 1s that take 30 s to stop do not make their host DOWN', async () => {
  // PID 1 has no handler for SIGUSR1, so the kernel ignores it: each stop waits the full 30 s, then SIGKILL.
  const slow = { ...DEMO_PRODUCT, name: 'slowstop', defaults: { ...DEMO_PRODUCT.defaults, stopSignal: 'SIGUSR1', stopTimeoutSeconds: 30 } };
  expect((await stack.graphql(DEFINE_PRODUCT, { input: slow })).errors).toBeUndefined();
  const deployed = await stack.graphql<{ deploy: { id: string } }>(
    'mutation { deploy(input: {name: "slow", product: "slowstop", version: "1.0.0", replicas: 4}) { id } }');
  const id = deployed.data!.deploy.id;
  const count = async () => (await Promise.all(fleet.hosts.map((h) =>
    h.docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${id}`] } })))).flat().length;
  await waitUntil('4 instances running', async () => (await count()) === 4, 180_000);

  let stoppedAfterMs = 0;
  const notReady = await watchStatuses(async () => {
    const deletedAt = Date.now();
    expect((await stack.graphql('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id })).errors).toBeUndefined();
    await waitUntil('every slow container gone', async () => (await count()) === 0, 120_000, 500);
    stoppedAfterMs = Date.now() - deletedAt;
  });
  // The drill really held PID 1s for their grace period...
  expect(stoppedAfterMs).toBeGreaterThanOrEqual(25_000);
  // ...and the hosts stayed READY throughout.
  expect(notReady).toEqual([]);
  expect(await hostDownAlarms()).toEqual([]);
}, 300_000);

test('a 3 s outage of the API itself marks no host DOWN', async () => {
  const notReady = await watchStatuses(async () => {
    process.kill(stack.apiPid, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 3000));
    process.kill(stack.apiPid, 'SIGCONT');
    const resumedAt = new Date().toISOString();
    // Until both runners' beats after the outage are in, and the watchdog had its chance to judge.
    await waitUntil('both hosts beat after the outage', async () => (await hosts()).every((h) => h.lastHeartbeatAt > resumedAt), 60_000);
    await new Promise((r) => setTimeout(r, 6000)); // FZ_HOST_DOWN_SECONDS (5) and a tick: the window a false DOWN would fall in
  });
  expect(notReady).toEqual([]);
  expect(await hostDownAlarms()).toEqual([]);
}, 120_000);

test('a CPU burner driving the load average to 4 or more marks no host DOWN', async () => {
  const burners: ChildProcess[] = [];
  const load = () => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  let lowest = Infinity;
  try {
    const notReady = await watchStatuses(async () => {
      // Bounded: each burner ends by itself after four minutes even if this test dies.
      for (let i = 0; i < 6; i++) burners.push(spawn('timeout', ['240', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
      await waitUntil('a load average of 4 or more', async () => load() >= 4, 120_000, 1000);
      const loadedAt = new Date().toISOString();
      await waitUntil('both hosts beat while loaded', async () => (await hosts()).every((h) => h.lastHeartbeatAt > loadedAt), 60_000);
      // Two minutes at a load of 4 or more (the drill), sampled every second.
      for (const until = Date.now() + 120_000; Date.now() < until;) {
        lowest = Math.min(lowest, load());
        await new Promise((r) => setTimeout(r, 1000));
      }
    });
    process.stdout.write(`fleet no false down: lowest load average during the two loaded minutes ${lowest}\n`);
    expect(lowest).toBeGreaterThanOrEqual(4);
    expect(notReady).toEqual([]);
    expect(await hostDownAlarms()).toEqual([]);
  } finally {
    // SIGTERM to `timeout` reaches its shell too (SIGKILL would leave the shell spinning without its bound).
    for (const b of burners) if (b.exitCode === null) b.kill('SIGTERM');
  }
}, 420_000);
