import { startInProcess } from '../support/inprocess';

/**
 * Placement as the README promises it, through `deploy` on the API (in-process gateway, dynalite): `spreadBy` balances
 * a label's values, BINPACK fills one host first, `labelHost` steers where required labels lead, and
 * `setHostExclusive(id, null)` frees a dedicated host again. The scheduler's own rules are unit-tested
 * (test/unit/scheduler.test.ts); here the whole path from the mutation to the instances' hosts is.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
const hosts: Record<string, string> = {};
const zone = (value: string) => [{ key: 'zone', value }];

type Placed = { host: { name: string; labels: { key: string; value: string }[] } };
const deploy = (name: string, replicas: number, placement: Record<string, unknown> = {}, product = 'svc') =>
  api.run(`mutation($n: String!, $p: String!, $r: Int!, $pl: PlacementInput) {
    deploy(input: {name: $n, product: $p, replicas: $r, placement: $pl}) { instances { host { name labels { key value } } } } }`,
  { n: name, p: product, r: replicas, pl: placement });
const placed = async (name: string, replicas: number, placement: Record<string, unknown> = {}, product = 'svc') => {
  const res = await deploy(name, replicas, placement, product);
  expect(res.errors).toBeUndefined();
  return res.data!.deploy.instances as Placed[];
};
const zonesOf = (instances: Placed[]) => instances.map((i) => i.host.labels.find((l) => l.key === 'zone')!.value).sort();
const namesOf = (instances: Placed[]) => instances.map((i) => i.host.name).sort();

beforeAll(async () => {
  api = await startInProcess('place-');
  // Three hosts in zone a, one in zone b: spreading by host alone would put three of four replicas in zone a.
  for (const [name, z] of [['p-a1', 'a'], ['p-a2', 'a'], ['p-a3', 'a'], ['p-b1', 'b']]) {
    hosts[name] = await api.registerHost(name, { cpuMillis: 4000, memoryMb: 4096 }, zone(z));
  }
  for (const name of ['svc', 'vault']) {
    const res = await api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: {
      name, versions: [{ version: '1.0.0', image: `fangzhou/${name}:1` }], defaults: { replicas: 1, resources: { cpuMillis: 100, memoryMb: 32 } },
    } });
    expect(res.errors).toBeUndefined();
  }
});

afterAll(async () => {
  await api?.stop();
});

test('spreadBy balances the replicas across the values of a host label, not across hosts', async () => {
  expect(zonesOf(await placed('spread-zone', 4, { spreadBy: 'zone' }))).toEqual(['a', 'a', 'b', 'b']);
  // The same release without spreadBy: one per host, so zone a gets three.
  expect(zonesOf(await placed('spread-host', 4))).toEqual(['a', 'a', 'a', 'b']);
});

test('BINPACK puts the replicas on one host while it has room; SPREAD uses a host each', async () => {
  const packed = await placed('packed', 3, { strategy: 'BINPACK' });
  expect(new Set(namesOf(packed)).size).toBe(1);
  const spread = await placed('spread', 3, { strategy: 'SPREAD' });
  expect(new Set(namesOf(spread)).size).toBe(3);
});

test('labelHost steers placement: a required label no host has is refused, and once a host has it the release goes there', async () => {
  const refused = await deploy('ssd-only', 2, { requiredLabels: [{ key: 'disk', value: 'ssd' }] });
  expect(refused.errors?.[0].extensions?.code).toBe('UNSCHEDULABLE');
  expect(refused.errors?.[0].message).toBe('2 of 2 instances cannot be placed: 0/4 hosts can run it: 4 missing required labels');
  const labelled = await api.run('mutation($id: ID!, $l: [LabelInput!]!) { labelHost(id: $id, labels: $l) { labels { key value } } }',
    { id: hosts['p-a2'], l: [...zone('a'), { key: 'disk', value: 'ssd' }] });
  expect(labelled.data!.labelHost.labels).toEqual([...zone('a'), { key: 'disk', value: 'ssd' }]);
  expect(namesOf(await placed('ssd-only', 2, { requiredLabels: [{ key: 'disk', value: 'ssd' }] }))).toEqual(['p-a2', 'p-a2']);
});

test('setHostExclusive(id, null) frees a dedicated host for every product again', async () => {
  const dedicated = await api.registerHost('p-c1', { cpuMillis: 4000, memoryMb: 4096 }, zone('c'));
  const set = await api.run('mutation($id: ID!) { setHostExclusive(id: $id, product: "vault") { exclusiveFor } }', { id: dedicated });
  expect(set.data!.setHostExclusive.exclusiveFor).toBe('vault');
  const inZoneC = { requiredLabels: zone('c') };
  expect((await deploy('zone-c', 1, inZoneC)).errors?.[0].extensions?.code).toBe('UNSCHEDULABLE');

  const freed = await api.run('mutation($id: ID!) { setHostExclusive(id: $id, product: null) { exclusiveFor } }', { id: dedicated });
  expect(freed.errors).toBeUndefined();
  expect(freed.data!.setHostExclusive.exclusiveFor).toBeNull();
  expect(namesOf(await placed('zone-c', 1, inZoneC))).toEqual(['p-c1']);
});
