import { join, resolve } from 'node:path';
import { loadProductFile } from '../../cli/product-file';
import type { Stack } from '../../scripts/stack';
import { startFleetStack, type Fleet, type FleetHost } from '../support/fleet';
import { waitFor, waitUntil } from '../support/wait';

/**
 * One network for the fleet, on three hosts (network namespaces with their own empty engines and runners): etcd and
 * Redis members on different hosts find each other by their names in fz.internal, reach each other across hosts by
 * their fixed addresses (host-gw routes, no NAT), and an etcd member whose host is lost comes back elsewhere with a
 * new address, rejoins its cluster (its onReplace hook), and DNS follows it. Images come from the platform registry.
 */
const ROOT = resolve(__dirname, '../..');
const IMAGES = ['fangzhou/etcd:3.4.23', 'fangzhou/redis:7.0.15', 'fangzhou/zookeeper:3.8.0'];
let fleet: Fleet;
let stack: Stack;
let stop: (() => Promise<void>) | undefined;
const graphql: Stack['graphql'] = (query, variables) => stack.graphql(query, variables);

interface InstanceView { id: string; ordinal: number; ip: string | null; host: { id: string; name: string } | null; status: { state: string; health: string } | null }
const release = async (name: string) => {
  const res = await graphql<{ releases: { name: string; status: string; instances: InstanceView[] }[] }>(
    '{ releases { name status instances { id ordinal ip host { id name } status { state health } } } }');
  return res.data?.releases.find((r) => r.name === name);
};
const hostOf = (i: InstanceView) => fleet.hosts.find((h) => h.name === i.host?.name)!;

/** Runs a command in a container of a host's engine; resolves with its exit code and output. */
async function exec(host: FleetHost, container: string, cmd: string[]): Promise<{ code: number; out: string }> {
  const run = await host.docker.getContainer(container).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await run.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((r) => { stream.on('end', r); stream.on('close', r); });
  const out = Buffer.concat(chunks).toString('utf8').replace(/[\x00-\x08\x0e-\x1f]/g, '');
  return { code: (await run.inspect()).ExitCode ?? -1, out };
}

async function deploy(file: string, name: string, replicas: number) {
  const [product] = loadProductFile(join(ROOT, 'catalog', file)).products;
  const defined = await graphql('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: product.input });
  expect(defined.errors).toBeUndefined();
  const res = await graphql(`mutation { deploy(input: {name: "${name}", product: "${product.input.name}", replicas: ${replicas}}) { id } }`);
  expect(res.errors).toBeUndefined();
  return waitFor(`${name} RUNNING on three hosts`, async () => {
    const r = await release(name);
    return r?.status === 'RUNNING' && new Set(r.instances.map((i) => i.host?.id)).size === 3 && r;
  }, 300_000, 1000);
}

beforeAll(async () => {
  ({ fleet, stack, stop } = await startFleetStack({
    hosts: 3, prefix: 'net', registryPort: 5070, ports: { httpPort: 3370, wsPort: 3371, lambdaPort: 3372, storePort: 4870 }, images: IMAGES,
  }));
  for (const host of fleet.hosts) expect(await host.docker.listImages()).toEqual([]);
}, 600_000);

afterAll(async () => {
  await stop?.();
}, 120_000);

let etcd: { instances: InstanceView[] };

test('etcd x3 spread over three hosts forms one cluster: a key put through member 0 is read through member 2', async () => {
  etcd = (await deploy('etcd.yaml', 'etcd', 3))!;
  const [m0, , m2] = [...etcd.instances].sort((a, b) => a.ordinal - b.ordinal);
  for (const i of etcd.instances) expect(i.ip).toMatch(/^10\.240\.\d+\.\d+$/);
  expect((await exec(hostOf(m0), 'fz-etcd-0', ['etcdctl', '--endpoints=http://127.0.0.1:2379', 'put', 'fz-proof', 'one-network'])).out).toContain('OK');
  const read = await exec(hostOf(m2), 'fz-etcd-2', ['etcdctl', '--endpoints=http://127.0.0.1:2379', 'get', '--print-value-only', 'fz-proof']);
  expect(read.out.trim()).toBe('one-network');
}, 600_000);

test('Redis primary and two replicas on three hosts replicate; a container on another host resolves the primary by name and gets PONG', async () => {
  const redis = (await deploy('redis.yaml', 'redis', 3))!;
  const byOrdinal = [...redis.instances].sort((a, b) => a.ordinal - b.ordinal);
  expect((await exec(hostOf(byOrdinal[0]), 'fz-redis-0', ['redis-cli', 'set', 'fz-proof', 'replicated'])).out.trim()).toBe('OK');
  for (const replica of byOrdinal.slice(1)) {
    await waitUntil(`redis-${replica.ordinal} has the key`, async () =>
      (await exec(hostOf(replica), `fz-redis-${replica.ordinal}`, ['redis-cli', 'get', 'fz-proof'])).out.trim() === 'replicated', 60_000, 500);
  }
  // "Host 3": the last host, or the last one without the primary.
  const other = [...byOrdinal].reverse().find((i) => i.host?.id !== byOrdinal[0].host?.id)!;
  const container = `fz-redis-${other.ordinal}`;
  const lookup = await exec(hostOf(other), container, ['nslookup', 'redis-0.redis.fz.internal']);
  expect(lookup.out).toContain(byOrdinal[0].ip!);
  expect((await exec(hostOf(other), container, ['redis-cli', '-h', 'redis-0.redis.fz.internal', 'ping'])).out.trim()).toBe('PONG');

  const endpoints = await graphql<{ resolveName: { ip: string; host: { name: string }; health: string }[] }>(
    '{ resolveName(name: "redis.fz.internal") { ip host { name } health } }');
  expect(endpoints.data!.resolveName.map((e) => e.ip).sort()).toEqual(byOrdinal.map((i) => i.ip).sort());
}, 600_000);

test('ZooKeeper x3 on three hosts elects one leader; a znode written through one member is read through another', async () => {
  const zk = (await deploy('zookeeper.yaml', 'zk', 3))!;
  const byOrdinal = [...zk.instances].sort((a, b) => a.ordinal - b.ordinal);
  const modes = await Promise.all(byOrdinal.map(async (i) =>
    /^Mode: (\w+)$/m.exec((await exec(hostOf(i), `fz-zk-${i.ordinal}`, ['sh', '-c', 'echo srvr | nc -w 3 127.0.0.1 2181'])).out)?.[1]));
  expect(modes.sort()).toEqual(['follower', 'follower', 'leader']);
  const cli = (server: string, ...args: string[]) => ['/usr/lib/jvm/java-17-openjdk-amd64/bin/java', '-Xmx64m', '-cp', '/etc/zookeeper:/usr/share/java/zookeeper.jar',
    'org.apache.zookeeper.ZooKeeperMain', '-server', `${server}:2181`, ...args];
  expect((await exec(hostOf(byOrdinal[0]), 'fz-zk-0', cli('zk-0.zk.fz.internal', 'create', '/fz-proof', 'one-ensemble'))).code).toBe(0);
  const read = await exec(hostOf(byOrdinal[2]), 'fz-zk-2', cli('zk-2.zk.fz.internal', 'get', '/fz-proof'));
  expect(read.out).toContain('one-ensemble');
}, 600_000);

test('the host of an etcd member is lost: the member comes back elsewhere with a new address, DNS follows, and the cluster has three healthy members again', async () => {
  const lost = [...etcd.instances].sort((a, b) => a.ordinal - b.ordinal)[1];
  const lostHost = hostOf(lost);
  await lostHost.killRunner();
  await lostHost.killEngine();

  let moved!: { instances: InstanceView[] };
  await waitUntil('etcd-1 re-created on another host with a new address, the release RUNNING', async () => {
    const r = await release('etcd');
    const m = r?.instances.find((i) => i.ordinal === 1);
    if (r?.status === 'RUNNING' && m && m.host?.id !== lost.host?.id && m.ip !== lost.ip && m.status?.health === 'HEALTHY') moved = r;
    // What it saw, shown if time runs out.
    const hosts = (await graphql<{ hosts: { name: string; status: string }[] }>('{ hosts { name status } }')).data?.hosts;
    return moved ? true : JSON.stringify({ hosts, release: r?.status, member: m });
  }, 600_000, 2000);
  const m1 = moved.instances.find((i) => i.ordinal === 1)!;
  const m0 = moved.instances.find((i) => i.ordinal === 0)!;
  expect(m1.ip).not.toBe(lost.ip);

  const seen = await waitFor('DNS answers the new address', async () => {
    const out = (await exec(hostOf(m0), 'fz-etcd-0', ['nslookup', 'etcd-1.etcd.fz.internal'])).out;
    return out.includes(m1.ip!) && { out };
  }, 30_000, 500);
  expect(seen.out).not.toContain(lost.ip!);

  const health = await waitFor('three healthy members', async () => {
    const out = (await exec(hostOf(m0), 'fz-etcd-0', ['etcdctl', '--endpoints=http://127.0.0.1:2379', 'endpoint', 'health', '--cluster'])).out;
    return (out.match(/is healthy/g) ?? []).length === 3 && { out };
  }, 120_000, 1000);
  expect(health.out).not.toContain('unhealthy');
  // The rejoined member has the data written before it was lost.
  const read = await exec(hostOf(m1), 'fz-etcd-1', ['etcdctl', '--endpoints=http://127.0.0.1:2379', 'get', '--print-value-only', 'fz-proof']);
  expect(read.out.trim()).toBe('one-network');
}, 900_000);
