import type { NewEvent } from '../../lib/events';
import { Hooks } from '../../lib/hooks';
import type { Store } from '../../lib/store';
import type { Release } from './releases';

/** What Panama reports to the part above it (Butler), which registers listeners when it loads. */
export type PanamaListeners = {
  /** An upgrade or rollback step, for the event log and `releaseProgress` subscribers. */
  event: (store: Store, event: NewEvent, now: Date) => Promise<void>;
  /** An upgrade failed its health gate and is being rolled back; `cause` names this upgrade once. */
  upgradeRolledBack: (store: Store, release: Release, cause: string, message: string, now: Date) => Promise<void>;
};

export const panamaHooks = new Hooks<PanamaListeners>();
