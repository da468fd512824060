/**
 * Images through the platform registry, with the real parts: Debian's docker-registry, an extra Docker engine that
 * starts EMPTY (standing in for a new host), the runner's converge/observe, and Ark's digest pinning.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { main as fz } from '../../cli/fz';
import type { DesiredContainer, ObservedContainer } from '../../lib/runner-protocol';
import { converge, listOwn, observe } from '../../runner/engine';
import { ImagePuller, imageRef } from '../../runner/images';
import { withErrors } from '../../runner/plan';
import { pinImage } from '../../subgraphs/ark/images';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startEngine, type Engine } from '../support/engine';
import { asHost, startInProcess } from '../support/inprocess';
import { freePort, startTestRegistry, type TestRegistry } from '../support/registry';
import { waitFor } from '../support/wait';

const repo = path.resolve(__dirname, '../..');
let registry: TestRegistry;
let engine: Engine;
const run = `${process.pid}`;
let hosts = 0;

function desired(hostId: string, overrides: Partial<DesiredContainer>): DesiredContainer {
  return {
    instanceId: `${hostId}-i0`,
    releaseId: `${hostId}-r`,
    name: `fz-${hostId}-0`,
    image: 'fangzhou/demo:1',
    imageDigest: null,
    registry: registry.address,
    specHash: 'spec-1',
    desiredState: 'RUNNING',
    env: [],
    ports: [{ name: 'http', containerPort: 8080, protocol: 'tcp' }],
    cpuMillis: 100,
    memoryMb: 32,
    healthcheck: null,
    domainName: `demo-0.${hostId}.fz.internal`,
    configFiles: [],
    ...overrides,
  };
}

const newHost = () => `reg-${run}-${hosts++}`;

/** What a runner does: converge until the instance runs (or `until` holds), reporting after each pass. */
async function convergeUntil(puller: ImagePuller, hostId: string, want: DesiredContainer[], until: (o: ObservedContainer[]) => boolean) {
  return waitFor(`${hostId} to converge`, async () => {
    const { errors } = await converge(engine.docker, hostId, want, puller);
    const observed = await observe(engine.docker, hostId, errors, puller.pulling());
    return until(observed) && observed;
  }, 30_000, 100);
}

/** The engine of a new host has none of our images: remove what earlier tests pulled into it. */
async function emptyEngine() {
  for (const c of await engine.docker.listContainers({ all: true })) await engine.docker.getContainer(c.Id).remove({ force: true });
  for (const i of await engine.docker.listImages()) await engine.docker.getImage(i.Id).remove({ force: true });
}

beforeAll(async () => {
  execFileSync('bash', [path.join(repo, 'scripts/build-images.sh')], { stdio: 'inherit' });
  [registry, engine] = await Promise.all([startTestRegistry(), startEngine(`reg${run}`, '10.203.0.0/16', [])]);
  registry.push('fangzhou/demo:1');
  process.env.FZ_REGISTRY = registry.address;
}, 120_000);

afterAll(async () => {
  delete process.env.FZ_REGISTRY;
  await engine?.stop();
  await registry?.stop();
});

beforeEach(emptyEngine);

test('an engine without the image pulls it from the registry by its pinned digest, reporting PULLING, and runs it', async () => {
  const pin = await pinImage('fangzhou/demo:1');
  expect(pin.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
  const hostId = newHost();
  const d = desired(hostId, { imageDigest: pin.imageDigest });
  expect(await engine.docker.listImages()).toEqual([]);

  // What the runner would report at each wake-up the pull causes.
  const reports: ObservedContainer[][] = [];
  const puller = new ImagePuller(engine.docker, () => reports.push(withErrors([], [], puller.pulling())));
  expect((await converge(engine.docker, hostId, [d], puller)).errors).toEqual([]);
  expect(await listOwn(engine.docker, hostId)).toEqual([]); // nothing is created before the image is there
  const observed = await convergeUntil(puller, hostId, [d], (o) => o[0]?.state === 'RUNNING');

  const pulling = reports.flat().find((o) => o.state === 'PULLING');
  expect(pulling).toMatchObject({ instanceId: d.instanceId, containerId: '', error: null, pull: { image: expect.stringContaining('fangzhou/demo:1 (sha256:') } });
  expect(observed).toHaveLength(1);
  expect(observed[0]).toMatchObject({ instanceId: d.instanceId, state: 'RUNNING', error: null, pull: null });
  const container = await engine.docker.getContainer(observed[0].containerId).inspect();
  expect(container.Config.Image).toBe(`${registry.address}/fangzhou/demo@${pin.imageDigest}`);
  expect(container.Config.Labels['org.opencontainers.image.version']).toBe('1');
  // It serves: the demo's page, fetched from the container on the new host's bridge.
  const { page } = await waitFor('the demo page to answer', async () => ({ page: await (await fetch(`http://${observed[0].ip}:8080/`)).text() }), 10_000, 100);
  expect(page).toContain('fangzhou demo version 1');
});

test('an image missing from the registry is a clear error: refused at deploy, and on the instance, with no container', async () => {
  await expect(pinImage('fangzhou/demo:404')).rejects.toMatchObject({
    code: 'BAD_USER_INPUT',
    message: `image fangzhou/demo:404 is not in the registry at ${registry.address}; push it (scripts/build-images.sh --push ${registry.address}) or import a bundle (fz image import)`,
  });

  // A digest the registry does not hold (e.g. pruned after the release pinned it).
  const hostId = newHost();
  const d = desired(hostId, { imageDigest: `sha256:${'0'.repeat(64)}` });
  const puller = new ImagePuller(engine.docker, () => undefined);
  const observed = await convergeUntil(puller, hostId, [d], (o) => Boolean(o[0]?.error));
  expect(observed).toEqual([expect.objectContaining({
    instanceId: d.instanceId, state: 'MISSING', containerId: '',
    error: `image fangzhou/demo:1 (sha256:000000000000…) is not in the registry at ${registry.address}; push it (scripts/build-images.sh --push ${registry.address}) or import a bundle (fz image import)`,
  })]);
  // Passes after the failure change nothing: no container, no duplicate, the same error.
  const again = await converge(engine.docker, hostId, [d], puller);
  expect(again.errors.map((e) => e.message)).toEqual([observed[0].error]);
  expect(await listOwn(engine.docker, hostId)).toEqual([]);
});

test('an unreachable registry is a clear error on the instance, and at deploy', async () => {
  const closed = `127.0.0.1:${await freePort()}`;
  const hostId = newHost();
  const d = desired(hostId, { registry: closed, imageDigest: `sha256:${'1'.repeat(64)}` });
  const puller = new ImagePuller(engine.docker, () => undefined);
  const observed = await convergeUntil(puller, hostId, [d], (o) => Boolean(o[0]?.error));
  expect(observed[0].error).toMatch(new RegExp(`^cannot reach the registry at ${closed} to pull fangzhou/demo:1 \\(sha256:111111111111…\\): .*connection refused`));
  expect(await listOwn(engine.docker, hostId)).toEqual([]);

  process.env.FZ_REGISTRY = closed;
  try {
    await expect(pinImage('fangzhou/demo:1')).rejects.toThrow(`cannot reach the image registry at ${closed} to look up fangzhou/demo:1 (ECONNREFUSED); is it running?`);
  } finally {
    process.env.FZ_REGISTRY = registry.address;
  }
});

test('the digest pin survives a re-tag: a host pulling later still gets the pinned bits', async () => {
  const pinned = await pinImage('fangzhou/demo:1');
  registry.push('fangzhou/demo:2', 'fangzhou/demo:1'); // someone pushes other bits under the same tag
  try {
    const now = await pinImage('fangzhou/demo:1');
    expect(now.imageDigest).not.toBe(pinned.imageDigest);

    const hostId = newHost();
    const d = desired(hostId, { imageDigest: pinned.imageDigest });
    const puller = new ImagePuller(engine.docker, () => undefined);
    const observed = await convergeUntil(puller, hostId, [d], (o) => o[0]?.state === 'RUNNING');
    const container = await engine.docker.getContainer(observed[0].containerId).inspect();
    expect(container.Config.Labels['org.opencontainers.image.version']).toBe('1');
    expect(container.Config.Image).toBe(imageRef(d));
  } finally {
    registry.push('fangzhou/demo:1'); // the tag as the other tests expect it
  }
});

test('a release records the digest in its revisions, and instances added after a re-tag run the pinned bits', async () => {
  const api = await startInProcess(`registry-${run}-`);
  try {
    expect((await api.run(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
    const hostId = await api.registerHost('h1');
    const pinned = (await pinImage('fangzhou/demo:1')).imageDigest;
    const deployed = await api.run('mutation { deploy(input: {name: "pinned", product: "demo", version: "1.0.0", replicas: 1}) { id revisions { revision image imageDigest } } }');
    expect(deployed.errors).toBeUndefined();
    const { id, revisions } = deployed.data!.deploy;
    expect(revisions).toEqual([{ revision: 1, image: 'fangzhou/demo:1', imageDigest: pinned }]);

    registry.push('fangzhou/demo:2', 'fangzhou/demo:1');
    const scaled = await api.run('mutation($id: ID!) { scaleRelease(id: $id, replicas: 2) { revisions { revision imageDigest } } }', { id });
    expect(scaled.data!.scaleRelease.revisions).toEqual([{ revision: 1, imageDigest: pinned }, { revision: 2, imageDigest: pinned }]);
    const sync = await api.run('mutation { runnerSync(input: {observed: []}) { desired { name image imageDigest registry } } }', {}, asHost(hostId));
    expect(sync.data!.runnerSync.desired).toEqual([0, 1].map((n) => ({ name: `fz-pinned-${n}`, image: 'fangzhou/demo:1', imageDigest: pinned, registry: registry.address })));

    // A product version whose image is not in the registry is refused, and nothing is written.
    const missing = await api.run('mutation { deploy(input: {name: "nowhere", product: "demo", version: "2.0.0"}) { id } }');
    expect(missing.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' }, message: expect.stringMatching(/^image fangzhou\/demo:2 is not in the registry at /) });
    expect((await api.run('{ releases { name } }')).data!.releases).toEqual([{ name: 'pinned' }]);
  } finally {
    registry.push('fangzhou/demo:1');
    await api.stop();
  }
});

test('fz image export and import carry an image into an air-gapped site, whose hosts then pull and run it', async () => {
  const site = await startTestRegistry(); // the other site's platform registry
  const dir = mkdtempSync(path.join(tmpdir(), 'fz-bundle-'));
  const bundle = path.join(dir, 'demo.tar');
  const lines: string[] = [];
  const say = (l: string) => lines.push(l);
  try {
    expect(await fz(['image', 'export', 'fangzhou/demo:1', '-o', bundle, '--registry', registry.address], say, say)).toBe(0);
    expect(lines).toEqual([`exported 1 image(s) to ${bundle}: fangzhou/demo:1`]);
    lines.length = 0;
    expect(await fz(['image', 'import', bundle, '--registry', site.address], say, say)).toBe(0);
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^imported fangzhou/demo:1 into the registry at ${site.address} \\(sha256:[0-9a-f]{64}\\)$`))]);

    process.env.FZ_REGISTRY = site.address;
    const pin = await pinImage('fangzhou/demo:1');
    const hostId = newHost();
    const d = desired(hostId, { registry: site.address, imageDigest: pin.imageDigest });
    const observed = await convergeUntil(new ImagePuller(engine.docker, () => undefined), hostId, [d], (o) => o[0]?.state === 'RUNNING');
    const container = await engine.docker.getContainer(observed[0].containerId).inspect();
    expect(container.Config.Labels['org.opencontainers.image.version']).toBe('1');

    lines.length = 0;
    expect(await fz(['image', 'import', path.join(dir, 'absent.tar'), '--registry', site.address], say, say)).toBe(1);
    expect(lines[0]).toMatch(/^fz: cannot import .*absent\.tar: ENOENT/);

    // fz image push uploads over HTTP (no engine has to trust the registry); a second push sends nothing.
    lines.length = 0;
    expect(await fz(['image', 'push', 'fangzhou/demo:2', '--registry', site.address], say, say)).toBe(0);
    expect(await fz(['image', 'push', 'fangzhou/demo:2', '--registry', site.address], say, say)).toBe(0);
    const digest = /\((sha256:[0-9a-f]{64})\)$/.exec(lines[0])?.[1];
    expect(lines).toEqual([
      `pushed fangzhou/demo:2 to the registry at ${site.address} (${digest})`,
      `fangzhou/demo:2 is in the registry at ${site.address} already (${digest})`,
    ]);
  } finally {
    process.env.FZ_REGISTRY = registry.address;
    rmSync(dir, { recursive: true, force: true });
    await site.stop();
  }
});
