/**
 * The runner's decisions as plain functions: which containers to keep, remove, start or stop, what a new
 * container looks like, and how an inspected container is reported. `engine.ts` carries them out with dockerode.
 */
import type Docker from 'dockerode';
import {
  DEFAULT_STOP,
  LABELS,
  type ContainerHealth,
  type ContainerState,
  type DesiredContainer,
  type ObservedContainer,
  type ObservedPort,
  type PullProgress,
} from '../lib/runner-protocol';
import { imageRef } from './images';

/** The user-defined bridge all our containers join, on the host's subnet of the cluster network (network.ts). */
export const NETWORK = 'fangzhou';

/** A container carrying our host label, reduced to what planning needs. */
export interface OwnContainer {
  id: string;
  name: string;
  instanceId: string;
  specHash: string;
  /** Docker's `State.Status`: created, running, paused, restarting, removing, exited, dead. */
  status: string;
  /** The fixed address it was created with on our network, if any. */
  fixedIp: string | null;
  /** Its beforeStop hook, if any. */
  beforeStop: string[] | null;
}

/** The named volume holding an instance's data on its host (per instance: a new release never sees old data). */
export const volumeName = (instanceId: string) => `fz-data-${instanceId}`;

/** Why an instance could not be brought to its desired state; reported on the next sync. */
export interface InstanceError {
  instanceId: string;
  name: string;
  specHash: string;
  message: string;
}

export interface InstancePlan {
  /** The existing container that already has the desired spec, if any. */
  keep: OwnContainer | null;
  /** Duplicates and containers of older specs. */
  remove: OwnContainer[];
  create: boolean;
  start: boolean;
  stop: boolean;
}

const ALIVE = new Set(['running', 'restarting', 'paused']);

export function ownContainer(info: Docker.ContainerInfo): OwnContainer {
  return {
    id: info.Id,
    name: (info.Names[0] ?? '').replace(/^\//, ''),
    instanceId: info.Labels[LABELS.instance] ?? '',
    specHash: info.Labels[LABELS.spec] ?? '',
    status: info.State,
    beforeStop: info.Labels[LABELS.beforeStop] ? JSON.parse(info.Labels[LABELS.beforeStop]) as string[] : null,
    fixedIp: (info.NetworkSettings?.Networks?.[NETWORK] as { IPAMConfig?: { IPv4Address?: string } | null } | undefined)?.IPAMConfig?.IPv4Address || null,
  };
}

export function planInstance(desired: DesiredContainer, containers: OwnContainer[]): InstancePlan {
  // A container on another address than the instance's (it moved here, or predates fixed addresses) is replaced.
  const current = containers.filter(
    (c) => c.specHash === desired.specHash && c.status !== 'dead' && c.status !== 'removing' && (!desired.ip || c.fixedIp === desired.ip),
  );
  // Keep a live one when there are duplicates, so that removing the others never interrupts service.
  const keep = current.find((c) => ALIVE.has(c.status)) ?? current[0] ?? null;
  const remove = containers.filter((c) => c !== keep);
  const wantRunning = desired.desiredState === 'RUNNING';
  if (!keep) return { keep, remove, create: true, start: wantRunning, stop: false };
  const alive = ALIVE.has(keep.status);
  return { keep, remove, create: false, start: wantRunning && !alive, stop: !wantRunning && alive };
}

/** Our containers whose instance is no longer desired on this host. */
export function strays(own: OwnContainer[], desired: DesiredContainer[]): OwnContainer[] {
  const wanted = new Set(desired.map((d) => d.instanceId));
  return own.filter((c) => !wanted.has(c.instanceId));
}

/** Docker's healthcheck `Test`: a bare command runs without a shell. */
export function healthcheckTest(command: string[]): string[] {
  return command[0] === 'CMD' || command[0] === 'CMD-SHELL' ? command : ['CMD', ...command];
}

const seconds = (s: number) => Math.round(s * 1e9);

/** `dns`: the runner's DNS server (its bridge address), which containers resolve every name through. */
export function createOptions(hostId: string, d: DesiredContainer, dns: string | null = null): Docker.ContainerCreateOptions {
  const portKeys = d.ports.map((p) => `${p.containerPort}/${p.protocol}`);
  return {
    name: d.name,
    Image: imageRef(d),
    Env: d.env.map((e) => `${e.name}=${e.value}`),
    Labels: {
      [LABELS.managed]: 'true',
      [LABELS.host]: hostId,
      [LABELS.instance]: d.instanceId,
      [LABELS.release]: d.releaseId,
      [LABELS.spec]: d.specHash,
      ...(d.lifecycle?.beforeStop ? { [LABELS.beforeStop]: JSON.stringify(d.lifecycle.beforeStop) } : {}),
    },
    ExposedPorts: Object.fromEntries(portKeys.map((k) => [k, {}])),
    Healthcheck: d.healthcheck
      ? {
          Test: healthcheckTest(d.healthcheck.command),
          Interval: seconds(d.healthcheck.intervalSeconds),
          Timeout: seconds(d.healthcheck.timeoutSeconds),
          Retries: d.healthcheck.retries,
          StartPeriod: seconds(d.healthcheck.startPeriodSeconds),
        }
      : undefined,
    StopSignal: d.stopSignal ?? DEFAULT_STOP.signal,
    StopTimeout: d.stopTimeoutSeconds ?? DEFAULT_STOP.timeoutSeconds,
    HostConfig: {
      // An empty HostPort lets the engine pick a free ephemeral port; observe reports which one.
      PortBindings: Object.fromEntries(portKeys.map((k) => [k, [{ HostPort: '' }]])),
      Memory: d.memoryMb * 1024 * 1024,
      NanoCpus: d.cpuMillis * 1e6,
      RestartPolicy: { Name: 'unless-stopped' },
      NetworkMode: NETWORK,
      ...(dns ? { Dns: [dns] } : {}),
      ...(d.dataPath ? { Mounts: [{ Type: 'volume' as const, Source: volumeName(d.instanceId), Target: d.dataPath }] } : {}),
    },
    NetworkingConfig: {
      EndpointsConfig: {
        [NETWORK]: {
          Aliases: d.domainName ? [d.domainName] : [],
          ...(d.ip ? { IPAMConfig: { IPv4Address: d.ip } } : {}),
        },
      },
    },
  };
}

const STATES: Record<string, ContainerState> = {
  created: 'CREATED',
  running: 'RUNNING',
  paused: 'RUNNING',
  restarting: 'RESTARTING',
  exited: 'EXITED',
  removing: 'DEAD',
  dead: 'DEAD',
};

const HEALTH: Record<string, ContainerHealth> = {
  starting: 'STARTING',
  healthy: 'HEALTHY',
  unhealthy: 'UNHEALTHY',
};

/** Docker's zero time stands for "never started". */
const timestamp = (t: string | undefined) => (!t || t.startsWith('0001-') ? null : t);

export function toObserved(info: Docker.ContainerInspectInfo): ObservedContainer {
  const labels = info.Config.Labels ?? {};
  const state = STATES[info.State.Status] ?? 'DEAD';
  const bindings = info.NetworkSettings.Ports ?? {};
  const ports = Object.keys(info.Config.ExposedPorts ?? {}).map((key): ObservedPort => {
    const [port, protocol] = key.split('/');
    const hostPort = bindings[key]?.[0]?.HostPort;
    return { containerPort: Number(port), protocol: protocol === 'udp' ? 'udp' : 'tcp', hostPort: hostPort ? Number(hostPort) : null };
  });
  return {
    containerId: info.Id,
    instanceId: labels[LABELS.instance] ?? '',
    specHash: labels[LABELS.spec] ?? '',
    name: info.Name.replace(/^\//, ''),
    state,
    health: HEALTH[info.State.Health?.Status ?? ''] ?? 'NONE',
    restartCount: info.RestartCount,
    exitCode: state === 'EXITED' || state === 'DEAD' ? info.State.ExitCode : null,
    oomKilled: info.State.OOMKilled,
    startedAt: timestamp(info.State.StartedAt),
    ip: info.NetworkSettings.Networks?.[NETWORK]?.IPAddress || null,
    ports,
    error: null,
  };
}

/** An instance that has no container: its image is being pulled, or converging it failed. */
function containerless(e: Omit<InstanceError, 'message'> & { message: string | null }, pull: PullProgress | null): ObservedContainer {
  return {
    containerId: '',
    instanceId: e.instanceId,
    specHash: e.specHash,
    name: e.name,
    state: pull && !e.message ? 'PULLING' : 'MISSING',
    health: 'NONE',
    restartCount: 0,
    exitCode: null,
    oomKilled: false,
    startedAt: null,
    ip: null,
    ports: [],
    error: e.message,
    pull,
  };
}

/** An instance waiting for its image, as converge left it. */
export interface PullingInstance {
  instanceId: string;
  name: string;
  specHash: string;
  progress: PullProgress;
}

/**
 * The observed list with each instance's converge error and pull progress attached, and entries for instances
 * without a container: PULLING while their image comes, MISSING with the error when converging them failed.
 */
export function withErrors(observed: ObservedContainer[], errors: InstanceError[], pulling: PullingInstance[] = []): ObservedContainer[] {
  const errorOf = new Map(errors.map((e) => [e.instanceId, e]));
  const pullOf = new Map(pulling.map((p) => [p.instanceId, p]));
  const seen = new Set(observed.map((o) => o.instanceId));
  const containerlessIds = [...new Set([...errors, ...pulling].map((x) => x.instanceId))].filter((id) => !seen.has(id));
  return [
    ...observed.map((o) => ({ ...o, error: errorOf.get(o.instanceId)?.message ?? null, pull: pullOf.get(o.instanceId)?.progress ?? null })),
    ...containerlessIds.map((id) => containerless(
      errorOf.get(id) ?? { ...pullOf.get(id)!, message: null },
      pullOf.get(id)?.progress ?? null,
    )),
  ];
}
