/**
 * Time to deploy 20 replicas of the demo product through the platform (API call → the API reports RUNNING), against
 * a plain dockerode loop creating and starting the same 20 containers. `node --import tsx bench/deploy-20.ts`
 */
import type { DesiredContainer } from '../lib/runner-protocol';
import { LABELS } from '../lib/runner-protocol';
import { NETWORK, createOptions } from '../runner/plan';
import { DEMO_PRODUCT } from '../scripts/demo-product';
import { benchStack, DEPLOY, defineDemo, docker, forEachLimit, ms, now, pollUntil, post, removeContainers, round, runBench } from './lib';

const REPLICAS = 20;
/** The runner's CONCURRENCY in runner/engine.ts (its forEachLimit over the desired containers). */
const CONCURRENCY = 8;
const RESOURCES = { cpuMillis: 10, memoryMb: 16 };
const IMAGE = DEMO_PRODUCT.versions[0].image;
const TIMEOUT_MS = 60_000;

const HEALTH_QUERY = 'query($id: ID!) { release(id: $id) { status health { desired running healthy } } }';

/** The container the runner would create for instance `n`, on a host id of the bench's own (never a runner's). */
function desired(n: number, runId: string): DesiredContainer {
  const { ports, healthcheck } = DEMO_PRODUCT.defaults;
  return {
    instanceId: `${runId}-${n}`, releaseId: runId, name: `fzbench-${runId}-${n}`, image: IMAGE, specHash: 'bench',
    desiredState: 'RUNNING', env: [], ports: ports as DesiredContainer['ports'], ...RESOURCES, healthcheck,
    domainName: `plain-${n}.${runId}.bench`, configFiles: [],
  };
}

/** create+start with the runner's options and concurrency; times to all running and to all healthy (polled every 100 ms). */
async function plainLoop(runId: string) {
  const hostLabel = `${LABELS.host}=${runId}`;
  const count = async (filters: Record<string, string[]>) =>
    (await docker.listContainers({ all: true, filters: { label: [hostLabel], ...filters } })).length;
  const t0 = now();
  let startsDone = 0;
  const starts = forEachLimit(Array.from({ length: REPLICAS }, (_, n) => n), CONCURRENCY, async (n) => {
    const container = await docker.createContainer(createOptions(runId, desired(n, runId)));
    await container.start();
  }).then(() => (startsDone = now() - t0));
  const running = await pollUntil('20 plain containers running', t0, async () => (await count({ status: ['running'] })) === REPLICAS, TIMEOUT_MS);
  await starts;
  const healthy = await pollUntil('20 plain containers healthy', t0, async () => (await count({ health: ['healthy'] })) === REPLICAS, TIMEOUT_MS);
  return { startsDone, running, healthy };
}

async function platformDeploy(url: string, token: string) {
  const t0 = now();
  const { deploy } = await post(url, DEPLOY, {
    input: { name: 'bench-deploy20', product: 'demo', version: '1.0.0', replicas: REPLICAS, resources: RESOURCES },
  }, token);
  const mutation = now() - t0;
  let running = 0;
  const status = async () => (await post(url, HEALTH_QUERY, { id: deploy.id }, token)).release;
  const ready = await pollUntil('the release to be RUNNING', t0, async () => {
    const release = await status();
    if (!running && release.health.running === REPLICAS) running = now() - t0;
    return release.status === 'RUNNING';
  }, TIMEOUT_MS);
  return { id: deploy.id as string, mutation, running: running || ready, ready };
}

runBench('deploy-20', 170_000, async (b) => {
  const { stack, startRunner } = await benchStack(b, 3410, 4910);
  await defineDemo(stack);
  await startRunner(`bench-deploy20-${process.pid}`, ['--cpu-millis', '64000', '--memory-mb', '65536']);
  // The runner creates the network at its first sync; the plain loop joins it like the runner's containers do.
  await docker.getNetwork(NETWORK).inspect();

  // Plain loop first, then removed, so that both start from an engine without the other's 20 containers.
  const runId = `plain-${process.pid}`;
  b.defer(() => removeContainers(`${LABELS.host}=${runId}`));
  const plain = await plainLoop(runId);
  await removeContainers(`${LABELS.host}=${runId}`);

  const platform = await platformDeploy(stack.url, stack.adminToken);

  const ratio = round(platform.ready / plain.healthy);
  console.log(`\n${REPLICAS} replicas of ${IMAGE}, ${RESOURCES.cpuMillis} mCPU / ${RESOURCES.memoryMb} MB, healthcheck every ${DEMO_PRODUCT.defaults.healthcheck.intervalSeconds}s; ` +
    `both polled every 100 ms; create+start concurrency ${CONCURRENCY} (= CONCURRENCY in runner/engine.ts)`);
  console.log(`plain dockerode: all create+start calls returned  ${ms(plain.startsDone)}`);
  console.log(`plain dockerode: all 20 running                   ${ms(plain.running)}`);
  console.log(`plain dockerode: all 20 running and healthy       ${ms(plain.healthy)}`);
  console.log(`platform: deploy mutation answered                ${ms(platform.mutation)}`);
  console.log(`platform: API reports 20 running                  ${ms(platform.running)}`);
  console.log(`platform: API reports release RUNNING (healthy)   ${ms(platform.ready)}`);
  console.log(`ratio platform/plain, to RUNNING+healthy: ${ratio}x (target <= 1.5); to running: ${round(platform.running / plain.running)}x`);

  return {
    replicas: REPLICAS,
    concurrency: CONCURRENCY,
    plainMs: { startsDone: round(plain.startsDone), running: round(plain.running), healthy: round(plain.healthy) },
    platformMs: { mutation: round(platform.mutation), running: round(platform.running), ready: round(platform.ready) },
    ratioPlatformToPlain: { healthy: ratio, running: round(platform.running / plain.running) },
  };
});
