/**
 * Panama, the management part on top of Ark: products, releases, upgrades, alert channels. The only module other
 * parts may import (test/unit/parts.test.ts); Panama imports only Ark's public module and reports upward through
 * `panamaHooks`. Panama alone writes the tables `products`, `releases`, `channels` and `panamaClaims`.
 */
import { arkHooks } from '../ark';
import { finishDeletions } from './releases';

export { panamaHooks, type PanamaListeners } from './hooks';
export { panamaSchema } from './schema';
export { reconcileReleases } from './reconcile';
export { getProduct, mustGetProduct, type Product } from './products';
export { constraintsOf, getRelease, listReleases, mustGetRelease, specAfterMove, type Release } from './releases';
export { isActive } from './upgrades';
export { releaseInScope, releasesInScope } from './scope';
export { allChannels, channelsFor, mustGetChannel, scrubTarget, type AlertChannel } from './channels';

// A release being deleted disappears once the runners report its last container gone.
arkHooks.on({
  containersChanged: (store, _hostId, changes) => finishDeletions(store, new Set(changes.map((c) => c.releaseId))),
});
