import { store } from '../../lib/store';
import { getInstance, migrateInstance } from '../../subgraphs/ark/instances';
import { specAfterMove } from '../../subgraphs/panama/releases';
import { reconcileRelease } from '../../subgraphs/panama/reconcile';
import { anonymous, asHost, startInProcess } from '../support/inprocess';

/**
 * The cluster network through the API (in-process gateway, dynalite): subnets claimed at registration, fixed
 * instance addresses given at placement, kept across re-creation, new after a move, service discovery over the
 * same names the runners' DNS servers answer. Runner syncs are sent as a runner would send them.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;

const register = async (name: string, address: string, networks: string[] = []) => {
  const token = (await api.run('mutation { createJoinToken { token } }')).data!.createJoinToken.token;
  return api.run('mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id name subnet } } }',
    { input: { joinToken: token, name, address, networks, capacity: { cpuMillis: 4000, memoryMb: 4096 }, labels: [{ key: 'zone', value: 'ip' }] } }, anonymous);
};
const sync = async (hostId: string, networkSerial: number | null = null) =>
  (await api.run(`mutation($s: Int) { runnerSync(input: {observed: [], networkSerial: $s}) {
    desired { instanceId ip } network { subnet gateway clusterCidr zone serial routes { subnet via } records { name type address target port } } } }`,
  { s: networkSerial }, asHost(hostId))).data!.runnerSync;
const hostsNow = async () => (await api.run('{ hosts { name subnet } }')).data!.hosts as { name: string; subnet: string }[];

beforeAll(async () => {
  api = await startInProcess('ipalloc-');
  await api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', {
    input: { name: 'kv', versions: [{ version: '1.0.0', image: 'fangzhou/demo:1' }],
      defaults: { replicas: 1, resources: { cpuMillis: 100, memoryMb: 32 }, ports: [{ name: 'client', containerPort: 8080, protocol: 'tcp' }] } },
  });
});

afterAll(async () => {
  delete process.env.FZ_CLUSTER_CIDR;
  await api?.stop();
});

let a: string;
let b: string;

test('hosts registering at once each get their own /24 of the cluster network, and routes to each other', async () => {
  const results = await Promise.all([register('ip-a', '10.77.0.2'), register('ip-b', '10.77.0.3'), register('ip-c', '10.77.0.4')]);
  expect(results.map((r) => r.errors)).toEqual([undefined, undefined, undefined]);
  const subnets = results.map((r) => r.data!.registerHost.host.subnet as string);
  expect(new Set(subnets).size).toBe(3);
  for (const s of subnets) expect(s).toMatch(/^10\.240\.\d+\.0\/24$/);
  [a, b] = results.map((r) => r.data!.registerHost.host.id as string);
  const network = (await sync(a)).network;
  expect(network).toMatchObject({ subnet: subnets[0], gateway: subnets[0].replace('.0/24', '.1'), clusterCidr: '10.240.0.0/16', zone: 'fz.internal' });
  expect(network.routes).toEqual([{ subnet: subnets[1], via: '10.77.0.3' }, { subnet: subnets[2], via: '10.77.0.4' }].sort((x, y) => x.subnet.localeCompare(y.subnet)));
  // Nothing changed since: the same serial brings neither routes nor records again.
  expect((await sync(a, network.serial)).network).toMatchObject({ serial: network.serial, routes: null, records: null });
});

test('two hosts claiming one address: the second is refused and nothing of it is left', async () => {
  const before = await hostsNow();
  const res = await register('ip-dup', '10.77.0.3');
  expect(res.errors?.[0].extensions?.code).toBe('CONFLICT');
  expect(res.errors?.[0].message).toMatch(/address 10\.77\.0\.3 is already registered by host h-/);
  expect(await hostsNow()).toEqual(before);
  // The name was given back: the same name registers with its own address.
  expect((await register('ip-dup', '10.77.0.9')).errors).toBeUndefined();
});

test('a cluster network that overlaps the host\'s own networks, or has no room left, refuses the host and claims nothing', async () => {
  const before = await hostsNow();
  const overlap = await register('ip-overlap', '10.77.0.20', ['10.77.0.20/24', '10.240.7.3/24']);
  expect(overlap.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
  expect(overlap.errors?.[0].message).toContain("the cluster network 10.240.0.0/16 overlaps this host's network 10.240.7.3/24");

  process.env.FZ_CLUSTER_CIDR = '10.250.0.0/24';
  try {
    expect((await register('ip-small-1', '10.77.0.21')).errors).toBeUndefined();
    const full = await register('ip-small-2', '10.77.0.22');
    expect(full.errors?.[0].extensions?.code).toBe('CONFLICT');
    expect(full.errors?.[0].message).toContain('the cluster network 10.250.0.0/24 has room for 1 hosts (one /24 each) and all are taken: widen FZ_CLUSTER_CIDR');
    process.env.FZ_CLUSTER_CIDR = '10.240.0.0/25';
    expect((await register('ip-small-3', '10.77.0.23')).errors?.[0].message).toContain('smaller than one host subnet (/24)');
  } finally {
    delete process.env.FZ_CLUSTER_CIDR;
  }
  expect((await hostsNow()).map((h) => h.name)).toEqual([...before.map((h) => h.name), 'ip-small-1'].sort());
  // Both refused names and the refused address are free again.
  expect((await register('ip-small-2', '10.77.0.22')).errors).toBeUndefined();
});

test('an instance gets a fixed address from its host\'s subnet, keeps it when re-created, gets a new one after a move, and DNS follows', async () => {
  const deployed = await api.run('mutation { deploy(input: {name: "kv", product: "kv", replicas: 1, placement: {requiredLabels: [{key: "zone", value: "ip"}]}}) { id instances { id host { id subnet } } } }');
  expect(deployed.errors).toBeUndefined();
  const [placed] = deployed.data!.deploy.instances;
  const home = placed.host.id as string;
  const first = (await sync(home)).desired.find((d: { instanceId: string }) => d.instanceId === placed.id).ip as string;
  expect(first.startsWith(placed.host.subnet.replace('0/24', ''))).toBe(true);
  expect((await api.run(`{ instance(id: "${placed.id}") { ip } }`)).data!.instance.ip).toBe(first);

  await api.run(`mutation { restartInstance(id: "${placed.id}") { id } }`);
  expect((await sync(home)).desired.find((d: { instanceId: string }) => d.instanceId === placed.id).ip).toBe(first);

  const instance = (await getInstance(store(), placed.id))!;
  const to = await migrateInstance(store(), instance, { requiredLabels: [{ key: 'zone', value: 'ip' }], exclusive: false, spreadBy: null, strategy: 'SPREAD' });
  const moved = await sync(to);
  const second = moved.desired.find((d: { instanceId: string }) => d.instanceId === placed.id).ip as string;
  expect(second).not.toBe(first);
  expect(second.startsWith(moved.network.subnet.replace('0/24', ''))).toBe(true);
  expect(moved.network.records).toContainEqual({ name: 'kv-0.kv.fz.internal', type: 'A', address: second, target: null, port: null });

  const endpoints = await api.run('{ resolveName(name: "kv-0.kv.fz.internal") { instance { id } host { id } ip ports { name containerPort } health } }');
  expect(endpoints.data!.resolveName).toEqual([{ instance: { id: placed.id }, host: { id: to }, ip: second, ports: [{ name: 'client', containerPort: 8080 }], health: null }]);
  void a; void b;
});

test('config files name every member\'s address from placement on, before any runner syncs; a moved member\'s at once, its peers\' only once all serve', async () => {
  const template = 'self={{instance.ip}}\n{{#each peers}}{{domainName}}={{ip}}\n{{/each}}';
  const defined = await api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', {
    input: { name: 'peers', versions: [{ version: '1.0.0', image: 'fangzhou/demo:1' }], configTemplates: [{ path: '/etc/peers.conf', template }],
      defaults: { replicas: 3, resources: { cpuMillis: 100, memoryMb: 32 } } },
  });
  expect(defined.errors).toBeUndefined();
  const deployed = await api.run('mutation { deploy(input: {name: "pe", product: "peers", placement: {requiredLabels: [{key: "zone", value: "ip"}]}}) { id instances { id ordinal ip } } }');
  expect(deployed.errors).toBeUndefined();
  const releaseId = deployed.data!.deploy.id as string;
  const files = async () => {
    const res = await api.run(`{ configFiles(releaseId: "${releaseId}") { instanceId ordinal files { content } } release(id: "${releaseId}") { instances { id ordinal ip } } }`);
    const ips = (res.data!.release.instances as { ordinal: number; ip: string }[]).sort((x, y) => x.ordinal - y.ordinal).map((i) => i.ip);
    const byOrdinal = (res.data!.configFiles as { ordinal: number; files: { content: string }[] }[]).sort((x, y) => x.ordinal - y.ordinal).map((f) => f.files[0].content);
    return { ips, byOrdinal };
  };
  const expected = (ips: string[], self: number) => [`self=${ips[self]}`, ...ips.map((ip, n) => `pe-${n}.pe.fz.internal=${ip}`), ''].join('\n');
  const first = await files();
  expect(new Set(first.ips).size).toBe(3);
  for (const ip of first.ips) expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
  expect(first.byOrdinal).toEqual([0, 1, 2].map((n) => expected(first.ips, n)));

  const instance = (await getInstance(store(), `${releaseId}-1`))!;
  await migrateInstance(store(), instance, { requiredLabels: [{ key: 'zone', value: 'ip' }], exclusive: false, spreadBy: null, strategy: 'SPREAD' },
    (moved) => specAfterMove(store(), moved));
  await reconcileRelease(store(), releaseId);
  const moved = await files();
  expect(moved.ips[1]).not.toBe(first.ips[1]);
  expect(moved.byOrdinal[1]).toBe(expected(moved.ips, 1));
  // No runner reports a serving container here: the peers wait, rendered with the address they knew.
  expect([moved.byOrdinal[0], moved.byOrdinal[2]]).toEqual([expected(first.ips, 0), expected(first.ips, 2)]);
});

test('resolveName: a release that does not exist has no endpoints; a name outside the zone is refused', async () => {
  expect((await api.run('{ resolveName(name: "nosuch.fz.internal") { ip } }')).data!.resolveName).toEqual([]);
  const outside = await api.run('{ resolveName(name: "www.example.com") { ip } }');
  expect(outside.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  expect(outside.errors?.[0].message).toContain('outside the internal zone fz.internal');
});
