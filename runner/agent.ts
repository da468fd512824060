/**
 * The host runner's life: register once, then observe → sync → converge for as long as it runs. Failures of the
 * API or the engine are retried with back-off; a revoked host token ends the runner, since retrying cannot help.
 * Between polls the loop also wakes on engine events about its containers and on the API's push notice that this
 * host's desired containers changed (runner/notifications.ts); the poll stays the safety net for both.
 */
import type Docker from 'dockerode';
import { log } from '../lib/log';
import type { KeyValue } from '../lib/runner-protocol';
import { createKeyAndCsr, describeCertificate, renewalDue } from '../lib/pca';
import { ApiError, ApiMismatchError, ApiUnreachableError, createApi, type Api, type RegisterHostResult, type TlsMaterial } from './api';
import { startHeartbeat, type Heartbeat } from './heartbeat';
import { StatsSampler } from './stats';
import { ImagePuller } from './images';
import { connectEngine, converge, engineFacts, followEvents, hostPressure, isEngineUnreachable, observe, type EngineFacts } from './engine';
import { LogServer } from './logs';
import { ConfigDriftChecker } from './config-drift';
import { hostNetworks, HostNetworking } from './network';
import { defaultWsUrl, followNotifications, WS_OFF, wsUrlProblem, type Notifications } from './notifications';
import type { InstanceError } from './plan';
import { loadState, saveState, stateFile, type RunnerState } from './state';
import { pause } from './pause';

export interface RunnerConfig {
  name: string;
  labels: KeyValue[];
  address: string;
  /** Capacity offered to the scheduler; defaults to what the engine reports. */
  cpuMillis?: number;
  memoryMb?: number;
  apiUrl: string;
  /**
   * The API's WebSocket endpoint for push notices (graphql-ws). Unset: FZ_WS_URL, else derived from apiUrl
   * (same host, its port + 1, e.g. http://localhost:3000/graphql → ws://localhost:3001). `off`: polling only.
   */
  wsUrl?: string;
  /** Needed only for the first registration. */
  joinToken?: string;
  /** Socket path, `unix://` or `tcp://` address of the Docker engine. */
  dockerTarget: string;
  stateDir: string;
  /** Port of the DNS server on the bridge address (53: containers can reach no other). */
  dnsPort?: number;
  /** How long a URL that answers, but never with GraphQL, is retried before the runner gives up (default 120 s). */
  giveUpAfterSeconds?: number;
  /**
   * The platform CA's certificate (PEM), to trust an https API by before registration (FZ_CA_CERT); afterwards the
   * one the API sent with the host's certificate is used.
   */
  caCert?: string;
}

/** The runner cannot go on (bad join token, revoked host token, unregistered without a join token). */
export class RunnerFatalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerFatalError';
  }
}

export interface Runner {
  /** Resolves once stopped; rejects with RunnerFatalError when the runner gives up. */
  done: Promise<void>;
  /** Sync at once instead of waiting for the poll interval. */
  syncNow(): void;
  /** Finishes the current step and stops; containers keep running. */
  stop(): Promise<void>;
}

const MAX_BACKOFF_SECONDS = 30;
/** Consecutive immediate re-syncs allowed; a flapping container must not turn the loop into a busy loop. */
const MAX_QUICK_RESYNCS = 3;

export function startRunner(config: RunnerConfig): Runner {
  const stopper = new AbortController();
  const waker = new Waker();
  // Aborting also on a fatal end stops the event watcher, which would otherwise keep the process alive.
  const done = run(config, waker, stopper.signal).finally(() => stopper.abort());
  return {
    done,
    syncNow: () => waker.wake(),
    stop: async () => {
      stopper.abort();
      await done.catch(() => undefined);
    },
  };
}

/** Returns the saved registration for this API, or registers the host and saves it. */
export async function ensureRegistered(api: Api, config: RunnerConfig, facts: EngineFacts): Promise<RunnerState> {
  const file = stateFile(config.stateDir, config.name);
  const saved = loadState(file);
  if (saved?.apiUrl === api.url) {
    log.info({ hostId: saved.hostId, stateFile: file }, 'using saved registration');
    return saved;
  }
  if (saved) log.warn({ stateFile: file, savedApiUrl: saved.apiUrl }, 'saved registration belongs to another API; registering again');
  if (!config.joinToken) {
    throw new RunnerFatalError(`host ${config.name} is not registered with ${api.url} (no ${file}); set FZ_JOIN_TOKEN to register it`);
  }
  const overTls = api.url.startsWith('https:');
  if (overTls && !config.caCert) {
    throw new RunnerFatalError(`${api.url} is https: set FZ_CA_CERT (or --ca-cert) to the platform CA's certificate (ca.crt in the API's FZ_CA_DIR) so this runner can trust it`);
  }
  // Over TLS the host asks for a client certificate of the platform CA; its key never leaves this host.
  const request = overTls ? await createKeyAndCsr(config.name) : null;
  let result: RegisterHostResult;
  try {
    result = await api.registerHost({
      joinToken: config.joinToken,
      name: config.name,
      address: config.address,
      labels: config.labels,
      capacity: { cpuMillis: config.cpuMillis ?? facts.cpuMillis, memoryMb: config.memoryMb ?? facts.memoryMb },
      networks: hostNetworks(),
      ...(request ? { csr: request.csrPem } : {}),
    });
  } catch (err) {
    if (err instanceof ApiError && err.code !== 'INTERNAL') {
      throw new RunnerFatalError(`registration of host ${config.name} refused (${err.code}): ${err.message}`);
    }
    throw err;
  }
  const tls = request && result.certificate ? { key: request.keyPem, cert: result.certificate.certificate, ca: result.certificate.caCertificate } : null;
  const state: RunnerState = { hostId: result.host.id, hostToken: result.hostToken, apiUrl: api.url, ...(tls ? { tls } : {}) };
  saveState(file, state);
  log.info({ hostId: state.hostId, name: config.name, stateFile: file, certificateExpiresAt: result.certificate?.notAfter }, 'registered host');
  return state;
}

/** How long after a failed renewal the runner tries again (the expiry alarm tells the operator if it keeps failing). */
const RENEWAL_RETRY_MS = 10_000;

/**
 * Renews the host's client certificate once two thirds of its lifetime have passed: a new key made here, its request
 * sent over mutual TLS with the current certificate (the proof that this runner holds it), key and certificate saved
 * together. A failure is logged and tried again later; the current certificate keeps working until it expires.
 */
export async function renewCertificateIfDue(api: Api, config: RunnerConfig, state: RunnerState, now = new Date()): Promise<RunnerState> {
  if (!state.tls?.cert || now < renewalDue(describeCertificate(state.tls.cert))) return state;
  const { keyPem, csrPem } = await createKeyAndCsr(config.name);
  const renewed = await api.runnerRenewCertificate(state.hostToken, csrPem);
  const next = { ...state, tls: { key: keyPem, cert: renewed.certificate, ca: renewed.caCertificate } };
  saveState(stateFile(config.stateDir, config.name), next);
  log.info({ hostId: state.hostId, notAfter: renewed.notAfter }, 'client certificate renewed');
  return next;
}

async function run(config: RunnerConfig, waker: Waker, outerSignal: AbortSignal): Promise<void> {
  // The heartbeat may end the runner (token refused, host taken over by another runner): it aborts this one.
  let fatal: string | null = null;
  const ender = new AbortController();
  const signal = AbortSignal.any([outerSignal, ender.signal]);
  let heartbeat: Heartbeat | null = null;
  let registration: RunnerState | null = null;
  // Before registration the API is trusted by the configured CA certificate; afterwards by the one saved with the
  // host's own certificate, which is presented too.
  const tls = (): TlsMaterial | null => registration?.tls ?? (config.caCert ? { ca: config.caCert } : null);
  const api = createApi(config.apiUrl, config.giveUpAfterSeconds, tls);
  let renewalTryAfter = 0;
  const docker = connectEngine(config.dockerTarget);
  const backoff = new Backoff();
  const stats = new StatsSampler(docker);
  const configs = new ConfigDriftChecker(docker);
  const networking = new HostNetworking({ dnsPort: config.dnsPort });
  const images = new ImagePuller(docker, () => waker.wake());
  let facts: EngineFacts | null = null;
  let logs: LogServer | null = null;
  let errors: InstanceError[] = [];
  let quickResyncs = 0;
  /** Whether a sync ever succeeded: before that, an answer that is not Fangzhou's means a wrong URL. */
  let synced = false;
  const notifications: { current: Notifications | null } = { current: null };

  try {
    while (!signal.aborted) {
      try {
        facts ??= await engineFacts(docker);
        if (!registration) {
          registration = await ensureRegistered(api, config, facts);
          heartbeat = startHeartbeat({
            api, hostToken: registration.hostToken, name: config.name,
            onFatal: (message) => {
              fatal = message;
              ender.abort();
            },
          });
          // No container is touched before the API accepted this runner as its host's one live runner.
          await Promise.race([heartbeat.accepted, new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))]);
          if (signal.aborted) break;
          void watchEvents(docker, config.dockerTarget, registration.hostId, waker, signal);
          notifications.current = startNotifications(config, registration, waker, tls);
        }
        if (Date.now() >= renewalTryAfter) {
          registration = await renewCertificateIfDue(api, config, registration).catch((err) => {
            renewalTryAfter = Date.now() + RENEWAL_RETRY_MS;
            log.warn({ err: (err as Error).message }, 'client certificate renewal failed; trying again');
            return registration!;
          });
        }
        const { hostId, hostToken } = registration;
        const observed = configs.attach(stats.attach(await observe(docker, hostId, errors, images.pulling())));
        stats.refresh(observed);
        const engine = { ...facts.engine, cpuMillis: facts.cpuMillis, memoryMb: facts.memoryMb, ...await hostPressure(facts.rootDir ?? null) };
        const response = await api.runnerSync(hostToken, { observed, engine, networkSerial: networking.serial, session: heartbeat!.session });
        synced = true;
        // Log requests are answered beside the container work, never after it: an operator is waiting.
        logs ??= new LogServer(docker, api, hostToken, hostId);
        logs.serve(response.logRequests);
        logs.follow(response.logFollows);
        configs.refresh(observed, response.desired);
        const bridgeChanged = await networking.apply(docker, response.network);
        const result = await converge(docker, hostId, response.desired, images, networking.bridge);
        const errorsChanged = errorKey(result.errors) !== errorKey(errors);
        errors = result.errors;
        backoff.reset();
        if ((result.changed || bridgeChanged || errorsChanged) && quickResyncs < MAX_QUICK_RESYNCS) {
          quickResyncs++;
          continue;
        }
        quickResyncs = 0;
        await waker.sleep(response.pollSeconds * 1000, signal);
      } catch (err) {
        if (signal.aborted) break;
        const delay = backoff.next();
        log.warn(failure(err, config, registration, delay, synced));
        if (isEngineUnreachable(err)) facts = null; // the engine may come back as another version
        await pause(delay * 1000, signal);
      }
    }
  } finally {
    // Also on a fatal end: an open WebSocket or a beating loop would keep the process alive.
    heartbeat?.stop();
    logs?.close();
    await notifications.current?.stop();
    await networking.close();
    api.close();
  }
  if (fatal) throw new RunnerFatalError(fatal);
  log.info({ name: config.name }, 'runner stopped; containers keep running');
}

/** The WebSocket URL to use: the config's, else FZ_WS_URL, else derived from the API URL; null for polling only. */
export function notificationUrl(config: Pick<RunnerConfig, 'apiUrl' | 'wsUrl'>): string | null {
  const configured = config.wsUrl ?? (process.env.FZ_WS_URL || undefined);
  if (configured?.trim().toLowerCase() === WS_OFF) return null;
  return configured ?? defaultWsUrl(config.apiUrl);
}

/** Push notices wake the loop; a URL that cannot work is reported once and the runner polls. */
function startNotifications(config: RunnerConfig, registration: RunnerState, waker: Waker, tls: () => TlsMaterial | null): Notifications | null {
  let url: string | null;
  try {
    url = notificationUrl(config);
  } catch (err) {
    log.warn(`no WebSocket URL for push notices (${(err as Error).message}); set FZ_WS_URL; polling only`);
    return null;
  }
  if (!url) {
    log.info('push notices off (FZ_WS_URL=off); polling only');
    return null;
  }
  const problem = wsUrlProblem(url);
  if (problem) {
    log.warn(`WebSocket URL ${problem}; polling only`);
    return null;
  }
  return followNotifications({ url, hostToken: registration.hostToken, hostId: registration.hostId, onChange: () => waker.wake(), tls });
}

/** The log line for a failed step, or a RunnerFatalError when retrying cannot help. */
function failure(err: unknown, config: RunnerConfig, registration: RunnerState | null, delay: number, synced: boolean): string {
  if (err instanceof RunnerFatalError) throw err;
  if (err instanceof ApiMismatchError && !synced) throw new RunnerFatalError(err.message);
  if (err instanceof ApiError && err.code === 'CONFLICT') {
    throw new RunnerFatalError(`host ${config.name}: ${err.message}; this runner stops and touches no container`);
  }
  if (err instanceof ApiError && err.code === 'UNAUTHENTICATED') {
    throw new RunnerFatalError(
      `the API at ${config.apiUrl} refused the host token of ${config.name} (host ${registration?.hostId} deleted or token revoked: ${err.message}): ` +
        `remove ${stateFile(config.stateDir, config.name)} and register again with FZ_JOIN_TOKEN`,
    );
  }
  const retry = `retrying in ${delay}s`;
  const message = (err as Error).message;
  if (err instanceof ApiUnreachableError) return `API unreachable at ${config.apiUrl}: ${message}; ${retry}`;
  if (isEngineUnreachable(err)) return `Docker engine unreachable at ${config.dockerTarget}: ${message}; ${retry}`;
  if (err instanceof ApiError) return `API answered with an error (${err.code}): ${message}; ${retry}`;
  return `runner step failed: ${message}; ${retry}`;
}

const errorKey = (errors: InstanceError[]) =>
  errors.map((e) => `${e.instanceId}:${e.message}`).sort().join('\n');

/** Wakes the loop on engine events about our containers, so a die or health change is reported within a second. */
async function watchEvents(docker: Docker, target: string, hostId: string, waker: Waker, signal: AbortSignal): Promise<void> {
  const backoff = new Backoff();
  while (!signal.aborted) {
    try {
      const watch = await followEvents(docker, hostId, (e) => {
        log.debug(e, 'engine event');
        waker.wake();
      });
      const stop = () => watch.stop();
      signal.addEventListener('abort', stop);
      backoff.reset();
      waker.wake(); // events may have been missed while disconnected
      await watch.ended.finally(() => signal.removeEventListener('abort', stop));
    } catch (err) {
      log.debug({ err: (err as Error).message, target }, 'engine event stream failed');
    }
    await pause(backoff.next() * 1000, signal);
  }
}

/** Seconds to wait after each failure in a row: 1, doubling, at most MAX_BACKOFF_SECONDS (30); reset after a success. */
export class Backoff {
  private seconds = 1;

  next(): number {
    const current = this.seconds;
    this.seconds = Math.min(current * 2, MAX_BACKOFF_SECONDS);
    return current;
  }

  reset(): void {
    this.seconds = 1;
  }
}


/** A sleep that `wake()` cuts short; a wake while awake makes the next sleep return at once. */
class Waker {
  private pending = false;
  private interrupt: (() => void) | null = null;

  wake(): void {
    if (this.interrupt) this.interrupt();
    else this.pending = true;
  }

  async sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return;
    }
    const interrupted = new AbortController();
    this.interrupt = () => interrupted.abort();
    await pause(ms, AbortSignal.any([signal, interrupted.signal]));
    this.interrupt = null;
  }
}
