import { config } from '../lib/config';
import { store } from '../lib/store';
import { inspectIfDue } from '../subgraphs/butler/inspection';
import { deliverPending } from '../subgraphs/butler/notify';
import { watchHosts } from '../subgraphs/butler/watchdog';

/**
 * The watchdog tick: hosts that stopped reporting go DOWN and their instances move; draining hosts empty; alarm
 * notifications that are due are sent; the daily inspection runs when due. A failing channel or inspection never holds
 * up host handling.
 */
export const handler = async () => {
  const { inspectionIntervalHours, runnerPollSeconds } = config();
  const [hosts, notify] = await Promise.allSettled([
    watchHosts(store()), deliverPending(store()), inspectIfDue(store(), inspectionIntervalHours, runnerPollSeconds),
  ]);
  if (hosts.status === 'rejected') throw hosts.reason;
  return notify.status === 'fulfilled' ? notify.value : undefined;
};
