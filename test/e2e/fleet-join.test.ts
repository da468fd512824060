import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, type Stack } from '../../scripts/stack';
import { controlPlaneOf, startFleet, type Fleet } from '../support/fleet';
import { waitFor } from '../support/wait';

/**
 * The fleet harness itself: three hosts, each a network namespace with its own empty Docker engine and runner,
 * join a control plane that listens on the bridge address (not loopback), and report their engines.
 */
let fleet: Fleet;
let stack: Stack;
let dir: string | undefined;

beforeAll(async () => {
  fleet = await startFleet({ hosts: 3, prefix: 'join' });
  dir = mkdtempSync(join(tmpdir(), 'fz-fleet-join-'));
  stack = await startStack({
    dataDir: dir, listenHost: fleet.bridgeAddress, httpPort: 3360, wsPort: 3361, lambdaPort: 3362, storePort: 4860, output: join(dir, 'stack.log'),
  });
  fleet.attach(controlPlaneOf(stack));
}, 300_000);

afterAll(async () => {
  await stack?.stop();
  await fleet?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('hosts in their own namespaces join the control plane over the bridge with empty engines', async () => {
  for (const host of fleet.hosts) await host.startRunner();
  const hosts = await waitFor('three hosts READY with their engines', async () => {
    const res = await stack.graphql<{ hosts: { name: string; address: string; status: string; engine: { version: string } | null }[] }>(
      '{ hosts { name address status engine { version } } }');
    const list = res.data?.hosts ?? [];
    return list.length === 3 && list.every((h) => h.status === 'READY' && h.engine) && list;
  }, 120_000);
  expect(hosts.map((h) => [h.name, h.address])).toEqual(fleet.hosts.map((h) => [h.name, h.address]));
  for (const host of fleet.hosts) expect(await host.docker.listImages()).toEqual([]);
}, 300_000);
