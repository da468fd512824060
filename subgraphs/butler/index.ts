/**
 * Butler, the operations part watching Ark and Panama: container events, alarms, healing, host loss, alert delivery.
 * The only module other code may import (test/unit/parts.test.ts). Butler hears of what happens below through the
 * hooks it registers here, when it loads. Butler alone writes the tables `alarms`, `events` and `butlerClaims`.
 */
import { arkHooks } from '../ark';
import { panamaHooks } from '../panama';
import { raise, resolveAlarm } from './alarms';
import { recordEvent } from './events';
import { reactToChanges } from './watch';
import { hostCameBack } from './watchdog';

export { butlerSchema } from './schema';
export { markPublished, pruneEvents, recordEvent, unpublishedEvents, type PlatformEvent } from './events';
export { resolveAlarmsOfDeletedReleases } from './alarms';
export { backfillIndexes } from './backfill';
export { watchHosts } from './watchdog';
export { deliverPending } from './notify';
export { inspectIfDue } from './inspection';
export { checkMemory } from './thresholds';
export { checkCertificates } from './certificates';
export { collectFleetMetrics } from './metrics';

const record = async (...args: Parameters<typeof recordEvent>) => { await recordEvent(...args); };

arkHooks.on({ event: record, containersChanged: reactToChanges, hostCameBack });
panamaHooks.on({
  event: record,
  upgradeRolledBack: async (store, release, cause, message, now) => {
    await raise(store, { kind: 'UPGRADE_ROLLED_BACK', severity: 'WARNING', cause, releaseId: release.id, message }, now);
  },
  releaseDeleted: async (store, _release, cause, now) => {
    await resolveAlarm(store, 'UPGRADE_ROLLED_BACK', cause, now);
  },
});
