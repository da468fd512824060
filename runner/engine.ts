/**
 * The dockerode adapter: observe our containers and converge them to the desired list. Every step is idempotent
 * and only touches containers labelled with this runner's host id, so a crash between any two steps is repaired
 * by the next pass and several runners can share one engine.
 */
import Docker from 'dockerode';
import { eachLimit } from '../lib/concurrency';
import { readFile, statfs } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { LABELS, type ConfigFileSpec, type DesiredContainer, type EngineInfo, type ObservedContainer } from '../lib/runner-protocol';
import { log } from '../lib/log';
import { ensureBridge, type Bridge } from './network';
import { ensureVolume, execHook, HookProblem, removeStrayVolumes, runOnReplace } from './lifecycle';
import { ImageProblem, type ImagePuller } from './images';
import {
  createOptions,
  ownContainer,
  planInstance,
  strays,
  toObserved,
  withErrors,
  type InstanceError,
  type OwnContainer,
  type PullingInstance,
} from './plan';

const CONCURRENCY = 8;

/**
 * Containers being stopped and removed in the background, by id. A stop lasts as long as the product's grace
 * period (up to minutes): it must not hold up the rest of converge, nor the next sync, and a pass never starts a
 * second removal of the same container.
 */
const removing = new Map<string, Promise<void>>();

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/** `target` is a socket path, `unix:///path` or `tcp://host:port` (DOCKER_HOST syntax). */
export function connectEngine(target: string): Docker {
  const tcp = /^(?:tcp|http):\/\/([^:/]+):(\d+)\/?$/.exec(target);
  if (tcp) return new Docker({ host: tcp[1], port: Number(tcp[2]), protocol: 'http' });
  return new Docker({ socketPath: target.replace(/^unix:\/\//, '') });
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
]);

/** True when the engine itself could not be reached (as opposed to refusing one request). */
export function isEngineUnreachable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && CONNECTION_CODES.has(code);
}

const statusOf = (err: unknown) => (err as { statusCode?: number } | null)?.statusCode;

/** Runs `op`, treating the given HTTP statuses (e.g. 304 already started, 404 already gone) as success. */
async function tolerate(op: Promise<unknown>, ...statuses: number[]): Promise<void> {
  try {
    await op;
  } catch (err) {
    if (!statuses.includes(statusOf(err) ?? 0)) throw err;
  }
}

export interface EngineFacts {
  engine: EngineInfo;
  cpuMillis: number;
  memoryMb: number;
  /** Where the engine keeps images and containers (`docker info` DockerRootDir). */
  rootDir?: string | null;
}

export async function engineFacts(docker: Docker): Promise<EngineFacts> {
  const info = await docker.info();
  return {
    engine: { version: String(info.ServerVersion), os: String(info.OperatingSystem) },
    cpuMillis: Number(info.NCPU) * 1000,
    memoryMb: Math.floor(Number(info.MemTotal) / (1024 * 1024)),
    rootDir: info.DockerRootDir ? String(info.DockerRootDir) : null,
  };
}

/**
 * Pressure on this host, sent with every sync for the daily inspection: the share of the engine's file system in use
 * (statfs of its root dir, when this runner can see it) and of memory the kernel counts as available (MemAvailable in
 * /proc/meminfo, rounded down to 5 %, so the host item is written only when it moves). Null for what cannot be read.
 */
export async function hostPressure(rootDir: string | null): Promise<Pick<EngineInfo, 'diskUsedPercent' | 'memoryAvailablePercent'>> {
  let diskUsedPercent: number | null = null;
  let memoryAvailablePercent: number | null = null;
  if (rootDir) {
    try {
      const fs = await statfs(rootDir);
      // As df counts it: used over what non-root users could use in all.
      const used = fs.blocks - fs.bfree;
      const usable = used + fs.bavail;
      if (usable > 0) diskUsedPercent = Math.ceil((used / usable) * 100);
    } catch { /* the root dir lives on another machine, or is not readable here */ }
  }
  try {
    const meminfo = await readFile('/proc/meminfo', 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1]);
    const total = kb('MemTotal');
    const available = kb('MemAvailable');
    if (total > 0 && available >= 0) memoryAvailablePercent = Math.floor((available / total) * 20) * 5;
  } catch { /* not Linux */ }
  return { diskUsedPercent, memoryAvailablePercent };
}

export async function listOwn(docker: Docker, hostId: string): Promise<OwnContainer[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.host}=${hostId}`] } });
  return list.map(ownContainer);
}

/** Our containers as the sync reports them, with the errors of the last converge and the running pulls attached. */
export async function observe(docker: Docker, hostId: string, errors: InstanceError[] = [], pulling: PullingInstance[] = []): Promise<ObservedContainer[]> {
  const own = await listOwn(docker, hostId);
  const observed: ObservedContainer[] = [];
  await eachLimit(own, CONCURRENCY, async (c) => {
    try {
      observed.push(toObserved(await docker.getContainer(c.id).inspect()));
    } catch (err) {
      if (statusOf(err) !== 404) throw err; // removed since the listing: nothing to report
    }
  });
  observed.sort((a, b) => a.name.localeCompare(b.name) || a.containerId.localeCompare(b.containerId));
  return withErrors(observed, errors, pulling);
}

export interface ConvergeResult {
  /** Whether anything was created, started, stopped or removed: the caller then reports at once. */
  changed: boolean;
  errors: InstanceError[];
}

/** An expected reason an instance cannot be converged, worded for the operator. */
class InstanceProblem extends Error {}

/**
 * An instance whose image is not on the engine yet is left alone (its old container keeps serving) while `images`
 * pulls it. `bridge`: the host's subnet and bridge address from the sync; without it the engine picks the range.
 */
export async function converge(docker: Docker, hostId: string, desired: DesiredContainer[], images: ImagePuller, bridge: Bridge | null = null): Promise<ConvergeResult> {
  let changed = await ensureBridge(docker, bridge);
  const own = await listOwn(docker, hostId);

  // Strays are removed in the background; their engine events (die, destroy) wake the loop to report them gone.
  for (const c of strays(own, desired)) if (removeInBackground(docker, c)) changed = true;
  // Their data goes with them once they are gone: an instance that moved away starts afresh on its new host.
  const stopping = new Set(own.filter((c) => removing.has(c.id)).map((c) => c.instanceId));
  if (await removeStrayVolumes(docker, hostId, desired, stopping)) changed = true;

  const errors: InstanceError[] = [];
  await eachLimit(desired, CONCURRENCY, async (d) => {
    try {
      const mine = own.filter((c) => c.instanceId === d.instanceId);
      if (await convergeInstance(docker, hostId, d, mine, images, bridge?.gateway ?? null)) changed = true;
    } catch (err) {
      if (isEngineUnreachable(err)) throw err;
      const message = err instanceof InstanceProblem || err instanceof ImageProblem || err instanceof HookProblem ? err.message : `engine error: ${(err as Error).message}`;
      log.warn({ instanceId: d.instanceId, name: d.name, err: message }, 'could not converge instance');
      errors.push({ instanceId: d.instanceId, name: d.name, specHash: d.specHash, message });
    }
  });
  images.retain(new Set(desired.map((d) => d.instanceId)));
  return { changed, errors };
}

async function convergeInstance(docker: Docker, hostId: string, d: DesiredContainer, mine: OwnContainer[], images: ImagePuller, dns: string | null): Promise<boolean> {
  const plan = planInstance(d, mine);
  // Before removing the old containers: until the new image is here they keep serving.
  if (plan.create && !(await images.ready(d))) return false;
  await Promise.all(plan.remove.map((c) => removeContainer(docker, c)));

  let container = plan.keep ? docker.getContainer(plan.keep.id) : null;
  if (plan.create) {
    await ensureVolume(docker, hostId, d);
    await runOnReplace(docker, hostId, d, dns, (c) => copyConfigFiles(c, d.configFiles));
    container = await createContainer(docker, hostId, d, dns);
    if (!container) return true;
  }
  if (container && plan.start) {
    // Copied before every start, so a crash between create and start still yields the files.
    await copyConfigFiles(container, d.configFiles);
    await tolerate(container.start(), 304);
    log.info({ instanceId: d.instanceId, name: d.name, containerId: container.id }, 'started container');
    if (d.lifecycle?.afterStart) await execHook(container, 'afterStart', d.lifecycle.afterStart);
  }
  if (container && plan.stop) {
    if (d.lifecycle?.beforeStop) await beforeStop(container, d.lifecycle.beforeStop);
    await tolerate(container.stop(), 304); // the container's own StopSignal and StopTimeout
    log.info({ instanceId: d.instanceId, name: d.name }, 'stopped container');
  }
  return plan.create || plan.start || plan.stop || plan.remove.length > 0;
}

/** Null when the name is held by a container of this very instance that the listing missed: the next pass sees it. */
async function createContainer(docker: Docker, hostId: string, d: DesiredContainer, dns: string | null): Promise<Docker.Container | null> {
  try {
    const container = await docker.createContainer(createOptions(hostId, d, dns));
    log.info({ instanceId: d.instanceId, name: d.name, image: d.image, specHash: d.specHash }, 'created container');
    return container;
  } catch (err) {
    if (statusOf(err) !== 409) throw err;
  }
  const holder = await docker.getContainer(d.name).inspect();
  const labels = holder.Config.Labels ?? {};
  // Ours, or a stray of ours still stopping: the name is free at a later pass.
  if (labels[LABELS.host] === hostId && (labels[LABELS.instance] === d.instanceId || removing.has(holder.Id))) return null;
  throw new InstanceProblem(`container name ${d.name} is taken by container ${holder.Id.slice(0, 12)}, which this runner does not manage`);
}

/** Starts removing `c` unless that is under way already; returns whether it started. */
function removeInBackground(docker: Docker, c: OwnContainer): boolean {
  if (removing.has(c.id)) return false;
  const task = removeContainer(docker, c)
    // The next pass tries again: the container is still listed as ours and still a stray.
    .catch((err) => log.warn({ containerId: c.id, name: c.name, err: (err as Error).message }, 'could not remove container'))
    .finally(() => removing.delete(c.id));
  removing.set(c.id, task);
  return true;
}

/** A failed beforeStop hook is logged, not fatal: the container stops anyway, as it would on a power cut. */
async function beforeStop(container: Docker.Container, command: string[]): Promise<void> {
  try {
    await execHook(container, 'beforeStop', command);
  } catch (err) {
    if (statusOf(err) === 409 || statusOf(err) === 404) return; // not running
    log.warn({ containerId: container.id, err: (err as Error).message }, 'beforeStop hook failed; stopping anyway');
  }
}

async function removeContainer(docker: Docker, c: OwnContainer): Promise<void> {
  const container = docker.getContainer(c.id);
  if (c.beforeStop && c.status === 'running') await beforeStop(container, c.beforeStop);
  // The container's own StopSignal and StopTimeout (Docker's 10 s for containers created without one).
  await tolerate(container.stop(), 304, 404);
  await tolerate(container.remove({ force: true }), 404);
  log.info({ instanceId: c.instanceId, name: c.name, containerId: c.id }, 'removed container');
}

async function copyConfigFiles(container: Docker.Container, files: ConfigFileSpec[]): Promise<void> {
  if (files.length === 0) return;
  await container.putArchive(await tarOf(files), { path: '/' });
}

/** The engine creates missing parent directories while unpacking, so plain file entries suffice. */
async function tarOf(files: ConfigFileSpec[]): Promise<Buffer> {
  const archive = pack();
  for (const f of files) archive.entry({ name: f.path.replace(/^\/+/, ''), mode: 0o644 }, f.content);
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export interface EngineEvent {
  action: string;
  instanceId: string;
}

// exec_* events fire on every healthcheck probe; these are the ones that change what we report.
const WATCHED_EVENTS = ['start', 'die', 'oom', 'stop', 'destroy', 'pause', 'unpause', 'health_status'];

/**
 * Streams engine events about our containers to `onEvent`. `ended` settles when the stream is over (engine
 * restart, or `stop`); the caller decides whether to reconnect.
 */
export async function followEvents(docker: Docker, hostId: string, onEvent: (e: EngineEvent) => void): Promise<{
  ended: Promise<void>;
  stop: () => void;
}> {
  const stream = (await docker.getEvents({
    filters: { type: ['container'], label: [`${LABELS.host}=${hostId}`], event: WATCHED_EVENTS },
  })) as Readable;
  let buffered = '';
  stream.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines.filter((l) => l.trim())) {
      let e: { Action?: string; Actor?: { Attributes?: Record<string, string> } };
      try {
        e = JSON.parse(line);
      } catch {
        e = {}; // still an event: wake up, the sync will look for itself
      }
      onEvent({ action: e.Action ?? '', instanceId: e.Actor?.Attributes?.[LABELS.instance] ?? '' });
    }
  });
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  return { ended, stop: () => stream.destroy() };
}
