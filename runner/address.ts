import { readFileSync } from 'node:fs';
import os from 'node:os';

/**
 * The address other hosts reach this one at, when `--address` is not given: the IPv4 address of the interface that
 * carries the default route (the first interface listed may be a bridge, a VPN or a container network). Anything we
 * cannot stand behind is refused with what to do instead, never guessed.
 */
export class AddressError extends Error {}

/** RFC 5737 documentation ranges: a machine numbered in one is a sandbox that other hosts cannot reach. */
const DOCUMENTATION = ['192.0.2.', '198.51.100.', '203.0.113.'];
const HINT = 'pass --address IP (the address other hosts of the fleet reach this one at)';

export function primaryAddress(routeTable = readRouteTable(), interfaces = os.networkInterfaces()): string {
  if (routeTable === null) throw new AddressError(`cannot tell this host's address (no /proc/net/route here); ${HINT}`);
  const defaults = routeTable.split('\n').slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 8 && f[1] === '00000000' && f[7] === '00000000')
    .sort((a, b) => Number(a[6]) - Number(b[6]));
  if (!defaults.length) throw new AddressError(`cannot tell this host's address: it has no default route; ${HINT}`);
  const iface = defaults[0][0];
  const address = interfaces[iface]?.find((a) => a.family === 'IPv4' && !a.internal)?.address;
  if (!address) throw new AddressError(`cannot tell this host's address: ${iface}, the interface of the default route, has no IPv4 address; ${HINT}`);
  if (DOCUMENTATION.some((prefix) => address.startsWith(prefix))) {
    throw new AddressError(`cannot tell this host's address: ${iface}, the interface of the default route, has ${address}, a documentation-only range (RFC 5737) no other host can reach; ${HINT}`);
  }
  return address;
}

function readRouteTable(): string | null {
  try {
    return readFileSync('/proc/net/route', 'utf8');
  } catch {
    return null;
  }
}
