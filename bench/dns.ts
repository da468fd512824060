/**
 * Internal DNS, measured on a two-host fleet (test/support/fleet.ts: network namespaces with their own engines and
 * runners; images from the platform registry):
 *   1. 1,000 lookups of an instance name from a container's network namespace, sent one after another to the
 *      nameserver of the container's resolv.conf (Docker's embedded DNS, which forwards fz.internal to the runner's
 *      DNS server on the bridge), each timed with a monotonic clock (a DNS client run with nsenter in that
 *      namespace: the container's busybox has no sub-second clock, and a process per lookup would be measured too).
 *   2. The host of an instance is killed: time from its new container starting on the other host to the first
 *      lookup from a container that answers the new address (and from the kill to that answer).
 * Prints figures; asserts nothing.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadProductFile } from '../cli/product-file';
import { startStack } from '../scripts/stack';
import { controlPlaneOf, pushImages, startFleet, type FleetHost } from '../test/support/fleet';
import { ms, now, printStats, ROOT, roundStats, runBench, stats, waitFor } from './lib';

const IMAGE = 'fangzhou/redis:7.0.15';
const LOOKUPS = 1000;

async function exec(host: FleetHost, container: string, script: string): Promise<string> {
  const run = await host.docker.getContainer(container).exec({ Cmd: ['sh', '-c', script], AttachStdout: true, AttachStderr: true });
  const stream = await run.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((r) => { stream.on('end', r); stream.on('close', r); });
  return Buffer.concat(chunks).toString('utf8').replace(/[\x00-\x08\x0e-\x1f]/g, '');
}

/** Milliseconds of `count` A lookups of `name`, one after another, from the container's network namespace. */
async function timedLookups(host: FleetHost, container: string, name: string, count: number): Promise<number[]> {
  const info = await host.docker.getContainer(container).inspect();
  const nameserver = /^nameserver\s+(\S+)/m.exec(readFileSync(info.ResolvConfPath, 'utf8'))?.[1];
  if (!nameserver) throw new Error(`no nameserver in the resolv.conf of ${container}`);
  const client = `
    const { Resolver } = require('node:dns').promises;
    const r = new Resolver({ timeout: 2000, tries: 1 }); r.setServers([${JSON.stringify(nameserver)}]);
    (async () => { const out = [];
      for (let i = 0; i < ${count}; i++) { const t = process.hrtime.bigint(); await r.resolve4(${JSON.stringify(name)}); out.push(Number(process.hrtime.bigint() - t) / 1e6); }
      console.log(JSON.stringify(out)); })().catch((e) => { console.error(e.message); process.exit(1); });`;
  const run = spawnSync('nsenter', [`--net=/proc/${info.State.Pid}/ns/net`, '--', process.execPath, '-e', client], { encoding: 'utf8', timeout: 300_000 });
  if (run.status !== 0) throw new Error(`lookups from ${container} failed: ${run.stderr || run.error}`);
  return JSON.parse(run.stdout) as number[];
}

runBench('dns', 900_000, async (b) => {
  const fleet = await startFleet({ hosts: 2, prefix: 'dnsb', registryPort: 5072 });
  b.defer(() => fleet.stop());
  const stack = await startStack({
    dataDir: b.dir, listenHost: fleet.bridgeAddress, httpPort: 3470, wsPort: 3471, lambdaPort: 3472, storePort: 4975,
    registry: { port: 5072 }, output: join(b.dir, 'stack.log'),
  });
  b.defer(() => stack.stop());
  fleet.attach(controlPlaneOf(stack));
  await pushImages(stack.registry!, [IMAGE]);
  for (const h of fleet.hosts) await h.startRunner();
  await waitFor('both hosts READY', async () => {
    const hosts = (await stack.graphql<{ hosts: { status: string }[] }>('{ hosts { status } }')).data?.hosts ?? [];
    return hosts.length === 2 && hosts.every((h) => h.status === 'READY') && hosts;
  }, 240_000, 1000);
  const [product] = loadProductFile(join(ROOT, 'catalog/redis.yaml')).products;
  for (const [query, variables] of [
    ['mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: product.input }],
    ['mutation { deploy(input: {name: "dnsb", product: "redis", replicas: 2}) { id } }', {}],
  ] as const) {
    const res = await stack.graphql(query, variables);
    if (res.errors) throw new Error(`${query.slice(0, 40)}…: ${JSON.stringify(res.errors)}`);
  }
  type I = { ordinal: number; ip: string; host: { name: string } | null };
  const instances = async () => (await stack.graphql<{ releases: { name: string; status: string; instances: I[] }[] }>(
    '{ releases { name status instances { ordinal ip host { name } } } }')).data?.releases.find((r) => r.name === 'dnsb');
  const running = await waitFor('dnsb RUNNING on both hosts', async () => {
    const r = await instances();
    return r?.status === 'RUNNING' && new Set(r.instances.map((i) => i.host?.name)).size === 2 && r.instances;
  }, 300_000, 1000);
  const hostOf = (i: I) => fleet.hosts.find((h) => h.name === i.host?.name)!;
  const [zero, one] = [...running].sort((a, b) => a.ordinal - b.ordinal);

  const name = 'dnsb-0.dnsb.fz.internal';
  const lookups = await timedLookups(hostOf(one), 'fz-dnsb-1', name, LOOKUPS);
  const lookup = roundStats(stats(lookups));
  printStats(`${lookups.length} lookups of ${name} from fz-dnsb-1's network namespace (the other host)`, lookup);

  // Kill the host of instance 0; the survivor hosts both instances afterwards.
  const lost = hostOf(zero);
  const survivor = hostOf(one);
  const killedAt = Date.now();
  await lost.killRunner();
  await lost.killEngine();
  console.log(`killed ${lost.name} (instance 0 at ${zero.ip})`);
  const moved = await waitFor('instance 0 placed on the other host with a new address', async () => {
    const m = (await instances())?.instances.find((i) => i.ordinal === 0);
    return m && m.host?.name === survivor.name && m.ip !== zero.ip && m;
  }, 300_000, 200);
  const startedAt = await waitFor('its new container running', async () => {
    const info = await survivor.docker.getContainer('fz-dnsb-0').inspect().catch(() => null);
    return info?.State.Running && { at: Date.parse(info.State.StartedAt) };
  }, 300_000, 100);
  let answeredAt = 0;
  const t = now();
  await waitFor('a lookup answering the new address', async () => {
    const out = await exec(survivor, 'fz-dnsb-1', `nslookup ${name}`);
    answeredAt = Date.now();
    return out.includes(moved.ip) && { out };
  }, 60_000, 50);
  const followSeconds = (answeredAt - startedAt.at) / 1000;
  console.log(`new container started → DNS answers ${moved.ip}: ${followSeconds.toFixed(2)} s (polled every 50 ms, ${ms(now() - t)} after the container was seen running)`);
  console.log(`host killed → DNS answers the new address: ${((answeredAt - killedAt) / 1000).toFixed(1)} s (host-down detection included)`);
  return {
    lookupMs: lookup,
    migrationStartedToAnsweredSeconds: Number(followSeconds.toFixed(2)),
    hostKilledToAnsweredSeconds: Number(((answeredAt - killedAt) / 1000).toFixed(1)),
  };
});
