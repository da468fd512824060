import { store } from '../lib/store';
import { butler } from '../subgraphs';

/**
 * The watchdog tick: hosts that stopped reporting go DOWN and their instances move; draining hosts empty; alarm
 * notifications that are due are sent. A failing channel never holds up host handling.
 */
export const handler = async () => {
  const [hosts, notify] = await Promise.allSettled([butler.watchHosts(store()), butler.deliverPending(store())]);
  if (hosts.status === 'rejected') throw hosts.reason;
  return notify.status === 'fulfilled' ? notify.value : undefined;
};
