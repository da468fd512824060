import Docker from 'dockerode';
import type { ChildProcess } from 'node:child_process';
import type { Stack } from '../../scripts/stack';
import { waitUntil } from './wait';

/**
 * Releases on a stack whose runners drive this machine's Docker engine (scripts/stack.ts startRunner), for tests that
 * need one instance running before they start: `deployOne` starts a runner and deploys a release of one instance on
 * it, `deployRunning` deploys another release, and `removeRelease` deletes one and waits for its containers to go.
 */
const docker = new Docker();

export interface DeployOneOptions {
  /** The runner's host name; it registers with `--labels <labels>` and these extra environment variables. */
  host: string;
  labels: string;
  runnerEnv?: Record<string, string>;
  release: string;
  product: string;
  /** The product's newest version when left out. */
  version?: string;
}

export interface DeployedOne {
  runner: ChildProcess;
  releaseId: string;
  instanceId: string;
}

/** Starts a runner, waits until it is a host of the stack, then deploys a release of one instance and waits until it is RUNNING. */
export async function deployOne(stack: Stack, options: DeployOneOptions): Promise<DeployedOne> {
  const runner = await stack.startRunner(options.host, ['--labels', options.labels], options.runnerEnv);
  await waitUntil('the runner', async () => ((await stack.graphql<{ hosts: unknown[] }>('{ hosts { id } }')).data?.hosts.length ?? 0) > 0);
  const { releaseId, instanceIds } = await deployRunning(stack, { name: options.release, product: options.product, version: options.version, replicas: 1 });
  return { runner, releaseId, instanceId: instanceIds[0] };
}

/**
 * Deploys a release and waits until it is RUNNING. A release that is refused throws with the API's errors; one that
 * does not get to RUNNING is removed again before it throws, so a failed set-up leaves no containers behind.
 */
export async function deployRunning(stack: Stack, input: { name: string; product: string; version?: string; replicas?: number }): Promise<{ releaseId: string; instanceIds: string[] }> {
  const deployed = await stack.graphql<{ deploy: { id: string; instances: { id: string }[] } }>(
    'mutation($input: DeployInput!) { deploy(input: $input) { id instances { id } } }', { input });
  if (deployed.errors || !deployed.data) throw new Error(`deploy of ${input.name} refused: ${JSON.stringify(deployed.errors)}`);
  const releaseId = deployed.data.deploy.id;
  try {
    await waitUntil('RUNNING', async () => (await stack.graphql<{ release: { status: string } }>(
      'query($id: ID!) { release(id: $id) { status } }', { id: releaseId })).data!.release.status === 'RUNNING', 90_000);
  } catch (err) {
    await removeRelease(stack, releaseId);
    throw err;
  }
  return { releaseId, instanceIds: deployed.data.deploy.instances.map((i) => i.id) };
}

/** Deletes the release and waits (a minute at most, without failing) until the engine has none of its containers. */
export async function removeRelease(stack: Stack, releaseId: string): Promise<void> {
  await stack.graphql('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: releaseId });
  await waitUntil('containers removed', async () => (await docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${releaseId}`] } })).length === 0, 60_000).catch(() => undefined);
}
