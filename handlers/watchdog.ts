import { apiGatewayConnections, probeHost, type Connections } from '../gateway/subscriptions';
import { config } from '../lib/config';
import { log } from '../lib/log';
import { store } from '../lib/store';
import { ark, butler } from '../subgraphs';

let connections: Connections | undefined;
/** The watchdog's second witness: a ping down a silent host's notification socket. */
const probe = (hostId: string) => probeHost(store(), (connections ??= apiGatewayConnections()), hostId);

/**
 * The watchdog tick: hosts that stopped reporting go DOWN and their instances move; draining hosts empty; alarm
 * notifications that are due are sent; the daily inspection runs when due; threshold rules judge the latest figures
 * and certificates close to expiry raise an alarm;
 * network changes held back by the once-a-second limit are told to the hosts; alarms of deleted releases resolve;
 * events past their retention go. A failing channel, inspection or rule never holds up host handling.
 */
export const handler = async () => {
  const { inspectionIntervalHours, runnerPollSeconds, eventRetentionDays, ca } = config();
  const [hosts, notify, ...others] = await Promise.allSettled([
    butler.watchHosts(store(), probe), butler.deliverPending(store()), butler.inspectIfDue(store(), inspectionIntervalHours, runnerPollSeconds),
    butler.checkMemory(store()), ca.dir ? butler.checkCertificates(store(), ca.warningSeconds) : undefined, ark.announcePendingNetwork(store()), butler.resolveAlarmsOfDeletedReleases(store()),
    butler.backfillIndexes(store(), eventRetentionDays).then(() => butler.pruneEvents(store(), eventRetentionDays)),
  ]);
  for (const r of others) if (r.status === 'rejected') log.error({ err: r.reason }, 'a watchdog step failed; the next tick tries again');
  if (hosts.status === 'rejected') throw hosts.reason;
  return notify.status === 'fulfilled' ? notify.value : undefined;
};
