/**
 * The process a crash test kills: it sends the mutations it is given (FZ_CRASH_MUTATIONS, JSON `[index, mutation]`
 * pairs) from 4 clients at once, with the ticks (watchdog, reconcile) and the reports of the runners of FZ_CRASH_HOSTS
 * running beside them, on the store the environment names (DYNAMODB_ENDPOINT, FZ_TABLE_PREFIX). It prints
 * `start <index>` and `done <index> <outcome>` per mutation, `failed: …` for a tick that threw, and `finished` once
 * every mutation is done; it ticks on until its stdin closes. The test SIGKILLs it at any point: nothing survives
 * but what the store holds.
 */
import { store } from '../../lib/store';
import { watchHosts } from '../../subgraphs/butler/watchdog';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';
import { connectInProcess } from './inprocess';
import { runMutation, type Mutation } from './torture';

const say = (line: string) => process.stdout.write(`${line}\n`);

async function main() {
  const api = await connectInProcess(process.env.DYNAMODB_ENDPOINT!, process.env.FZ_TABLE_PREFIX!);
  const mutations = JSON.parse(process.env.FZ_CRASH_MUTATIONS!) as [number, Mutation][];
  const hosts = JSON.parse(process.env.FZ_CRASH_HOSTS!) as string[];
  say('ready');
  let running = true;
  const tick = async () => {
    try {
      await watchHosts(store());
      await reconcileReleases(store());
      for (const h of hosts) await api.reportAllRunning(h);
    } catch (err) {
      say(`failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  const ticks = (async () => { while (running) await tick(); })();
  let next = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < mutations.length) {
      const [index, m] = mutations[next++];
      say(`start ${index}`);
      say(`done ${index} ${await runMutation(api, m)}`);
    }
  }));
  say('finished');
  // Ticks on until the test closes stdin (or kills it meanwhile).
  process.stdin.resume().on('end', async () => {
    running = false;
    await ticks;
    process.exit(0);
  });
}

main().catch((err: unknown) => {
  say(`failed: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
