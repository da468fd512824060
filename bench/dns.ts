/**
 * Internal DNS, measured on a two-host fleet (test/support/fleet.ts: network namespaces with their own engines and
 * runners; images from the platform registry):
 *   1. 1,000 lookups of an instance name from a container (busybox nslookup through Docker's embedded DNS to the
 *      runner's DNS server), each timed in the container; the same loop with `true` instead of nslookup gives the
 *      cost of starting a process there, printed beside it.
 *   2. The host of an instance is killed: time from its new container starting on the other host to the first
 *      lookup from a container that answers the new address (and from the kill to that answer).
 * Prints figures; asserts nothing.
 */
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

/** Nanosecond durations of `command` run `count` times in the container, one per line. */
const timedLoop = (command: string, count: number) =>
  `i=0; while [ $i -lt ${count} ]; do s=$(date +%s%N); ${command} >/dev/null 2>&1; e=$(date +%s%N); echo $((e - s)); i=$((i + 1)); done`;
const millis = (out: string) => out.split('\n').filter((l) => /^\d+$/.test(l.trim())).map((l) => Number(l) / 1e6);

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
  const [product] = loadProductFile(join(ROOT, 'catalog/redis.yaml')).products;
  await stack.graphql('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: product.input });
  await stack.graphql('mutation { deploy(input: {name: "dnsb", product: "redis", replicas: 2}) { id } }');
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
  const lookups = millis(await exec(hostOf(one), 'fz-dnsb-1', timedLoop(`nslookup ${name}`, LOOKUPS)));
  const spawn = millis(await exec(hostOf(one), 'fz-dnsb-1', timedLoop('true', LOOKUPS)));
  const lookup = roundStats(stats(lookups));
  const processStart = roundStats(stats(spawn));
  printStats(`${lookups.length} lookups of ${name} from a container on the other host`, lookup);
  printStats(`the same loop running \`true\` (process start in the container)`, processStart);

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
    lookupMs: lookup, processStartMs: processStart,
    migrationStartedToAnsweredSeconds: Number(followSeconds.toFixed(2)),
    hostKilledToAnsweredSeconds: Number(((answeredAt - killedAt) / 1000).toFixed(1)),
  };
});
