/**
 * The shape of a platform event, shared by the parts that report events (Ark, Panama) and the one that records them
 * (Butler, which owns the events table and its outbox for live subscriptions).
 */
export type Severity = 'CRITICAL' | 'WARNING' | 'INFO';
export const SEVERITY_RANK: Record<Severity, number> = { INFO: 0, WARNING: 1, CRITICAL: 2 };

export interface NewEvent {
  kind: string;
  message: string;
  severity?: Severity;
  hostId?: string | null;
  releaseId?: string | null;
  instanceId?: string | null;
  alarmId?: string | null;
  /** Subscription topics this event feeds, e.g. `alarm`, `container:<releaseId>:<hostId>`, `release:<releaseId>`. */
  topics?: string[];
  /** Upgrade and rollback steps: instances done out of the total. */
  progress?: { done: number; total: number } | null;
  /** Container status changes: the container's health before and after (the inspection counts flaps with it). */
  health?: { before: string | null; after: string | null } | null;
  /** A host's desired-state notice sent to every host at once: the seconds its runner spreads its sync over. */
  spreadSeconds?: number;
}
