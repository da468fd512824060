/**
 * Per-instance data and lifecycle hooks: the named volume an instance keeps its data in on its host (kept across
 * restarts, re-creations and upgrades there, removed when the instance leaves the host or its release is deleted),
 * and the product's hooks: afterStart and beforeStop run in the container, onReplace beside it (a one-off container
 * of the same image, network, address, config files and volume) before an instance that moved here is created.
 * Hooks must be safe to run again: a crash between two steps repeats the step.
 */
import type Docker from 'dockerode';
import { LABELS, type DesiredContainer } from '../lib/runner-protocol';
import { log } from '../lib/log';
import { NETWORK, createOptions, volumeName } from './plan';

const HOOK_TIMEOUT_MS = 120_000;
const statusOf = (err: unknown) => (err as { statusCode?: number } | null)?.statusCode;

/** A hook failed; the message (with the end of its output) is what the operator sees on the instance. */
export class HookProblem extends Error {}

export async function ensureVolume(docker: Docker, hostId: string, d: DesiredContainer): Promise<void> {
  if (!d.dataPath) return;
  // Creating a volume that exists returns it unchanged.
  await docker.createVolume({
    Name: volumeName(d.instanceId),
    Labels: { [LABELS.managed]: 'true', [LABELS.host]: hostId, [LABELS.instance]: d.instanceId, [LABELS.release]: d.releaseId },
  });
}

/** Removes this host's instance volumes whose instance is no longer desired here (moved away, release deleted). */
export async function removeStrayVolumes(docker: Docker, hostId: string, desired: DesiredContainer[], inUse: Set<string>): Promise<boolean> {
  const wanted = new Set(desired.map((d) => d.instanceId));
  const { Volumes } = await docker.listVolumes({ filters: { label: [`${LABELS.host}=${hostId}`] } });
  let removed = false;
  for (const v of Volumes ?? []) {
    const instanceId = v.Labels?.[LABELS.instance] ?? '';
    if (wanted.has(instanceId) || inUse.has(instanceId)) continue;
    try {
      await docker.getVolume(v.Name).remove();
      log.info({ volume: v.Name, instanceId }, 'removed volume of an instance no longer on this host');
      removed = true;
    } catch (err) {
      if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err; // 409: still in use, next pass
    }
  }
  return removed;
}

/** Runs a command in a running container and waits for it; throws HookProblem on a non-zero exit. */
export async function execHook(container: Docker.Container, what: string, command: string[]): Promise<void> {
  const exec = await container.exec({ Cmd: command, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await within(new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  }), `${what} hook`);
  const { ExitCode } = await exec.inspect();
  if (ExitCode !== 0) throw new HookProblem(`${what} hook ${JSON.stringify(command)} exited with ${ExitCode}: ${tail(Buffer.concat(chunks))}`);
}

/**
 * The onReplace hook of an instance that moved here: a one-off container like the instance's (same image, env,
 * network, address, DNS, config files and data volume) runs the hook and is removed; the instance's container is
 * created only after it succeeded.
 */
export async function runOnReplace(docker: Docker, hostId: string, d: DesiredContainer, dns: string | null, configFiles: (c: Docker.Container) => Promise<void>): Promise<void> {
  const command = d.lifecycle?.onReplace;
  if (!d.replaced || !command) return;
  const name = `${d.name}-on-replace`;
  const base = createOptions(hostId, d, dns);
  // Not labelled with the host: the runner's listing of its instances must not mistake it for one.
  const options: Docker.ContainerCreateOptions = {
    ...base, name, Cmd: command, Healthcheck: undefined,
    Labels: { [LABELS.managed]: 'true', [LABELS.hookOf]: d.instanceId },
    HostConfig: { ...base.HostConfig, RestartPolicy: { Name: 'no' }, PortBindings: {} },
    NetworkingConfig: { EndpointsConfig: { [NETWORK]: { ...(d.ip ? { IPAMConfig: { IPv4Address: d.ip } } : {}) } } },
  };
  await docker.getContainer(name).remove({ force: true }).catch((err) => { if (statusOf(err) !== 404) throw err; });
  const container = await docker.createContainer(options);
  try {
    await configFiles(container);
    await container.start();
    log.info({ instanceId: d.instanceId, command }, 'running onReplace hook');
    const { StatusCode } = await within(container.wait() as Promise<{ StatusCode: number }>, 'onReplace hook');
    if (StatusCode !== 0) {
      const logs = await container.logs({ stdout: true, stderr: true, tail: 20 }) as unknown as Buffer;
      throw new HookProblem(`onReplace hook ${JSON.stringify(command)} exited with ${StatusCode}: ${tail(logs)}`);
    }
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
  }
}

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HookProblem(`${what} did not finish within ${HOOK_TIMEOUT_MS / 1000} s`)), HOOK_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The last lines of a hook's output, without Docker's stream framing bytes. */
const tail = (output: Buffer) => output.toString('utf8').replace(/[\x00-\x08\x0e-\x1f]/g, '').trim().split('\n').slice(-3).join(' | ').slice(-400);
