/**
 * The platform's ticks (watchdog, then reconcile) in a process of their own, for crash tests: one tick per line read
 * on stdin, answered with `ticked` once it is done. A test kills it with SIGKILL between two ticks and starts a new
 * one: nothing survives but what the store holds. The store comes from the environment (DYNAMODB_ENDPOINT,
 * FZ_TABLE_PREFIX), as for the API.
 */
import { createInterface } from 'node:readline';
import { store } from '../../lib/store';
import { watchHosts } from '../../subgraphs/butler/watchdog';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';

let queue = Promise.resolve();
createInterface({ input: process.stdin }).on('line', () => {
  queue = queue.then(async () => {
    await watchHosts(store());
    await reconcileReleases(store());
    process.stdout.write('ticked\n');
  }).catch((err: unknown) => {
    process.stdout.write(`failed: ${err instanceof Error ? err.message : String(err)}\n`);
  });
});
process.stdout.write('ready\n');
