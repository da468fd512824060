import { config } from '../../lib/config';
import type { ContainerHealth, DnsRecord, HostNetwork } from '../../lib/runner-protocol';
import type { Store } from '../../lib/store';
import { isServing, listContainers, type ContainerRecord } from './containers';
import { listHosts, type Host } from './hosts';
import { instancesOfRelease, listInstances, type Instance } from './instances';
import { hostNetwork, networkSerial, routesFor } from './network';
import { parseZoneName, zoneRecords } from './zone';

const servingSet = (containers: ContainerRecord[]) => new Set(containers.filter(isServing).map((c) => c.instanceId));

/** The fleet as the network sees it at one serial: every host (for routes) and every record of the zone. */
interface FleetNetwork {
  serial: number;
  hosts: Host[];
  records: DnsRecord[];
}

/**
 * The last fleet network this process read, per store: every runner whose serial is stale needs the same hosts and
 * records, so they are read once per serial (one read shared by the syncs that ask at the same time), not once per
 * runner: a change on a fleet of N hosts costs N small answers instead of N reads of the whole fleet. Safe because
 * every change writes first and moves the serial after, so what is read after seeing serial S holds every change up
 * to S; a read that fails is forgotten, and the next sync reads again.
 */
const lastRead = new WeakMap<Store, Promise<FleetNetwork>>();

function fleetNetwork(store: Store, serial: number): Promise<FleetNetwork> {
  const cached = lastRead.get(store);
  const read = (async () => {
    const last = await cached?.catch(() => undefined);
    if (last?.serial === serial) return last;
    const [hosts, instances, containers] = await Promise.all([
      listHosts(store), listInstances(store), listContainers(store),
    ]);
    const serving = servingSet(containers);
    return { serial, hosts, records: zoneRecords(config().dnsZone, instances, (id) => serving.has(id)) };
  })();
  lastRead.set(store, read);
  read.catch(() => { if (lastRead.get(store) === read) lastRead.delete(store); });
  return read;
}

/**
 * What a host's runner needs of the cluster network: its subnet and, when the runner's serial is stale, the routes
 * to the other hosts and every record of the zone (then the fleet is read, at most once per serial and process).
 */
export async function networkFor(store: Store, host: Host & { subnet: string }, knownSerial: number | null | undefined): Promise<HostNetwork> {
  const serial = await networkSerial(store);
  const base = { ...hostNetwork(host), zone: config().dnsZone, serial };
  if (knownSerial === serial) return { ...base, routes: null, records: null };
  const fleet = await fleetNetwork(store, serial);
  return { ...base, routes: routesFor(host, fleet.hosts), records: fleet.records };
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
