import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { store } from '../../lib/store';
import { getAlarm, raiseAlarm, type Alarm, type AlarmKind, type Notification } from '../../subgraphs/butler/alarms';
import type { Severity } from '../../subgraphs/butler/events';
import { CLAIM_LEASE_MS, deliverPending, MAX_ATTEMPTS, SEND_TIMEOUT_MS } from '../../subgraphs/butler/notify';
import { channelsFor } from '../../subgraphs/panama/channels';
import { anonymous, startInProcess } from '../support/inprocess';
import { startSmtpServer, type SmtpServer } from '../support/smtp';

/**
 * Alert channels end to end on the real store protocol (dynalite): channels are managed through the gateway as an
 * operator; alarms are queued by raiseAlarm and sent by deliverPending to a real HTTP server started here and to a
 * real SMTP server in a child process.
 */

interface Hit {
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  body: { alarm: Record<string, unknown> };
  /** When the request arrived, and when its connection closed (answered, or given up by the sender). */
  at: number;
  closedAt?: number;
}

let api: Awaited<ReturnType<typeof startInProcess>>;
let smtp: SmtpServer;
let hooks: http.Server;
let hookBase: string;
const hits: Hit[] = [];
/** Status codes each path answers with, in turn; the last one repeats. Unlisted paths answer 200. */
const answers = new Map<string, number[]>();
let delayMs = new Map<string, number>();
const timers = new Set<NodeJS.Timeout>();

const run: typeof api.run = (...args) => api.run(...args);
const hitsOn = (path: string) => hits.filter((h) => h.path === path);
const codeOf = (res: { errors?: { extensions?: { code?: string } }[] }) => res.errors?.[0]?.extensions?.code;

beforeAll(async () => {
  api = await startInProcess('alerts-');
  smtp = await startSmtpServer({ reject: ['nobody@example.com'] });
  // The receivers of this suite are on loopback, which the platform refuses unless told otherwise.
  process.env.FZ_WEBHOOK_ALLOW_LOCAL = 'true';
  process.env.FZ_SMTP_URL = smtp.url;
  process.env.FZ_SMTP_FROM = 'alerts@fangzhou.test';
  hooks = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hit: Hit = { path: url.pathname, query: url.search, headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString() || '{}'), at: Date.now() };
      hits.push(hit);
      res.on('close', () => { hit.closedAt = Date.now(); });
      // A path whose delay is Infinity never answers.
      if (delayMs.get(url.pathname) === Infinity) return;
      const queue = answers.get(url.pathname) ?? [200];
      const status = queue.length > 1 ? queue.shift()! : queue[0];
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!res.destroyed) res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'boom');
      }, delayMs.get(url.pathname) ?? 0);
      timers.add(timer);
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  hookBase = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}`;
}, 60_000);

afterAll(async () => {
  for (const timer of timers) clearTimeout(timer);
  hooks?.closeAllConnections();
  await new Promise((r) => hooks?.close(r));
  await smtp?.stop();
  await api?.stop();
});

const CREATE = 'mutation($input: AlertChannelInput!) { createAlertChannel(input: $input) { id name kind target minSeverity createdAt } }';

async function createChannel(input: { name: string; kind: 'WEBHOOK' | 'EMAIL'; target: string; minSeverity?: Severity }): Promise<string> {
  const res = await run(CREATE, { input });
  expect(res.errors).toBeUndefined();
  return res.data!.createAlertChannel.id;
}

/** Each test starts with no channels (their pending notifications then fail at the next delivery) and fresh hooks. */
beforeEach(async () => {
  for (const { id } of (await run('{ alertChannels { id } }')).data!.alertChannels) {
    expect((await run('mutation($id: ID!) { deleteAlertChannel(id: $id) { id } }', { id })).errors).toBeUndefined();
  }
  hits.length = 0;
  answers.clear();
  delayMs = new Map();
});

let causes = 0;
/** Raises an alarm routed as the pipeline does: to the channels that want its severity. */
async function raise(severity: Severity, kind: AlarmKind = 'HOST_DOWN', now = new Date()) {
  const alarm = await raiseAlarm(store(), {
    kind, severity, cause: `test:${++causes}`, hostId: 'h-test', message: `${kind} number ${causes}`,
  }, await channelsFor(store(), severity), now);
  return alarm!;
}

const notificationOf = async (alarm: Alarm, channelId: string): Promise<Notification> =>
  (await getAlarm(store(), alarm.id))!.notifications.find((n) => n.channelId === channelId)!;

test('webhook and email channels get the alarms at or above their minimum severity', async () => {
  const all = await createChannel({ name: 'all-hook', kind: 'WEBHOOK', target: `${hookBase}/all?token=s3cret`, minSeverity: 'INFO' });
  const warn = await createChannel({ name: 'warn-hook', kind: 'WEBHOOK', target: `${hookBase}/warn`, minSeverity: 'WARNING' });
  const mail = await createChannel({ name: 'pager-mail', kind: 'EMAIL', target: 'oncall@example.com', minSeverity: 'CRITICAL' });

  expect(await channelsFor(store(), 'INFO')).toEqual([all]);
  expect(await channelsFor(store(), 'WARNING')).toEqual([all, warn]);
  expect(await channelsFor(store(), 'CRITICAL')).toEqual([all, mail, warn]);

  const t0 = new Date();
  const info = await raise('INFO', 'CONTAINER_RESTARTED', t0);
  const critical = await raise('CRITICAL', 'HOST_DOWN', t0);
  expect(info.notifications.map((n) => n.channelId)).toEqual([all]);
  expect(critical.notifications.map((n) => [n.status, n.attempts])).toEqual([['PENDING', 0], ['PENDING', 0], ['PENDING', 0]]);

  const report = await deliverPending(store(), t0);
  expect(report).toMatchObject({ attempted: 4, delivered: 4, failed: 0 });

  // The webhooks: a JSON POST with the alarm; the INFO alarm did not go to the WARNING channel.
  expect(hitsOn('/all').map((h) => h.body.alarm.id).sort()).toEqual([info.id, critical.id].sort());
  expect(hitsOn('/warn').map((h) => h.body.alarm.id)).toEqual([critical.id]);
  const hit = hitsOn('/warn')[0];
  expect(hit.headers['content-type']).toBe('application/json');
  expect(hit.body).toEqual({
    alarm: {
      id: critical.id, kind: 'HOST_DOWN', severity: 'CRITICAL', message: critical.message, state: 'FIRING',
      raisedAt: t0.toISOString(), hostId: 'h-test', releaseId: null, instanceId: null,
    },
  });
  expect(hitsOn('/all')[0].query).toBe('?token=s3cret');

  // The mail, through the SMTP server process: only the CRITICAL alarm.
  const mails = smtp.messages().filter((m) => m.to.includes('oncall@example.com'));
  expect(mails).toHaveLength(1);
  expect(mails[0]).toMatchObject({ from: 'alerts@fangzhou.test', subject: `[CRITICAL] HOST_DOWN: ${critical.message}` });
  expect(mails[0].text).toContain(`alarm:    ${critical.id}`);

  // Recorded on the alarm, and visible through the gateway across subgraphs (Butler's alarm, Panama's channel).
  const res = await run(`query($id: ID!) { alarm(id: $id) { notifications { channel { name kind target } status attempts lastError deliveredAt } } }`, { id: critical.id });
  expect(res.errors).toBeUndefined();
  const seen = res.data!.alarm.notifications;
  expect(seen).toHaveLength(3);
  for (const n of seen) expect(n).toMatchObject({ status: 'DELIVERED', attempts: 1, lastError: null, deliveredAt: t0.toISOString() });
  expect(seen.find((n: { channel: { name: string } }) => n.channel.name === 'all-hook').channel.target).toBe(`${hookBase}/all?[hidden]`);

  // Nothing is due any more: a second tick sends nothing.
  expect(await deliverPending(store(), new Date(t0.getTime() + 60_000))).toMatchObject({ attempted: 0 });
  expect(hits).toHaveLength(3);
});

test('a failing webhook is retried with back-off while the other channel is delivered at once', async () => {
  const flaky = await createChannel({ name: 'flaky-hook', kind: 'WEBHOOK', target: `${hookBase}/flaky`, minSeverity: 'WARNING' });
  const mail = await createChannel({ name: 'ops-mail', kind: 'EMAIL', target: 'ops@example.com', minSeverity: 'WARNING' });
  answers.set('/flaky', [500, 200]);
  const t0 = new Date();
  const alarm = await raise('WARNING', 'CONTAINER_UNHEALTHY', t0);

  await deliverPending(store(), t0);
  expect(await notificationOf(alarm, mail)).toMatchObject({ status: 'DELIVERED', attempts: 1 });
  expect(smtp.messages().filter((m) => m.subject.includes(alarm.message))).toHaveLength(1);
  expect(await notificationOf(alarm, flaky)).toEqual({
    channelId: flaky, status: 'PENDING', attempts: 1, lastError: 'HTTP 500 Internal Server Error', deliveredAt: null,
    nextAttemptAt: new Date(t0.getTime() + 5_000).toISOString(),
  });

  // Before the back-off is over nothing is sent; after it, the retry is delivered.
  await deliverPending(store(), new Date(t0.getTime() + 4_000));
  expect(hitsOn('/flaky')).toHaveLength(1);
  await deliverPending(store(), new Date(t0.getTime() + 5_000));
  expect(hitsOn('/flaky')).toHaveLength(2);
  expect(await notificationOf(alarm, flaky)).toMatchObject({
    status: 'DELIVERED', attempts: 2, lastError: null, deliveredAt: new Date(t0.getTime() + 5_000).toISOString(), nextAttemptAt: null,
  });
  // The mail was not sent again.
  expect(smtp.messages().filter((m) => m.subject.includes(alarm.message))).toHaveLength(1);
});

test('a channel that keeps failing gives up after the last attempt and stays visible as FAILED', async () => {
  const down = await createChannel({ name: 'down-hook', kind: 'WEBHOOK', target: `${hookBase}/down?key=s3cret`, minSeverity: 'INFO' });
  answers.set('/down', [503]);
  let now = new Date();
  const alarm = await raise('CRITICAL', 'CONTAINER_OOM', now);
  const waits: number[] = [];
  for (let i = 0; i < MAX_ATTEMPTS; i++) {
    await deliverPending(store(), now);
    const n = await notificationOf(alarm, down);
    expect(n.attempts).toBe(i + 1);
    if (n.nextAttemptAt) {
      waits.push(Date.parse(n.nextAttemptAt) - now.getTime());
      now = new Date(n.nextAttemptAt);
    }
  }
  expect(waits).toEqual([5, 10, 20, 40, 80, 160, 320].map((s) => s * 1000));
  const n = await notificationOf(alarm, down);
  expect(n).toMatchObject({ status: 'FAILED', attempts: MAX_ATTEMPTS, lastError: 'HTTP 503 Service Unavailable', nextAttemptAt: null });
  expect(hitsOn('/down')).toHaveLength(MAX_ATTEMPTS);
  // No more attempts, ever.
  await deliverPending(store(), new Date(now.getTime() + 24 * 3600_000));
  expect(hitsOn('/down')).toHaveLength(MAX_ATTEMPTS);
  const events = (await run('{ events(filter: {kind: "NOTIFICATION_FAILED"}) { nodes { message alarm { id } } } }')).data!.events.nodes;
  expect(events).toEqual([expect.objectContaining({ alarm: { id: alarm.id } })]);
  expect(events[0].message).not.toContain('s3cret');
});

test('an unreachable or slow webhook does not hold up the others, and its secret is not in the error', async () => {
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const gone = await createChannel({ name: 'gone-hook', kind: 'WEBHOOK', target: `http://bot:pa55word@127.0.0.1:${closedPort}/x?token=s3cret`, minSeverity: 'INFO' });
  const slow = await createChannel({ name: 'slow-hook', kind: 'WEBHOOK', target: `${hookBase}/slow`, minSeverity: 'INFO' });
  const ok = await createChannel({ name: 'ok-hook', kind: 'WEBHOOK', target: `${hookBase}/ok`, minSeverity: 'INFO' });
  delayMs.set('/slow', Infinity); // never answers: only the sender's own timeout ends it
  const t0 = new Date();
  const alarm = await raise('WARNING', 'DEPLOY_FAILED', t0);
  const started = Date.now();
  const report = await deliverPending(store(), t0);
  console.log(`deliverPending with a webhook that never answers took ${Date.now() - started} ms (send timeout ${SEND_TIMEOUT_MS} ms)`);
  expect(report).toMatchObject({ attempted: 3, delivered: 1, failed: 2 });
  expect(await notificationOf(alarm, ok)).toMatchObject({ status: 'DELIVERED', attempts: 1 });
  // Not queued behind the silent one: the good hook had its request before the sender gave up on the silent one.
  const [okHit, slowHit] = [hitsOn('/ok'), hitsOn('/slow')].map((h) => { expect(h).toHaveLength(1); return h[0]; });
  expect(slowHit.closedAt).toBeDefined();
  expect(okHit.at).toBeLessThanOrEqual(slowHit.closedAt!);
  const unreachable = await notificationOf(alarm, gone);
  expect(unreachable).toMatchObject({ status: 'PENDING', attempts: 1 });
  expect(unreachable.lastError).toMatch(/ECONNREFUSED/);
  expect(unreachable.lastError).not.toMatch(/s3cret|pa55word/);
  expect(await notificationOf(alarm, slow)).toMatchObject({ status: 'PENDING', attempts: 1, lastError: 'no answer within 5 s' });
}, 30_000);

test('two ticks at once send each notification once', async () => {
  const hook = await createChannel({ name: 'once-hook', kind: 'WEBHOOK', target: `${hookBase}/once`, minSeverity: 'INFO' });
  const mail = await createChannel({ name: 'once-mail', kind: 'EMAIL', target: 'once@example.com', minSeverity: 'INFO' });
  const t0 = new Date();
  const alarms = await Promise.all([1, 2, 3].map(() => raise('INFO', 'INSTANCE_MIGRATED', t0)));
  const mailsBefore = smtp.messages().filter((m) => m.to.includes('once@example.com')).length;
  const reports = await Promise.all([deliverPending(store(), t0), deliverPending(store(), t0), deliverPending(store(), t0)]);
  expect(reports.reduce((sum, r) => sum + r.attempted, 0)).toBe(6);
  expect(hitsOn('/once').map((h) => h.body.alarm.id).sort()).toEqual(alarms.map((a) => a.id).sort());
  expect(smtp.messages().filter((m) => m.to.includes('once@example.com')).length - mailsBefore).toBe(3);
  for (const alarm of alarms) {
    expect(await notificationOf(alarm, hook)).toMatchObject({ status: 'DELIVERED', attempts: 1 });
    expect(await notificationOf(alarm, mail)).toMatchObject({ status: 'DELIVERED', attempts: 1 });
  }
});

test('an attempt that never reported back (a crash) is tried again after its lease', async () => {
  const hook = await createChannel({ name: 'lease-hook', kind: 'WEBHOOK', target: `${hookBase}/lease`, minSeverity: 'INFO' });
  const t0 = new Date();
  const alarm = await raise('INFO', 'CONTAINER_RESTARTED', t0);
  // What a tick that crashed after claiming the attempt leaves behind.
  await store().mutate<Alarm>('alarms', alarm.id, (a) => a && {
    ...a, notifications: a.notifications.map((n) => ({ ...n, attempts: 1, nextAttemptAt: new Date(t0.getTime() + CLAIM_LEASE_MS).toISOString() })),
  });
  await deliverPending(store(), new Date(t0.getTime() + CLAIM_LEASE_MS - 1));
  expect(hitsOn('/lease')).toHaveLength(0);
  await deliverPending(store(), new Date(t0.getTime() + CLAIM_LEASE_MS));
  expect(hitsOn('/lease')).toHaveLength(1);
  expect(await notificationOf(alarm, hook)).toMatchObject({ status: 'DELIVERED', attempts: 2 });
});

test('testAlertChannel sends a TEST notification now and says whether it arrived', async () => {
  const ok = await createChannel({ name: 'test-ok', kind: 'WEBHOOK', target: `${hookBase}/test-ok?sig=s3cret`, minSeverity: 'CRITICAL' });
  const bad = await createChannel({ name: 'test-bad', kind: 'WEBHOOK', target: `${hookBase}/test-bad`, minSeverity: 'INFO' });
  const mail = await createChannel({ name: 'test-mail', kind: 'EMAIL', target: 'tester@example.com', minSeverity: 'INFO' });
  const refused = await createChannel({ name: 'test-refused', kind: 'EMAIL', target: 'nobody@example.com', minSeverity: 'INFO' });
  answers.set('/test-bad', [500]);
  const TEST = 'mutation($id: ID!) { testAlertChannel(id: $id) { delivered error } }';

  expect((await run(TEST, { id: ok })).data!.testAlertChannel).toEqual({ delivered: true, error: null });
  expect(hitsOn('/test-ok')[0].body.alarm).toMatchObject({ kind: 'TEST', severity: 'CRITICAL', message: expect.stringContaining('test-ok') });
  expect((await run(TEST, { id: bad })).data!.testAlertChannel).toEqual({ delivered: false, error: 'HTTP 500 Internal Server Error' });
  expect((await run(TEST, { id: mail })).data!.testAlertChannel).toEqual({ delivered: true, error: null });
  expect(smtp.messages().filter((m) => m.to.includes('tester@example.com'))[0].subject).toMatch(/^\[INFO\] TEST: Test notification/);
  const refusedResult = (await run(TEST, { id: refused })).data!.testAlertChannel;
  expect(refusedResult.delivered).toBe(false);
  expect(refusedResult.error).toMatch(/550/);

  // An SMTP server that is not there.
  const url = process.env.FZ_SMTP_URL;
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  process.env.FZ_SMTP_URL = `smtp://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise((r) => closed.close(r));
  try {
    const down = (await run(TEST, { id: mail })).data!.testAlertChannel;
    expect(down.delivered).toBe(false);
    expect(down.error).toMatch(/ECONNREFUSED/);
  } finally {
    process.env.FZ_SMTP_URL = url;
  }

  // Nothing was recorded as an alarm, and an unknown channel is NOT_FOUND.
  expect(codeOf(await run(TEST, { id: 'ch-nosuch' }))).toBe('NOT_FOUND');
});

test('channels are listed with their secrets hidden, names are unique, deleting frees the name', async () => {
  await createChannel({ name: 'hidden-query', kind: 'WEBHOOK', target: `${hookBase}/in?token=s3cret&x=1`, minSeverity: 'INFO' });
  await createChannel({ name: 'hidden-user', kind: 'WEBHOOK', target: `http://bot:pa55word@127.0.0.1:9/in`, minSeverity: 'CRITICAL' });
  await createChannel({ name: 'mail', kind: 'EMAIL', target: 'ops@example.com' });
  const listed = await run('{ alertChannels { name kind target minSeverity } }');
  expect(listed.data!.alertChannels).toEqual([
    { name: 'hidden-query', kind: 'WEBHOOK', target: `${hookBase}/in?[hidden]`, minSeverity: 'INFO' },
    { name: 'hidden-user', kind: 'WEBHOOK', target: 'http://[hidden]@127.0.0.1:9/in', minSeverity: 'CRITICAL' },
    { name: 'mail', kind: 'EMAIL', target: 'ops@example.com', minSeverity: 'WARNING' },
  ]);
  expect(JSON.stringify(listed)).not.toMatch(/s3cret|pa55word/);

  const dup = await run(CREATE, { input: { name: 'mail', kind: 'WEBHOOK', target: `${hookBase}/x` } });
  expect(codeOf(dup)).toBe('CONFLICT');
  expect(dup.errors![0].message).toMatch(/"mail" already exists/);

  const id = (await run('{ alertChannels { id name } }')).data!.alertChannels.find((c: { name: string }) => c.name === 'hidden-query').id;
  const deleted = await run('mutation($id: ID!) { deleteAlertChannel(id: $id) { name target } }', { id });
  expect(deleted.data!.deleteAlertChannel).toEqual({ name: 'hidden-query', target: `${hookBase}/in?[hidden]` });
  expect(codeOf(await run('mutation($id: ID!) { deleteAlertChannel(id: $id) { id } }', { id }))).toBe('NOT_FOUND');
  expect((await run('{ alertChannels { name } }')).data!.alertChannels.map((c: { name: string }) => c.name)).toEqual(['hidden-user', 'mail']);
  expect(await createChannel({ name: 'hidden-query', kind: 'EMAIL', target: 'reuse@example.com', minSeverity: 'INFO' })).not.toBe(id);
});

test('a notification queued for a channel deleted since is FAILED, not sent', async () => {
  const hook = await createChannel({ name: 'doomed', kind: 'WEBHOOK', target: `${hookBase}/doomed`, minSeverity: 'INFO' });
  const t0 = new Date();
  const alarm = await raise('CRITICAL', 'HOST_DOWN', t0);
  await run('mutation($id: ID!) { deleteAlertChannel(id: $id) { id } }', { id: hook });
  await deliverPending(store(), t0);
  expect(hitsOn('/doomed')).toHaveLength(0);
  expect(await notificationOf(alarm, hook)).toMatchObject({ status: 'FAILED', attempts: 0, lastError: 'alert channel doomed was deleted' });
  // The tombstone still names the channel on the alarm.
  const res = await run('query($id: ID!) { alarm(id: $id) { notifications { channel { name } status } } }', { id: alarm.id });
  expect(res.data!.alarm.notifications).toEqual([{ channel: { name: 'doomed' }, status: 'FAILED' }]);
});

test.each([
  [{ name: 'Bad_Name', kind: 'WEBHOOK', target: 'http://127.0.0.1/x' }, 'name', /name "Bad_Name" must be/],
  [{ name: 'bad-url', kind: 'WEBHOOK', target: 'ftp://127.0.0.1/x' }, 'target', /http:\/\/ or https:\/\/ URL/],
  [{ name: 'bad-url', kind: 'WEBHOOK', target: 'no url at all' }, 'target', /absolute http/],
  [{ name: 'bad-mail', kind: 'EMAIL', target: 'not-an-address' }, 'target', /one email address/],
  [{ name: 'bad-mail', kind: 'EMAIL', target: 'http://127.0.0.1/x' }, 'target', /one email address/],
])('bad input %j is refused naming %s', async (input, field, message) => {
  const res = await run(CREATE, { input });
  expect(res.errors![0].extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
  expect(res.errors![0].message).toMatch(message);
  expect((await run('{ alertChannels { name } }')).data!.alertChannels).toEqual([]);
});

test('an unknown kind or severity is refused by the schema, and channels need an operator', async () => {
  expect(codeOf(await run(CREATE, { input: { name: 'x', kind: 'SMS', target: 'x' } }))).toBe('BAD_USER_INPUT');
  expect(codeOf(await run(CREATE, { input: { name: 'x', kind: 'EMAIL', target: 'a@example.com', minSeverity: 'LOUD' } }))).toBe('BAD_USER_INPUT');
  expect(codeOf(await run('{ alertChannels { name } }', {}, anonymous))).toBe('UNAUTHENTICATED');
  expect(codeOf(await run(CREATE, { input: { name: 'x', kind: 'EMAIL', target: 'a@example.com' } }, anonymous))).toBe('UNAUTHENTICATED');
});
