import type { Stack } from '../../scripts/stack';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startFleetStack, type Fleet, type FleetHost } from '../support/fleet';
import { waitFor, waitUntil } from '../support/wait';

/**
 * Config templates that name their peers' addresses, on three hosts (network namespaces with their own engines and
 * runners): each member's rendered file holds every member's real address (the one its container has on the
 * `fangzhou` network) from the first start; when a member moves to another host (its host is drained) the others are
 * re-created with its new address one at a time, never all at once (read back from the engines' event streams);
 * and a release whose templates do not write `ip` has none of its containers re-created when a peer moves.
 */
let fleet: Fleet;
let stack: Stack;
let stop: (() => Promise<void>) | undefined;

const PEERS_CONF = '/etc/fz/peers.conf';
const product = (name: string, template: string) => ({
  ...DEMO_PRODUCT, name, versions: [DEMO_PRODUCT.versions[0]], configTemplates: [{ path: PEERS_CONF, template }],
});
const WITH_IP = product('peerips', 'self={{instance.ip}}\n{{#each peers}}server.{{number}}={{domainName}}:2888:3888 # {{ip}}\n{{/each}}');
const WITHOUT_IP = product('peernames', '{{#each peers}}server.{{number}}={{domainName}}:2888:3888\n{{/each}}');

interface InstanceView { id: string; ordinal: number; ip: string | null; host: { id: string; name: string } | null }
interface ReleaseView { id: string; name: string; status: string; instances: InstanceView[] }
const release = async (name: string) => (await stack.graphql<{ releases: ReleaseView[] }>(
  '{ releases { id name status instances { id ordinal ip host { id name } } } }')).data?.releases.find((r) => r.name === name);
const hostOf = (i: InstanceView) => fleet.hosts.find((h) => h.name === i.host?.name)!;

/** What the member's container really is: its id, its address on the fangzhou network, and its rendered file. */
async function container(host: FleetHost, name: string): Promise<{ id: string; ip: string; file: string }> {
  const c = host.docker.getContainer(name);
  const info = await c.inspect();
  const run = await c.exec({ Cmd: ['cat', PEERS_CONF], AttachStdout: true, AttachStderr: true });
  const stream = await run.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on('data', (b: Buffer) => chunks.push(b));
  await new Promise((r) => { stream.on('end', r); stream.on('close', r); });
  // Docker frames each piece of output: a byte for the stream, three zero bytes, its length, then the bytes.
  const raw = Buffer.concat(chunks);
  const out: Buffer[] = [];
  for (let at = 0; at + 8 <= raw.length; at += 8 + raw.readUInt32BE(at + 4)) if (raw[at] === 1) out.push(raw.subarray(at + 8, at + 8 + raw.readUInt32BE(at + 4)));
  return { id: info.Id, ip: info.NetworkSettings.Networks.fangzhou?.IPAddress ?? '', file: Buffer.concat(out).toString('utf8') };
}

/** Every member's container, as its host's engine has it now. */
const members = async (r: ReleaseView) => Promise.all([...r.instances].sort((a, b) => a.ordinal - b.ordinal)
  .map(async (i) => ({ instance: i, ...(await container(hostOf(i), `fz-${r.name}-${i.ordinal}`)) })));

const expectedFile = (name: string, ips: string[], self: number) =>
  [`self=${ips[self]}`, ...ips.map((ip, n) => `server.${n + 1}=${name}-${n}.${name}.fz.internal:2888:3888 # ${ip}`), ''].join('\n');

async function deploy(name: string, productName: string): Promise<ReleaseView> {
  const res = await stack.graphql(`mutation { deploy(input: {name: "${name}", product: "${productName}", replicas: 3}) { id } }`);
  expect(res.errors).toBeUndefined();
  return waitFor(`${name} RUNNING on three hosts`, async () => {
    const r = await release(name);
    return r?.status === 'RUNNING' && new Set(r.instances.map((i) => i.host?.id)).size === 3 && r;
  }, 240_000, 1000);
}

/** Docker events of a release's containers on every engine between two times (seconds), oldest first. */
async function engineEvents(releaseId: string, since: number, until: number) {
  const all = await Promise.all(fleet.hosts.map(async (h) => {
    const stream = await h.docker.getEvents({ since, until, filters: { type: ['container'], label: [`fangzhou.release=${releaseId}`] } });
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
    return Buffer.concat(chunks).toString('utf8').split('\n').filter(Boolean)
      .map((line) => JSON.parse(line) as { Action: string; timeNano: number; Actor: { Attributes: Record<string, string> } });
  }));
  return all.flat().sort((a, b) => a.timeNano - b.timeNano);
}

beforeAll(async () => {
  ({ fleet, stack, stop } = await startFleetStack({
    hosts: 3, prefix: 'pip', registryPort: 5074, ports: { httpPort: 3480, wsPort: 3481, lambdaPort: 3482, storePort: 4980 }, images: ['fangzhou/demo:1'],
  }));
  for (const p of [WITH_IP, WITHOUT_IP]) expect((await stack.graphql(DEFINE_PRODUCT, { input: p })).errors).toBeUndefined();
}, 400_000);

afterAll(async () => {
  await stop?.();
}, 120_000);

let withIp: ReleaseView;
let withoutIp: ReleaseView;

test('each member\'s rendered file names every member\'s real address (the one its container has) from the first start', async () => {
  withIp = await deploy('pip', 'peerips');
  withoutIp = await deploy('names', 'peernames');
  const seen = await members(withIp);
  const ips = seen.map((m) => m.ip);
  for (const m of seen) {
    expect(m.ip).toMatch(/^10\.240\.\d+\.\d+$/);
    expect(m.instance.ip).toBe(m.ip);
    expect(m.file).toBe(expectedFile('pip', ips, m.instance.ordinal));
  }
  expect(new Set(ips).size).toBe(3);
  // The API's preview of the files is what the containers have.
  const files = await stack.graphql<{ configFiles: { ordinal: number; files: { path: string; content: string }[] }[] }>(
    `{ configFiles(releaseId: "${withIp.id}") { ordinal files { path content } } }`);
  for (const f of files.data!.configFiles) expect(f.files).toEqual([{ path: PEERS_CONF, content: expectedFile('pip', ips, f.ordinal) }]);
}, 600_000);

test('a member moves to another host: the others show its new address, re-created one at a time; a release without ip re-creates nothing', async () => {
  const before = await members(withIp);
  const namesBefore = await members(withoutIp);
  const moving = before[1];
  const since = Math.floor(Date.now() / 1000) - 1;
  const drained = await stack.graphql(`mutation { drainHost(id: "${moving.instance.host!.id}") { status } }`);
  expect(drained.errors).toBeUndefined();

  let after!: Awaited<ReturnType<typeof members>>;
  await waitUntil('pip-1 on another host and every member\'s file naming its new address', async () => {
    const r = await release('pip');
    const m1 = r?.instances.find((i) => i.ordinal === 1);
    // What it saw, shown if time runs out.
    const seen = async (why: string) => JSON.stringify({ why, release: r, events: (await stack.graphql<{ events: { nodes: { kind: string; message: string }[] } }>(
      `{ events(filter: {releaseId: "${withIp.id}"}, first: 100) { nodes { kind message } } }`)).data?.events.nodes.filter((e) => e.kind !== 'CONTAINER_STATUS').slice(-8) });
    if (r?.status !== 'RUNNING' || !m1 || m1.host?.id === moving.instance.host!.id) return seen('not RUNNING elsewhere yet');
    const now = await members(r).catch(() => null);
    if (!now) return seen('a member is being re-created');
    const ips = now.map((m) => m.ip);
    if (!now.every((m) => m.file === expectedFile('pip', ips, m.instance.ordinal))) return seen(JSON.stringify(now.map((m) => m.file)));
    after = now;
    return true;
  }, 300_000, 1000);
  const names = await waitFor('names RUNNING off the drained host', async () => {
    const r = await release('names');
    return r?.status === 'RUNNING' && r.instances.every((i) => i.host?.id !== moving.instance.host!.id) && r;
  }, 300_000, 1000);
  const until = Math.ceil(Date.now() / 1000) + 1;

  // The mover has a new address; the others kept theirs and were re-created to learn it.
  expect(after[1].ip).not.toBe(moving.ip);
  expect(after[1].instance.ip).toBe(after[1].ip);
  for (const n of [0, 2]) {
    expect(after[n].ip).toBe(before[n].ip);
    expect(after[n].id).not.toBe(before[n].id);
    expect(after[n].file).toContain(`server.2=pip-1.pip.fz.internal:2888:3888 # ${after[1].ip}\n`);
    expect(after[n].file).not.toContain(moving.ip);
  }

  // At no moment were all members down: from the engines' own events, at most one member was away at any time.
  const events = await engineEvents(withIp.id, since, until);
  const up = new Map([0, 1, 2].map((n) => [n, 1]));
  let fewest = 3;
  for (const e of events) {
    const ordinal = Number(e.Actor.Attributes['fangzhou.instance']?.split('-').pop());
    if (e.Action === 'start') up.set(ordinal, (up.get(ordinal) ?? 0) + 1);
    else if (e.Action === 'die') up.set(ordinal, (up.get(ordinal) ?? 0) - 1);
    else continue;
    fewest = Math.min(fewest, [...up.values()].filter((count) => count > 0).length);
  }
  expect(events.filter((e) => e.Action === 'start').length).toBeGreaterThanOrEqual(3);
  expect(fewest).toBeGreaterThanOrEqual(2);

  // The release whose files name no address: its members that stayed kept their very containers.
  const movedName = names.instances.find((i) => namesBefore.find((m) => m.instance.id === i.id)!.instance.host!.id !== i.host!.id)!;
  const namesAfter = await members(names);
  for (const m of namesAfter.filter((x) => x.instance.id !== movedName.id)) {
    expect(m.id).toBe(namesBefore.find((b) => b.instance.id === m.instance.id)!.id);
  }
  const replaced = (await stack.graphql<{ events: { nodes: { kind: string; instance: { id: string } | null; message: string }[] } }>(
    `{ events(filter: {releaseId: "${names.id}"}, first: 100) { nodes { kind instance { id } message } } }`)).data!.events.nodes;
  expect(replaced.filter((e) => e.kind === 'PEER_ADDRESS_CHANGED')).toEqual([]);
  const rolled = (await stack.graphql<{ events: { nodes: { kind: string; message: string }[] } }>(
    `{ events(filter: {releaseId: "${withIp.id}"}, first: 100) { nodes { kind message } } }`)).data!.events.nodes;
  expect(rolled.filter((e) => e.kind === 'PEER_ADDRESS_CHANGED').map((e) => e.message).sort()).toEqual([
    expect.stringMatching(/^pip-0 re-created: its config files name pip-1 \(10\.240\.\d+\.\d+\) at a new address/),
    expect.stringMatching(/^pip-2 re-created: its config files name pip-1 \(10\.240\.\d+\.\d+\) at a new address/),
  ]);
}, 900_000);
