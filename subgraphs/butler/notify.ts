import { randomBytes } from 'node:crypto';
import { createTransport, type Transporter } from 'nodemailer';
import { log } from '../../lib/log';
import { checkOutbound } from '../../lib/outbound';
import type { Store } from '../../lib/store';
import { allChannels, mustGetChannel, scrubTarget, type AlertChannel } from '../panama';
import { indexedAlarm, undeliveredAlarms, type Alarm, type Notification } from './alarms';
import { recordEvent } from './events';

/**
 * Sends alarms to their alert channels. Level-triggered like everything else: `raiseAlarm` queues PENDING
 * notifications on the alarm item, and every tick calls `deliverPending`, which sends what is due and records the
 * outcome on the alarm. A failing channel is retried with exponential back-off and never holds up the others; after
 * MAX_ATTEMPTS it is FAILED (still visible on the alarm). Sending is at-least-once: an attempt is claimed with a
 * conditional write before it is made, so two ticks never send the same notification at once; only a crash between
 * sending and recording (or a send slower than the lease) can send it twice.
 */

export const MAX_ATTEMPTS = 8;
export const FIRST_BACKOFF_MS = 5_000;
export const MAX_BACKOFF_MS = 10 * 60_000;
/** A webhook must answer (headers) within this; the SMTP connect and greeting too. */
export const SEND_TIMEOUT_MS = 5_000;
/** While an attempt is in flight its notification is not due for this long; a crashed attempt is retried after it. */
export const CLAIM_LEASE_MS = 60_000;
const MAX_ERROR_LENGTH = 500;
const CONCURRENCY = 8;

/** The wait before the next attempt after `failedAttempts` failed ones: 5 s, 10 s, 20 s, … at most 10 min. */
export function backoffMs(failedAttempts: number): number {
  const n = Math.max(1, Math.floor(failedAttempts));
  return Math.min(FIRST_BACKOFF_MS * 2 ** Math.min(n - 1, 30), MAX_BACKOFF_MS);
}

/** Whether a tick at `now` should attempt this notification. */
export function isDue(n: Notification, now: Date): boolean {
  if (n.status === 'DELIVERED') return false;
  if (n.status === 'FAILED') return n.attempts < MAX_ATTEMPTS && n.nextAttemptAt !== null && n.nextAttemptAt <= now.toISOString();
  // A PENDING one out of attempts is due too: its last attempt never reported back (a crash), so it becomes FAILED.
  return n.nextAttemptAt === null || n.nextAttemptAt <= now.toISOString();
}

/** What an attempt's outcome makes of the notification (pure; `attempts` already counts this attempt). */
export function afterAttempt(n: Notification, result: SendResult, now: Date): Notification {
  if (result.delivered) return { ...n, status: 'DELIVERED', lastError: null, deliveredAt: now.toISOString(), nextAttemptAt: null };
  if (n.attempts >= MAX_ATTEMPTS) return { ...n, status: 'FAILED', lastError: result.error, nextAttemptAt: null };
  return { ...n, status: 'PENDING', lastError: result.error, nextAttemptAt: new Date(now.getTime() + backoffMs(n.attempts)).toISOString() };
}

export type AlarmSummary = Pick<Alarm, 'id' | 'kind' | 'severity' | 'message' | 'state' | 'raisedAt' | 'hostId' | 'releaseId' | 'instanceId'>;

/** The JSON body a webhook receives. */
export function webhookPayload(alarm: AlarmSummary): { alarm: AlarmSummary } {
  const { id, kind, severity, message, state, raisedAt, hostId, releaseId, instanceId } = alarm;
  return { alarm: { id, kind, severity, message, state, raisedAt, hostId, releaseId, instanceId } };
}

/** `[SEVERITY] kind: message`, on one line and at most 200 characters. */
export function emailSubject(alarm: Pick<AlarmSummary, 'severity' | 'kind' | 'message'>): string {
  const subject = `[${alarm.severity}] ${alarm.kind}: ${alarm.message}`.replace(/\s+/g, ' ').trim();
  return subject.length > 200 ? `${subject.slice(0, 199)}…` : subject;
}

export function emailText(alarm: AlarmSummary): string {
  return [
    alarm.message,
    '',
    `alarm:    ${alarm.id}`,
    `kind:     ${alarm.kind}`,
    `severity: ${alarm.severity}`,
    `state:    ${alarm.state}`,
    `raised:   ${alarm.raisedAt}`,
    ...(alarm.hostId ? [`host:     ${alarm.hostId}`] : []),
    ...(alarm.releaseId ? [`release:  ${alarm.releaseId}`] : []),
    ...(alarm.instanceId ? [`instance: ${alarm.instanceId}`] : []),
    '',
    '-- Fangzhou',
  ].join('\n');
}

export type SendResult = { delivered: true } | { delivered: false; error: string };

type ErrorLike = { name?: unknown; message: string; cause?: unknown };
// Duck-typed: errors from fetch may come from another realm (e.g. under jest), where `instanceof Error` is false.
const isErrorLike = (err: unknown): err is ErrorLike => typeof err === 'object' && err !== null && typeof (err as ErrorLike).message === 'string';

/**
 * What failed, worded without describing the network behind the target: a system error's code (ECONNREFUSED), not
 * its message, which names internal addresses and ports.
 */
function describe(err: unknown): string {
  if (!isErrorLike(err)) return String(err);
  if (err.name === 'TimeoutError') return `no answer within ${SEND_TIMEOUT_MS / 1000} s`;
  const code = (err as { code?: unknown }).code ?? (err.cause as { code?: unknown } | undefined)?.code;
  // nodemailer wraps the system error (ESOCKET) and keeps its code only in the message.
  const system = SYSTEM_ERROR.exec(`${err.message} ${isErrorLike(err.cause) ? err.cause.message : ''}`)?.[1];
  if (system || (typeof code === 'string' && NETWORK_ERRORS.test(code))) return `delivery failed: ${system ?? code}`;
  return isErrorLike(err.cause) && err.cause.message ? `${err.message}: ${err.cause.message}` : err.message;
}

const SYSTEM_ERROR = /\b(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|EPIPE)\b/;
const NETWORK_ERRORS = /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|EPIPE|ECONNECTION|ESOCKET|EDNS)$/;

async function postWebhook(channel: AlertChannel, alarm: AlarmSummary): Promise<void> {
  // fetch refuses a URL with userinfo: send it as HTTP Basic credentials instead.
  const url = new URL(channel.target);
  await checkOutbound(url.hostname);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'fangzhou-alerts' };
  if (url.username || url.password) {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
    url.username = '';
    url.password = '';
  }
  const res = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify(webhookPayload(alarm)),
    redirect: 'manual',
    signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
  });
  // Free the connection; the body is not needed.
  await res.body?.cancel().catch(() => undefined);
  if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
}

let mailer: { url: string; transport: Transporter } | undefined;

/** One SMTP transport per FZ_SMTP_URL (which may carry credentials: never logged). */
function smtpTransport(): Transporter {
  const url = process.env.FZ_SMTP_URL;
  if (!url) throw new Error('FZ_SMTP_URL is not set: the platform has no SMTP server to send email through');
  if (mailer?.url !== url) {
    mailer?.transport.close();
    mailer = {
      url,
      transport: createTransport({
        url, connectionTimeout: SEND_TIMEOUT_MS, greetingTimeout: SEND_TIMEOUT_MS, socketTimeout: 3 * SEND_TIMEOUT_MS,
      }),
    };
  }
  return mailer.transport;
}

async function sendEmail(channel: AlertChannel, alarm: AlarmSummary): Promise<void> {
  await smtpTransport().sendMail({
    from: process.env.FZ_SMTP_FROM || 'fangzhou@localhost',
    to: channel.target,
    subject: emailSubject(alarm),
    text: emailText(alarm),
    headers: { 'X-Fangzhou-Alarm': alarm.id, 'X-Fangzhou-Severity': alarm.severity },
  });
}

/** Sends one alarm to one channel. Never throws: the error (secrets of the target scrubbed) is in the result. */
export async function send(channel: AlertChannel, alarm: AlarmSummary): Promise<SendResult> {
  try {
    if (channel.kind === 'WEBHOOK') await postWebhook(channel, alarm);
    else await sendEmail(channel, alarm);
    return { delivered: true };
  } catch (err) {
    const error = scrubTarget(channel, describe(err)).slice(0, MAX_ERROR_LENGTH);
    return { delivered: false, error };
  }
}

export interface DeliveryReport {
  /** Alarms that had a notification due. */
  alarms: number;
  attempted: number;
  delivered: number;
  /** Attempts that failed (retried later, or given up). */
  failed: number;
  /** Notifications that became FAILED in this tick (out of attempts, or their channel is gone). */
  gaveUp: number;
}

/**
 * The tick's delivery step: every due notification of every alarm is attempted, each alarm with one conditional
 * write to claim its due attempts and one to record their outcome. Errors of one alarm or channel are logged and
 * leave the others alone; this never throws for a failed send.
 */
export async function deliverPending(store: Store, now = new Date()): Promise<DeliveryReport> {
  const report: DeliveryReport = { alarms: 0, attempted: 0, delivered: 0, failed: 0, gaveUp: 0 };
  const due = (await undeliveredAlarms(store)).filter((a) => (a.notifications ?? []).some((n) => isDue(n, now)));
  if (!due.length) return report;
  report.alarms = due.length;
  const channels = new Map((await allChannels(store)).map((c) => [c.id, c]));
  let next = 0;
  const worker = async () => {
    while (next < due.length) {
      const alarm = due[next++];
      try {
        await deliverAlarm(store, alarm.id, channels, now, report);
      } catch (err) {
        log.warn({ alarmId: alarm.id, err: err instanceof Error ? err.message : String(err) }, 'could not deliver the notifications of an alarm; the next tick tries again');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, due.length) }, worker));
  return report;
}

async function deliverAlarm(store: Store, alarmId: string, channels: Map<string, AlertChannel>, now: Date, report: DeliveryReport) {
  const leaseUntil = new Date(now.getTime() + CLAIM_LEASE_MS).toISOString();
  // Filled by the last run of the change function, i.e. the one whose write won.
  let claimed: Notification[] = [];
  let dropped: Notification[] = [];
  const alarm = await store.mutate<Alarm>('alarms', alarmId, (a) => {
    claimed = [];
    dropped = [];
    if (!a) return undefined;
    const notifications = a.notifications.map((n): Notification => {
      if (!isDue(n, now)) return n;
      const channel = channels.get(n.channelId);
      if (!channel || channel.deletedAt || n.attempts >= MAX_ATTEMPTS) {
        const lastError = !channel ? 'the alert channel does not exist' : channel.deletedAt ? `alert channel ${channel.name} was deleted`
          : `gave up after ${n.attempts} attempts (the last one never reported back)`;
        const gone = { ...n, status: 'FAILED' as const, lastError, nextAttemptAt: null };
        dropped.push(gone);
        return gone;
      }
      const attempt = { ...n, attempts: n.attempts + 1, nextAttemptAt: leaseUntil };
      claimed.push(attempt);
      return attempt;
    });
    return claimed.length || dropped.length ? indexedAlarm({ ...a, notifications }) : undefined;
  });
  report.gaveUp += dropped.length;
  if (!alarm || !claimed.length) return;

  const results = new Map(await Promise.all(claimed.map(async (n) => [n.channelId, await send(channels.get(n.channelId)!, alarm)] as const)));
  report.attempted += claimed.length;

  let recorded: Notification[] = [];
  await store.mutate<Alarm>('alarms', alarmId, (a) => {
    recorded = [];
    if (!a) return undefined;
    const notifications = a.notifications.map((n) => {
      const result = results.get(n.channelId);
      const mine = claimed.find((c) => c.channelId === n.channelId);
      if (!result || !mine || n.status === 'DELIVERED') return n;
      // A failure is recorded only while the attempt is still ours; a delivery always is.
      if (!result.delivered && (n.attempts !== mine.attempts || n.nextAttemptAt !== leaseUntil)) return n;
      const after = afterAttempt(n, result, now);
      recorded.push(after);
      return after;
    });
    return recorded.length ? indexedAlarm({ ...a, notifications }) : undefined;
  });

  for (const n of recorded) {
    const channel = channels.get(n.channelId)!;
    const fields = { alarmId, channelId: channel.id, channel: channel.name, kind: channel.kind, attempts: n.attempts };
    if (n.status === 'DELIVERED') {
      report.delivered++;
      log.info(fields, 'alarm notification delivered');
      continue;
    }
    report.failed++;
    if (n.status === 'FAILED') {
      report.gaveUp++;
      log.warn({ ...fields, error: n.lastError }, 'alarm notification failed for good');
      await recordEvent(store, {
        kind: 'NOTIFICATION_FAILED', severity: 'WARNING', alarmId, hostId: alarm.hostId, releaseId: alarm.releaseId, instanceId: alarm.instanceId,
        message: `could not notify alert channel ${channel.name} of alarm ${alarmId} after ${n.attempts} attempts: ${n.lastError}`,
      }, now).catch(() => undefined);
    } else {
      log.info({ ...fields, error: n.lastError, nextAttemptAt: n.nextAttemptAt }, 'alarm notification failed; will retry');
    }
  }
}

/** Sends a TEST notification through the channel now (whatever its minSeverity); records nothing. */
export async function testChannel(store: Store, id: string, now = new Date()): Promise<{ delivered: boolean; error: string | null }> {
  const channel = await mustGetChannel(store, id);
  const result = await send(channel, {
    id: `test-${randomBytes(4).toString('hex')}`, kind: 'TEST', severity: channel.minSeverity, state: 'FIRING', raisedAt: now.toISOString(),
    message: `Test notification from Fangzhou for alert channel ${channel.name}`, hostId: null, releaseId: null, instanceId: null,
  });
  log.info({ channelId: channel.id, channel: channel.name, kind: channel.kind, delivered: result.delivered }, 'alert channel tested');
  return result.delivered ? { delivered: true, error: null } : { delivered: false, error: result.error };
}
