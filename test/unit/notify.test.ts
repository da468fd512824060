import type { Notification } from '../../subgraphs/butler/alarms';
import {
  afterAttempt, backoffMs, emailSubject, isDue, MAX_ATTEMPTS, MAX_BACKOFF_MS, webhookPayload,
} from '../../subgraphs/butler/notify';
import { channelFromInput, displayTarget, routedChannels, routes, scrubTarget } from '../../subgraphs/panama/channels';

const now = new Date('2026-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(now.getTime() + ms).toISOString();
const pending = (extra: Partial<Notification> = {}): Notification => ({
  channelId: 'ch-1', status: 'PENDING', attempts: 0, lastError: null, deliveredAt: null, nextAttemptAt: now.toISOString(), ...extra,
});

describe('back-off', () => {
  test('doubles from 5 s and stops at 10 min', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map(backoffMs)).toEqual([5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 600_000]);
    expect(backoffMs(50)).toBe(MAX_BACKOFF_MS);
    expect(backoffMs(0)).toBe(5_000);
  });

  test('a failed attempt is retried after the back-off, the last one gives up', () => {
    const failed = afterAttempt(pending({ attempts: 3 }), { delivered: false, error: 'HTTP 500' }, now);
    expect(failed).toEqual(pending({ attempts: 3, status: 'PENDING', lastError: 'HTTP 500', nextAttemptAt: at(20_000) }));
    const last = afterAttempt(pending({ attempts: MAX_ATTEMPTS }), { delivered: false, error: 'HTTP 500' }, now);
    expect(last).toMatchObject({ status: 'FAILED', attempts: MAX_ATTEMPTS, lastError: 'HTTP 500', nextAttemptAt: null });
    const delivered = afterAttempt(pending({ attempts: 2, lastError: 'HTTP 500' }), { delivered: true }, now);
    expect(delivered).toMatchObject({ status: 'DELIVERED', attempts: 2, lastError: null, deliveredAt: now.toISOString(), nextAttemptAt: null });
  });

  test('due: pending once its time came; never when delivered or given up', () => {
    expect(isDue(pending(), now)).toBe(true);
    expect(isDue(pending({ nextAttemptAt: null }), now)).toBe(true);
    expect(isDue(pending({ attempts: 1, nextAttemptAt: at(1) }), now)).toBe(false);
    expect(isDue(pending({ status: 'DELIVERED', nextAttemptAt: null }), now)).toBe(false);
    expect(isDue(pending({ status: 'FAILED', attempts: MAX_ATTEMPTS, nextAttemptAt: null }), now)).toBe(false);
    expect(isDue(pending({ status: 'FAILED', attempts: 2, nextAttemptAt: null }), now)).toBe(false);
    expect(isDue(pending({ status: 'FAILED', attempts: 2, nextAttemptAt: at(-1) }), now)).toBe(true);
  });
});

describe('routing by minimum severity', () => {
  test('INFO < WARNING < CRITICAL', () => {
    expect(routes('INFO', 'INFO')).toBe(true);
    expect(routes('WARNING', 'INFO')).toBe(false);
    expect(routes('WARNING', 'CRITICAL')).toBe(true);
    expect(routes('CRITICAL', 'WARNING')).toBe(false);
  });

  test('live channels that want the severity, in name order', () => {
    const channels = [
      { id: 'c', name: 'pager', minSeverity: 'CRITICAL' as const, deletedAt: null },
      { id: 'b', name: 'ops', minSeverity: 'WARNING' as const, deletedAt: null },
      { id: 'a', name: 'all', minSeverity: 'INFO' as const, deletedAt: null },
      { id: 'd', name: 'gone', minSeverity: 'INFO' as const, deletedAt: now.toISOString() },
    ];
    expect(routedChannels(channels, 'INFO')).toEqual(['a']);
    expect(routedChannels(channels, 'WARNING')).toEqual(['a', 'b']);
    expect(routedChannels(channels, 'CRITICAL')).toEqual(['a', 'b', 'c']);
  });
});

describe('channel input', () => {
  const input = { name: 'ops', kind: 'WEBHOOK' as const, target: 'https://hooks.example.com/x?token=abc' };
  const fieldOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return (err as { extensions: { code: string; field: string } }).extensions;
    }
    throw new Error('no error');
  };

  test('defaults minSeverity to WARNING', () => {
    expect(channelFromInput(input, 'ch-1', now)).toEqual({ ...input, id: 'ch-1', minSeverity: 'WARNING', createdAt: now.toISOString(), deletedAt: null });
  });

  test.each([
    [{ name: 'Ops_1' }, 'name'],
    [{ name: '' }, 'name'],
    [{ kind: 'SMS' }, 'kind'],
    [{ target: 'ftp://files.example.com/x' }, 'target'],
    [{ target: 'not a url' }, 'target'],
    [{ kind: 'EMAIL', target: 'not-an-address' }, 'target'],
    [{ kind: 'EMAIL', target: 'two@example.com, three@example.com' }, 'target'],
    [{ minSeverity: 'LOUD' }, 'minSeverity'],
  ])('%j is refused naming %s', (change, field) => {
    expect(fieldOf(() => channelFromInput({ ...input, ...change } as never, 'ch-1', now))).toEqual({ code: 'BAD_USER_INPUT', field });
  });

  test('an error never echoes the target (it may hold a secret)', () => {
    const err = (() => { try { channelFromInput({ ...input, target: 'gopher://x/?token=s3cret' }, 'c', now); } catch (e) { return e as Error; } })();
    expect(err!.message).not.toContain('s3cret');
  });

  test('email addresses', () => {
    expect(channelFromInput({ name: 'mail', kind: 'EMAIL', target: 'oncall+fz@ops.example.com' }, 'c', now).target).toBe('oncall+fz@ops.example.com');
    expect(channelFromInput({ name: 'mail', kind: 'EMAIL', target: 'root@localhost' }, 'c', now).target).toBe('root@localhost');
  });
});

describe('secrets of a webhook target', () => {
  const hook = (target: string) => ({ kind: 'WEBHOOK' as const, target });

  test('query string and userinfo are hidden, the rest shown', () => {
    expect(displayTarget(hook('https://hooks.example.com/services/x?token=s3cret&a=1#frag'))).toBe('https://hooks.example.com/services/x?[hidden]');
    expect(displayTarget(hook('https://bot:pa55word@hooks.example.com:8443/in'))).toBe('https://[hidden]@hooks.example.com:8443/in');
    expect(displayTarget(hook('http://127.0.0.1:8080/plain'))).toBe('http://127.0.0.1:8080/plain');
    expect(displayTarget({ kind: 'EMAIL', target: 'ops@example.com' })).toBe('ops@example.com');
  });

  test('scrubbed from error messages', () => {
    const channel = hook('https://bot:pa55word@hooks.example.com/in?token=s3cret');
    const scrubbed = scrubTarget(channel, 'POST https://bot:pa55word@hooks.example.com/in?token=s3cret failed; token=s3cret; pa55word');
    expect(scrubbed).not.toMatch(/s3cret|pa55word/);
    expect(scrubbed).toContain('https://[hidden]@hooks.example.com/in?[hidden]');
  });
});

test('webhook body and email subject', () => {
  const alarm = {
    id: 'a-1', kind: 'HOST_DOWN' as const, severity: 'CRITICAL' as const, message: 'host h1\nis down', state: 'FIRING' as const,
    raisedAt: now.toISOString(), hostId: 'h-1', releaseId: null, instanceId: null,
  };
  expect(webhookPayload({ ...alarm, notifications: [], cause: 'host:h-1' } as never)).toEqual({ alarm });
  expect(emailSubject(alarm)).toBe('[CRITICAL] HOST_DOWN: host h1 is down');
  expect(emailSubject({ ...alarm, message: 'x'.repeat(500) })).toHaveLength(200);
});
