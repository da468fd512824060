import { config } from '../../lib/config';
import type { ContainerHealth, DnsRecord, HostNetwork, Route } from '../../lib/runner-protocol';
import type { Store } from '../../lib/store';
import { isServing, listContainers, type ContainerRecord } from './containers';
import { listHostAddresses, type Host } from './hosts';
import { instancesOfRelease, listInstances, type Instance } from './instances';
import { hostNetwork, networkSerial, routesFor } from './network';
import { parseZoneName, zoneRecords } from './zone';

const servingSet = (containers: ContainerRecord[]) => new Set(containers.filter(isServing).map((c) => c.instanceId));

/**
 * The fleet as the network sees it at one serial: the route to every host's subnet (worked out once per read, not
 * once per host that asks: a host's own is left out of its answer) and every record of the zone.
 */
interface FleetNetwork {
  serial: number;
  routes: Route[];
  records: DnsRecord[];
}

/** At most one read of the whole fleet per this many ms and process, however often the serial moves. */
const FLEET_READ_GAP_MS = 1000;

interface Reading {
  /** The serial the read was asked for; it reads the serial again when it starts, so it may cover a newer one. */
  serial: number;
  startsAt: number;
  read: Promise<FleetNetwork>;
}

/**
 * The last fleet network this process read, per store: every runner whose serial is stale needs the same hosts and
 * records, so they are read once per serial (one read shared by the syncs that ask at the same time), not once per
 * runner: a change on a fleet of N hosts costs N small answers instead of N reads of the whole fleet. Safe because
 * every change writes first and moves the serial after, so what is read after seeing serial S holds every change up
 * to S; a read that fails is forgotten, and the next sync reads again.
 * While a fleet grows, every join moves the serial: then reads come at most one a second (FLEET_READ_GAP_MS), and
 * the syncs that ask in between wait for the next one, which reads the serial when it starts and so covers theirs.
 */
const lastRead = new WeakMap<Store, Reading>();
/** No host of the fleet: the routes to every host. */
const NO_HOST = { id: '', address: '', subnet: null };

function fleetNetwork(store: Store, serial: number, now = Date.now()): Promise<FleetNetwork> {
  const last = lastRead.get(store);
  // Read at this serial or a newer one, or not started yet (it will see at least this serial): share it.
  if (last && (last.serial >= serial || now < last.startsAt)) return last.read;
  const startsAt = Math.max(now, (last?.startsAt ?? 0) + FLEET_READ_GAP_MS);
  const read = (async () => {
    if (startsAt > now) await new Promise((resolve) => setTimeout(resolve, startsAt - now));
    const current = startsAt > now ? Math.max(serial, await networkSerial(store)) : serial;
    const [hosts, instances, containers] = await Promise.all([
      listHostAddresses(store), listInstances(store), listContainers(store),
    ]);
    const serving = servingSet(containers);
    return { serial: current, routes: routesFor(NO_HOST, hosts), records: zoneRecords(config().dnsZone, instances, (id) => serving.has(id)) };
  })();
  const reading = { serial, startsAt, read };
  lastRead.set(store, reading);
  read.then((fleet) => { reading.serial = fleet.serial; }, () => { if (lastRead.get(store) === reading) lastRead.delete(store); });
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
  // Every host holds a subnet of its own (claimed), so its own route is the one to its subnet.
  return { ...base, routes: fleet.routes.filter((r) => r.subnet !== host.subnet), records: fleet.records };
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
