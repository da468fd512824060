/**
 * The runner agent against the real Docker engine and a stand-in for the API: a small HTTP server answering
 * registerHost, runnerHeartbeat and runnerSync the way Ark does, recording every call.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import type { DesiredContainer, SyncRequest } from '../../lib/runner-protocol';
import { hostNetworks } from '../../runner/network';
import { RunnerFatalError, ensureRegistered, startRunner, type Runner, type RunnerConfig } from '../../runner/agent';
import { createApi } from '../../runner/api';
import { DEFAULT_DOCKER_SOCKET, connectEngine, listOwn } from '../../runner/engine';
import { saveState, stateFile } from '../../runner/state';

const repo = path.resolve(__dirname, '../..');
const dockerTarget = process.env.DOCKER_HOST ?? DEFAULT_DOCKER_SOCKET;
const docker = connectEngine(dockerTarget);
const run = randomUUID().slice(0, 8);
const hostIds: string[] = [];
const runners: Runner[] = [];
let stateDir: string;

interface Call {
  at: number;
  operation: 'registerHost' | 'runnerHeartbeat' | 'runnerSync';
  input: Record<string, unknown>;
  authorization: string | undefined;
}

type Answer = { status?: number; body: unknown };

interface StubApi {
  url: string;
  calls: Call[];
  syncs: () => (Call & { input: SyncRequest & Record<string, unknown> })[];
  close: () => Promise<void>;
}

async function stubApi(answer: (call: Call) => Answer): Promise<StubApi> {
  const calls: Call[] = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    req.on('end', () => {
      const { query, variables } = JSON.parse(text) as { query: string; variables: { input: Record<string, unknown> } };
      const call: Call = {
        at: Date.now(),
        operation: query.includes('registerHost') ? 'registerHost' : query.includes('runnerHeartbeat') ? 'runnerHeartbeat' : 'runnerSync',
        input: variables.input,
        authorization: req.headers.authorization,
      };
      calls.push(call);
      const { status = 200, body } = answer(call);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
    calls,
    syncs: () => calls.filter((c) => c.operation === 'runnerSync') as ReturnType<StubApi['syncs']>,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function newHostId(): string {
  const id = `agent-${run}-${hostIds.length}`;
  hostIds.push(id);
  return id;
}

function config(name: string, apiUrl: string, overrides: Partial<RunnerConfig> = {}): RunnerConfig {
  return { name, labels: [{ key: 'zone', value: 'a' }], address: '10.0.0.7', apiUrl, joinToken: 'join-secret', dockerTarget, stateDir, ...overrides };
}

/** One host alone in its cluster network: no routes to program, no records to serve. */
const NETWORK = { subnet: '10.240.0.0/24', gateway: '10.240.0.1', clusterCidr: '10.240.0.0/16', zone: 'fz.internal', serial: 1, routes: [], records: [] };

/** Answers like Ark: registration hands out the host id and a token, beats are accepted, every sync returns `desired`. */
function ark(hostId: string, desired: () => DesiredContainer[]): (call: Call) => Answer {
  return (call) => {
    if (call.operation === 'registerHost') return { body: { data: { registerHost: { host: { id: hostId, name: call.input.name }, hostToken: `token-${hostId}` } } } };
    if (call.operation === 'runnerHeartbeat') {
      return { body: { data: { runnerHeartbeat: { hostId, serverTime: new Date().toISOString(), intervalSeconds: 1, clockSkewSeconds: 0 } } } };
    }
    return { body: { data: { runnerSync: { hostId, pollSeconds: 60, desired: desired(), network: NETWORK } } } };
  };
}

function demo(hostId: string): DesiredContainer {
  return {
    instanceId: `${hostId}-i1`,
    releaseId: `${hostId}-r`,
    name: `fz-${hostId}-1`,
    image: 'fangzhou/demo:1',
    specHash: 'spec-1',
    desiredState: 'RUNNING',
    env: [],
    ports: [{ name: 'http', containerPort: 8080, protocol: 'tcp' }],
    cpuMillis: 100,
    memoryMb: 32,
    healthcheck: null,
    domainName: `demo.${hostId}.fz.internal`,
    configFiles: [],
  };
}

async function until(ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function launch(c: RunnerConfig): Runner {
  const runner = startRunner(c);
  runners.push(runner);
  return runner;
}

beforeAll(() => {
  execFileSync('bash', [path.join(repo, 'scripts/build-images.sh')], { stdio: 'inherit' });
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fz-runner-state-'));
});

afterAll(async () => {
  await Promise.all(runners.map((r) => r.stop()));
  for (const hostId of hostIds) {
    for (const c of await listOwn(docker, hostId)) await docker.getContainer(c.id).remove({ force: true });
  }
  fs.rmSync(stateDir, { recursive: true, force: true });
});

test('writes the registration to a 0600 state file and reuses it on restart without registering again', async () => {
  const hostId = newHostId();
  const api = await stubApi(ark(hostId, () => []));
  const facts = { engine: { version: '20.10', os: 'Debian' }, cpuMillis: 2000, memoryMb: 4096 };
  try {
    const first = await ensureRegistered(createApi(api.url), config('h-state', api.url, { cpuMillis: 1500 }), facts);
    expect(first).toEqual({ hostId, hostToken: `token-${hostId}`, apiUrl: api.url });
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0].authorization).toBeUndefined();
    expect(api.calls[0].input).toEqual({
      joinToken: 'join-secret',
      name: 'h-state',
      address: '10.0.0.7',
      labels: [{ key: 'zone', value: 'a' }],
      capacity: { cpuMillis: 1500, memoryMb: 4096 },
      // The host's own networks, which the API checks the cluster network against.
      networks: hostNetworks(),
    });

    const file = stateFile(stateDir, 'h-state');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(first);

    // A restart: no join token any more, and the API must not see a second registration.
    const again = await ensureRegistered(createApi(api.url), config('h-state', api.url, { joinToken: undefined }), facts);
    expect(again).toEqual(first);
    expect(api.calls).toHaveLength(1);
  } finally {
    await api.close();
  }
});

test('registers, creates the desired container and reports it RUNNING at once, not a poll interval later', async () => {
  const hostId = newHostId();
  const api = await stubApi(ark(hostId, () => [demo(hostId)]));
  const runner = launch(config('h-sync', api.url));
  try {
    await until(() => api.syncs().some((s) => s.input.observed.some((o) => o.state === 'RUNNING')), 15_000);
    const sync = api.syncs()[0];
    expect(sync.authorization).toBe(`Bearer token-${hostId}`);
    expect(sync.input.engine).toEqual({
      version: expect.any(String), os: expect.any(String), cpuMillis: expect.any(Number), memoryMb: expect.any(Number),
      diskUsedPercent: expect.any(Number), memoryAvailablePercent: expect.any(Number),
    });
    // The host's pressure as this machine itself sees it: the engine's file system (as df counts it) and MemAvailable.
    const rootDir = String((await docker.info()).DockerRootDir);
    const fsNow = fs.statfsSync(rootDir);
    const dfUsed = Math.ceil(((fsNow.blocks - fsNow.bfree) / (fsNow.blocks - fsNow.bfree + fsNow.bavail)) * 100);
    expect(Math.abs(sync.input.engine!.diskUsedPercent! - dfUsed)).toBeLessThanOrEqual(2);
    const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)![1]);
    const available = (kb('MemAvailable') / kb('MemTotal')) * 100;
    expect(sync.input.engine!.memoryAvailablePercent! % 5).toBe(0);
    expect(Math.abs(sync.input.engine!.memoryAvailablePercent! - available)).toBeLessThanOrEqual(15);
    const reported = api.syncs().at(-1)!.input.observed;
    expect(reported).toEqual([
      expect.objectContaining({ instanceId: `${hostId}-i1`, name: `fz-${hostId}-1`, specHash: 'spec-1', state: 'RUNNING', error: null }),
    ]);
  } finally {
    await runner.stop();
    await api.close();
  }
  // Stopping the runner leaves the product running.
  const [container] = await listOwn(docker, hostId);
  expect(container.status).toBe('running');
});

test('syncs at once when asked and when an engine event concerns one of its containers', async () => {
  const hostId = newHostId();
  const api = await stubApi(ark(hostId, () => [demo(hostId)]));
  const runner = launch(config('h-wake', api.url));
  try {
    await until(() => api.syncs().some((s) => s.input.observed.some((o) => o.state === 'RUNNING')), 15_000);
    await new Promise((r) => setTimeout(r, 500)); // let the start-up syncs settle
    const settled = api.syncs().length;

    runner.syncNow();
    await until(() => api.syncs().length > settled, 3_000);

    const [container] = await listOwn(docker, hostId);
    const before = api.syncs().length;
    await docker.getContainer(container.id).kill();
    await until(() => api.syncs().length > before, 3_000);
  } finally {
    await runner.stop();
    await api.close();
  }
});

test('gives up with a clear error when the API refuses the host token', async () => {
  const hostId = newHostId();
  const api = await stubApi((call) =>
    call.operation === 'registerHost'
      ? ark(hostId, () => [])(call)
      : { body: { data: null, errors: [{ message: 'host token revoked', extensions: { code: 'UNAUTHENTICATED' } }] } },
  );
  try {
    const runner = launch(config('h-revoked', api.url));
    await expect(runner.done).rejects.toThrow(RunnerFatalError);
    await expect(runner.done).rejects.toThrow(/refused the host token of h-revoked/);
    // Refused at its first heartbeat: it never synced, so it touched no container.
    expect(api.calls.filter((c) => c.operation === 'runnerHeartbeat')).toHaveLength(1);
    expect(api.syncs()).toHaveLength(0);
  } finally {
    await api.close();
  }
});

test('retries with back-off while the API answers 5xx, then syncs', async () => {
  const hostId = newHostId();
  const healthy = ark(hostId, () => []);
  let failures = 2;
  const api = await stubApi((call) =>
    call.operation === 'runnerSync' && failures-- > 0 ? { status: 503, body: { message: 'down' } } : healthy(call),
  );
  const runner = launch(config('h-backoff', api.url));
  try {
    await until(() => api.syncs().length >= 3, 10_000);
    const [a, b, c] = api.syncs().map((s) => s.at);
    expect(b - a).toBeGreaterThanOrEqual(900);
    expect(c - b).toBeGreaterThanOrEqual(1900);
  } finally {
    await runner.stop();
    await api.close();
  }
});

test('gives up, naming the URL and the status, when the URL answers but never with GraphQL (a wrong FZ_API_URL)', async () => {
  const api = await stubApi(() => ({ status: 503, body: { message: 'Service Unavailable' } }));
  try {
    const runner = launch(config('h-wrong-url', api.url, { giveUpAfterSeconds: 2 }));
    await expect(runner.done).rejects.toThrow(RunnerFatalError);
    const message = await runner.done.then(() => '', (err: Error) => err.message);
    expect(message.replace(/ in \d+ s /, ' in N s ')).toBe(
      `${api.url} is not a Fangzhou API (3 answers in N s and none of them GraphQL, the last HTTP 503): check FZ_API_URL, e.g. http://api-host:3000/graphql`);
    // Registration retried with back-off (1 s, 2 s) until then; nothing else was tried.
    expect(api.calls.map((c) => c.operation)).toEqual(['registerHost', 'registerHost', 'registerHost']);
  } finally {
    await api.close();
  }
});

test('a runner with a saved registration gives up the same way: its first heartbeat never gets a GraphQL answer', async () => {
  const api = await stubApi(() => ({ status: 502, body: '<html>Bad Gateway</html>' }));
  saveState(stateFile(stateDir, 'h-wrong-saved'), { hostId: newHostId(), hostToken: 'token-saved', apiUrl: api.url });
  try {
    const runner = launch(config('h-wrong-saved', api.url, { giveUpAfterSeconds: 2 }));
    await expect(runner.done).rejects.toThrow(RunnerFatalError);
    const message = await runner.done.then(() => '', (err: Error) => err.message);
    expect(message).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/graphql is not a Fangzhou API \(\d+ answers in \d+ s and none of them GraphQL, the last HTTP 502\)/);
    expect(new Set(api.calls.map((c) => c.operation))).toEqual(new Set(['runnerHeartbeat']));
  } finally {
    await api.close();
  }
});

test('keeps retrying while the Docker engine is unreachable and still stops cleanly', async () => {
  const api = await stubApi(ark(newHostId(), () => []));
  const runner = launch(config('h-noengine', api.url, { dockerTarget: path.join(stateDir, 'no-docker.sock') }));
  try {
    let settled = false;
    void runner.done.finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 1_500));
    expect(settled).toBe(false);
    expect(api.calls).toHaveLength(0);
    await runner.stop();
    await expect(runner.done).resolves.toBeUndefined();
  } finally {
    await api.close();
  }
});

test('the runner command\'s --ws-url says where push notices come from: it connects there with its host token', async () => {
  const hostId = newHostId();
  const api = await stubApi(ark(hostId, () => []));
  // A WebSocket server of our own on another port than the API's + 1 (the default), noting who connects.
  const inits: { protocol: string; message: { type: string; payload?: { authorization?: string } } }[] = [];
  const notices = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (protocols) => [...protocols][0] ?? false });
  notices.on('connection', (socket) => socket.once('message', (data) => inits.push({ protocol: socket.protocol, message: JSON.parse(String(data)) })));
  await new Promise((resolve) => notices.once('listening', resolve));
  const wsUrl = `ws://127.0.0.1:${(notices.address() as AddressInfo).port}`;
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'runner/main.ts'), '--name', 'h-wsurl', '--state-dir', stateDir,
    '--address', '10.0.0.7', '--ws-url', wsUrl], { cwd: repo, env: { ...process.env, FZ_API_URL: api.url, FZ_JOIN_TOKEN: 'join-secret', FZ_WS_URL: '' }, stdio: 'ignore' });
  try {
    await until(() => inits.length > 0, 60_000);
    expect(inits[0]).toEqual({ protocol: 'graphql-transport-ws', message: { type: 'connection_init', payload: { authorization: `Bearer token-${hostId}` } } });
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
    await new Promise((resolve) => notices.close(resolve));
    await api.close();
  }
}, 90_000);
