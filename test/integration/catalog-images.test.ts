/**
 * The built-in catalog against the real Docker engine: each image built by scripts/build-images.sh from Debian's
 * packages runs as the host runner would run it (createOptions from the catalog's defaults, config files rendered
 * from the catalog's templates and copied in before start), becomes healthy through its real probe, and answers
 * its protocol. Multi-instance releases (etcd, NATS) form ONE cluster from the rendered `peers`.
 * Containers live on a network of their own; DNS names are network aliases, as the runner sets them.
 */
import Docker from 'dockerode';
import Handlebars from 'handlebars';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { pack } from 'tar-stream';
import { loadProductFile } from '../../cli/product-file';
import type { ConfigFileSpec, DesiredContainer } from '../../lib/runner-protocol';
import { DEFAULT_DOCKER_SOCKET, connectEngine } from '../../runner/engine';
import { createOptions } from '../../runner/plan';
import { waitUntil } from '../support/wait';

const repo = path.resolve(__dirname, '../..');
const docker = connectEngine(process.env.DOCKER_HOST ?? DEFAULT_DOCKER_SOCKET);
const run = randomUUID().slice(0, 6);
const hostId = `catalog-test-${run}`;
const network = `fz-catalog-${run}`;

interface CatalogProduct {
  name: string;
  versions: { version: string; image: string }[];
  defaults: {
    resources: { cpuMillis: number; memoryMb: number };
    ports: { name: string; containerPort: number; protocol?: 'tcp' | 'udp' }[];
    env: { name: string; value: string }[];
    healthcheck: { command: string[]; intervalSeconds: number; timeoutSeconds: number; retries: number; startPeriodSeconds: number };
  };
  configTemplates: { path: string; template: string }[];
}

function catalog(name: string): CatalogProduct {
  const loaded = loadProductFile(path.join(repo, 'catalog', `${name}.yaml`));
  expect(loaded.problems).toEqual([]);
  expect(loaded.products).toHaveLength(1);
  return loaded.products[0].input as unknown as CatalogProduct;
}

/** The template context of schema/panama.graphql: product, release, instance, peers (every instance), env. */
function render(product: CatalogProduct, releaseName: string, replicas: number, ordinal: number): ConfigFileSpec[] {
  const instances = Array.from({ length: replicas }, (_, o) => ({
    id: `i-${releaseName}-${o}`, ordinal: o, number: o + 1, domainName: `${releaseName}-${o}.${releaseName}.fz.internal`,
  }));
  const context = {
    product: { name: product.name },
    release: { id: `r-${releaseName}`, name: releaseName, version: product.versions[0].version, replicas },
    instance: instances[ordinal],
    peers: instances,
    env: Object.fromEntries(product.defaults.env.map((e) => [e.name, e.value])),
  };
  return product.configTemplates.map((t) => {
    const content = Handlebars.compile(t.template, { noEscape: true, strict: true })(context);
    // The templates do not depend on whether the renderer HTML-escapes: values that could be escaped use {{{ }}}.
    expect(Handlebars.compile(t.template)(context)).toBe(content);
    return { path: t.path, content };
  });
}

async function tarOf(files: ConfigFileSpec[]): Promise<Buffer> {
  const archive = pack();
  for (const f of files) archive.entry({ name: f.path.replace(/^\/+/, ''), mode: 0o644 }, f.content);
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

interface Instance {
  container: Docker.Container;
  domainName: string;
  files: ConfigFileSpec[];
}

/** Creates the release's containers as the runner would (on our own network), copies the config files, starts all. */
async function startRelease(productName: string, replicas: number): Promise<Instance[]> {
  const product = catalog(productName);
  const releaseName = `${productName}-${run}`;
  const instances = await Promise.all(Array.from({ length: replicas }, async (_, ordinal) => {
    const files = render(product, releaseName, replicas, ordinal);
    const d: DesiredContainer = {
      instanceId: `i-${releaseName}-${ordinal}`,
      releaseId: `r-${releaseName}`,
      name: `fz-${releaseName}-${ordinal}`,
      image: product.versions[0].image,
      specHash: 'catalog-test',
      desiredState: 'RUNNING',
      env: product.defaults.env,
      ports: product.defaults.ports.map((p) => ({ ...p, protocol: p.protocol ?? 'tcp' })),
      cpuMillis: product.defaults.resources.cpuMillis,
      memoryMb: product.defaults.resources.memoryMb,
      healthcheck: product.defaults.healthcheck,
      domainName: `${releaseName}-${ordinal}.${releaseName}.fz.internal`,
      configFiles: files,
    };
    const options = createOptions(hostId, d);
    options.HostConfig = { ...options.HostConfig, NetworkMode: network };
    options.NetworkingConfig = { EndpointsConfig: { [network]: { Aliases: [d.domainName] } } };
    const container = await docker.createContainer(options);
    await container.putArchive(await tarOf(files), { path: '/' });
    return { container, domainName: d.domainName, files };
  }));
  await Promise.all(instances.map((i) => i.container.start()));
  return instances;
}

async function waitHealth(instances: Instance[], status: 'healthy' | 'unhealthy', timeoutMs = 60_000) {
  await Promise.all(instances.map(async (i) => {
    try {
      await waitUntil(`${i.domainName} to be ${status}`, async () => {
        const state = (await i.container.inspect()).State;
        if (!state.Running) throw new Error(`${i.domainName} is ${state.Status} (exit code ${state.ExitCode})`);
        return state.Health?.Status === status;
      }, timeoutMs, 250);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nlogs of ${i.domainName}:\n${await logsOf(i.container)}`);
    }
  }));
}

async function logsOf(c: Docker.Container): Promise<string> {
  const buf = await c.logs({ stdout: true, stderr: true, tail: 30 });
  return buf.toString('utf8').replace(/[\x00-\x08]/g, '');
}

/** docker exec, demultiplexed; throws unless the command exits 0. */
async function exec(c: Docker.Container, cmd: string[]): Promise<string> {
  const e = await c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await e.start({ hijack: true, stdin: false });
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (b: Buffer) => out.push(b));
  stderr.on('data', (b: Buffer) => err.push(b));
  docker.modem.demuxStream(stream, stdout, stderr);
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  const { ExitCode } = await e.inspect();
  const text = Buffer.concat(out).toString('utf8');
  if (ExitCode !== 0) throw new Error(`${cmd.join(' ')} exited with ${ExitCode}: ${text}${Buffer.concat(err).toString('utf8')}`);
  return text;
}

beforeAll(async () => {
  execFileSync('bash', [path.join(repo, 'scripts/build-images.sh')], { stdio: 'inherit' });
  await docker.createNetwork({ Name: network, Driver: 'bridge', CheckDuplicate: true, Labels: { 'fangzhou.test': hostId } });
}, 120_000);

afterAll(async () => {
  const ours = await docker.listContainers({ all: true, filters: { label: [`fangzhou.host=${hostId}`] } });
  await Promise.all(ours.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  await docker.getNetwork(network).remove().catch(() => undefined);
});

test.each([
  ['redis', 'fangzhou/redis:7.0.15', 'fangzhou/redis:7', 60],
  ['etcd', 'fangzhou/etcd:3.4.23', 'fangzhou/etcd:3', 60],
  ['nats', 'fangzhou/nats:2.9.10', 'fangzhou/nats:2', 60],
  // A JVM: its modules file alone is ≈ 130 MB.
  ['zookeeper', 'fangzhou/zookeeper:3.8.0', 'fangzhou/zookeeper:3', 260],
])('the catalog names the %s image that build-images.sh built (%s, also %s), a scratch image running as non-root', async (name, tag, short, maxMb = 60) => {
  expect(catalog(name).versions.map((v) => v.image)).toContain(tag);
  const [full, alias] = await Promise.all([docker.getImage(tag).inspect(), docker.getImage(short).inspect()]);
  expect(alias.Id).toBe(full.Id);
  expect(full.Config.User).toBe(name);
  expect(full.Config.Labels?.['org.opencontainers.image.title']).toBe(`fangzhou ${name}`);
  expect(full.Size).toBeLessThan(maxMb * 1024 * 1024);
});

test('redis: a primary and a replica from the catalog template; the healthcheck is a real PING; data replicates', async () => {
  const [primary, replica] = await startRelease('redis', 2);
  expect(primary.files[0].content).not.toContain('replicaof');
  expect(replica.files[0].content).toContain(`replicaof ${primary.domainName} 6379`);
  await waitHealth([primary, replica], 'healthy', 30_000);

  expect((await exec(primary.container, ['redis-cli', 'SET', 'greeting', 'hello from fangzhou'])).trim()).toBe('OK');
  expect((await exec(primary.container, ['redis-cli', 'GET', 'greeting'])).trim()).toBe('hello from fangzhou');
  // The replica follows the primary by its DNS name and serves the key.
  await waitUntil('the replica to have the key', async () =>
    (await exec(replica.container, ['redis-cli', 'GET', 'greeting'])).trim() === 'hello from fangzhou', 20_000);
  const info = await exec(replica.container, ['redis-cli', 'INFO', 'replication']);
  expect(info).toMatch(/role:slave/);
  expect(info).toContain(`master_host:${primary.domainName}`);
  expect(info).toMatch(/master_link_status:up/);
  expect(await exec(primary.container, ['redis-cli', 'CONFIG', 'GET', 'maxmemory'])).toContain(String(64 * 1024 * 1024));

  // The probe really talks to the server: while it pauses its clients, PING goes unanswered and the container turns
  // unhealthy; afterwards it is healthy again.
  await exec(primary.container, ['redis-cli', 'CLIENT', 'PAUSE', '14000', 'ALL']);
  await waitHealth([primary], 'unhealthy', 25_000);
  await waitHealth([primary], 'healthy', 25_000);
}, 120_000);

test('etcd: three members from the catalog template form ONE cluster; a key put on one is read on another', async () => {
  const members = await startRelease('etcd', 3);
  for (const m of members) {
    expect(m.files[0].content).toContain(`name: ${m.domainName}`);
    expect(m.files[0].content).toContain(`initial-cluster: ${members.map((x) => `${x.domainName}=http://${x.domainName}:2380`).join(',')}`);
  }
  await waitHealth(members, 'healthy', 60_000);

  const list = JSON.parse(await exec(members[0].container, ['etcdctl', 'member', 'list', '-w', 'json'])) as { members: { name: string; peerURLs: string[]; clientURLs: string[] }[] };
  expect(list.members.map((m) => m.name).sort()).toEqual(members.map((m) => m.domainName).sort());
  for (const m of list.members) {
    expect(m.peerURLs).toEqual([`http://${m.name}:2380`]);
    expect(m.clientURLs).toEqual([`http://${m.name}:2379`]);
  }
  // One cluster: every member reports the same cluster id and the same leader.
  const statuses = await Promise.all(members.map(async (m) =>
    JSON.parse(await exec(m.container, ['etcdctl', 'endpoint', 'status', '-w', 'json']))[0].Status as { header: { cluster_id: number }; leader: number }));
  expect(new Set(statuses.map((s) => s.header.cluster_id)).size).toBe(1);
  expect(new Set(statuses.map((s) => s.leader)).size).toBe(1);

  expect((await exec(members[0].container, ['etcdctl', 'put', 'greeting', 'hello from fangzhou'])).trim()).toBe('OK');
  const other = `http://${members[2].domainName}:2379`;
  expect((await exec(members[1].container, ['etcdctl', `--endpoints=${other}`, 'get', 'greeting', '--print-value-only'])).trim()).toBe('hello from fangzhou');

  // The probe is a quorum read: with two of three members gone, the last one reports unhealthy.
  await Promise.all(members.slice(1).map((m) => m.container.stop({ t: 5 })));
  await waitHealth([members[0]], 'unhealthy', 60_000);
}, 180_000);

test('nats: three servers from the catalog template form one cluster; a message published on one reaches a subscriber on another', async () => {
  const servers = await startRelease('nats', 3);
  await waitHealth(servers, 'healthy', 30_000);

  for (const s of servers) {
    const varz = JSON.parse(await exec(s.container, ['wget', '-q', '-O-', 'http://127.0.0.1:8222/varz'])) as { version: string; server_name: string; cluster: { name: string } };
    expect(varz).toMatchObject({ version: '2.9.10', server_name: s.domainName, cluster: { name: `nats-${run}` } });
  }
  // Every server routes to the two others (its route to itself is dropped).
  await waitUntil('every server to have two routes', async () => {
    const routes = await Promise.all(servers.map(async (s) =>
      (JSON.parse(await exec(s.container, ['wget', '-q', '-O-', 'http://127.0.0.1:8222/routez'])) as { num_routes: number }).num_routes));
    return routes.every((n) => n === 2) || routes.join(',');
  }, 20_000);

  // The NATS text protocol over busybox nc: subscribe on server 1, publish on server 3, the subscriber gets it.
  const script = [
    `(printf 'CONNECT {"verbose":false}\\r\\nSUB greeting 1\\r\\nPING\\r\\n'; sleep 3) | nc ${servers[0].domainName} 4222 > /tmp/sub.out &`,
    'sleep 1',
    `printf 'CONNECT {"verbose":false}\\r\\nPUB greeting 19\\r\\nhello from fangzhou\\r\\nPING\\r\\n' | nc -w 2 ${servers[2].domainName} 4222 > /tmp/pub.out`,
    'wait',
    'cat /tmp/sub.out',
  ].join('\n');
  const received = await exec(servers[1].container, ['sh', '-c', script]);
  expect(received).toContain('MSG greeting 1 19\r\nhello from fangzhou\r\n');
}, 120_000);

test('zookeeper: three members from the catalog template form ONE ensemble with one leader; a znode written through one is read through another', async () => {
  const members = await startRelease('zookeeper', 3);
  for (const [n, m] of members.entries()) {
    const cfg = m.files.find((f) => f.path === '/etc/zookeeper/zoo.cfg')!.content;
    for (const [k, peer] of members.entries()) expect(cfg).toContain(`server.${k + 1}=${peer.domainName}:2888:3888`);
    expect(m.files.find((f) => f.path === '/etc/zookeeper/myid')!.content.trim()).toBe(String(n + 1));
  }
  await waitHealth(members, 'healthy', 120_000);

  // `srvr` on each: exactly one leader and two followers, all at the same epoch of one ensemble.
  const modes = await Promise.all(members.map(async (m) => /^Mode: (\w+)$/m.exec(await exec(m.container, ['sh', '-c', 'echo srvr | nc -w 3 127.0.0.1 2181']))?.[1]));
  expect(modes.sort()).toEqual(['follower', 'follower', 'leader']);

  // The Java client of the image: create a znode through member 1, read it through member 3.
  const cli = (server: string, ...args: string[]) => ['/usr/lib/jvm/java-17-openjdk-amd64/bin/java', '-Xmx64m', '-cp', '/etc/zookeeper:/usr/share/java/zookeeper.jar',
    'org.apache.zookeeper.ZooKeeperMain', '-server', `${server}:2181`, ...args];
  await exec(members[1].container, cli(members[0].domainName, 'create', '/greeting', 'hello-from-fangzhou'));
  expect(await exec(members[0].container, cli(members[2].domainName, 'get', '/greeting'))).toContain('hello-from-fangzhou');
}, 240_000);
