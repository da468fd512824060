/**
 * What the runner does to its host's network, and nothing else (README "What the runner changes on a host"):
 *   - the Docker network `fangzhou`: a bridge on this host's subnet of the cluster network;
 *   - routes to the other hosts' subnets via their addresses (host-gw), tagged with routing protocol 250 so they can
 *     be listed (`ip route show proto 250`) and removed (`ip route flush proto 250`) without touching any other;
 *   - IPv4 forwarding on (`net.ipv4.ip_forward=1`), so packets between the bridge and the other hosts pass;
 *   - the DNS server (runner/dns.ts) on the bridge's address, port 53.
 * It never touches the firewall. Routes stay when the runner stops, so traffic keeps flowing while it restarts.
 */
import type Docker from 'dockerode';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import { LABELS, type HostNetwork, type Route } from '../lib/runner-protocol';
import { log } from '../lib/log';
import { ZoneServer } from './dns';
import { NETWORK } from './plan';

export const ROUTE_PROTOCOL = 250;
const FORWARDING = '/proc/sys/net/ipv4/ip_forward';
const run = promisify(execFile);

/** The subnet the bridge must be on and the bridge's own address. */
export interface Bridge {
  subnet: string;
  gateway: string;
}

const statusOf = (err: unknown) => (err as { statusCode?: number } | null)?.statusCode;

/** A reason the network cannot be set up that the operator must act on. */
export class NetworkProblem extends Error {}

/**
 * Makes sure the `fangzhou` network exists on the bridge's subnet (or, without one, at all). A network left on
 * another subnet (the host was registered again, or predates the cluster network) is replaced: our containers on it
 * are removed first (the next converge re-creates them with their addresses); a container we do not manage on it
 * stops us with a message saying which. Returns whether anything changed.
 */
export async function ensureBridge(docker: Docker, bridge: Bridge | null): Promise<boolean> {
  let existing: Docker.NetworkInspectInfo | null = null;
  try {
    existing = await docker.getNetwork(NETWORK).inspect();
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  const subnetOf = (n: Docker.NetworkInspectInfo) => n.IPAM?.Config?.[0]?.Subnet ?? null;
  if (existing && (!bridge || subnetOf(existing) === bridge.subnet)) return false;
  if (existing) await replaceNetwork(docker, existing, bridge!);
  try {
    // CheckDuplicate: without it older engines happily create a second network of the same name.
    await docker.createNetwork({
      Name: NETWORK, Driver: 'bridge', CheckDuplicate: true, Labels: { [LABELS.managed]: 'true' },
      ...(bridge ? { IPAM: { Driver: 'default', Config: [{ Subnet: bridge.subnet, Gateway: bridge.gateway }] } } : {}),
    });
    log.info({ network: NETWORK, subnet: bridge?.subnet }, 'created network');
    return true;
  } catch (err) {
    if (statusOf(err) === 409) return false; // another runner on this engine created it meanwhile
    throw err;
  }
}

async function replaceNetwork(docker: Docker, existing: Docker.NetworkInspectInfo, bridge: Bridge): Promise<void> {
  const attached = Object.keys(existing.Containers ?? {});
  const containers = await docker.listContainers({ all: true, filters: { network: [NETWORK] } });
  const foreign = containers.filter((c) => c.Labels[LABELS.managed] !== 'true');
  if (foreign.length) {
    throw new NetworkProblem(
      `the Docker network ${NETWORK} is on ${existing.IPAM?.Config?.[0]?.Subnet ?? 'another subnet'}, this host's subnet is ${bridge.subnet}, ` +
      `and containers not managed by Fangzhou use it (${foreign.map((c) => c.Names[0]).join(', ')}): disconnect them so the network can be re-created`,
    );
  }
  log.warn({ network: NETWORK, from: existing.IPAM?.Config?.[0]?.Subnet, to: bridge.subnet, containers: attached.length }, 're-creating network on this host\'s subnet');
  for (const c of containers) await docker.getContainer(c.Id).remove({ force: true }).catch((err) => { if (statusOf(err) !== 404) throw err; });
  await docker.getNetwork(NETWORK).remove().catch((err) => { if (statusOf(err) !== 404) throw err; });
}

/** Docker's own bridges and the veths on them: made by engines on this host, not networks the host is on. */
export const isEngineInterface = (name: string) => /^(br-|docker|veth)/.test(name);

/**
 * The CIDRs of the networks this host is on (as `192.168.1.7/24`), which the cluster network must not overlap.
 * Engine bridges are left out: a `fangzhou` bridge left from an earlier registration is on the cluster network.
 */
export function hostNetworks(): string[] {
  return Object.entries(os.networkInterfaces())
    .filter(([name]) => !isEngineInterface(name))
    .flatMap(([, list]) => list ?? [])
    .filter((a) => a.family === 'IPv4' && !a.internal && a.cidr)
    .map((a) => a.cidr!);
}

const localAddresses = () => new Set(Object.values(os.networkInterfaces()).flatMap((l) => l ?? []).map((a) => a.address));

/**
 * Programs exactly the wanted routes among ours (protocol 250): adds or fixes each, removes ours that are no longer
 * wanted. A route via one of this host's own addresses is skipped (hosts that share one network stack).
 */
export async function applyRoutes(wanted: Route[]): Promise<void> {
  const local = localAddresses();
  const routes = wanted.filter((r) => !local.has(r.via));
  const { stdout } = await run('ip', ['-4', '-j', 'route', 'show', 'proto', String(ROUTE_PROTOCOL)]);
  const current = (JSON.parse(stdout || '[]') as { dst: string; gateway?: string }[]);
  for (const r of current) {
    if (!routes.some((w) => w.subnet === r.dst)) {
      await run('ip', ['-4', 'route', 'del', r.dst, 'proto', String(ROUTE_PROTOCOL)]);
      log.info({ subnet: r.dst, via: r.gateway }, 'removed route');
    }
  }
  for (const r of routes) {
    if (current.some((c) => c.dst === r.subnet && c.gateway === r.via)) continue;
    await run('ip', ['-4', 'route', 'replace', r.subnet, 'via', r.via, 'proto', String(ROUTE_PROTOCOL)]);
    log.info({ subnet: r.subnet, via: r.via }, 'route to host subnet');
  }
}

export function enableForwarding(): void {
  if (readFileSync(FORWARDING, 'utf8').trim() === '1') return;
  writeFileSync(FORWARDING, '1\n');
  log.info('enabled IPv4 forwarding (net.ipv4.ip_forward=1)');
}

/**
 * The runner's side of the cluster network, kept across syncs: the bridge to converge containers onto, the DNS
 * server, and the serial of the routes and records it holds. Problems are logged and retried at the next sync;
 * containers still converge meanwhile.
 */
export class HostNetworking {
  readonly dns: ZoneServer;
  bridge: Bridge | null = null;
  /** The serial whose routes and records are in place; null until both are. */
  serial: number | null = null;
  private lastProblem = '';

  constructor(private readonly options: { dnsPort?: number; dns?: ZoneServer } = {}) {
    this.dns = options.dns ?? new ZoneServer();
  }

  /** Applies what the sync said; returns whether the bridge changed (the caller then re-syncs at once). */
  async apply(docker: Docker, network: HostNetwork): Promise<boolean> {
    this.bridge = { subnet: network.subnet, gateway: network.gateway };
    const changed = await ensureBridge(docker, this.bridge);
    const problems: string[] = [];
    await this.dns.listen(network.gateway, this.options.dnsPort ?? 53).catch((err: Error) => problems.push(`DNS server on ${network.gateway}: ${err.message}`));
    if (network.records) this.dns.setRecords(network.zone, network.serial, network.records);
    if (network.routes) {
      try {
        // Only a host with peers forwards; a lone host's settings stay as they were.
        if (network.routes.length) enableForwarding();
        await applyRoutes(network.routes);
      } catch (err) {
        problems.push(`routes: ${(err as Error).message}`);
      }
    }
    const problem = problems.join('; ');
    if (problem && problem !== this.lastProblem) log.warn(`host network not fully set up (retried at every sync): ${problem}`);
    this.lastProblem = problem;
    if (!problems.length && network.records && network.routes) this.serial = network.serial;
    return changed;
  }

  close(): Promise<void> {
    return this.dns.close();
  }
}
