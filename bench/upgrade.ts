/**
 * Rolling upgrade of 6 demo instances, 2 at a time (3 batches): total time against 3 × the image's own
 * create+start+healthy time (the platform's overhead is the difference), with a per-batch breakdown from the
 * platform's events and the engine's; then a failed upgrade (3.0.0-unhealthy) and the time from its HEALTH_FAILED
 * event to the release ROLLED_BACK and RUNNING. `node --import tsx bench/upgrade.ts`
 */

import type { Readable } from 'node:stream';
import type { DesiredContainer } from '../lib/runner-protocol';
import { LABELS } from '../lib/runner-protocol';
import { NETWORK, createOptions } from '../runner/plan';
import { DEMO_PRODUCT } from '../scripts/demo-product';
import { benchStack, DEPLOY, defineDemo, docker, ms, now, pollUntil, removeContainers, round, runBench, sleep, waitUntil, gqlStrict, sec, stackLog } from './lib';

const REPLICAS = 6;
const MAX_UNAVAILABLE = 2;
const BATCHES = Math.ceil(REPLICAS / MAX_UNAVAILABLE);
const OWN_SAMPLES = 3;
const V2 = DEMO_PRODUCT.versions.find((v) => v.version === '2.0.0')!.image;
const TIMEOUT_MS = 90_000;

const RELEASE = `query($id: ID!) { release(id: $id) {
  status version
  upgrade { state done total batch message }
  instances { id status { state health } }
} }`;
interface View {
  status: string;
  version: string;
  upgrade: { state: string; done: number; total: number; batch: string[]; message: string | null } | null;
  instances: { id: string; status: { state: string; health: string } | null }[];
}
const UPGRADE = `mutation($id: ID!, $v: String!, $s: UpgradeStrategyInput) {
  upgradeRelease(id: $id, version: $v, strategy: $s) { status upgrade { state } }
}`;
const EVENTS = `query($id: ID!, $kind: String) { events(filter: {releaseId: $id, kind: $kind}, first: 500) {
  nodes { at kind message instance { id } }
} }`;
interface ApiEvent { at: string; kind: string; message: string; instance: { id: string } | null }

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ordinalOf = (instanceId: string) => Number(instanceId.slice(instanceId.lastIndexOf('-') + 1));

/** The container the runner would create for one demo:2 instance, on a host id of the bench's own (never a runner's). */
function desired(runId: string, n: number): DesiredContainer {
  const { ports, healthcheck, resources } = DEMO_PRODUCT.defaults;
  return {
    instanceId: `${runId}-${n}`, releaseId: runId, name: `fzbench-${runId}-${n}`, image: V2, specHash: 'bench',
    desiredState: 'RUNNING', env: [], ports: ports as DesiredContainer['ports'], ...resources, healthcheck,
    domainName: `own-${n}.${runId}.bench`, configFiles: [],
  };
}

/**
 * The image's own time: create + start one demo:2 container with the runner's options (the demo healthcheck:
 * interval 2 s, retries 2; the product's default 100 mCPU / 32 MB, as the release's instances) and poll the engine
 * every 100 ms until it is healthy.
 */
async function ownStartHealthy(runId: string, n: number) {
  const t0 = now();
  const container = await docker.createContainer(createOptions(runId, desired(runId, n)));
  await container.start();
  const started = now() - t0;
  const healthy = await pollUntil('the plain demo:2 container healthy', t0,
    async () => (await container.inspect()).State.Health?.Status === 'healthy', 30_000);
  await container.remove({ force: true });
  return { started, healthy };
}


/** A poll slower than this means the API stalled: the figures are marked disturbed. */
const STALL_MS = 3000;

interface EngineEvent { at: number; action: string; name: string; image: string }

/** Collects the engine's container events for one release (wall-clock ms) until `stop()`. */
async function engineEvents(releaseId: string) {
  const events: EngineEvent[] = [];
  const stream = (await docker.getEvents({ filters: { type: ['container'], label: [`${LABELS.release}=${releaseId}`] } })) as Readable;
  let rest = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const e = JSON.parse(line) as { Action?: string; status?: string; timeNano: number; Actor?: { Attributes?: Record<string, string> } };
      events.push({ at: e.timeNano / 1e6, action: e.Action ?? e.status ?? '', name: e.Actor?.Attributes?.name ?? '', image: e.Actor?.Attributes?.image ?? '' });
    }
  });
  stream.on('error', () => undefined);
  return { events, stop: () => stream.destroy() };
}

runBench('upgrade', 210_000, async (b) => {
  const { stack, startRunner } = await benchStack(b, 3440, 4940);
  const log = stackLog(b.dir);
  let slowest = 0;
  let failedPolls = 0;
  /** One poll: timed; a failed one (the API stalled) counts and answers undefined. */
  const timed = async <T>(f: () => Promise<T>): Promise<T | undefined> => {
    const t = now();
    try {
      return await f();
    } catch {
      failedPolls++;
      return undefined;
    } finally {
      slowest = Math.max(slowest, now() - t);
    }
  };
  /** Waits for a watchdog tick to complete (after a stall the tick loop can hang until an invocation times out). */
  const tickRuns = async () => {
    const m = log.mark();
    await waitUntil('a watchdog tick', async () => log.window(m).ticks > 0, 70_000, 200);
  };
  const disturbance = (mark: number) => {
    const { timeouts } = log.window(mark);
    const why = timeouts || failedPolls || slowest > STALL_MS
      ? `the API stalled (${timeouts} Lambda time-outs in stack.log, ${failedPolls} failed polls, slowest poll ${ms(slowest)}): serverless-offline reloading its handlers after a file change in the repo?` : null;
    if (why) console.log(`  DISTURBED: ${why}; these figures are not representative`);
    slowest = 0;
    failedPolls = 0;
    return why;
  };
  const gql = <T = any>(query: string, variables?: Record<string, unknown>) => gqlStrict<T>(stack.url, stack.adminToken, query, variables);
  await defineDemo(stack);
  await startRunner(`bench-upgrade-${process.pid}`, ['--cpu-millis', '8000', '--memory-mb', '8192']);
  await waitUntil('the fangzhou network', async () => (await docker.getNetwork(NETWORK).inspect()) !== undefined, 30_000, 200);

  const name = `bench-up-${process.pid}`;
  const { deploy } = await gql(DEPLOY, { input: { name, product: 'demo', version: '1.0.0', replicas: REPLICAS } });
  const id = deploy.id as string;
  const view = () => timed(async () => (await gql<{ release: View }>(RELEASE, { id })).release);
  const t = now();
  await pollUntil('v1 RUNNING', t, async () => (await view())?.status === 'RUNNING', 60_000, 200);
  console.log(`${REPLICAS} replicas of demo 1.0.0 RUNNING after ${sec(now() - t)}`);

  // The image's own start+health time, with the 6 v1 containers running (the same background as the upgrade).
  const runId = `own-${process.pid}`;
  b.defer(() => removeContainers(`${LABELS.host}=${runId}`));
  const own: { started: number; healthy: number }[] = [];
  for (let n = 0; n < OWN_SAMPLES; n++) own.push(await ownStartHealthy(runId, n));
  const ownHealthy = median(own.map((o) => o.healthy));
  console.log(`image's own: create+start+healthy of one ${V2} container (healthcheck every ${DEMO_PRODUCT.defaults.healthcheck.intervalSeconds} s, retries ${DEMO_PRODUCT.defaults.healthcheck.retries}):` +
    ` ${own.map((o) => sec(o.healthy)).join(', ')} (median ${sec(ownHealthy)}; create+start calls ${own.map((o) => ms(o.started)).join(', ')})`);

  // ---- v1 → v2, 2 at a time ----
  const watch = await engineEvents(id);
  b.defer(() => watch.stop());
  const batches: string[][] = [];
  let maxDown = 0;
  await tickRuns();
  slowest = 0;
  failedPolls = 0;
  const upMark = log.mark();
  const wall0 = Date.now();
  const t0 = now();
  await gql(UPGRADE, { id, v: '2.0.0', s: { maxUnavailable: MAX_UNAVAILABLE } });
  const total = await pollUntil('the upgrade to 2.0.0 SUCCEEDED and RUNNING', t0, async () => {
    const v = await view();
    if (!v) return false;
    const batch = v.upgrade?.batch ?? [];
    if (batch.length && JSON.stringify(batches[batches.length - 1]) !== JSON.stringify(batch)) batches.push(batch);
    maxDown = Math.max(maxDown, v.instances.filter((i) => !(i.status?.state === 'RUNNING' && i.status.health === 'HEALTHY')).length);
    return v.upgrade?.state === 'SUCCEEDED' && v.status === 'RUNNING';
  }, TIMEOUT_MS);
  await sleep(300); // the last engine events
  watch.stop();
  const upTicks = log.window(upMark).ticks;
  const upDisturbed = disturbance(upMark);

  const lowerBound = BATCHES * ownHealthy;
  console.log(`\nupgrade 1.0.0 → 2.0.0, ${REPLICAS} instances, maxUnavailable ${MAX_UNAVAILABLE} (${BATCHES} batches; at most ${maxDown} seen not serving at once):` +
    ` SUCCEEDED and RUNNING after ${sec(total)} (API polled every 100 ms; ${upTicks} ticks meanwhile, one every ${sec(total / Math.max(1, upTicks))})`);
  console.log(`the images' own lower bound: ${BATCHES} × ${sec(ownHealthy)} = ${sec(lowerBound)}; platform overhead = ${sec(total - lowerBound)} (${round(total / lowerBound)}x)`);

  // Where the time goes, batch by batch: the platform's events (`at`) and the engine's (start, health_status).
  const events = (await gql<{ events: { nodes: ApiEvent[] } }>(EVENTS, { id })).events.nodes.map((e) => ({ ...e, t: Date.parse(e.at) - wall0 }));
  const rel = (x: number) => x - wall0;
  const v2Events = watch.events.filter((e) => e.image === V2);
  const v1Events = watch.events.filter((e) => e.image !== V2);
  const phases = { tickToFirstBatch: 0, dispatch: 0, runnerPickUp: 0, stopOld: 0, createStart: 0, ownStartHealth: 0, gate: 0, betweenBatches: 0, lastPassedToSeen: 0 };
  const breakdown: Record<string, number>[] = [];
  let previousPassed: number | undefined;
  for (const [k, batch] of batches.entries()) {
    const ordinals = batch.map(ordinalOf);
    const names = new Set(ordinals.map((o) => `fz-${name}-${o}`));
    const replaced = Math.min(...events.filter((e) => e.kind === 'INSTANCE_REPLACED' && batch.includes(e.instance?.id ?? '')).map((e) => e.t));
    const started = Math.max(...v2Events.filter((e) => e.action === 'start' && names.has(e.name)).map((e) => rel(e.at)));
    const stopping = Math.min(...v1Events.filter((e) => e.action === 'kill' && names.has(e.name)).map((e) => rel(e.at)));
    const removed = Math.max(...v1Events.filter((e) => e.action === 'destroy' && names.has(e.name)).map((e) => rel(e.at)));
    const healthy = Math.max(...v2Events.filter((e) => e.action === 'health_status: healthy' && names.has(e.name)).map((e) => rel(e.at)));
    const passed = Math.max(...events.filter((e) => e.kind === 'HEALTH_PASSED' && batch.includes(e.instance?.id ?? '')).map((e) => e.t));
    if (k === 0) phases.tickToFirstBatch = replaced;
    else if (previousPassed !== undefined) phases.betweenBatches += replaced - previousPassed;
    phases.dispatch += started - replaced;
    phases.runnerPickUp += stopping - replaced;
    phases.stopOld += removed - stopping;
    phases.createStart += started - removed;
    phases.ownStartHealth += healthy - started;
    phases.gate += passed - healthy;
    previousPassed = passed;
    breakdown.push({ replaced, stopping, removed, started, healthy, passed });
    console.log(`  batch ${k + 1} (${ordinals.map((o) => `#${o}`).join(', ')}): replaced at ${sec(replaced)}, runner stops the old containers ${sec(stopping)} (+${ms(stopping - replaced)}),` +
      ` removed ${sec(removed)} (+${ms(removed - stopping)}), new ones started ${sec(started)} (+${ms(started - removed)}),` +
      ` healthy ${sec(healthy)} (+${ms(healthy - started)}), HEALTH_PASSED ${sec(passed)} (+${ms(passed - healthy)})`);
  }
  if (previousPassed !== undefined) phases.lastPassedToSeen = total - previousPassed;
  console.log(`  sums: mutation → first batch ${sec(phases.tickToFirstBatch)}; replaced → started ${sec(phases.dispatch)}` +
    ` (runner picks it up ${sec(phases.runnerPickUp)}, stops+removes the old ${sec(phases.stopOld)}, create+start ${sec(phases.createStart)});` +
    ` started → healthy (the image's own) ${sec(phases.ownStartHealth)}; healthy → HEALTH_PASSED (runner report, reconcile tick) ${sec(phases.gate)};` +
    ` HEALTH_PASSED → next batch (tick) ${sec(phases.betweenBatches)}; last HEALTH_PASSED → SUCCEEDED+RUNNING seen ${sec(phases.lastPassedToSeen)}`);

  // ---- v2 → v3 (fails its health gate), auto rollback ----
  await tickRuns();
  slowest = 0;
  failedPolls = 0;
  const failMark = log.mark();
  const f0 = now();
  const fWall0 = Date.now();
  await gql(UPGRADE, { id, v: '3.0.0-unhealthy', s: { maxUnavailable: MAX_UNAVAILABLE } });
  let rollingBackSeen = 0;
  const failedTotal = await pollUntil('the failed upgrade ROLLED_BACK and RUNNING', f0, async () => {
    const v = await view();
    if (!v) return false;
    if (!rollingBackSeen && v.upgrade?.state === 'ROLLING_BACK') rollingBackSeen = now() - f0;
    return v.upgrade?.state === 'ROLLED_BACK' && v.status === 'RUNNING';
  }, TIMEOUT_MS);
  const endWall = fWall0 + failedTotal;
  const failed = (await gql<{ events: { nodes: ApiEvent[] } }>(EVENTS, { id, kind: 'HEALTH_FAILED' })).events.nodes;
  const failedAt = Math.min(...failed.map((e) => Date.parse(e.at)).filter((x) => x >= fWall0 - 1000));
  const back = (await gql<{ events: { nodes: ApiEvent[] } }>(EVENTS, { id, kind: 'UPGRADE_ROLLED_BACK' })).events.nodes;
  const rolledBackAt = Math.max(...back.map((e) => Date.parse(e.at)));
  const rollback = endWall - failedAt;
  const final = await gql<{ release: View }>(RELEASE, { id });
  const failTicks = log.window(failMark).ticks;
  const failDisturbed = disturbance(failMark);
  console.log(`\nupgrade 2.0.0 → 3.0.0-unhealthy, maxUnavailable ${MAX_UNAVAILABLE}: HEALTH_FAILED after ${sec(failedAt - fWall0)} ("${failed[0]?.message}"),` +
    ` ROLLING_BACK seen ${sec(rollingBackSeen)}, UPGRADE_ROLLED_BACK event ${sec(rolledBackAt - fWall0)}, ROLLED_BACK and RUNNING seen ${sec(failedTotal)} (now ${final.release.version}; ${failTicks} ticks, one every ${sec(failedTotal / Math.max(1, failTicks))})`);
  console.log(`HEALTH_FAILED → ROLLED_BACK and RUNNING: ${sec(rollback)} (one batch back to 2.0.0; the image's own lower bound ${sec(ownHealthy)}, overhead ${sec(rollback - ownHealthy)})`);

  return {
    replicas: REPLICAS,
    maxUnavailable: MAX_UNAVAILABLE,
    batches: BATCHES,
    ownStartHealthyMs: { samples: own.map((o) => round(o.healthy)), median: round(ownHealthy) },
    upgradeMs: { total: round(total), lowerBound: round(lowerBound), overhead: round(total - lowerBound), maxDown, tickPeriod: round(total / Math.max(1, upTicks)) },
    disturbed: { upgrade: upDisturbed, failedUpgrade: failDisturbed },
    upgradePhasesMs: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, round(v)])),
    batchesMs: breakdown.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round(v)]))),
    failedUpgradeMs: {
      toHealthFailed: round(failedAt - fWall0), healthFailedToRolledBackRunning: round(rollback),
      toRolledBackEvent: round(rolledBackAt - fWall0), total: round(failedTotal), overheadOverOwn: round(rollback - ownHealthy),
    },
  };
});
