import { Resolver } from 'node:dns/promises';
import { ZoneServer, resolversOf } from '../../runner/dns';
import type { DnsRecord } from '../../lib/runner-protocol';

/**
 * The runner's DNS server answering real DNS queries (Node's resolver, UDP) on loopback. Names outside the zone go
 * to an upstream, which here is a second ZoneServer standing in for the host's resolver (nothing leaves loopback).
 */

const A = (name: string, address: string): DnsRecord => ({ name, type: 'A', address, target: null, port: null });
const SRV = (name: string, target: string, port: number): DnsRecord => ({ name, type: 'SRV', address: null, target, port });

let upstream: ZoneServer;
let server: ZoneServer;
let resolver: Resolver;

beforeAll(async () => {
  upstream = new ZoneServer({ upstream: [] });
  upstream.setRecords('example.test', 1, [A('www.example.test', '192.0.2.10')]);
  await upstream.listen('127.0.0.1', 0);
  server = new ZoneServer({ upstream: [{ address: '127.0.0.1', port: upstream.address!.port }] });
  server.setRecords('fz.internal', 7, [
    A('redis-0.redis.fz.internal', '10.240.0.2'),
    A('redis-1.redis.fz.internal', '10.240.1.2'),
    A('redis.fz.internal', '10.240.0.2'),
    SRV('_redis._tcp.redis.fz.internal', 'redis-0.redis.fz.internal', 6379),
  ]);
  await server.listen('127.0.0.1', 0);
  resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([`127.0.0.1:${server.address!.port}`]);
});

afterAll(async () => {
  await server?.close();
  await upstream?.close();
});

test('answers an instance name with its address, a release name with its serving instances, and SRV with port and target', async () => {
  expect(await resolver.resolve4('redis-1.redis.fz.internal')).toEqual(['10.240.1.2']);
  expect(await resolver.resolve4('REDIS.fz.internal')).toEqual(['10.240.0.2']);
  expect(await resolver.resolveSrv('_redis._tcp.redis.fz.internal')).toEqual([{ name: 'redis-0.redis.fz.internal', port: 6379, priority: 0, weight: 10 }]);
});

test('answers NXDOMAIN at once for an unknown release or instance of the zone, and no data for a known name of another type', async () => {
  const started = Date.now();
  await expect(resolver.resolve4('nosuch.fz.internal')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  await expect(resolver.resolve4('redis-9.redis.fz.internal')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  await expect(resolver.resolve6('redis-0.redis.fz.internal')).rejects.toMatchObject({ code: 'ENODATA' });
  expect(Date.now() - started).toBeLessThan(2000);
});

test('forwards names outside the zone to the host resolvers and relays their answer', async () => {
  expect(await resolver.resolve4('www.example.test')).toEqual(['192.0.2.10']);
  await expect(resolver.resolve4('nope.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
});

test('serves the new records as soon as they are set (a moved instance)', async () => {
  server.setRecords('fz.internal', 8, [A('redis-0.redis.fz.internal', '10.240.2.9')]);
  expect(await resolver.resolve4('redis-0.redis.fz.internal')).toEqual(['10.240.2.9']);
  await expect(resolver.resolve4('redis-1.redis.fz.internal')).rejects.toMatchObject({ code: 'ENOTFOUND' });
});

test('answers SERVFAIL rather than hanging when no upstream answers', async () => {
  const lonely = new ZoneServer({ upstream: [] });
  await lonely.listen('127.0.0.1', 0);
  try {
    const r = new Resolver({ timeout: 3000, tries: 1 });
    r.setServers([`127.0.0.1:${lonely.address!.port}`]);
    await expect(r.resolve4('www.example.test')).rejects.toMatchObject({ code: 'ESERVFAIL' });
  } finally {
    await lonely.close();
  }
});

test('reads the host resolvers from resolv.conf', () => {
  expect(resolversOf('# generated\nsearch lan\nnameserver 192.0.2.53\nnameserver fe80::1\nnameserver 127.0.0.53 # local\n')).toEqual(['192.0.2.53', '127.0.0.53']);
});
