/**
 * The fleet's one network: the cluster CIDR cut into one subnet per host, a fixed address per instance from its
 * host's subnet, the routes every host needs to the others' subnets (host-gw), and the serial that tells runners
 * their routes and DNS records are out of date. Every allocation is one conditional write of a claim item
 * (`subnet#…`, `ip#…`, `host-address#…`), so two hosts never get one subnet and two instances never one address;
 * a claim left behind by a crash between two steps is taken over once it is old enough and its owner does not use it.
 */
import ipaddr from 'ipaddr.js';
import { config } from '../../lib/config';
import { AppError, badInput } from '../../lib/errors';
import type { HostNetwork, Route } from '../../lib/runner-protocol';
import type { Store, Versioned } from '../../lib/store';

/** A claim younger than this may belong to an allocation still under way; older ones unused by their owner are free. */
const CLAIM_GRACE_MS = 60_000;

interface Claim extends Versioned {
  key: string;
  at: string;
  hostId?: string;
  instanceId?: string;
}

export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

const toNumber = (address: string) => ipaddr.IPv4.parse(address).toByteArray().reduce((n, b) => n * 256 + b, 0);
export const toAddress = (n: number) => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
const size = (c: Cidr) => 2 ** (32 - c.prefix);
export const formatCidr = (c: Cidr) => `${toAddress(c.base)}/${c.prefix}`;

/** Parses an IPv4 CIDR; the address must be the network's first (10.240.0.0/16, not 10.240.3.1/16). */
export function parseCidr(text: string, what: string): Cidr {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(text.trim());
  } catch {
    throw badInput(`${what} "${text}" is not a CIDR such as 10.240.0.0/16`);
  }
  const [address, prefix] = parsed;
  if (address.kind() !== 'ipv4') throw badInput(`${what} "${text}" is IPv6; the cluster network is IPv4`);
  const base = toNumber(address.toString());
  const cidr = { base: base - (base % 2 ** (32 - prefix)), prefix };
  if (cidr.base !== base) throw badInput(`${what} "${text}" has host bits set; did you mean ${formatCidr(cidr)}?`);
  return cidr;
}

export const overlaps = (a: Cidr, b: Cidr) => a.base < b.base + size(b) && b.base < a.base + size(a);
export const contains = (c: Cidr, address: string) => {
  const n = toNumber(address);
  return n >= c.base && n < c.base + size(c);
};

export interface ClusterNetwork {
  cidr: Cidr;
  /** Prefix length of each host's subnet (24: 253 instance addresses per host). */
  subnetPrefix: number;
  subnetCount: number;
}

/** The configured cluster network (FZ_CLUSTER_CIDR, FZ_HOST_SUBNET_PREFIX), checked. */
export function clusterNetwork(cidrText = config().clusterCidr, subnetPrefix = config().hostSubnetPrefix): ClusterNetwork {
  const cidr = parseCidr(cidrText, 'FZ_CLUSTER_CIDR');
  if (!Number.isInteger(subnetPrefix) || subnetPrefix < 16 || subnetPrefix > 28) {
    throw badInput(`FZ_HOST_SUBNET_PREFIX must be from 16 to 28 (a /24 gives each host 253 instance addresses), got ${subnetPrefix}`);
  }
  if (cidr.prefix > subnetPrefix) {
    throw badInput(`FZ_CLUSTER_CIDR ${formatCidr(cidr)} is smaller than one host subnet (/${subnetPrefix}): use a /${subnetPrefix - 4} or wider, such as 10.240.0.0/16`);
  }
  return { cidr, subnetPrefix, subnetCount: 2 ** (subnetPrefix - cidr.prefix) };
}

/** Which subnet of the cluster network this is; undefined for one outside it (the network was changed since). */
function subnetIndex(subnet: string, net = clusterNetwork()): number | undefined {
  try {
    const index = (parseCidr(subnet, 'subnet').base - net.cidr.base) / 2 ** (32 - net.subnetPrefix);
    return Number.isInteger(index) && index >= 0 && index < net.subnetCount ? index : undefined;
  } catch {
    return undefined;
  }
}

export const subnetAt = (net: ClusterNetwork, index: number): Cidr => ({ base: net.cidr.base + index * 2 ** (32 - net.subnetPrefix), prefix: net.subnetPrefix });
/** The bridge's own address on a host subnet: the first one. The runner's DNS server listens there. */
export const gatewayOf = (subnet: Cidr) => toAddress(subnet.base + 1);

/**
 * Refuses a cluster CIDR that overlaps one of the host's own networks: routes to the cluster would hijack that
 * network's traffic. `networks` are the CIDRs of the host's interfaces as its runner reports them.
 */
export function checkHostNetworks(net: ClusterNetwork, networks: string[]): void {
  networks.forEach((text, i) => {
    const own = parseCidr(normaliseInterfaceCidr(text), `networks[${i}]`);
    if (overlaps(own, net.cidr)) {
      throw badInput(
        `the cluster network ${formatCidr(net.cidr)} overlaps this host's network ${text}; set FZ_CLUSTER_CIDR on the API to a range no host uses (e.g. 10.240.0.0/16 or 172.30.0.0/16)`,
        'networks',
      );
    }
  });
}

/** An interface reports its address with a prefix (192.168.1.7/24); the network it is on is 192.168.1.0/24. */
function normaliseInterfaceCidr(text: string): string {
  try {
    const [address, prefix] = ipaddr.parseCIDR(text.trim());
    if (address.kind() !== 'ipv4') return text;
    const n = toNumber(address.toString());
    return `${toAddress(n - (n % 2 ** (32 - prefix)))}/${prefix}`;
  } catch {
    return text;
  }
}

const isLoopback = (address: string) => ipaddr.isValid(address) && ipaddr.parse(address).range() === 'loopback';

/** Claims `key` for an owner; takes over a claim whose owner no longer uses it (`abandoned`) once it is old enough. */
async function claim(store: Store, key: string, owner: Omit<Claim, 'key' | 'at' | 'seq'>, abandoned: (c: Claim) => Promise<boolean>, now: Date): Promise<boolean> {
  const item = { key, at: now.toISOString(), ...owner };
  if (await store.create('claims', item)) return true;
  const held = await store.get<Claim>('claims', key);
  if (!held) return Boolean(await store.create('claims', item));
  if (held.hostId === owner.hostId && held.instanceId === owner.instanceId) return true;
  if (now.getTime() - Date.parse(held.at) < CLAIM_GRACE_MS || !(await abandoned(held))) return false;
  try {
    await store.remove('claims', key, held.seq);
  } catch {
    return false; // someone else took it over first
  }
  return Boolean(await store.create('claims', item));
}

async function release(store: Store, key: string, owner: (c: Claim) => boolean): Promise<void> {
  const held = await store.get<Claim>('claims', key);
  if (!held || !owner(held)) return;
  await store.remove('claims', key, held.seq).catch(() => undefined);
}

interface HostRef {
  id: string;
  address: string;
  subnet?: string | null;
}

const hostGone = (getHost: (id: string) => Promise<HostRef | undefined>) => async (c: Claim) => !c.hostId || !(await getHost(c.hostId));

/**
 * One host per address: two runners registering the same address would route each other's subnets to the wrong
 * machine. Loopback addresses are exempt: hosts that share one network stack (a laptop running several runners)
 * need no routes to each other.
 */
export async function claimHostAddress(store: Store, hostId: string, address: string, getHost: (id: string) => Promise<HostRef | undefined>, now = new Date()): Promise<void> {
  if (isLoopback(address)) return;
  if (await claim(store, `host-address#${address}`, { hostId }, hostGone(getHost), now)) return;
  const held = await store.get<Claim>('claims', `host-address#${address}`);
  throw new AppError('CONFLICT', `address ${address} is already registered by host ${held?.hostId}; each host needs its own address (--address)`);
}

/**
 * Where the search for a free subnet starts: below it every subnet was taken when last looked. Only a hint (the
 * claims decide; the search wraps around), so that joining host number k tries one subnet or two, not k of them.
 */
const SUBNET_HINT = 'subnet-hint';

async function moveSubnetHint(store: Store, to: (next: number) => number | undefined): Promise<void> {
  await store.mutate<{ key: string; next: number; seq: number }>('claims', SUBNET_HINT, (c) => {
    const next = to(c?.next ?? 0);
    return next === undefined ? undefined : { key: SUBNET_HINT, next };
  }).catch(() => undefined);
}

/** The first free subnet of the cluster network, claimed for the host; CONFLICT when every one is taken. */
export async function claimSubnet(store: Store, hostId: string, getHost: (id: string) => Promise<HostRef | undefined>, net = clusterNetwork(), now = new Date()): Promise<string> {
  const start = Math.min((await store.get<{ next: number }>('claims', SUBNET_HINT))?.next ?? 0, net.subnetCount - 1);
  for (let k = 0; k < net.subnetCount; k++) {
    const i = (start + k) % net.subnetCount;
    const subnet = formatCidr(subnetAt(net, i));
    if (await claim(store, `subnet#${subnet}`, { hostId }, hostGone(getHost), now)) {
      // Every subnet from the start to this one is taken now (unless one was freed meanwhile: then the hint is below).
      if (i >= start) await moveSubnetHint(store, (next) => (next >= start && next <= i ? i + 1 : undefined));
      return subnet;
    }
  }
  throw new AppError('CONFLICT', `the cluster network ${formatCidr(net.cidr)} has room for ${net.subnetCount} hosts (one /${net.subnetPrefix} each) and all are taken: widen FZ_CLUSTER_CIDR or remove hosts`);
}

/** Gives back what a host held: its subnet and its address. Its instances' addresses go with the instances. */
export async function freeHostNetwork(store: Store, host: HostRef): Promise<void> {
  if (host.subnet) {
    await release(store, `subnet#${host.subnet}`, (c) => c.hostId === host.id);
    const freed = subnetIndex(host.subnet);
    if (freed !== undefined) await moveSubnetHint(store, (next) => (freed < next ? freed : undefined));
  }
  await release(store, `host-address#${host.address}`, (c) => c.hostId === host.id);
  await bumpNetworkSerial(store);
}

interface InstanceRef {
  id: string;
  ip?: string | null;
}

/**
 * A fixed address for an instance from its host's subnet: the lowest one that neither the bridge (first) nor the
 * broadcast address (last) nor another instance holds. `taken` are the addresses of the host's other instances, so
 * the usual case is a single write.
 */
export async function claimInstanceIp(
  store: Store, instanceId: string, subnetText: string, taken: Set<string>,
  getInstance: (id: string) => Promise<InstanceRef | undefined>, now = new Date(),
): Promise<string> {
  const subnet = parseCidr(subnetText, 'subnet');
  const abandoned = async (c: Claim) => {
    const owner = c.instanceId ? await getInstance(c.instanceId) : undefined;
    return !owner || owner.ip !== c.key.slice('ip#'.length);
  };
  for (let n = subnet.base + 2; n < subnet.base + size(subnet) - 1; n++) {
    const ip = toAddress(n);
    if (taken.has(ip)) continue;
    if (await claim(store, `ip#${ip}`, { instanceId }, abandoned, now)) return ip;
  }
  throw new AppError('UNSCHEDULABLE', `the subnet ${subnetText} has no free address left for ${instanceId}`);
}

export const freeInstanceIp = (store: Store, instance: InstanceRef) =>
  instance.ip ? release(store, `ip#${instance.ip}`, (c) => c.instanceId === instance.id) : Promise.resolve();

const SERIAL_KEY = 'network-serial';

/**
 * Routes and DNS records change together with hosts, instances and their health; one counter says they did. A
 * runner that already holds the current serial gets neither again, so a sync reads one item instead of scanning.
 * Writers change their data first and bump after, so a runner never keeps records older than its serial.
 */
export async function networkSerial(store: Store): Promise<number> {
  return (await store.get<{ serial: number }>('claims', SERIAL_KEY))?.serial ?? 0;
}

export async function bumpNetworkSerial(store: Store): Promise<number> {
  // Every DNS change and every joining host moves it: an atomic add, which concurrent writers cannot lose.
  return store.increment('claims', SERIAL_KEY, 'serial');
}

/** Routes from one host to every other host's subnet via that host's address (flannel's host-gw). */
export function routesFor(self: HostRef, hosts: HostRef[]): Route[] {
  return hosts
    .filter((h) => h.id !== self.id && h.subnet && !isLoopback(h.address) && ipaddr.IPv4.isValid(h.address))
    .map((h) => ({ subnet: h.subnet!, via: h.address }))
    .sort((a, b) => a.subnet.localeCompare(b.subnet));
}

export function hostNetwork(host: HostRef & { subnet: string }, net = clusterNetwork()): Pick<HostNetwork, 'subnet' | 'gateway' | 'clusterCidr'> {
  return { subnet: host.subnet, gateway: gatewayOf(parseCidr(host.subnet, 'subnet')), clusterCidr: formatCidr(net.cidr) };
}

export const inSubnet = (subnet: string, ip: string) => ipaddr.IPv4.isValid(ip) && contains(parseCidr(subnet, 'subnet'), ip);
