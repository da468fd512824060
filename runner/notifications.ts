/**
 * Push notifications for the runner: a graphql-ws subscription to `hostDesiredStateChanged` on the API's WebSocket
 * endpoint. Each notice wakes the sync loop, so a placement, move, restart or removal on this host is acted on within
 * a fraction of a second instead of at the next poll. It is only a hint: the poll stays the safety net, and nothing
 * that happens here (refused, unreachable, dropped connections) ever stops or slows the poll loop.
 *
 * The connection is kept forever: reconnects back off (1 s doubling to 30 s, with jitter); a refusal (4401/4403,
 * announced by the server's close notice, see gateway/subscriptions.ts) waits minutes, not seconds. Keep-alive pings
 * detect a dead socket. One log line when connected and one when lost, never one per message.
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { log } from '../lib/log';
import type { TlsMaterial } from './api';
import { pause } from './pause';

/** The subscription the runner holds. */
export const HOST_DESIRED_STATE_CHANGED = 'subscription HostDesiredStateChanged { hostDesiredStateChanged { at spreadSeconds } }';

/** `FZ_WS_URL=off` (or `--ws-url off`): no WebSocket, polling only. */
export const WS_OFF = 'off';

export interface NotificationOptions {
  /** `ws://` or `wss://` URL of the API's WebSocket endpoint. */
  url: string;
  hostToken: string;
  hostId: string;
  /**
   * Called for every notice and after every (re)connect (changes may have been missed while disconnected). A notice
   * with `spreadSeconds` (a network change told to every host of a large fleet) calls it at a random moment within
   * that time instead, unless an earlier call is due: the fleet's syncs reach the API spread out, not all at once.
   */
  onChange: () => void;
  /** For wss://: the CA to trust and the host's client certificate, as they are at each (re)connect. */
  tls?: () => TlsMaterial | null;
  /** Tuning, for tests. */
  keepAliveMs?: number;
  pongTimeoutMs?: number;
  maxBackoffMs?: number;
  refusedBackoffMs?: number;
}

export interface Notifications {
  /** Closes the connection and stops reconnecting. */
  stop(): Promise<void>;
}

/** Below API Gateway's 10-minute idle timeout; each ping is one call of the ws function. */
const KEEP_ALIVE_MS = 60_000;
const PONG_TIMEOUT_MS = 10_000;
const MAX_BACKOFF_MS = 30_000;
/** After 4401/4403 (token refused, subscription not allowed): retrying soon cannot help; the poll decides the rest. */
const REFUSED_BACKOFF_MS = 5 * 60_000;
/** A notice never delays the sync longer than this, whatever it asks (the poll comes anyway). */
const MAX_SPREAD_SECONDS = 60;
/** A connection that lasted this long counts as healthy: the next drop starts the back-off from 1 s again. */
const STABLE_MS = 30_000;

/**
 * The WebSocket endpoint for an API URL: the same host, http → ws and https → wss, on the API's port + 1 when it
 * names one (the stack's convention: HTTP N, WebSocket N+1, e.g. 3000 → ws://localhost:3001), else 3001.
 */
export function defaultWsUrl(apiUrl: string): string {
  const api = new URL(apiUrl);
  const ws = new URL(api.protocol === 'https:' ? 'wss://localhost/' : 'ws://localhost/');
  ws.hostname = api.hostname;
  ws.port = String(api.port ? Number(api.port) + 1 : 3001);
  return ws.toString().replace(/\/$/, '');
}

/** Why a WebSocket URL cannot be used, or null when it can. */
export function wsUrlProblem(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `"${url}" is not a URL`;
  }
  return parsed.protocol === 'ws:' || parsed.protocol === 'wss:' ? null : `"${url}" must start with ws:// or wss://`;
}


const describe = (what: unknown): string => {
  if (what instanceof Error) return what.message;
  const e = what as { code?: number; reason?: string; message?: string; error?: { message?: string; code?: string } };
  if (typeof e?.code === 'number') return `closed with ${e.code}${e.reason ? ` ${e.reason}` : ''}`;
  if (e?.error) return e.error.code ?? e.error.message ?? 'error';
  if (Array.isArray(what)) return what.map((x) => (x as { message?: string }).message).join('; ');
  return e?.message ?? String(what);
};

/** Starts following this host's desired-state notices; never throws, never rejects. */
export function followNotifications(options: NotificationOptions): Notifications {
  const { url, hostToken, hostId, onChange } = options;
  const keepAliveMs = options.keepAliveMs ?? KEEP_ALIVE_MS;
  const pongTimeoutMs = options.pongTimeoutMs ?? PONG_TIMEOUT_MS;
  const maxBackoffMs = options.maxBackoffMs ?? MAX_BACKOFF_MS;
  const refusedBackoffMs = options.refusedBackoffMs ?? REFUSED_BACKOFF_MS;
  const stopper = new AbortController();
  const signal = stopper.signal;

  let connectedAt: number | null = null;
  /** Failed attempts since the last healthy connection. */
  let failures = 0;
  /** The close notice the server sent before dropping us (4401, 4403, …). */
  let refusal: { code: number; reason: string } | null = null;
  let pongTimer: NodeJS.Timeout | undefined;
  let client: Client | undefined;

  /** The spread-out call still to come, and when. */
  let spread: { timer: NodeJS.Timeout; at: number } | null = null;
  const change = (spreadSeconds = 0) => {
    if (signal.aborted) return;
    const at = Date.now() + (spreadSeconds > 0 ? Math.random() * spreadSeconds * 1000 : 0);
    if (spread && spread.at <= at) return;
    if (spread) clearTimeout(spread.timer);
    spread = null;
    if (at <= Date.now()) return onChange();
    spread = { at, timer: setTimeout(() => { spread = null; onChange(); }, at - Date.now()) };
  };

  const backoff = () => {
    const notice = refusal;
    refusal = null;
    if (notice && (notice.code === 4401 || notice.code === 4403)) {
      log.warn({ url, code: notice.code, reason: notice.reason }, `notifications refused; polling continues; trying again in ${refusedBackoffMs / 1000}s`);
      return refusedBackoffMs;
    }
    const ms = Math.min(maxBackoffMs, 1000 * 2 ** Math.min(failures, 10));
    failures++;
    return ms + Math.floor(Math.random() * Math.min(1000, ms / 2));
  };

  const tls = options.tls;
  // Each (re)connect presents the certificate the runner holds then (it renews them).
  const webSocketImpl = tls
    ? class extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        const material = tls!();
        super(address, protocols, material ? { ca: material.ca, cert: material.cert, key: material.key } : {});
      }
    }
    : WebSocket;

  const connection = (): Client => createClient({
    url,
    webSocketImpl,
    connectionParams: { authorization: `Bearer ${hostToken}` },
    lazy: true,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    retryWait: () => pause(backoff(), signal),
    keepAlive: keepAliveMs,
    on: {
      connected: () => {
        connectedAt = Date.now();
        log.info({ url, hostId }, 'notifications connected: desired-state changes are pushed');
        change(); // whatever changed while we were not connected
      },
      ping: (received, payload) => {
        if (received) {
          const close = (payload as { close?: { code: number; reason: string } } | undefined)?.close;
          if (close) refusal = close;
          return;
        }
        // Our keep-alive went out: no pong in time means a dead socket (a half-open TCP connection says nothing).
        clearTimeout(pongTimer);
        pongTimer = setTimeout(() => {
          log.debug({ url }, 'notifications: no pong; dropping the connection');
          client?.terminate();
        }, pongTimeoutMs);
      },
      pong: (received) => {
        if (received) clearTimeout(pongTimer);
      },
      closed: (event) => {
        clearTimeout(pongTimer);
        if (signal.aborted) return;
        // A server that can close with a code of its own says 4401/4403 directly rather than in a notice.
        const code = (event as { code?: number } | undefined)?.code;
        if (!refusal && (code === 4401 || code === 4403)) refusal = { code, reason: (event as { reason?: string }).reason ?? '' };
        if (connectedAt !== null) {
          if (Date.now() - connectedAt >= STABLE_MS) failures = 0;
          connectedAt = null;
          log.warn({ url, reason: refusal ? `${refusal.code} ${refusal.reason}` : describe(event) }, 'notifications lost; polling continues; reconnecting');
        } else if (failures === 0 && !refusal) {
          log.warn({ url, reason: describe(event) }, 'notifications unavailable; polling continues; retrying with back-off');
        } else {
          log.debug({ url, reason: describe(event), failures }, 'notifications: connection attempt failed');
        }
      },
    },
  });

  /** One subscription at a time, for as long as we run; a refused or ended one is made again after a while. */
  const done = (async () => {
    while (!signal.aborted) {
      client = connection();
      let onAbort = () => undefined as void;
      const outcome = await new Promise<{ error?: unknown }>((resolve) => {
        const unsubscribe = client!.subscribe({ query: HOST_DESIRED_STATE_CHANGED }, {
          next: (message) => {
            failures = 0;
            const notice = (message.data as { hostDesiredStateChanged?: { spreadSeconds?: number } } | null | undefined)?.hostDesiredStateChanged;
            change(Math.min(notice?.spreadSeconds ?? 0, MAX_SPREAD_SECONDS));
          },
          error: (error) => resolve({ error }),
          complete: () => resolve({}),
        });
        onAbort = () => {
          unsubscribe();
          resolve({});
        };
        signal.addEventListener('abort', onAbort, { once: true });
      });
      signal.removeEventListener('abort', onAbort);
      await dispose(client);
      client = undefined;
      if (signal.aborted) break;
      // An `error` message (the server does not know the field, or refuses it) or a fatal close: not soon again.
      const wait = outcome.error ? refusedBackoffMs : backoff();
      if (outcome.error) log.warn({ url, reason: describe(outcome.error) }, `notifications subscription refused; polling continues; trying again in ${wait / 1000}s`);
      await pause(wait, signal);
    }
  })().catch((err) => log.warn({ err }, 'notifications stopped; polling continues'));

  return {
    async stop() {
      stopper.abort();
      if (spread) clearTimeout(spread.timer);
      await done;
    },
  };
}

/** Closes a client: gracefully when it can, by force when the socket hangs (dispose waits for a pending connect). */
async function dispose(client: Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const disposed = Promise.resolve().then(() => client.dispose()).catch(() => undefined);
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 1000)));
  if ((await Promise.race([disposed, late])) === 'late') {
    client.terminate();
    await Promise.race([disposed, new Promise((resolve) => setTimeout(resolve, 1000))]);
  }
  clearTimeout(timer);
}
