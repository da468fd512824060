import { badInput, conflict, notFound } from '../../lib/errors';
import { newId } from '../../lib/ids';
import type { Store, Versioned } from '../../lib/store';
import { forbiddenHostname } from '../../lib/outbound';
import * as check from '../../lib/validate';
import { SEVERITY_RANK, type Severity } from '../../lib/events';

/**
 * Alert channels: where alarms are sent. A WEBHOOK receives a JSON POST, an EMAIL channel gets a mail through the
 * platform's SMTP server (subgraphs/butler/notify.ts sends both). A deleted channel stays as a tombstone (`deletedAt`)
 * so the notifications of old alarms still name it; it is no longer listed, routed to or sent to.
 */
export type ChannelKind = 'WEBHOOK' | 'EMAIL';

export interface AlertChannel extends Versioned {
  id: string;
  name: string;
  kind: ChannelKind;
  /** The full webhook URL (may carry a secret in its query string or userinfo) or the email address. Never shown. */
  target: string;
  minSeverity: Severity;
  createdAt: string;
  deletedAt: string | null;
}

export interface AlertChannelInput {
  name: string;
  kind: ChannelKind;
  target: string;
  minSeverity?: Severity | null;
}

const KINDS: ChannelKind[] = ['WEBHOOK', 'EMAIL'];
const SEVERITIES = Object.keys(SEVERITY_RANK) as Severity[];
// A practical address check: local part without spaces or specials, a host name (a dot is not required: `ops@localhost`).
const EMAIL = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

const nameClaim = (name: string) => `channel-name#${name}`;

/** Validates the input; throws BAD_USER_INPUT naming the field. The target is never echoed (it may hold a secret). */
export function channelFromInput(input: AlertChannelInput, id: string, now: Date): Omit<AlertChannel, 'seq'> {
  const name = check.dnsLabel(input.name, 'name', 63);
  if (!KINDS.includes(input.kind)) throw badInput(`kind must be one of ${KINDS.join(', ')}`, 'kind');
  const minSeverity = input.minSeverity ?? 'WARNING';
  if (!SEVERITIES.includes(minSeverity)) throw badInput(`minSeverity must be one of ${SEVERITIES.join(', ')}`, 'minSeverity');
  return { id, name, kind: input.kind, target: checkTarget(input.kind, input.target), minSeverity, createdAt: now.toISOString(), deletedAt: null };
}

function checkTarget(kind: ChannelKind, target: string): string {
  if (kind === 'WEBHOOK') {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw badInput('target must be an absolute http:// or https:// URL for a WEBHOOK channel', 'target');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw badInput(`target must be an http:// or https:// URL for a WEBHOOK channel, not ${url.protocol}//`, 'target');
    }
    if (!url.hostname) throw badInput('target must name a host', 'target');
    const forbidden = forbiddenHostname(url.hostname);
    if (forbidden) throw badInput(`target must not be ${forbidden}: alerts leave the platform (set FZ_WEBHOOK_ALLOW_LOCAL=true to allow local receivers)`, 'target');
    return target;
  }
  if (target.length > 254 || !EMAIL.test(target)) {
    throw badInput('target must be one email address (like ops@example.com) for an EMAIL channel', 'target');
  }
  return target;
}

/**
 * What the API and the logs show of a channel's target: a webhook URL without its userinfo and query string (both
 * replaced by `[hidden]`) and without its fragment; an email address as it is.
 */
export function displayTarget(channel: Pick<AlertChannel, 'kind' | 'target'>): string {
  if (channel.kind !== 'WEBHOOK') return channel.target;
  let url: URL;
  try {
    url = new URL(channel.target);
  } catch {
    return '[hidden]';
  }
  const userinfo = url.username || url.password ? '[hidden]@' : '';
  const query = url.search || channel.target.includes('?') ? '?[hidden]' : '';
  return `${url.protocol}//${userinfo}${url.host}${url.pathname}${query}`;
}

/** Replaces every secret part of the channel's target in `text` (e.g. an error message) by its displayed form. */
export function scrubTarget(channel: Pick<AlertChannel, 'kind' | 'target'>, text: string): string {
  if (channel.kind !== 'WEBHOOK') return text;
  let out = text.split(channel.target).join(displayTarget(channel));
  try {
    const url = new URL(channel.target);
    const secrets = [url.search.slice(1), url.password, url.username, decodeURIComponent(url.password)]
      .filter((s) => s.length >= 3);
    for (const secret of secrets) out = out.split(secret).join('[hidden]');
  } catch {
    // An unparsable stored target was replaced whole above.
  }
  return out;
}

/** Whether an alarm of `severity` goes to a channel that wants `min` and more (INFO < WARNING < CRITICAL). */
export const routes = (min: Severity, severity: Severity) => SEVERITY_RANK[severity] >= SEVERITY_RANK[min];

/** The ids of the live channels that want alarms of this severity, in name order. */
export function routedChannels(channels: Pick<AlertChannel, 'id' | 'name' | 'minSeverity' | 'deletedAt'>[], severity: Severity): string[] {
  return channels
    .filter((c) => !c.deletedAt && routes(c.minSeverity, severity))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((c) => c.id);
}

export const getChannel = (store: Store, id: string) => store.get<AlertChannel>('channels', id);

/** The live (not deleted) channel, or NOT_FOUND. */
export async function mustGetChannel(store: Store, id: string): Promise<AlertChannel> {
  const channel = await getChannel(store, id);
  if (!channel || channel.deletedAt) throw notFound('alert channel', id);
  return channel;
}

/** Every channel, deleted ones (tombstones) too: notifications queued before a deletion still name theirs. */
export const allChannels = (store: Store) => store.scan<AlertChannel>('channels');

/** Live channels, in name order. */
export async function listChannels(store: Store): Promise<AlertChannel[]> {
  return (await store.scan<AlertChannel>('channels'))
    .filter((c) => !c.deletedAt)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Channel ids an alarm of this severity is queued for (pass to raiseAlarm). */
export async function channelsFor(store: Store, severity: Severity): Promise<string[]> {
  return routedChannels(await store.scan<AlertChannel>('channels'), severity);
}

/** A name claim older than this whose channel never appeared was left by a crash between the two writes. */
const ABANDONED_CLAIM_MS = 60_000;

interface NameClaim extends Versioned {
  key: string;
  channelId: string;
  claimedAt: string;
}

/**
 * Claims the name, then writes the channel (two single-item writes). A claim that points at a deleted channel, or
 * at none for a minute (a crash between the writes), is taken over; a claim of a live channel is a CONFLICT.
 */
export async function createAlertChannel(store: Store, input: AlertChannelInput, now = new Date()): Promise<AlertChannel> {
  const channel = channelFromInput(input, newId('ch'), now);
  const taken = () => conflict(`an alert channel named "${channel.name}" already exists; delete it first or choose another name`);
  for (let attempt = 0; ; attempt++) {
    if (await store.create('panamaClaims', { key: nameClaim(channel.name), channelId: channel.id, claimedAt: now.toISOString() })) break;
    if (attempt >= 3) throw taken();
    const claim = await store.get<NameClaim>('panamaClaims', nameClaim(channel.name));
    if (!claim) continue;
    const holder = await getChannel(store, claim.channelId);
    const abandoned = holder ? Boolean(holder.deletedAt) : now.getTime() - Date.parse(claim.claimedAt) > ABANDONED_CLAIM_MS;
    if (!abandoned) throw taken();
    try {
      await store.remove('panamaClaims', claim.key, claim.seq);
    } catch {
      // Someone else took it over or released it first: look again.
    }
  }
  const created = await store.create<Omit<AlertChannel, 'seq'>>('channels', channel);
  if (!created) {
    await releaseName(store, channel.name, channel.id);
    throw conflict(`alert channel id ${channel.id} is taken; try again`);
  }
  return created;
}

async function releaseName(store: Store, name: string, channelId: string) {
  const claim = await store.get<NameClaim>('panamaClaims', nameClaim(name));
  if (claim?.channelId !== channelId) return;
  try {
    await store.remove('panamaClaims', claim.key, claim.seq);
  } catch {
    // Taken over in between: it is no longer ours to release.
  }
}

/**
 * Marks the channel deleted (it stays as a tombstone for old alarms' notifications), then frees its name. Pending
 * notifications to it fail at the next delivery tick. Returns the channel as it was.
 */
export async function deleteAlertChannel(store: Store, id: string, now = new Date()): Promise<AlertChannel> {
  const channel = await mustGetChannel(store, id);
  const deleted = await store.mutate<AlertChannel>('channels', id, (c) => c && !c.deletedAt ? { ...c, deletedAt: now.toISOString() } : undefined);
  if (!deleted || deleted.deletedAt !== now.toISOString()) throw notFound('alert channel', id);
  await releaseName(store, channel.name, channel.id);
  return channel;
}
