/**
 * What every bench shares: figures (percentiles, timing, printing), a run wrapper that bounds the run in time and
 * cleans up on any exit, and a stack on bench ports with runners whose containers go when the stack goes.
 * Benches measure and print; they never assert timing.
 */
import Docker from 'dockerode';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LABELS } from '../lib/runner-protocol';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../scripts/demo-product';
import { startStack, type Stack } from '../scripts/stack';
import { waitFor, waitUntil } from '../test/support/wait';

export const ROOT = resolve(__dirname, '..');
export const docker = new Docker();
export { waitFor, waitUntil };

// ---- figures ----

export interface Stats {
  n: number;
  mean: number;
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array. */
export const percentile = (sorted: number[], p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return { n: s.length, mean, min: s[0], p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1] };
}

export const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : 1)} ms`;
export const round = (x: number, digits = 2) => Number(x.toFixed(digits));
export const roundStats = (s: Stats) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, round(v)])) as unknown as Stats;

/** One aligned line: `label  n=500  p50 …  p95 …  p99 …  mean …`. */
export function printStats(label: string, s: Stats) {
  console.log(`${label.padEnd(44)} n=${s.n}  p50 ${ms(s.p50)}  p95 ${ms(s.p95)}  p99 ${ms(s.p99)}  mean ${ms(s.mean)}  (min ${ms(s.min)}, max ${ms(s.max)})`);
}

export const now = () => performance.now();
export const sleep = (millis: number) => new Promise((r) => setTimeout(r, millis));

/** Runs `fn` `count` times one after another and returns each call's duration in ms. */
export async function sequential(count: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = now();
    await fn();
    out.push(now() - t);
  }
  return out;
}

/** Like the runner's forEachLimit (runner/engine.ts): `limit` workers take items in order. */
export async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Calls `check` every `everyMs` (measured start to start) until it returns true; resolves with the ms elapsed since
 * `since` at the first true answer.
 */
export async function pollUntil(what: string, since: number, check: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<number> {
  const deadline = now() + timeoutMs;
  while (now() < deadline) {
    const started = now();
    if (await check()) return now() - since;
    await sleep(Math.max(0, everyMs - (now() - started)));
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
}

// ---- GraphQL over HTTP ----

/** POSTs a GraphQL request; throws on a transport error, a non-200 answer or GraphQL errors. */
export async function post<T = any>(url: string, query: string, variables: Record<string, unknown> | undefined, token: string): Promise<T> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: T; errors?: { message: string }[] };
  if (res.status !== 200 || body.errors?.length) throw new Error(`${url} answered ${res.status}: ${JSON.stringify(body.errors ?? body)}`);
  return body.data as T;
}

// ---- the run ----

export interface Bench {
  /** A fresh temp dir for this run; removed at the end unless the run failed. */
  dir: string;
  /** Registers cleanup; cleanups run last-registered first, on success, failure, time-out and Ctrl-C. */
  defer(fn: () => Promise<unknown> | unknown): void;
}

/**
 * Runs a bench: prints the figures `main` returns as a final JSON line, cleans up, and gives up (cleaning up) after
 * `limitMs`, so a stuck run never outlives its budget.
 */
export function runBench(name: string, limitMs: number, main: (b: Bench) => Promise<Record<string, unknown>>) {
  const dir = mkdtempSync(join(tmpdir(), `fz-bench-${name}-`));
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  let finishing = false;
  const finish = async (code: number, why?: string) => {
    if (finishing) return;
    finishing = true;
    if (why) console.error(`\n${name}: ${why}`);
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        console.error(`cleanup step failed: ${(err as Error).message}`);
      }
    }
    if (code === 0) rmSync(dir, { recursive: true, force: true });
    else console.error(`kept ${dir} (logs) for a look`);
    process.exit(code);
  };
  const timer = setTimeout(() => void finish(1, `gave up after ${limitMs / 1000}s`), limitMs);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void finish(130, `stopped by ${signal}`));

  console.log(`${name}: node ${process.version}, logs in ${dir}`);
  main({ dir, defer: (fn) => cleanups.push(fn) })
    .then((figures) => {
      clearTimeout(timer);
      console.log(JSON.stringify({ bench: name, node: process.version, ...figures }));
      return finish(0);
    })
    .catch((err) => finish(1, `failed: ${err instanceof Error ? err.stack : String(err)}`));
}

// ---- a stack on bench ports, runners, containers ----

export interface BenchStack {
  stack: Stack;
  /** Starts a runner, waits until its host is READY with an engine, and answers the host id. */
  startRunner(name: string, args?: string[]): Promise<string>;
}

/**
 * dynalite + serverless-offline on `httpPort`, `httpPort + 1` (WebSocket), `httpPort + 2` (Lambda) and `storePort`,
 * logging into the bench dir. On cleanup it stops the stack (runners included), then removes the containers of
 * every runner it started, so no runner is left to recreate them.
 */
export async function benchStack(b: Bench, httpPort: number, storePort: number): Promise<BenchStack> {
  const hostIds: string[] = [];
  let stack: Stack | undefined;
  b.defer(async () => {
    await stack?.stop();
    for (const id of hostIds) await removeContainers(`${LABELS.host}=${id}`);
  });
  const t = now();
  stack = await startStack({
    dataDir: b.dir, httpPort, wsPort: httpPort + 1, lambdaPort: httpPort + 2, storePort, output: join(b.dir, 'stack.log'),
  });
  console.log(`stack up on :${httpPort} (store :${storePort}) in ${ms(now() - t)}`);
  const started = stack;
  return {
    stack: started,
    async startRunner(name, args = []) {
      await started.startRunner(name, args);
      const host = await waitFor(`runner ${name} to register`, async () => {
        const data = await post<{ hosts: { id: string; name: string; status: string; engine: unknown }[] }>(
          started.url, '{ hosts { id name status engine { version } } }', undefined, started.adminToken);
        return data.hosts.find((h) => h.name === name && h.status === 'READY' && h.engine);
      }, 60_000, 200);
      hostIds.push(host.id);
      return host.id;
    },
  };
}

export async function defineDemo(stack: Stack) {
  await post(stack.url, DEFINE_PRODUCT, { input: DEMO_PRODUCT }, stack.adminToken);
}

export const DEPLOY = 'mutation Deploy($input: DeployInput!) { deploy(input: $input) { id status } }';

/** Force-removes every container carrying `label` (`key=value`), whatever its state. */
export async function removeContainers(label: string): Promise<number> {
  const list = await docker.listContainers({ all: true, filters: { label: [label] } });
  await forEachLimit(list, 8, async (c) => {
    await docker.getContainer(c.Id).remove({ force: true }).catch((err: { statusCode?: number }) => {
      if (err.statusCode !== 404) throw err;
    });
  });
  return list.length;
}

export const sec = (x: number) => `${(x / 1000).toFixed(2)} s`;

/**
 * The stack's log (stack.log in the bench dir), read from a mark: how many watchdog ticks ran, and whether any
 * Lambda timed out. serverless-offline rebuilds and reloads every handler when any .ts/.js file of the repo changes
 * (serverless-esbuild's watch); a request in flight then hangs until its 29-60 s time-out, and the tick loop with it.
 */
export function stackLog(dir: string) {
  const file = join(dir, 'stack.log');
  const mark = () => { try { return statSync(file).size; } catch { return 0; } };
  const since = (from: number) => {
    const to = mark();
    if (to <= from) return '';
    const buf = Buffer.alloc(to - from);
    const fd = openSync(file, 'r');
    try { readSync(fd, buf, 0, buf.length, from); } finally { closeSync(fd); }
    return buf.toString('utf8');
  };
  const count = (text: string, needle: string) => text.split(needle).length - 1;
  return { mark, window: (from: number) => { const t = since(from); return { ticks: count(t, '(λ: watchdog) RequestId'), timeouts: count(t, '[504] - Lambda timeout') }; } };
}

/** POSTs a GraphQL request with the operator token; an answer without data (e.g. a Lambda time-out's body) is an error too. */
export async function gqlStrict<T>(url: string, token: string, query: string, variables?: Record<string, unknown>): Promise<T> {
  const res = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const text = await res.text();
  let body: { data?: T; errors?: unknown[] } = {};
  try { body = JSON.parse(text); } catch { /* reported below */ }
  if (res.status !== 200 || body.errors?.length || !body.data) throw new Error(`${url} answered ${res.status}: ${text.slice(0, 300)}`);
  return body.data;
}
