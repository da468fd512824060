import { config } from '../../lib/config';
import type { ContainerHealth, HostNetwork } from '../../lib/runner-protocol';
import type { Store } from '../../lib/store';
import { isServing, type ContainerRecord } from './containers';
import { listHosts, type Host } from './hosts';
import { instancesOfRelease, type Instance } from './instances';
import { hostNetwork, networkSerial, routesFor } from './network';
import { parseZoneName, zoneRecords } from './zone';

const servingSet = (containers: ContainerRecord[]) => new Set(containers.filter(isServing).map((c) => c.instanceId));

/**
 * What a host's runner needs of the cluster network: its subnet and, when the runner's serial is stale, the routes
 * to the other hosts and every record of the zone (only then are hosts, instances and containers read).
 */
export async function networkFor(store: Store, host: Host & { subnet: string }, knownSerial: number | null | undefined): Promise<HostNetwork> {
  const serial = await networkSerial(store);
  const zone = config().dnsZone;
  const base = { ...hostNetwork(host), zone, serial };
  if (knownSerial === serial) return { ...base, routes: null, records: null };
  const [hosts, instances, containers] = await Promise.all([
    listHosts(store), store.scan<Instance>('instances'), store.scan<ContainerRecord>('containers'),
  ]);
  const serving = servingSet(containers);
  return { ...base, routes: routesFor(host, hosts), records: zoneRecords(zone, instances, (id) => serving.has(id)) };
}

export interface Endpoint {
  instance: Instance;
  hostId: string;
  ip: string | null;
  health: ContainerHealth | null;
}

/**
 * The endpoints a name of the zone stands for, as the runners' DNS servers answer it: an instance name gives that
 * instance, a release or service name the release's serving instances. An unknown release gives none.
 */
export async function resolveName(store: Store, name: string): Promise<Endpoint[]> {
  const parsed = parseZoneName(config().dnsZone, name);
  // Release names are unique while the release exists: the name claim points at it.
  const releaseId = (await store.get<{ releaseId: string }>('panamaClaims', `release-name#${parsed.releaseName}`))?.releaseId;
  if (!releaseId) return [];
  const [instances, containers] = await Promise.all([
    instancesOfRelease(store, releaseId), store.query<ContainerRecord>('containers', 'byRelease', releaseId),
  ]);
  const byInstance = new Map(containers.map((c) => [c.instanceId, c]));
  const serving = servingSet(containers);
  const chosen = instances.filter((i) => {
    if (parsed.kind === 'instance') return i.ordinal === parsed.ordinal;
    if (!serving.has(i.id)) return false;
    return parsed.kind === 'release' || i.spec.ports.some((p) => p.name === parsed.port && p.protocol === parsed.protocol);
  });
  return chosen.map((i) => ({ instance: i, hostId: i.hostId, ip: i.ip ?? null, health: byInstance.get(i.id)?.health ?? null }));
}
