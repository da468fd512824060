/**
 * The runner's heartbeat: a loop of its own that tells the API "this runner lives" every second or so, and nothing
 * else. Container work never holds it up (a converge waiting 30 s for a slow PID 1 to stop, a hung engine, a long
 * pull), so the API hears a live runner for as long as it lives, and silence means the runner or its network is gone.
 *
 * Each beat carries the runner's session (random per process): one host token serves one live runner, and a second
 * runner started with the same token is refused (CONFLICT) until the first has gone quiet. The API judges beats by
 * its own clock; the host's clock is sent only so that a skew can be reported, never to decide anything.
 */
import { randomUUID } from 'node:crypto';
import { log } from '../lib/log';
import { ApiError, ApiMismatchError, type Api } from './api';
import { pause } from './pause';

export interface HeartbeatOptions {
  api: Api;
  hostToken: string;
  /** Host name, for messages. */
  name: string;
  /** Until the API says otherwise. */
  intervalMs?: number;
  /** How long a refused first beat (another runner holds the host) is retried before giving up. */
  patienceMs?: number;
  /** The runner cannot go on: the token was refused, another runner took the host, or the URL is no Fangzhou API. */
  onFatal(message: string): void;
}

export interface Heartbeat {
  session: string;
  /** Resolves on the first beat the API accepted; the runner touches no container before. */
  accepted: Promise<void>;
  stop(): void;
}

const INTERVAL_MS = 1000;
const PATIENCE_MS = 15_000;
/** A skew below this is ordinary NTP jitter and request latency. */
const SKEW_WARN_SECONDS = 2;

export function startHeartbeat(options: HeartbeatOptions): Heartbeat {
  const { api, hostToken, name } = options;
  const session = randomUUID();
  const stopper = new AbortController();
  let intervalMs = options.intervalMs ?? INTERVAL_MS;
  let isAccepted = false;
  let resolveAccepted: () => void = () => undefined;
  const accepted = new Promise<void>((resolve) => (resolveAccepted = resolve));
  const firstTryAt = Date.now();
  let failing: string | null = null;
  let reportedSkew = 0;

  const fatal = (message: string) => {
    stopper.abort();
    options.onFatal(message);
  };

  const beat = async () => {
    try {
      // A beat slower than two intervals is as good as missing; the next one is sent instead.
      const res = await api.runnerHeartbeat(hostToken, { session, sentAt: new Date().toISOString() }, Math.max(2 * intervalMs, 2000));
      intervalMs = res.intervalSeconds * 1000;
      if (!isAccepted) {
        isAccepted = true;
        log.info({ hostId: res.hostId, session, intervalSeconds: res.intervalSeconds }, 'heartbeat accepted');
        resolveAccepted();
      }
      if (failing) log.info({ after: failing }, 'heartbeats get through again');
      failing = null;
      reportSkew(res.clockSkewSeconds);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'UNAUTHENTICATED') {
        return fatal(`the API at ${api.url} refused the host token of ${name} (${err.message})`);
      }
      if (err instanceof ApiError && err.code === 'CONFLICT') {
        if (isAccepted) return fatal(`another runner took over host ${name}: ${err.message}; this one stops and touches no container`);
        if (Date.now() - firstTryAt > (options.patienceMs ?? PATIENCE_MS)) return fatal(`refused: ${err.message}`);
        if (failing !== err.message) log.warn(`${err.message}; waiting for it to go quiet`);
        failing = err.message;
        return;
      }
      if (err instanceof ApiMismatchError && !isAccepted) return fatal(err.message);
      const message = (err as Error).message;
      if (failing === null) log.warn({ url: api.url, err: message }, 'heartbeat did not get through; beating on');
      failing = message;
    }
  };

  const reportSkew = (skew: number) => {
    if (Math.abs(skew) >= SKEW_WARN_SECONDS && Math.abs(skew - reportedSkew) >= 1) {
      log.warn({ clockSkewSeconds: skew },
        `this host's clock is ${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} the API's: liveness is judged by the API's clock, ` +
        'so the host is not harmed, but its logs and timestamps disagree with the fleet; fix its time sync (NTP)');
      reportedSkew = skew;
    } else if (Math.abs(skew) < SKEW_WARN_SECONDS && Math.abs(reportedSkew) >= SKEW_WARN_SECONDS) {
      log.info({ clockSkewSeconds: skew }, "this host's clock agrees with the API's again");
      reportedSkew = 0;
    }
  };

  void (async () => {
    // Beats start on a fixed cadence: a slow beat delays the next one, never the ones after it.
    let next = Date.now();
    while (!stopper.signal.aborted) {
      await beat();
      next = Math.max(next + intervalMs, Date.now());
      await pause(next - Date.now(), stopper.signal);
    }
  })();

  return { session, accepted, stop: () => stopper.abort() };
}

