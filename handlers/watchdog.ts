import { store } from '../lib/store';
import { watchHosts } from '../subgraphs/butler/watchdog';

/** The watchdog tick: hosts that stopped reporting go DOWN and their instances move; draining hosts empty. */
export const handler = () => watchHosts(store());
