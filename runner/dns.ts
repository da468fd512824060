/**
 * The runner's DNS server (dns2, UDP and TCP): authoritative for the internal zone from the records the control
 * plane sends with each sync, a forwarder for every other name to the host's own resolvers. Containers reach it at
 * their bridge's address (their gateway), so a name resolves the same on every host of the fleet.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import dns2 from 'dns2';
import type { DnsRecord } from '../lib/runner-protocol';
import { log } from '../lib/log';

const { Packet } = dns2;
/** RFC 1035 response codes (dns2 has them at run time but not in its types). */
const RCODE = { SERVFAIL: 2, NXDOMAIN: 3 } as const;
type Request = InstanceType<typeof Packet>;
type Send = (response: Request | Buffer) => void;

/** Short: an instance that moved must be found at its new address within seconds. */
const TTL_SECONDS = 2;
const FORWARD_TIMEOUT_MS = 2_000;

/** The IPv4 nameservers of a resolv.conf, in order. */
export function resolversOf(resolvConf: string): string[] {
  return resolvConf.split('\n')
    .map((line) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1])
    .filter((a): a is string => Boolean(a && isIPv4(a)));
}

export function hostResolvers(file = '/etc/resolv.conf'): string[] {
  try {
    return resolversOf(readFileSync(file, 'utf8'));
  } catch {
    return [];
  }
}

export interface ZoneServerOptions {
  /** Where names outside the zone go (default: the host's resolv.conf). */
  upstream?: { address: string; port: number }[];
}

export class ZoneServer {
  private zone = '';
  private serial = 0;
  /** Lower-case name → its records. */
  private names = new Map<string, DnsRecord[]>();
  private server: ReturnType<typeof dns2.createServer> | null = null;
  private bound: { address: string; port: number } | null = null;
  private readonly upstream: { address: string; port: number }[];

  constructor(options: ZoneServerOptions = {}) {
    this.upstream = options.upstream ?? hostResolvers().map((address) => ({ address, port: 53 }));
  }

  /** Replaces the zone's records (the whole set each time: the control plane sends it whole). */
  setRecords(zone: string, serial: number, records: DnsRecord[]): void {
    const names = new Map<string, DnsRecord[]>();
    for (const r of records) {
      const key = r.name.toLowerCase();
      names.set(key, [...(names.get(key) ?? []), r]);
    }
    this.zone = zone.toLowerCase();
    this.serial = serial;
    this.names = names;
  }

  get address() {
    return this.bound;
  }

  /** Listens on `address:port` (UDP and TCP); a call with another address moves the server there. */
  async listen(address: string, port = 53): Promise<void> {
    if (this.bound?.address === address && this.bound.port === port) return;
    await this.close();
    const server = dns2.createServer({ udp: true, tcp: true, handle: (request: Request, send: Send) => this.handle(request, send) });
    server.on('requestError', (err: Error) => log.debug({ err: err.message }, 'dns: unparseable request'));
    const failed = new Promise<never>((_, reject) => server.once('error', reject));
    await Promise.race([server.listen({ udp: { port, address }, tcp: { port, address } }), failed]);
    server.on('error', (err: Error) => log.warn({ err: err.message }, 'dns server error'));
    this.server = server;
    const udp = (server.addresses() as { udp?: { port: number } }).udp;
    this.bound = { address, port: udp?.port ?? port };
    log.info({ address, port: this.bound.port, zone: this.zone }, 'dns server listening');
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.bound = null;
    if (server) await server.close();
  }

  private handle(request: Request, send: Send): void {
    const question = request.questions[0];
    const name = (question?.name ?? '').toLowerCase().replace(/\.$/, '');
    if (question && this.zone && (name === this.zone || name.endsWith(`.${this.zone}`))) {
      send(this.answer(request, name, question.type));
      return;
    }
    void this.forward(request).then(send, () => send(failure(request, RCODE.SERVFAIL)));
  }

  /** Authoritative answer: records of the name, NODATA when the name exists with other types, else NXDOMAIN. */
  private answer(request: Request, name: string, type: number): Request {
    const response = Packet.createResponseFromRequest(request);
    response.header.aa = 1;
    response.header.ra = 0;
    const records = this.names.get(name) ?? [];
    const wanted = records.filter((r) => type === Packet.TYPE.ANY || Packet.TYPE[r.type] === type);
    for (const r of wanted) response.answers.push(resource(name, r));
    // SRV answers carry the targets' addresses, saving clients a lookup each.
    for (const r of wanted.filter((w) => w.type === 'SRV' && w.target)) {
      for (const a of this.names.get(r.target!.toLowerCase()) ?? []) if (a.type === 'A') response.additionals.push(resource(a.name, a));
    }
    if (!wanted.length) {
      const exists = name === this.zone || records.length > 0 || [...this.names.keys()].some((n) => n.endsWith(`.${name}`));
      if (!exists) response.header.rcode = RCODE.NXDOMAIN;
      response.authorities.push(this.soa());
    }
    return response;
  }

  /** Negative answers carry the zone's SOA so resolvers cache them briefly (RFC 2308). */
  private soa() {
    return {
      name: this.zone, type: Packet.TYPE.SOA, class: Packet.CLASS.IN, ttl: TTL_SECONDS,
      primary: `ns.${this.zone}`, admin: `hostmaster.${this.zone}`, serial: this.serial,
      refresh: 60, retry: 10, expiration: 600, minimum: TTL_SECONDS,
    } as never;
  }

  /** Relays the query to the host's resolvers in turn; the first answer wins. */
  private async forward(request: Request): Promise<Buffer> {
    const query = request.toBuffer();
    let last: Error = new Error('no upstream resolver in /etc/resolv.conf');
    for (const upstream of this.upstream) {
      if (upstream.address === this.bound?.address && upstream.port === this.bound.port) continue;
      try {
        return await exchange(query, request.header.id, upstream);
      } catch (err) {
        last = err as Error;
      }
    }
    log.debug({ name: request.questions[0]?.name, err: last.message }, 'dns: forwarding failed');
    throw last;
  }
}

function resource(name: string, r: DnsRecord) {
  const base = { name, class: Packet.CLASS.IN, ttl: TTL_SECONDS };
  if (r.type === 'A') return { ...base, type: Packet.TYPE.A, address: r.address } as never;
  return { ...base, type: Packet.TYPE.SRV, priority: 0, weight: 10, port: r.port, target: r.target } as never;
}

function failure(request: Request, rcode: number): Request {
  const response = Packet.createResponseFromRequest(request);
  response.header.rcode = rcode;
  return response;
}

/** One UDP query and its answer (matched by id), or an error after the timeout. */
function exchange(query: Buffer, id: number, to: { address: string; port: number }): Promise<Buffer> {
  const socket = dgram.createSocket('udp4');
  return new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer from ${to.address}:${to.port} within ${FORWARD_TIMEOUT_MS} ms`)), FORWARD_TIMEOUT_MS);
    socket.on('error', reject);
    socket.on('message', (message, from) => {
      if (from.address !== to.address || from.port !== to.port || message.length < 2 || message.readUInt16BE(0) !== id) return;
      resolve(message);
    });
    socket.send(query, to.port, to.address, (err) => err && reject(err));
    void new Promise((r) => { socket.once('close', r); }).then(() => clearTimeout(timer));
  }).finally(() => socket.close());
}
