/**
 * The internal DNS zone (`fz.internal`) as plain data: which names exist and what they answer. The runners serve
 * these records (runner/dns.ts); `resolveName` answers the same names over the API.
 *
 *   <release>-<ordinal>.<release>.fz.internal    A    the instance's fixed address, whatever its health
 *   <release>.fz.internal                        A    the addresses of the release's serving instances
 *   _<port name>._tcp.<release>.fz.internal      SRV  serving instances and that port (udp ports: _udp)
 */
import { badInput } from '../../lib/errors';
import type { DnsRecord } from '../../lib/runner-protocol';

export interface ZoneInstance {
  id: string;
  releaseName: string;
  domainName: string;
  ip?: string | null;
  spec: { ports: { name: string; containerPort: number; protocol: 'tcp' | 'udp' }[] };
}

/** Every record of the zone; `serving` says whether an instance is RUNNING and HEALTHY (or has no healthcheck). */
export function zoneRecords(zone: string, instances: ZoneInstance[], serving: (instanceId: string) => boolean): DnsRecord[] {
  const records: DnsRecord[] = [];
  for (const i of [...instances].sort((a, b) => a.domainName.localeCompare(b.domainName))) {
    if (!i.ip) continue;
    records.push({ name: i.domainName, type: 'A', address: i.ip, target: null, port: null });
    if (!serving(i.id)) continue;
    const release = `${i.releaseName}.${zone}`;
    records.push({ name: release, type: 'A', address: i.ip, target: null, port: null });
    for (const p of i.spec.ports) {
      records.push({ name: `_${p.name}._${p.protocol}.${release}`, type: 'SRV', address: null, target: i.domainName, port: p.containerPort });
    }
  }
  return records;
}

export type ZoneName =
  | { kind: 'instance'; releaseName: string; ordinal: number }
  | { kind: 'release'; releaseName: string }
  | { kind: 'service'; releaseName: string; port: string; protocol: 'tcp' | 'udp' };

const LABEL = '[a-z0-9]([a-z0-9-]*[a-z0-9])?';

/** What a name of the zone refers to; BAD_USER_INPUT for a name outside the zone or of no shape the zone has. */
export function parseZoneName(zone: string, text: string): ZoneName {
  const name = text.trim().toLowerCase().replace(/\.$/, '');
  const suffix = `.${zone}`;
  if (!name.endsWith(suffix)) {
    throw badInput(`"${text}" is outside the internal zone ${zone}: names look like redis-0.redis.${zone}, redis.${zone} or _client._tcp.redis.${zone}`, 'name');
  }
  const labels = name.slice(0, -suffix.length).split('.');
  const release = labels[labels.length - 1];
  if (!new RegExp(`^${LABEL}$`).test(release)) throw badInput(`"${text}" names no release of the zone ${zone}`, 'name');
  if (labels.length === 1) return { kind: 'release', releaseName: release };
  if (labels.length === 2) {
    const m = new RegExp(`^${release.replace(/-/g, '\\-')}-(\\d+)$`).exec(labels[0]);
    if (m) return { kind: 'instance', releaseName: release, ordinal: Number(m[1]) };
  }
  if (labels.length === 3 && /^_[a-z0-9-]+$/.test(labels[0]) && /^_(tcp|udp)$/.test(labels[1])) {
    return { kind: 'service', releaseName: release, port: labels[0].slice(1), protocol: labels[1].slice(1) as 'tcp' | 'udp' };
  }
  throw badInput(`"${text}" is not a name the zone ${zone} has: use <release>-<ordinal>.<release>.${zone}, <release>.${zone} or _<port>._tcp.<release>.${zone}`, 'name');
}
