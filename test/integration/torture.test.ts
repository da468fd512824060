import type { Store } from '../../lib/store';
import type { startInProcess } from '../support/inprocess';
import { PRODUCT, invariants, mutationScript, random, runMutation } from '../support/torture';

/**
 * Torture (in-process gateway) on both implementations of the store protocol, dynalite and Amazon's DynamoDB Local:
 * 8 clients send seeded random mutations at once while the reconcile tick and two hosts' runner reports (sent as a
 * runner would) run beside them; then the ticks run until the books settle, and the invariants must hold.
 * FZ_TORTURE_SEED replays a run (a failure prints its seed); FZ_TORTURE_OPS sets how many mutations on dynalite
 * and FZ_TORTURE_LOCAL_OPS on DynamoDB Local (300 each by default; the file takes about 2.5 minutes on two busy cores,
 * a third of it starting DynamoDB Local's JVM).
 */
const SEED = Number(process.env.FZ_TORTURE_SEED ?? Date.now() % 1_000_000);
const OPS = Number(process.env.FZ_TORTURE_OPS ?? 300);
const LOCAL_OPS = Number(process.env.FZ_TORTURE_LOCAL_OPS ?? 300);
const CLIENTS = 8;

describe.each([
  ['dynalite', 'dynalite', OPS],
  ['DynamoDB Local', 'dynamodb-local', LOCAL_OPS],
] as const)('on %s', (_label, server, ops) => {
  let api: Awaited<ReturnType<typeof startInProcess>>;
  let store: () => Store;
  let reconcileReleases: (store: Store) => Promise<void>;
  let hosts: string[];

  beforeAll(async () => {
    // Modules of their own for each store: the store client and the gateway are built once per module registry.
    await jest.isolateModulesAsync(async () => {
      api = await (await import('../support/inprocess')).startInProcess('torture-', { server });
      store = (await import('../../lib/store')).store;
      reconcileReleases = (await import('../../subgraphs/panama/reconcile')).reconcileReleases;
    });
    hosts = [await api.registerHost('tort-a', { cpuMillis: 64000, memoryMb: 65536 }), await api.registerHost('tort-b', { cpuMillis: 64000, memoryMb: 65536 })];
    expect((await api.run('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: PRODUCT([]) })).errors).toBeUndefined();
  });

  afterAll(async () => {
    await api?.stop();
  });

  test(`${CLIENTS} clients, ${ops} random mutations with the ticks running: the books hold after (seed ${SEED})`, async () => {
    const script = mutationScript(random(SEED), ops);
    const internal: string[] = [];
    let applied = 0;
    const one = async (m: (typeof script)[number]) => {
      const outcome = await runMutation(api, m);
      if (outcome === 'applied') applied++;
      else if (outcome !== 'refused') internal.push(outcome);
    };
    let running = true;
    const tick = async () => {
      await reconcileReleases(store());
      for (const h of hosts) await api.reportAllRunning(h);
    };
    const ticks = (async () => { while (running) await tick(); })();
    let next = 0;
    await Promise.all(Array.from({ length: CLIENTS }, async () => { while (next < script.length) await one(script[next++]); }));
    running = false;
    await ticks;
    let problems = await invariants(store());
    for (let round = 0; round < 60 && problems.length; round++) {
      await tick();
      problems = await invariants(store());
    }
    console.log(`torture on ${server}, seed ${SEED}: ${applied} of ${ops} mutations applied, the rest refused (CONFLICT, NOT_FOUND, ...)`);
    if (problems.length || internal.length) console.error(`torture on ${server} failed; replay with FZ_TORTURE_SEED=${SEED}`);
    expect(applied).toBeGreaterThan(ops / 10);
    expect(internal).toEqual([]);
    expect(problems).toEqual([]);
    expect((await api.run('{ ledgerDrift { kind message } }')).data!.ledgerDrift).toEqual([]);
  }, 600_000); // dynalite: about 90 s alone on 2 cores; a loaded machine takes longer
});
