import { AppError } from '../../lib/errors';
import { checkHostNetworks, clusterNetwork, formatCidr, gatewayOf, inSubnet, parseCidr, routesFor, subnetAt } from '../../subgraphs/ark/network';
import { parseZoneName, zoneRecords, type ZoneInstance } from '../../subgraphs/ark/zone';

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return [(err as AppError).extensions.code, (err as Error).message];
  }
  return null;
};

describe('cluster network', () => {
  test('cuts the default 10.240.0.0/16 into 256 host subnets of /24, each with its bridge on the first address', () => {
    const net = clusterNetwork('10.240.0.0/16', 24);
    expect(net.subnetCount).toBe(256);
    expect(formatCidr(subnetAt(net, 0))).toBe('10.240.0.0/24');
    expect(formatCidr(subnetAt(net, 255))).toBe('10.240.255.0/24');
    expect(gatewayOf(subnetAt(net, 3))).toBe('10.240.3.1');
    expect(inSubnet('10.240.3.0/24', '10.240.3.77')).toBe(true);
    expect(inSubnet('10.240.3.0/24', '10.240.4.77')).toBe(false);
  });

  test('refuses a cluster CIDR that is not one, has host bits set, or is smaller than one host subnet', () => {
    expect(codeOf(() => clusterNetwork('10.240.0.0', 24))).toEqual(['BAD_USER_INPUT', expect.stringContaining('is not a CIDR')]);
    expect(codeOf(() => clusterNetwork('10.240.3.1/16', 24))).toEqual(['BAD_USER_INPUT', expect.stringContaining('did you mean 10.240.0.0/16')]);
    expect(codeOf(() => clusterNetwork('10.240.0.0/25', 24))).toEqual(['BAD_USER_INPUT', expect.stringContaining('smaller than one host subnet (/24)')]);
    expect(codeOf(() => parseCidr('fd00::/64', 'x'))).toEqual(['BAD_USER_INPUT', expect.stringContaining('IPv6')]);
  });

  test('refuses a cluster CIDR that overlaps one of the host\'s own networks, and accepts one that does not', () => {
    const net = clusterNetwork('10.240.0.0/16', 24);
    expect(codeOf(() => checkHostNetworks(net, ['192.168.1.7/24', '10.240.9.5/24']))).toEqual(
      ['BAD_USER_INPUT', expect.stringContaining("overlaps this host's network 10.240.9.5/24")]);
    expect(codeOf(() => checkHostNetworks(net, ['10.0.0.4/8']))).toEqual(['BAD_USER_INPUT', expect.stringContaining('10.0.0.4/8')]);
    expect(codeOf(() => checkHostNetworks(net, ['192.168.1.7/24', '10.241.0.1/16']))).toBeNull();
  });

  test('routes every other host\'s subnet via its address, and none via loopback or to itself', () => {
    const hosts = [
      { id: 'a', address: '10.77.0.2', subnet: '10.240.0.0/24' },
      { id: 'b', address: '10.77.0.3', subnet: '10.240.1.0/24' },
      { id: 'c', address: '10.77.0.4', subnet: '10.240.2.0/24' },
      { id: 'd', address: '127.0.0.1', subnet: '10.240.3.0/24' },
      { id: 'e', address: 'host-e.example', subnet: '10.240.4.0/24' },
    ];
    expect(routesFor(hosts[1], hosts)).toEqual([{ subnet: '10.240.0.0/24', via: '10.77.0.2' }, { subnet: '10.240.2.0/24', via: '10.77.0.4' }]);
  });
});

describe('internal zone', () => {
  const instance = (ordinal: number, ip: string | null): ZoneInstance => ({
    id: `r-1-${ordinal}`, releaseName: 'redis', domainName: `redis-${ordinal}.redis.fz.internal`, ip,
    spec: { ports: [{ name: 'redis', containerPort: 6379, protocol: 'tcp' }] },
  });

  test('names every addressed instance, and only serving ones under the release and its services', () => {
    const records = zoneRecords('fz.internal', [instance(1, '10.240.1.2'), instance(0, '10.240.0.2'), instance(2, null)], (id) => id !== 'r-1-1');
    expect(records).toEqual([
      { name: 'redis-0.redis.fz.internal', type: 'A', address: '10.240.0.2', target: null, port: null },
      { name: 'redis.fz.internal', type: 'A', address: '10.240.0.2', target: null, port: null },
      { name: '_redis._tcp.redis.fz.internal', type: 'SRV', address: null, target: 'redis-0.redis.fz.internal', port: 6379 },
      { name: 'redis-1.redis.fz.internal', type: 'A', address: '10.240.1.2', target: null, port: null },
    ]);
  });

  test('parses the three shapes of names and refuses names outside the zone or of another shape', () => {
    expect(parseZoneName('fz.internal', 'Redis-2.redis.fz.internal.')).toEqual({ kind: 'instance', releaseName: 'redis', ordinal: 2 });
    expect(parseZoneName('fz.internal', 'redis.fz.internal')).toEqual({ kind: 'release', releaseName: 'redis' });
    expect(parseZoneName('fz.internal', '_client._tcp.etcd.fz.internal')).toEqual({ kind: 'service', releaseName: 'etcd', port: 'client', protocol: 'tcp' });
    expect(codeOf(() => parseZoneName('fz.internal', 'example.com'))).toEqual(['BAD_USER_INPUT', expect.stringContaining('outside the internal zone fz.internal')]);
    expect(codeOf(() => parseZoneName('fz.internal', 'etcd-0.redis.fz.internal'))).toEqual(['BAD_USER_INPUT', expect.stringContaining('is not a name the zone')]);
  });
});
