/**
 * The process a crash test kills: it sends the mutations it is given (FZ_CRASH_MUTATIONS, JSON `[index, mutation]`
 * pairs) from 4 clients at once, with the ticks (watchdog, reconcile) and the reports of the runners of FZ_CRASH_HOSTS
 * running beside them, on the store the environment names (DYNAMODB_ENDPOINT, FZ_TABLE_PREFIX). It prints
 * `done <index> <outcome>` per mutation, `failed: …` for a tick that threw, and `finished` once
 * every mutation is done; it ticks on until its stdin closes. The test SIGKILLs it at any point: nothing survives
 * but what the store holds.
 */
import { Store, store, type Table } from '../../lib/store';
import { watchHosts } from '../../subgraphs/butler/watchdog';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';
import { connectInProcess } from './inprocess';
import { runMutation, type Mutation } from './torture';

const say = (line: string) => process.stdout.write(`${line}\n`);

/**
 * With FZ_CRASH_AT_WRITE=k the process SIGKILLs itself just before its k-th write to the books (releases, instances,
 * hosts, containers, claims): a crash between two writes of one operation, where a timer would seldom land.
 */
const crashAt = Number(process.env.FZ_CRASH_AT_WRITE ?? 0);
if (crashAt) {
  const BOOKS = new Set<Table>(['releases', 'instances', 'hosts', 'containers', 'claims', 'panamaClaims']);
  let writes = 0;
  for (const method of ['create', 'replace', 'remove'] as const) {
    const write = Store.prototype[method] as (this: Store, table: Table, ...rest: unknown[]) => Promise<unknown>;
    (Store.prototype as unknown as Record<string, unknown>)[method] = function (this: Store, table: Table, ...rest: unknown[]) {
      if (BOOKS.has(table) && ++writes === crashAt) process.kill(process.pid, 'SIGKILL');
      return write.call(this, table, ...rest);
    };
  }
}

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
