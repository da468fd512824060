/**
 * converge/observe against the real Docker engine. Every test uses its own random host id, so it only ever
 * sees its own containers, whatever else runs on the engine.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { LABELS, type DesiredContainer, type ObservedContainer } from '../../lib/runner-protocol';
import { DEFAULT_DOCKER_SOCKET, connectEngine, converge, listOwn, observe } from '../../runner/engine';
import { ImagePuller } from '../../runner/images';
import { createOptions } from '../../runner/plan';
import { waitUntil } from '../support/wait';

const repo = path.resolve(__dirname, '../..');
const docker = connectEngine(process.env.DOCKER_HOST ?? DEFAULT_DOCKER_SOCKET);
// No registry in these desired containers: the runner uses the images the engine has (built locally).
const images = new ImagePuller(docker, () => undefined);
const run = randomUUID().slice(0, 8);
const hostIds: string[] = [];
const foreignContainers: string[] = [];

function newHost(): string {
  const id = `test-${run}-${hostIds.length}`;
  hostIds.push(id);
  return id;
}

function desired(hostId: string, n: number, overrides: Partial<DesiredContainer> = {}): DesiredContainer {
  return {
    instanceId: `${hostId}-i${n}`,
    releaseId: `${hostId}-r`,
    name: `fz-${hostId}-${n}`,
    image: 'fangzhou/demo:1',
    imageDigest: null,
    registry: null,
    specHash: 'spec-1',
    desiredState: 'RUNNING',
    env: [{ name: 'GREETING', value: `hello ${n}` }],
    ports: [{ name: 'http', containerPort: 8080, protocol: 'tcp' }],
    cpuMillis: 250,
    memoryMb: 64,
    healthcheck: null,
    domainName: `demo-${n}.${hostId}.fz.internal`,
    configFiles: [],
    ...overrides,
  };
}

const byInstance = (observed: ObservedContainer[]) => new Map(observed.map((o) => [o.instanceId, o]));

async function eventually<T>(probe: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 250));
  }
}

const dockerCli = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8' });

beforeAll(() => {
  execFileSync('bash', [path.join(repo, 'scripts/build-images.sh')], { stdio: 'inherit' });
});

afterAll(async () => {
  for (const hostId of hostIds) {
    for (const c of await listOwn(docker, hostId)) await docker.getContainer(c.id).remove({ force: true });
  }
  for (const id of foreignContainers) await docker.getContainer(id).remove({ force: true });
});

test('creates one container per desired instance with our labels, limits, env and alias, and reports them RUNNING', async () => {
  const hostId = newHost();
  const want = [1, 2, 3].map((n) => desired(hostId, n));

  const result = await converge(docker, hostId, want, images);
  expect(result).toEqual({ changed: true, errors: [] });

  const observed = byInstance(await observe(docker, hostId));
  expect(observed.size).toBe(3);
  for (const d of want) {
    const o = observed.get(d.instanceId)!;
    expect(o).toMatchObject({ name: d.name, specHash: 'spec-1', state: 'RUNNING', health: 'NONE', error: null, exitCode: null });
    expect(o.ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(o.ports).toEqual([{ containerPort: 8080, protocol: 'tcp', hostPort: expect.any(Number) }]);

    const info = await docker.getContainer(o.containerId).inspect();
    expect(info.Config.Labels).toMatchObject({
      [LABELS.managed]: 'true',
      [LABELS.host]: hostId,
      [LABELS.instance]: d.instanceId,
      [LABELS.release]: d.releaseId,
      [LABELS.spec]: 'spec-1',
    });
    expect(info.Config.Env).toContain(`GREETING=${d.env[0].value}`);
    expect(info.HostConfig).toMatchObject({ Memory: 64 * 1024 * 1024, NanoCpus: 250_000_000, RestartPolicy: { Name: 'unless-stopped' } });
    expect(info.NetworkSettings.Networks.fangzhou.Aliases).toContain(d.domainName);
  }

  const page = await fetch(`http://127.0.0.1:${observed.get(want[0].instanceId)!.ports[0].hostPort}/`);
  expect(await page.text()).toContain('fangzhou demo version 1');
});

test('a second converge with the same desired list changes nothing', async () => {
  const hostId = newHost();
  const want = [1, 2].map((n) => desired(hostId, n));
  await converge(docker, hostId, want, images);
  const before = (await observe(docker, hostId)).map((o) => o.containerId);

  expect(await converge(docker, hostId, want, images)).toEqual({ changed: false, errors: [] });
  expect((await observe(docker, hostId)).map((o) => o.containerId)).toEqual(before);
});

test('recreates only the instance whose spec changed', async () => {
  const hostId = newHost();
  const want = [1, 2].map((n) => desired(hostId, n));
  await converge(docker, hostId, want, images);
  const before = byInstance(await observe(docker, hostId));

  want[1] = { ...want[1], image: 'fangzhou/demo:2', specHash: 'spec-2' };
  expect((await converge(docker, hostId, want, images)).changed).toBe(true);

  const after = byInstance(await observe(docker, hostId));
  expect(after.size).toBe(2);
  expect(after.get(want[0].instanceId)!.containerId).toBe(before.get(want[0].instanceId)!.containerId);
  const upgraded = after.get(want[1].instanceId)!;
  expect(upgraded.containerId).not.toBe(before.get(want[1].instanceId)!.containerId);
  expect(upgraded).toMatchObject({ specHash: 'spec-2', state: 'RUNNING', name: want[1].name });
});

test('removes the container of an instance that is no longer desired', async () => {
  const hostId = newHost();
  const want = [1, 2].map((n) => desired(hostId, n));
  await converge(docker, hostId, want, images);

  expect((await converge(docker, hostId, [want[0]], images)).changed).toBe(true);
  // Strays stop and go in the background (a sync never waits for a product's stop grace).
  await waitUntil('the stray container is removed', async () => {
    const ids = (await observe(docker, hostId)).map((o) => o.instanceId);
    return ids.length === 1 && ids[0] === want[0].instanceId ? true : ids.join(',');
  }, 30_000);
});

test('never touches containers of another host id', async () => {
  const other = newHost();
  const mine = newHost();
  await converge(docker, other, [desired(other, 1)], images);
  const theirs = await observe(docker, other);

  await converge(docker, mine, [], images);
  await converge(docker, mine, [desired(mine, 1)], images);

  expect(await observe(docker, mine)).toHaveLength(1);
  expect(await observe(docker, other)).toEqual(theirs);
});

test('removes a duplicate container of an instance and keeps the running one', async () => {
  const hostId = newHost();
  const d = desired(hostId, 1);
  await converge(docker, hostId, [d], images);
  const [original] = await observe(docker, hostId);
  await docker.createContainer({ ...createOptions(hostId, d), name: `${d.name}-dup` });
  expect(await listOwn(docker, hostId)).toHaveLength(2);

  expect((await converge(docker, hostId, [d], images)).changed).toBe(true);
  expect((await observe(docker, hostId)).map((o) => o.containerId)).toEqual([original.containerId]);
});

test('reports a missing image as an error on that instance and still converges the others', async () => {
  const hostId = newHost();
  const good = desired(hostId, 1);
  const broken = desired(hostId, 2, { image: 'fangzhou/demo:9' });

  const result = await converge(docker, hostId, [good, broken], images);
  expect(result.errors).toEqual([
    { instanceId: broken.instanceId, name: broken.name, specHash: 'spec-1', message: 'image fangzhou/demo:9 is not present on this host' },
  ]);

  const observed = byInstance(await observe(docker, hostId, result.errors));
  expect(observed.get(good.instanceId)).toMatchObject({ state: 'RUNNING', error: null });
  expect(observed.get(broken.instanceId)).toMatchObject({
    containerId: '',
    state: 'MISSING',
    name: broken.name,
    error: 'image fangzhou/demo:9 is not present on this host',
  });
});

test('keeps the old container serving when the image of its new spec is missing', async () => {
  const hostId = newHost();
  const d = desired(hostId, 1);
  await converge(docker, hostId, [d], images);
  const [before] = await observe(docker, hostId);

  const result = await converge(docker, hostId, [{ ...d, image: 'fangzhou/demo:9', specHash: 'spec-9' }], images);
  expect(result.errors.map((e) => e.message)).toEqual(['image fangzhou/demo:9 is not present on this host']);

  const [after] = await observe(docker, hostId, result.errors);
  expect(after).toMatchObject({ containerId: before.containerId, state: 'RUNNING', specHash: 'spec-1' });
  expect(after.error).toContain('fangzhou/demo:9');
});

test('the healthcheck reaches HEALTHY on demo:1 and UNHEALTHY on demo:3', async () => {
  const hostId = newHost();
  const healthcheck = {
    command: ['/bin/busybox', 'wget', '-q', '-O', '/dev/null', 'http://127.0.0.1:8080/healthz'],
    intervalSeconds: 1,
    timeoutSeconds: 2,
    retries: 1,
    startPeriodSeconds: 0,
  };
  const v1 = desired(hostId, 1, { healthcheck });
  const v3 = desired(hostId, 3, { healthcheck, image: 'fangzhou/demo:3' });
  await converge(docker, hostId, [v1, v3], images);

  const observed = await eventually(
    async () => byInstance(await observe(docker, hostId)),
    (m) => m.get(v1.instanceId)?.health === 'HEALTHY' && m.get(v3.instanceId)?.health === 'UNHEALTHY',
  );
  expect(observed.get(v1.instanceId)!.health).toBe('HEALTHY');
  expect(observed.get(v3.instanceId)!.health).toBe('UNHEALTHY');

  const info = await docker.getContainer(observed.get(v1.instanceId)!.containerId).inspect();
  expect(info.Config.Healthcheck).toMatchObject({ Test: ['CMD', ...healthcheck.command], Interval: 1e9, Timeout: 2e9, Retries: 1 });
});

test('copies config files into the container before it starts', async () => {
  const hostId = newHost();
  const d = desired(hostId, 1, {
    configFiles: [
      { path: '/etc/demo/app.conf', content: 'mode = cluster\n' },
      { path: '/www/config.txt', content: `served by ${hostId}\n` },
    ],
  });
  await converge(docker, hostId, [d], images);
  const [o] = await observe(docker, hostId);

  expect(dockerCli('exec', o.containerId, 'cat', '/etc/demo/app.conf')).toBe('mode = cluster\n');
  const served = await fetch(`http://127.0.0.1:${o.ports[0].hostPort}/config.txt`);
  expect(await served.text()).toBe(`served by ${hostId}\n`);
});

test('starts a container that was created but never started, as after a crash between create and start', async () => {
  const hostId = newHost();
  const d = desired(hostId, 1, { configFiles: [{ path: '/etc/demo/app.conf', content: 'recovered\n' }] });
  const created = await docker.createContainer(createOptions(hostId, d));
  expect((await observe(docker, hostId))[0]).toMatchObject({ containerId: created.id, state: 'CREATED', startedAt: null });

  expect((await converge(docker, hostId, [d], images)).changed).toBe(true);
  const [o] = await observe(docker, hostId);
  expect(o).toMatchObject({ containerId: created.id, state: 'RUNNING', startedAt: expect.any(String) });
  expect(dockerCli('exec', o.containerId, 'cat', '/etc/demo/app.conf')).toBe('recovered\n');
});

test('stops an instance whose desired state is STOPPED and starts it again when RUNNING', async () => {
  const hostId = newHost();
  const d = desired(hostId, 1);
  await converge(docker, hostId, [d], images);
  const [running] = await observe(docker, hostId);

  expect((await converge(docker, hostId, [{ ...d, desiredState: 'STOPPED' }], images)).changed).toBe(true);
  const [stopped] = await observe(docker, hostId);
  expect(stopped).toMatchObject({ containerId: running.containerId, state: 'EXITED', exitCode: 0 });

  expect((await converge(docker, hostId, [d], images)).changed).toBe(true);
  expect((await observe(docker, hostId))[0]).toMatchObject({ containerId: running.containerId, state: 'RUNNING' });
});

test('reports a container name held by a container it does not manage', async () => {
  const hostId = newHost();
  const d = desired(hostId, 1);
  const squatter = await docker.createContainer({ name: d.name, Image: 'fangzhou/demo:1' });
  foreignContainers.push(squatter.id);

  const result = await converge(docker, hostId, [d], images);
  expect(result.errors).toHaveLength(1);
  expect(result.errors[0].message).toMatch(new RegExp(`^container name ${d.name} is taken by container \\w{12}`));
  expect((await docker.getContainer(squatter.id).inspect()).State.Status).toBe('created');
});

test('observes a container stopped behind its back as EXITED, and the next converge starts it again', async () => {
  const hostId = newHost();
  const d = desired(hostId, 1);
  await converge(docker, hostId, [d], images);
  const [o] = await observe(docker, hostId);
  await docker.getContainer(o.containerId).stop({ t: 1 });

  const [stopped] = await observe(docker, hostId);
  expect(stopped).toMatchObject({ containerId: o.containerId, state: 'EXITED', exitCode: 0, ip: null, startedAt: o.startedAt });

  expect((await converge(docker, hostId, [d], images)).changed).toBe(true);
  expect((await observe(docker, hostId))[0]).toMatchObject({ containerId: o.containerId, state: 'RUNNING' });
});
