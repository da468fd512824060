import { AddressError, primaryAddress } from '../../runner/address';
import type { NetworkInterfaceInfo } from 'node:os';

const HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT';
const route = (iface: string, destination: string, mask: string, metric = 0) => `${iface}\t${destination}\t0102000A\t0003\t0\t0\t${metric}\t${mask}\t0\t0\t0`;
const v4 = (address: string, internal = false) => ({ address, family: 'IPv4', internal, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: `${address}/24` }) as NetworkInterfaceInfo;
const table = (...lines: string[]) => [HEADER, ...lines, ''].join('\n');

test('the address is the one of the interface carrying the default route, not the first interface listed', () => {
  const interfaces = { lo: [v4('127.0.0.1', true)], docker0: [v4('172.17.0.1')], eth1: [v4('10.1.2.3')] };
  const routes = table(route('docker0', '000011AC', '0000FFFF'), route('eth1', '00000000', '00000000'), route('eth1', '0002010A', '00FFFFFF'));
  expect(primaryAddress(routes, interfaces)).toBe('10.1.2.3');
});

test('with two default routes the one of lowest metric wins', () => {
  const interfaces = { wlan0: [v4('192.168.1.20')], eth0: [v4('10.0.0.5')] };
  expect(primaryAddress(table(route('wlan0', '00000000', '00000000', 600), route('eth0', '00000000', '00000000', 100)), interfaces)).toBe('10.0.0.5');
});

test.each([
  ['no default route', table(route('eth0', '0002010A', '00FFFFFF')), { eth0: [v4('10.1.2.3')] }, /no default route; pass --address IP/],
  ['a default route on an interface without IPv4', table(route('tun0', '00000000', '00000000')), { tun0: [] }, /tun0, the interface of the default route, has no IPv4 address; pass --address IP/],
  ['an address in a documentation range', table(route('eth0', '00000000', '00000000')), { eth0: [v4('192.0.2.2')] }, /eth0, the interface of the default route, has 192\.0\.2\.2, a documentation-only range .*; pass --address IP/],
  ['no route table', null, {}, /no \/proc\/net\/route here\); pass --address IP/],
])('refuses to guess with %s, and says to pass --address', (_what, routes, interfaces, message) => {
  expect(() => primaryAddress(routes, interfaces)).toThrow(AddressError);
  expect(() => primaryAddress(routes, interfaces)).toThrow(message);
});
