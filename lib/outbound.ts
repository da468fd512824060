import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

/**
 * Where the platform may send requests on a user's behalf (webhooks). Loopback, link-local and cloud metadata
 * addresses reach the platform itself or its credentials, so they are refused unless FZ_WEBHOOK_ALLOW_LOCAL=true
 * (tests with a local receiver, single-machine setups). Checked when a channel is created and again, after DNS
 * resolution, before every send (a name may point elsewhere later).
 */
const METADATA_ADDRESSES = new Set(['169.254.169.254', '169.254.170.2', 'fd00:ec2::254', '100.100.100.200']);
const METADATA_NAMES = /^(metadata|metadata\.google\.internal|instance-data|localhost)$|\.localhost$/i;

export const allowLocalTargets = () => process.env.FZ_WEBHOOK_ALLOW_LOCAL === 'true';

/** What kind of forbidden address this is, or null when it may be used. */
export function forbiddenAddress(address: string): string | null {
  if (!ipaddr.isValid(address)) return null;
  const parsed = ipaddr.process(address);
  if (METADATA_ADDRESSES.has(parsed.toString())) return 'a cloud metadata address';
  const range = parsed.range();
  if (range === 'loopback') return 'a loopback address';
  if (range === 'linkLocal') return 'a link-local address';
  if (range === 'unspecified') return 'an unspecified address';
  return null;
}

const bare = (hostname: string) => hostname.replace(/^\[|\]$/g, '');

/** Checks a URL's host as written (no DNS): for input validation. */
export function forbiddenHostname(hostname: string): string | null {
  if (allowLocalTargets()) return null;
  const host = bare(hostname);
  if (METADATA_NAMES.test(host)) return 'a local or metadata host name';
  return forbiddenAddress(host);
}

export class OutboundRefused extends Error {}

/** Resolves the host and refuses when any of its addresses is forbidden; the message names the kind, not the address. */
export async function checkOutbound(hostname: string): Promise<void> {
  if (allowLocalTargets()) return;
  const written = forbiddenHostname(hostname);
  if (written) throw new OutboundRefused(`refused: the target is ${written} (FZ_WEBHOOK_ALLOW_LOCAL=true allows it)`);
  const host = bare(hostname);
  if (ipaddr.isValid(host)) return;
  for (const { address } of await lookup(host, { all: true })) {
    const kind = forbiddenAddress(address);
    if (kind) throw new OutboundRefused(`refused: the target's name resolves to ${kind} (FZ_WEBHOOK_ALLOW_LOCAL=true allows it)`);
  }
}
