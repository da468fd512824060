/**
 * Deploy with dependencies: from an empty platform, `deploy(app, withDependencies: true)` where `app` (demo:1)
 * depends on redis, etcd and nats from the catalog; time until all four releases are RUNNING, against the images'
 * own time to become ready (the same containers started directly with dockerode, the dependencies in parallel, then
 * the app). Runs on an extra Docker engine of its own (test/support/engine.ts), so the releases' fixed container
 * names (fz-redis-0, fz-etcd-0…) cannot meet anyone else's. `node --import tsx bench/deploy-deps.ts`
 */
import type Docker from 'dockerode';
import { execFile, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import YAML from 'yaml';
import type { ConfigFileSpec, DesiredContainer } from '../lib/runner-protocol';
import { LABELS } from '../lib/runner-protocol';
import { NETWORK, createOptions } from '../runner/plan';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../scripts/demo-product';
import { renderTemplates, templateContext } from '../subgraphs/panama/templates';
import { startEngine, type Engine } from '../test/support/engine';
import { benchStack, ms, now, pollUntil, ROOT, round, runBench, sleep, waitUntil, type Bench, gqlStrict, sec, stackLog } from './lib';

const CATALOG = ['redis', 'etcd', 'nats'];
const TIMEOUT_MS = 120_000;
/** A poll slower than this means the API stalled: the figures are marked disturbed. */
const STALL_MS = 3000;

interface CatalogProduct {
  name: string;
  versions: { version: string; image: string }[];
  defaults: {
    replicas: number;
    resources: { cpuMillis: number; memoryMb: number };
    ports: DesiredContainer['ports'];
    env?: { name: string; value: string }[];
    healthcheck: NonNullable<DesiredContainer['healthcheck']>;
  };
  configTemplates?: { path: string; template: string }[];
}

const load = (name: string) => YAML.parse(readFileSync(join(ROOT, 'catalog', `${name}.yaml`), 'utf8')) as CatalogProduct;

const APP = {
  name: 'app',
  description: 'bench: the demo server, depending on redis, etcd and nats',
  versions: [{ version: '1.0.0', image: 'fangzhou/demo:1' }],
  dependencies: CATALOG.map((product) => ({ product, versionRange: '*' })),
  defaults: DEMO_PRODUCT.defaults,
} as const;



// ---- the extra engine ----

/** Unmounts whatever is still mounted under `dir` (deepest first). */
function unmountUnder(dir: string) {
  const points = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]).filter((m) => m && (m === dir || m.startsWith(`${dir}/`)));
  for (const m of points.sort((x, y) => y.length - x.length)) {
    if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
  }
}

/** SIGKILL the processes whose command line names `dir` or a path under it (dockerd, containerd, shims of our engine). */
function killUnder(dir: string) {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (args.some((arg) => arg === dir || arg.startsWith(`${dir}/`) || arg.includes(`=${dir}/`))) process.kill(Number(pid), 'SIGKILL');
    } catch { /* gone */ }
  }
}

/** startEngine, stopped at cleanup; whatever its stop leaves (processes, mounts, files) goes too, also if the bench stops mid-start. */
async function engine(b: Bench, name: string, pool: string, images: string[]): Promise<Engine> {
  let started: Engine | undefined;
  const execRoot = `/tmp/fzx-${name}-${process.pid}`; // as startEngine names it
  b.defer(async () => {
    const dir = started && dirname(started.socket);
    if (started) await Promise.race([started.stop().catch(() => undefined), sleep(30_000)]);
    for (const d of [execRoot, dir].filter((x): x is string => Boolean(x))) {
      killUnder(d);
      unmountUnder(d);
      try {
        rmSync(d, { recursive: true, force: true });
      } catch (err) {
        console.error(`engine ${name}: could not remove ${d}: ${(err as Error).message}`);
      }
    }
  });
  started = await startEngine(name, pool, images);
  return started;
}

// ---- the images' own readiness, with dockerode ----

async function tarOf(files: ConfigFileSpec[]): Promise<Buffer> {
  const archive = pack();
  for (const f of files) archive.entry({ name: f.path.replace(/^\/+/, ''), mode: 0o644 }, f.content);
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The containers the runner would create for `replicas` instances of a catalog product: its image, env, ports,
 * resources, healthcheck and config files rendered from its templates, on the fangzhou network with the instances'
 * DNS names; labelled with a host id of the bench's own.
 */
function plainContainers(p: CatalogProduct, replicas: number, runId: string): DesiredContainer[] {
  const release = { id: `${runId}-${p.name}`, name: `own-${p.name}`, version: p.versions[0].version, replicas, env: p.defaults.env ?? [] };
  const instances = Array.from({ length: replicas }, (_, ordinal) => ({
    id: `${release.id}-${ordinal}`, ordinal, domainName: `${release.name}-${ordinal}.${release.name}.${runId}.bench`,
  }));
  return instances.map((i) => ({
    instanceId: i.id, releaseId: release.id, name: `fzbench-${runId}-${p.name}-${i.ordinal}`, image: p.versions[0].image, specHash: 'bench',
    desiredState: 'RUNNING', env: release.env, ports: p.defaults.ports, ...p.defaults.resources, healthcheck: p.defaults.healthcheck,
    domainName: i.domainName,
    configFiles: renderTemplates(p.configTemplates ?? [], templateContext(release, { name: p.name }, instances, i.ordinal)),
  }));
}

/** create, copy the config files, start; then the engine polled every 100 ms until healthy. Times from `t0`. */
async function startPlain(d: Docker, hostId: string, c: DesiredContainer, t0: number) {
  const container = await d.createContainer(createOptions(hostId, c));
  if (c.configFiles.length) await container.putArchive(await tarOf(c.configFiles), { path: '/' });
  await container.start();
  const started = now() - t0;
  const healthy = await pollUntil(`${c.name} healthy`, t0, async () => (await container.inspect()).State.Health?.Status === 'healthy', 60_000);
  return { started, healthy };
}

/** Every product's containers started at once; per product, the time its last container was healthy. */
async function plainSet(d: Docker, runId: string, shape: Record<string, number>, products: Map<string, CatalogProduct>) {
  const t0 = now();
  const results = await Promise.all(Object.entries(shape).map(async ([name, replicas]) => {
    const times = await Promise.all(plainContainers(products.get(name)!, replicas, runId).map((c) => startPlain(d, runId, c, t0)));
    return [name, Math.max(...times.map((t) => t.healthy))] as const;
  }));
  return Object.fromEntries(results);
}

interface EngineEvent { at: number; action: string; name: string }

/** Collects the engine's events for managed containers (wall-clock ms) until `stop()`. */
async function engineEvents(d: Docker) {
  const events: EngineEvent[] = [];
  const stream = (await d.getEvents({ filters: { type: ['container'], label: [`${LABELS.managed}=true`] } })) as Readable;
  let rest = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const e = JSON.parse(line) as { Action?: string; status?: string; timeNano: number; Actor?: { Attributes?: Record<string, string> } };
      events.push({ at: e.timeNano / 1e6, action: e.Action ?? e.status ?? '', name: e.Actor?.Attributes?.name ?? '' });
    }
  });
  stream.on('error', () => undefined);
  return { events, stop: () => stream.destroy() };
}

function fz(args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', 'cli/fz.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env } },
      (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr }));
  });
}

runBench('deploy-deps', 230_000, async (b) => {
  const products = new Map(CATALOG.map((name) => [name, load(name)]));
  const images = [APP.versions[0].image, ...[...products.values()].map((p) => p.versions[0].image)];
  let t = now();
  const deps = await engine(b, 'deps', '10.233.0.0/16', images);
  console.log(`extra engine up with ${images.join(', ')} in ${sec(now() - t)}`);
  const { stack, startRunner } = await benchStack(b, 3450, 4950);
  const log = stackLog(b.dir);
  const gql = <T = any>(query: string, variables?: Record<string, unknown>) => gqlStrict<T>(stack.url, stack.adminToken, query, variables);
  await startRunner(`bench-deps-${process.pid}`, ['--docker-socket', deps.socket, '--cpu-millis', '8000', '--memory-mb', '8192']);
  await waitUntil('the fangzhou network', async () => (await deps.docker.getNetwork(NETWORK).inspect()) !== undefined, 30_000, 200);

  t = now();
  const applied = await fz(['product', 'apply', ...CATALOG.map((n) => `catalog/${n}.yaml`)], { FZ_API_URL: stack.url, FZ_TOKEN: stack.adminToken });
  if (applied.code !== 0) throw new Error(`fz product apply failed:\n${applied.out}`);
  console.log(`fz product apply catalog/{${CATALOG.join(',')}}.yaml: ${sec(now() - t)}`);
  await gql(DEFINE_PRODUCT, { input: APP });
  const shape = Object.fromEntries(CATALOG.map((n) => [n, products.get(n)!.defaults.replicas]));
  console.log(`catalog defaults: ${CATALOG.map((n) => {
    const p = products.get(n)!;
    return `${n} ${p.versions[0].version} × ${p.defaults.replicas} (healthcheck every ${p.defaults.healthcheck.intervalSeconds} s, start period ${p.defaults.healthcheck.startPeriodSeconds} s)`;
  }).join('; ')}`);

  // ---- the images' own readiness: the same containers with dockerode, the dependencies in parallel ----
  const runId = `own${process.pid}`;
  const clearPlain = () => removeOn(deps.docker, `${LABELS.host}=${runId}`);
  b.defer(clearPlain);
  const oneEach = await plainSet(deps.docker, runId, Object.fromEntries(CATALOG.map((n) => [n, 1])), products);
  await clearPlain();
  const catalogShape = await plainSet(deps.docker, runId, shape, products);
  await clearPlain();
  const appOwn = (await startPlain(deps.docker, runId, {
    instanceId: `${runId}-app-0`, releaseId: `${runId}-app`, name: `fzbench-${runId}-app-0`, image: APP.versions[0].image, specHash: 'bench',
    desiredState: 'RUNNING', env: [], ports: APP.defaults.ports as DesiredContainer['ports'], ...APP.defaults.resources,
    healthcheck: APP.defaults.healthcheck, domainName: `own-app-0.own-app.${runId}.bench`, configFiles: [],
  }, now())).healthy;
  await clearPlain();
  const depsOwn = Math.max(...Object.values(catalogShape));
  const depsOwnOneEach = Math.max(...Object.values(oneEach));
  const chainOwn = depsOwn + appOwn;
  const fmt = (r: Record<string, number>) => Object.entries(r).map(([n, v]) => `${n} ${sec(v)}`).join(', ');
  console.log(`\nimages' own (dockerode: create, config files, start, engine polled every 100 ms until healthy; all at once):`);
  console.log(`  one container of each:             ${fmt(oneEach)} → all ready ${sec(depsOwnOneEach)}`);
  console.log(`  the catalog's replicas (etcd × ${shape.etcd}):  ${fmt(catalogShape)} → all ready ${sec(depsOwn)}`);
  console.log(`  then the app (demo:1):             ${sec(appOwn)} → dependencies + app ${sec(chainOwn)}`);

  // ---- the platform ----
  const m = log.mark();
  await waitUntil('a watchdog tick', async () => log.window(m).ticks > 0, 70_000, 200);
  const watch = await engineEvents(deps.docker);
  b.defer(() => watch.stop());
  const mark = log.mark();
  const wall0 = Date.now();
  const t0 = now();
  let slowest = 0;
  let failedPolls = 0;
  const { deploy } = await gql('mutation { deploy(input: {name: "app", product: "app", withDependencies: true}) { id status } }');
  const mutation = now() - t0;
  const firstRunning: Record<string, number> = {};
  let appPlaced = 0;
  let depsRunning = 0;
  const total = await pollUntil('app, redis, etcd and nats RUNNING', t0, async () => {
    const asked = now();
    const answer = await gql<{ releases: { id: string; name: string; status: string }[] }>('{ releases { id name status } }').catch(() => undefined);
    slowest = Math.max(slowest, now() - asked);
    if (!answer) {
      failedPolls++;
      return false;
    }
    const { releases } = answer;
    const elapsed = now() - t0;
    for (const r of releases) if (r.status === 'RUNNING' && !firstRunning[r.name]) firstRunning[r.name] = elapsed;
    const app = releases.find((r) => r.id === deploy.id);
    if (!appPlaced && app && app.status !== 'PENDING') appPlaced = elapsed;
    if (!depsRunning && CATALOG.every((n) => releases.find((r) => r.name === n)?.status === 'RUNNING')) depsRunning = elapsed;
    return releases.length === 4 && releases.every((r) => r.status === 'RUNNING');
  }, TIMEOUT_MS);
  await sleep(300);
  watch.stop();
  const { ticks, timeouts } = log.window(mark);
  const disturbed = timeouts || failedPolls || slowest > STALL_MS
    ? `the API stalled (${timeouts} Lambda time-outs in stack.log, ${failedPolls} failed polls, slowest poll ${ms(slowest)}): serverless-offline reloading its handlers after a file change in the repo?` : null;

  // From the engine: when each release's containers started and were all healthy (ms since the mutation).
  const rel = (x: number) => x - wall0;
  const containers = (release: string) => (e: EngineEvent) => e.name.startsWith(`fz-${release}-`);
  const last = (release: string, action: string) => Math.max(...watch.events.filter((e) => containers(release)(e) && e.action === action).map((e) => rel(e.at)));
  const first = (release: string, action: string) => Math.min(...watch.events.filter((e) => containers(release)(e) && e.action === action).map((e) => rel(e.at)));
  const perRelease = Object.fromEntries(['redis', 'etcd', 'nats', 'app'].map((n) => [n, {
    firstStart: round(first(n, 'start')), lastStart: round(last(n, 'start')), healthy: round(last(n, 'health_status: healthy')), running: round(firstRunning[n] ?? NaN),
  }]));

  console.log(`\nplatform: deploy(app, withDependencies: true) answered in ${ms(mutation)}; API polled every 100 ms; ${ticks} ticks meanwhile (one every ${sec(total / Math.max(1, ticks))})`);
  for (const [n, r] of Object.entries(perRelease)) {
    console.log(`  ${n.padEnd(5)} containers started ${sec(r.firstStart)}–${sec(r.lastStart)}, all healthy ${sec(r.healthy)}, release RUNNING seen ${sec(r.running)}`);
  }
  console.log(`  dependencies all RUNNING ${sec(depsRunning)}; app placed (left PENDING) ${sec(appPlaced)}; all four RUNNING ${sec(total)}`);
  const depsFirstStart = Math.min(...CATALOG.map((n) => perRelease[n].firstStart));
  const depsHealthy = Math.max(...CATALOG.map((n) => perRelease[n].healthy));
  const a = perRelease.app;
  console.log(`  where the time goes: mutation → first dependency container started ${sec(depsFirstStart)} (runner picks it up, create+start);` +
    ` → all dependencies healthy ${sec(depsHealthy - depsFirstStart)}; → all RUNNING seen ${sec(depsRunning - depsHealthy)};` +
    ` → app placed ${sec(appPlaced - depsRunning)} (reconcile tick); → app started ${sec(a.firstStart - appPlaced)} (runner);` +
    ` → healthy ${sec(a.healthy - a.firstStart)} (the image); → RUNNING seen ${sec(total - a.healthy)}`);
  if (disturbed) console.log(`  DISTURBED: ${disturbed}; these figures are not representative`);
  console.log(`\nplatform ${sec(total)} vs the images' own ${sec(chainOwn)} (dependencies at the catalog's replicas ${sec(depsOwn)} + app ${sec(appOwn)}): overhead ${sec(total - chainOwn)}`);
  console.log(`dependencies alone: platform ${sec(depsRunning)} vs own ${sec(depsOwn)}: overhead ${sec(depsRunning - depsOwn)}` +
    ` (one container of each: own ${sec(depsOwnOneEach)})`);

  return {
    shape,
    ownMs: {
      oneEach: Object.fromEntries(Object.entries(oneEach).map(([k, v]) => [k, round(v)])),
      catalogReplicas: Object.fromEntries(Object.entries(catalogShape).map(([k, v]) => [k, round(v)])),
      app: round(appOwn), dependencies: round(depsOwn), dependenciesOneEach: round(depsOwnOneEach), chain: round(chainOwn),
    },
    platformMs: { mutation: round(mutation), dependenciesRunning: round(depsRunning), appPlaced: round(appPlaced), total: round(total), perRelease },
    overheadMs: { total: round(total - chainOwn), dependencies: round(depsRunning - depsOwn) },
    tickPeriodMs: round(total / Math.max(1, ticks)),
    disturbed,
  };
});

/** Force-removes every container carrying `label` on engine `d`. */
async function removeOn(d: Docker, label: string) {
  const list = await d.listContainers({ all: true, filters: { label: [label] } });
  await Promise.all(list.map((c) => d.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
}
