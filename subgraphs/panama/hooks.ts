import type { NewEvent } from '../../lib/events';
import { Hooks } from '../../lib/hooks';
import type { Store } from '../../lib/store';
import type { Release } from './releases';

/** What Panama reports to the part above it (Butler), which registers listeners when it loads. */
export type PanamaListeners = {
  /** An upgrade or rollback step, for the event log and `releaseProgress` subscribers. */
  event: (store: Store, event: NewEvent, now: Date) => Promise<void>;
  /** An upgrade failed its health gate and is being rolled back; `cause` is the release's, one open alarm per release. */
  upgradeRolledBack: (store: Store, release: Release, cause: string, message: string, now: Date) => Promise<void>;
  /** The release is gone (its last container removed); whatever was about it is over. `cause` as above. */
  releaseDeleted: (store: Store, release: Release, cause: string, now: Date) => Promise<void>;
};

export const panamaHooks = new Hooks<PanamaListeners>();
