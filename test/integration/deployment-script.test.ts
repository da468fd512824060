/**
 * The generated SHELL deployment script, run with `sh` against the real Docker engine: it must create the same
 * containers a host runner would (runner/plan.ts createOptions), with the rendered config files inside, be safe to
 * run again, and never touch a container it did not create. Every run uses its own release names and ids.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { LABELS } from '../../lib/runner-protocol';
import { newSecretKey, sealAll } from '../../lib/secrets';
import { DEFAULT_DOCKER_SOCKET, connectEngine } from '../../runner/engine';
import { NETWORK, createOptions } from '../../runner/plan';
import { DEMO_PRODUCT } from '../../scripts/demo-product';
import { containerName, specHash, toDesired, type Instance } from '../../subgraphs/ark/instances';
import { deploymentScript, type ArtefactInstance } from '../../subgraphs/panama/artefacts';
import { productFromInput, type Product } from '../../subgraphs/panama/products';
import { instanceSpec } from '../../subgraphs/panama/releases';
import { checkTemplates } from '../../subgraphs/panama/templates';
import { waitUntil } from '../support/wait';

const repo = path.resolve(__dirname, '../..');
const engineTarget = process.env.DOCKER_HOST ?? DEFAULT_DOCKER_SOCKET;
const docker = connectEngine(engineTarget);
const run = randomUUID().slice(0, 8);
const workDir = mkdtempSync(path.join(tmpdir(), `fz-dscript-${run}-`));
const releaseIds: string[] = [];

const GREETING = `hello "world" it's $HOME \`id\` \\ back\nsecond line`;
const PEERS_CONF = [
  '# {{product.name}} release {{release.name}}, instance {{instance.number}} of {{release.replicas}}',
  'greeting={{env.GREETING}}',
  '{{#each peers}}',
  'server.{{number}}={{domainName}}:2888:3888',
  '{{/each}}',
].join('\n');

const product = {
  ...productFromInput({
    ...DEMO_PRODUCT,
    defaults: { ...DEMO_PRODUCT.defaults, env: [{ name: 'GREETING', value: 'hi' }] },
    configTemplates: [{ path: '/etc/fangzhou/peers.conf', template: PEERS_CONF }, { path: '/etc/fangzhou/myid', template: '{{instance.number}}' }],
  }),
  seq: 1,
} as Product;

/** A release of the demo product and its instances, as Panama and Ark would hold them, config files rendered. */
function demoRelease(suffix: string, replicas: number) {
  const name = `ds-${run}-${suffix}`;
  const release = {
    id: `r-ds-${run}-${suffix}`, name, product: 'demo', version: '1.0.0', replicas, revision: 1,
    resources: DEMO_PRODUCT.defaults.resources, env: [{ name: 'GREETING', value: GREETING }],
  };
  releaseIds.push(release.id);
  const peers = Array.from({ length: replicas }, (_, ordinal) => ({
    id: `${release.id}-${ordinal}`, ordinal, domainName: `${name}-${ordinal}.${name}.fz.internal`,
  }));
  const instances: Instance[] = peers.map((peer) => {
    const spec = instanceSpec(release, product, peer.ordinal);
    return {
      ...peer, releaseId: release.id, releaseName: name, product: 'demo', hostId: 'none', desiredState: 'RUNNING',
      spec, specHash: specHash(spec), createdAt: new Date().toISOString(), seq: 1,
    };
  });
  return { release, instances };
}

/** Runs the script with sh from a directory other than its own; resolves with the exit code and output. */
function runScript(file: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const dockerHost = engineTarget.startsWith('/') ? `unix://${engineTarget}` : engineTarget;
  return new Promise((resolve) => {
    execFile('sh', [file], { cwd: tmpdir(), env: { ...process.env, DOCKER_HOST: dockerHost, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function writeScript(name: string, text: string): string {
  const file = path.join(workDir, name);
  writeFileSync(file, text);
  return file;
}

const containersOf = (releaseId: string) =>
  docker.listContainers({ all: true, filters: { label: [`${LABELS.release}=${releaseId}`] } });

/** Runs a command in the container; resolves with its exit code and stdout. */
async function exec(container: Docker.Container, cmd: string[]): Promise<{ exitCode: number | null; stdout: string }> {
  const e = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await e.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  docker.modem.demuxStream(stream, out, new PassThrough());
  await new Promise<void>((resolve, reject) => { stream.on('end', () => resolve()); stream.on('error', reject); });
  const { ExitCode } = await e.inspect();
  return { exitCode: ExitCode, stdout: Buffer.concat(chunks).toString('utf8') };
}

beforeAll(() => {
  execFileSync('bash', [path.join(repo, 'scripts/build-images.sh')], { stdio: 'inherit' });
});

afterAll(async () => {
  for (const id of releaseIds) {
    for (const c of await containersOf(id)) await docker.getContainer(c.Id).remove({ force: true });
  }
  rmSync(workDir, { recursive: true, force: true });
});

test('the product\'s templates pass checkTemplates', () => {
  expect(() => checkTemplates(product.configTemplates, { product: 'demo', env: product.defaults.env })).not.toThrow();
});

test('the script creates the containers a runner would, with config files inside; a second run is idempotent; a smaller release removes the extra one', async () => {
  const { release, instances } = demoRelease('a', 2);
  const script = writeScript('deploy-a.sh', deploymentScript('SHELL', release, instances as ArtefactInstance[]));

  const first = await runScript(script);
  expect(first.stderr).toBe('');
  expect(first.code).toBe(0);
  expect(first.stdout).toContain(`fangzhou: started fz-${release.name}-0\nfangzhou: started fz-${release.name}-1\n`);

  const inspectAll = async () => {
    const list = await containersOf(release.id);
    return Promise.all(list.map((c) => docker.getContainer(c.Id).inspect()));
  };
  const created = await inspectAll();
  expect(created).toHaveLength(2);

  for (const instance of instances) {
    const info = created.find((c) => c.Name === `/${containerName(instance)}`)!;
    expect(info).toBeDefined();
    const want = createOptions('any-host', toDesired(instance));
    expect(info.State.Running).toBe(true);
    expect(info.Config.Image).toBe('fangzhou/demo:1');
    expect(info.Config.Env).toEqual(expect.arrayContaining(want.Env!));
    expect(info.Config.Env).toContain(`GREETING=${GREETING}`);
    expect(info.Config.Labels).toMatchObject({
      [LABELS.managed]: 'script', [LABELS.instance]: instance.id, [LABELS.release]: release.id, [LABELS.spec]: instance.specHash,
    });
    expect(info.Config.Labels[LABELS.host]).toBeUndefined();
    expect(Object.keys(info.Config.ExposedPorts ?? {})).toEqual(Object.keys(want.ExposedPorts!));
    expect(info.HostConfig.Memory).toBe(want.HostConfig!.Memory);
    expect(info.HostConfig.NanoCpus).toBe(want.HostConfig!.NanoCpus);
    expect(info.HostConfig.RestartPolicy?.Name).toBe('unless-stopped');
    expect(info.HostConfig.PortBindings).toEqual({ '8080/tcp': [{ HostIp: '', HostPort: '' }] });
    expect(Number(info.NetworkSettings.Ports['8080/tcp']?.[0]?.HostPort)).toBeGreaterThan(0);
    // docker run only has the shell form of a healthcheck: same command, same timings.
    const healthcheck = (info.Config as { Healthcheck?: { Test: string[]; Interval: number; Timeout: number; Retries: number } }).Healthcheck!;
    expect(healthcheck.Test).toEqual(['CMD-SHELL', DEMO_PRODUCT.defaults.healthcheck.command.slice(1).join(' ')]);
    expect(healthcheck).toMatchObject({ Interval: want.Healthcheck!.Interval, Timeout: want.Healthcheck!.Timeout, Retries: want.Healthcheck!.Retries });
    expect(info.NetworkSettings.Networks[NETWORK]?.Aliases).toContain(instance.domainName);
    expect(info.Mounts).toEqual(expect.arrayContaining([
      expect.objectContaining({ Type: 'bind', Destination: '/etc/fangzhou/peers.conf', RW: false }),
      expect.objectContaining({ Type: 'bind', Destination: '/etc/fangzhou/myid', RW: false }),
    ]));

    const container = docker.getContainer(info.Id);
    for (const file of instance.spec.configFiles) {
      expect(await exec(container, ['cat', file.path])).toEqual({ exitCode: 0, stdout: file.content });
    }
    // The files sit next to the script by default, one directory per container.
    expect(readFileSync(path.join(workDir, 'fangzhou-config', containerName(instance), 'etc/fangzhou/myid'), 'utf8')).toBe(String(instance.ordinal + 1));
  }
  const peersConf = instances[1].spec.configFiles[0].content;
  expect(peersConf).toContain(`server.1=${instances[0].domainName}:2888:3888\nserver.2=${instances[1].domainName}:2888:3888\n`);
  expect(peersConf).toContain('instance 2 of 2');

  // The healthcheck works in its shell form, and the aliases resolve between the instances.
  await waitUntil('both containers healthy', async () => (await inspectAll()).every((c) => c.State.Health?.Status === 'healthy'), 60_000);
  const zero = docker.getContainer(created.find((c) => c.Name === `/${containerName(instances[0])}`)!.Id);
  expect((await exec(zero, ['wget', '-q', '-O', '/dev/null', `http://${instances[1].domainName}:8080/healthz`])).exitCode).toBe(0);

  // Again: the same two containers, recreated.
  const second = await runScript(script);
  expect(second.stderr).toBe('');
  expect(second.code).toBe(0);
  const again = await inspectAll();
  expect(again.map((c) => c.Name).sort()).toEqual(created.map((c) => c.Name).sort());
  expect(again.every((c) => c.State.Running)).toBe(true);
  expect(again.some((c) => created.some((old) => old.Id === c.Id))).toBe(false);

  // The release shrank to one instance: its script removes the container of the instance that is gone.
  const smaller = writeScript('deploy-a-smaller.sh', deploymentScript('SHELL', release, instances.slice(0, 1) as ArtefactInstance[]));
  const third = await runScript(smaller);
  expect(third.code).toBe(0);
  expect(third.stdout).toContain(`removed fz-${release.name}-1`);
  const left = await containersOf(release.id);
  expect(left.map((c) => c.Names[0])).toEqual([`/fz-${release.name}-0`]);
});

test('a config file that holds a secret gets its value from the caller\'s environment, as the runner gets it from the API', async () => {
  process.env.FZ_SECRET_KEY ??= newSecretKey();
  const secret = `pa$$ "w0rd" & \\1 \`id\``;
  const keeper = { ...product, configTemplates: [{ path: '/etc/fangzhou/auth.conf', template: 'user=app\npassword={{secret "DB_PASSWORD"}}\nagain={{secret "DB_PASSWORD"}}' }] } as Product;
  const name = `ds-${run}-secret`;
  const release = {
    id: `r-ds-${run}-secret`, name, product: 'demo', version: '1.0.0', replicas: 1, revision: 1,
    resources: DEMO_PRODUCT.defaults.resources, env: [], secretEnv: sealAll([{ name: 'DB_PASSWORD', value: secret }]),
  };
  releaseIds.push(release.id);
  const spec = instanceSpec(release, keeper, 0);
  const instance: Instance = {
    id: `${release.id}-0`, ordinal: 0, domainName: `${name}-0.${name}.fz.internal`, releaseId: release.id, releaseName: name, product: 'demo',
    hostId: 'none', desiredState: 'RUNNING', spec, specHash: specHash(spec), createdAt: new Date().toISOString(), seq: 1,
  };
  const text = deploymentScript('SHELL', release, [instance] as ArtefactInstance[]);
  expect(text).not.toContain(secret);
  const script = writeScript('deploy-secret.sh', text);

  const without = await runScript(script, { DB_PASSWORD: '' });
  expect(without.code).not.toBe(0);
  expect(without.stderr).toContain('set DB_PASSWORD: a secret of this release');
  expect(await containersOf(release.id)).toEqual([]);

  const ran = await runScript(script, { DB_PASSWORD: secret });
  expect(ran.stderr).toBe('');
  expect(ran.code).toBe(0);
  const [c] = await containersOf(release.id);
  // What the runner of the instance's host is handed, and what the script wrote: the same bytes.
  const runnerFile = toDesired(instance).configFiles[0].content;
  expect(runnerFile).toBe(`user=app\npassword=${secret}\nagain=${secret}`);
  expect(await exec(docker.getContainer(c.Id), ['cat', '/etc/fangzhou/auth.conf'])).toEqual({ exitCode: 0, stdout: runnerFile });
});

test('the script refuses to replace a container a host runner manages and changes nothing', async () => {
  const { release, instances } = demoRelease('b', 2);
  const runnerOwned = await docker.createContainer({
    name: containerName(instances[1]),
    Image: 'fangzhou/demo:1',
    Labels: { [LABELS.managed]: 'true', [LABELS.host]: `test-${run}`, [LABELS.instance]: instances[1].id, [LABELS.release]: release.id },
  });
  const script = writeScript('deploy-b.sh', deploymentScript('SHELL', release, instances as ArtefactInstance[]));
  const result = await runScript(script, { FZ_CONFIG_DIR: path.join(workDir, 'config b') });
  expect(result.code).not.toBe(0);
  expect(result.stderr).toContain(`a container named ${containerName(instances[1])} exists that no Fangzhou script created`);
  const left = await containersOf(release.id);
  expect(left.map((c) => c.Id)).toEqual([runnerOwned.id]);
});
