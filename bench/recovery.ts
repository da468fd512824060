/**
 * Host-loss recovery: two extra Docker engines (hosts A and B), a runner each; 4 demo replicas all on A; runner A
 * and engine A are killed at t0 and the API is polled every 100 ms for host A DOWN (detection) and for every
 * instance RUNNING and HEALTHY on host B (total). 3 runs, A brought back in between.
 * `node --import tsx bench/recovery.ts`
 */
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { startEngine, type Engine } from '../test/support/engine';
import { DEPLOY, defineDemo, benchStack, ms, now, pollUntil, post, round, runBench, sleep, waitFor, waitUntil, type Bench, sec, stackLog } from './lib';

const REPLICAS = 4;
const RUNS = 3;
const HOST_ARGS = ['--labels', 'zone=x', '--cpu-millis', '4000', '--memory-mb', '4096'];
/** What the stack and the runners run with (the stack's children inherit this environment). */
const DEFAULTS = {
  hostDownSeconds: Number(process.env.FZ_HOST_DOWN_SECONDS || 5),
  tickSeconds: Number(process.env.FZ_TICK_SECONDS || 1),
  runnerPollSeconds: Number(process.env.FZ_RUNNER_POLL_SECONDS || 2),
};

const STATE = `query($id: ID!) {
  hosts { id name status lastHeartbeatAt }
  release(id: $id) { status instances { id host { id } status { host { id } state health } } }
}`;
interface State {
  hosts: { id: string; name: string; status: string; lastHeartbeatAt: string | null }[];
  release: { status: string; instances: { id: string; host: { id: string } | null; status: { host: { id: string }; state: string; health: string } | null }[] } | null;
}

/** A poll slower than this means the API stalled (e.g. serverless-offline reloading the handlers): the run is void. */
const STALL_MS = 3000;
const MAX_ATTEMPTS = 5;
/** No new attempt starts after this (the bench must end within runBench's limit). */
const ATTEMPTS_UNTIL_MS = 150_000;

interface Run { detection: number; moved: number; running: number; total: number; heartbeatAgeAtKill: number; tickPeriod: number; backReady: number; staleRemoved: number }

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Unmounts whatever is still mounted under `dir` (deepest first): a killed engine leaves netns and overlay mounts. */
function unmountUnder(dir: string) {
  const points = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1]).filter((m) => m && (m === dir || m.startsWith(`${dir}/`)));
  for (const m of points.sort((x, y) => y.length - x.length)) {
    if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
  }
}

/** SIGKILL the processes whose command line names `dir` or a path under it (dockerd, containerd, shims of an engine of ours). */
function killUnder(dir: string) {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (args.some((arg) => arg === dir || arg.startsWith(`${dir}/`) || arg.includes(`=${dir}/`))) process.kill(Number(pid), 'SIGKILL');
    } catch { /* gone */ }
  }
}

/**
 * An extra engine (startEngine), cleaned up at the end whatever state it is in: a killed engine is started again
 * first so that it removes its containers itself; then, in any case, what is left under its exec root and data dir
 * (processes, mounts, files) goes. Also when the bench is stopped while dockerd is still starting.
 */
async function engine(b: Bench, name: string, pool: string): Promise<{ engine: Engine; down: { value: boolean } }> {
  let started: Engine | undefined;
  const down = { value: false };
  const execRoot = `/tmp/fzx-${name}-${process.pid}`; // as startEngine names it
  b.defer(async () => {
    if (started) {
      const e = started;
      const dir = dirname(e.socket);
      const bounded = (p: Promise<unknown>, millis: number) => Promise.race([p, sleep(millis)]);
      let trouble = '';
      try {
        if (down.value) await bounded(e.restart(), 20_000);
        await bounded(e.stop(), 30_000);
      } catch (err) {
        trouble = (err as Error).message; // e.g. EBUSY: the restarted engine's data root is still mounted; cleared below
      }
      killUnder(execRoot);
      killUnder(dir);
      unmountUnder(execRoot);
      unmountUnder(dir);
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch (err) {
        console.error(`engine ${name}: could not remove ${dir}: ${(err as Error).message}${trouble ? ` (stop: ${trouble})` : ''}`);
      }
    } else {
      killUnder(execRoot);
      unmountUnder(execRoot);
    }
    rmSync(execRoot, { recursive: true, force: true });
  });
  started = await startEngine(name, pool, ['fangzhou/demo:1']);
  return { engine: started, down };
}

runBench('recovery', 230_000, async (b) => {
  const t = now();
  const [{ engine: engineA, down: downA }, { engine: engineB }] = await Promise.all([engine(b, 'reca', '10.231.0.0/16'), engine(b, 'recb', '10.232.0.0/16')]);
  console.log(`engines A and B up (demo:1 loaded) in ${ms(now() - t)}`);
  const { stack } = await benchStack(b, 3430, 4930);
  const log = stackLog(b.dir);
  const gql = <T = any>(query: string, variables?: Record<string, unknown>) => post<T>(stack.url, query, variables, stack.adminToken);
  /** Like gql, but an answer without data is an error too (with what came back). */
  const strictGql = async <T>(query: string, variables?: Record<string, unknown>): Promise<T> => {
    const res = await fetch(stack.url, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.adminToken}` },
      body: JSON.stringify({ query, variables }),
    });
    const text = await res.text();
    let body: { data?: T; errors?: unknown[] } = {};
    try { body = JSON.parse(text); } catch { /* reported below */ }
    if (res.status !== 200 || body.errors?.length || !body.data) throw new Error(`${res.status}: ${text.slice(0, 400)}`);
    return body.data;
  };
  await defineDemo(stack);

  const nameA = `rec-a-${process.pid}`;
  const nameB = `rec-b-${process.pid}`;
  const argsA = [...HOST_ARGS, '--docker-socket', engineA.socket];
  let runnerA: ChildProcess = await stack.startRunner(nameA, argsA);
  await stack.startRunner(nameB, [...HOST_ARGS, '--docker-socket', engineB.socket]);
  const hosts = async () => (await gql<State>('{ hosts { id name status lastHeartbeatAt } }')).hosts;
  const [a, bHost] = await waitFor('both hosts READY', async () => {
    const list = await hosts();
    const ha = list.find((h) => h.name === nameA && h.status === 'READY');
    const hb = list.find((h) => h.name === nameB && h.status === 'READY');
    return ha && hb && [ha, hb];
  }, 60_000, 200);

  console.log(`\n${REPLICAS} demo replicas (fangzhou/demo:1, healthcheck every 2 s) on host A; runner A (SIGKILL) and engine A (dockerd, containerd, shims: SIGKILL) killed at t0;` +
    ` API polled every 100 ms. In force: FZ_HOST_DOWN_SECONDS=${DEFAULTS.hostDownSeconds}, tick ${DEFAULTS.tickSeconds} s` +
    ` (watchdog, reconcile, publish one after another, then the pause), runner poll ${DEFAULTS.runnerPollSeconds} s.`);
  const runs: Run[] = [];
  const void_: { attempt: number; why: string }[] = [];
  const left = async (e: Engine, id: string) => (await e.docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${id}`] } })).length;

  /** Deletes the release, brings A back if it is down (engine, then runner) and waits until both engines are clean. */
  async function reset(id: string | undefined) {
    const back = now();
    if (id) await gql('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id }).catch(() => undefined);
    if (downA.value) {
      await engineA.restart();
      downA.value = false;
      runnerA = await stack.startRunner(nameA, argsA);
    }
    await waitUntil('host A READY again', async () => (await hosts()).find((h) => h.id === a.id)?.status === 'READY', 60_000, 200);
    const backReady = now() - back;
    if (id) await waitUntil('no stale copies on engine A', async () => (await left(engineA, id)) === 0, 60_000, 200);
    const staleRemoved = now() - back;
    if (id) await waitUntil('the release gone from engine B', async () => (await left(engineB, id)) === 0, 60_000, 200);
    return { backReady, staleRemoved };
  }

  /** One measured run; throws when it cannot be measured (the figures it prints then are not kept). */
  async function measure(attempt: number, setId: (id: string) => void): Promise<Omit<Run, 'backReady' | 'staleRemoved'>> {
    // Start only while the tick runs (after a stall it can hang on an invocation until that times out).
    const before = log.mark();
    await waitUntil('a watchdog tick', async () => log.window(before).ticks > 0, 70_000, 200);
    const from = log.mark();
    // Everything on A: B is cordoned while the deploy places the instances, then free again.
    await gql('mutation($id: ID!) { cordonHost(id: $id) { id } }', { id: bHost.id });
    const { deploy } = await gql(DEPLOY, { input: { name: `rec-${attempt}`, product: 'demo', version: '1.0.0', replicas: REPLICAS } })
      .finally(() => gql('mutation($id: ID!) { uncordonHost(id: $id) { id } }', { id: bHost.id }));
    const id = deploy.id as string;
    setId(id);
    const state = () => strictGql<State>(STATE, { id });
    let downBeforeKill = false;
    await waitUntil(`rec-${attempt} RUNNING on host A`, async () => {
      const s = await state();
      downBeforeKill = s.hosts.find((h) => h.id === a.id)?.status === 'DOWN';
      return downBeforeKill || (s.release?.status === 'RUNNING' && s.release.instances.every((i) => i.host?.id === a.id));
    }, 60_000, 200);
    if (downBeforeKill) throw new Error('host A was marked DOWN before the kill (its runner could not sync: the API stalled?)');

    const lastBeat = (await hosts()).find((h) => h.id === a.id)!.lastHeartbeatAt;
    const tickMark = log.mark();
    const t0 = now();
    const wall0 = Date.now();
    runnerA.kill('SIGKILL');
    downA.value = true;
    await engineA.kill();
    const killed = now() - t0;

    const polls = { failed: 0, slowest: 0, firstError: '' };
    let detection = 0;
    let moved = 0;
    let running = 0;
    const onB = (s: State) => s.release!.instances.filter((i) => i.host?.id === bHost.id);
    const total = await pollUntil(`rec-${attempt}: every instance RUNNING on host B`, t0, async () => {
      const asked = now();
      const s = await state().catch((err: Error) => {
        if (!polls.failed++) polls.firstError = err.message.slice(0, 200);
        return undefined;
      });
      polls.slowest = Math.max(polls.slowest, now() - asked);
      if (!s?.release) return false;
      const elapsed = now() - t0;
      if (!detection && s.hosts.find((h) => h.id === a.id)?.status === 'DOWN') detection = elapsed;
      const there = onB(s);
      if (!moved && there.length === REPLICAS) moved = elapsed;
      if (!running && there.length === REPLICAS && there.every((i) => i.status?.host.id === bHost.id && i.status.state === 'RUNNING')) running = elapsed;
      return s.release.status === 'RUNNING' && there.length === REPLICAS
        && there.every((i) => i.status?.host.id === bHost.id && i.status.state === 'RUNNING' && i.status.health === 'HEALTHY');
    }, 60_000);
    const heartbeatAgeAtKill = lastBeat ? wall0 - Date.parse(lastBeat) : NaN;
    const { ticks } = log.window(tickMark);
    const tickPeriod = total / Math.max(1, ticks);
    console.log(`attempt ${attempt}: killed in ${ms(killed)} (last heartbeat ${ms(heartbeatAgeAtKill)} before t0); host A DOWN after ${sec(detection)};` +
      ` all ${REPLICAS} placed on B ${sec(moved)}, running ${sec(running)}, RUNNING+HEALTHY (total) ${sec(total)};` +
      ` ${ticks} watchdog ticks meanwhile (one every ${sec(tickPeriod)}); slowest poll ${ms(polls.slowest)}`);
    const stalled = log.window(from).timeouts;
    if (polls.failed || polls.slowest > STALL_MS || stalled) {
      throw new Error(`the API stalled while measuring (${stalled} Lambda time-outs in stack.log, slowest poll ${ms(polls.slowest)}, ${polls.failed} failed polls` +
        `${polls.firstError ? `: ${polls.firstError}` : ''}); serverless-offline reloading its handlers after a file change in the repo?`);
    }
    return { detection, moved, running, total, heartbeatAgeAtKill, tickPeriod };
  }

  const started = now();
  for (let attempt = 1; runs.length < RUNS && attempt <= MAX_ATTEMPTS && now() - started < ATTEMPTS_UNTIL_MS; attempt++) {
    let id: string | undefined;
    let figures: Omit<Run, 'backReady' | 'staleRemoved'> | undefined;
    try {
      figures = await measure(attempt, (x) => (id = x));
    } catch (err) {
      const why = (err as Error).message.split('\n')[0];
      void_.push({ attempt, why });
      console.log(`attempt ${attempt} void: ${why}`);
    }
    // Bring A back (Docker restarts its old containers, its runner removes them: they moved away), and delete the
    // release so that B starts the next run empty.
    const back = await reset(id);
    if (figures) {
      console.log(`        A back: engine + runner READY after ${sec(back.backReady)}, its stale copies removed after ${sec(back.staleRemoved)}`);
      runs.push({ ...figures, ...back });
    }
  }
  if (!runs.length) throw new Error(`no run could be measured: ${void_.map((v) => v.why).join('; ')}`);

  const med = {
    detection: median(runs.map((r) => r.detection)),
    moved: median(runs.map((r) => r.moved)),
    running: median(runs.map((r) => r.running)),
    total: median(runs.map((r) => r.total)),
    tickPeriod: median(runs.map((r) => r.tickPeriod)),
  };
  console.log(`\nmedian of ${runs.length} runs${void_.length ? ` (${void_.length} void attempts not counted)` : ''}: detection (host A DOWN) ${sec(med.detection)}; placed on B ${sec(med.moved)}; running on B ${sec(med.running)};` +
    ` total (RUNNING+HEALTHY on B) ${sec(med.total)} (target <= 10 s); a watchdog tick every ${sec(med.tickPeriod)}`);
  console.log(`expected detection: ${DEFAULTS.hostDownSeconds} s after the last heartbeat (0-${DEFAULTS.runnerPollSeconds} s before the kill),` +
    ` seen at the next watchdog tick (the ${DEFAULTS.tickSeconds} s pause + the three functions' own time); then a runner poll (<= ${DEFAULTS.runnerPollSeconds} s),` +
    ' create+start, and the first healthcheck probe (2 s after start)');

  return {
    replicas: REPLICAS,
    runs: runs.length,
    voidAttempts: void_,
    defaults: DEFAULTS,
    perRunMs: runs.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round(v)]))),
    medianMs: Object.fromEntries(Object.entries(med).map(([k, v]) => [k, round(v)])),
  };
});
