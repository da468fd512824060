import type { NewEvent } from '../../lib/events';
import { Hooks } from '../../lib/hooks';
import type { Store } from '../../lib/store';
import type { StatusChange } from './containers';
import type { Host } from './hosts';

/** What Ark reports to the parts above it (Panama, Butler), which register listeners when they load. */
export type ArkListeners = {
  /** Something happened worth a line in the event log; with topics, also a live notice (runners, subscribers). */
  event: (store: Store, event: NewEvent, now: Date) => Promise<void>;
  /** A host runner's report changed the observed state of these containers. */
  containersChanged: (store: Store, hostId: string, changes: StatusChange[], now: Date) => Promise<void>;
  /** A host marked DOWN synced again. */
  hostCameBack: (store: Store, host: Host, now: Date) => Promise<void>;
};

export const arkHooks = new Hooks<ArkListeners>();
