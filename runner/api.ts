/**
 * The runner's GraphQL calls to Ark, over node:http, or node:https with the platform CA: the API's certificate is
 * trusted by the CA's, and the host's client certificate is presented (mutual TLS) once the host has one.
 */
import http from 'node:http';
import https from 'node:https';
import type { KeyValue, LogLine, SyncRequest, SyncResponse } from '../lib/runner-protocol';

const REQUEST_TIMEOUT_MS = 30_000;

/** The API answered with a GraphQL error; `code` is its `extensions.code`. */
export class ApiError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * No usable answer: connection failure, timeout, 5xx or a body that is not GraphQL. Worth retrying, for a while
 * (createApi). `status` is the HTTP status when a server did answer, but not with GraphQL.
 */
export class ApiUnreachableError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = 'ApiUnreachableError';
  }
}

/**
 * The URL answers, but not as a Fangzhou API (another server, a wrong path, an API without the runner's fields):
 * retrying cannot help a runner that was never accepted there.
 */
export class ApiMismatchError extends Error {
  constructor(url: string, what: string) {
    super(`${url} is not a Fangzhou API (${what}): check FZ_API_URL, e.g. http://api-host:3000/graphql`);
    this.name = 'ApiMismatchError';
  }
}

export interface RegisterHostInput {
  joinToken: string;
  name: string;
  address: string;
  labels: KeyValue[];
  capacity: { cpuMillis: number; memoryMb: number };
  /** CIDRs of the host's own interfaces; the API refuses a cluster network that overlaps them. */
  networks: string[];
  /** Over TLS: a certificate request for a key this runner keeps (the API's CA signs it, if it has one). */
  csr?: string;
}

/** A client certificate of the platform CA, PEM. */
export interface HostCertificate {
  certificate: string;
  caCertificate: string;
  notAfter: string;
}

export interface RegisterHostResult {
  host: { id: string; name: string };
  hostToken: string;
  certificate: HostCertificate | null;
}

const REGISTER_HOST = (withCertificate: boolean) => `mutation($input: RegisterHostInput!) {
  registerHost(input: $input) { host { id name } hostToken ${withCertificate ? 'certificate { certificate caCertificate notAfter }' : ''} }
}`;

const RUNNER_RENEW_CERTIFICATE = `mutation($input: RunnerRenewCertificateInput!) {
  runnerRenewCertificate(input: $input) { certificate caCertificate notAfter }
}`;

/** What the runner trusts the API by (the CA's certificate) and presents to it (its key and certificate), PEM. */
export interface TlsMaterial {
  ca: string;
  cert?: string;
  key?: string;
}

const RUNNER_SYNC = `mutation($input: RunnerSyncInput!) {
  runnerSync(input: $input) {
    hostId pollSeconds
    desired {
      instanceId releaseId name image imageDigest registry specHash desiredState
      env { name value }
      ports { name containerPort protocol }
      cpuMillis memoryMb
      healthcheck { command intervalSeconds timeoutSeconds retries startPeriodSeconds }
      domainName ip dataPath replaced
      lifecycle { afterStart beforeStop onReplace }
      configFiles { path content }
      stopSignal stopTimeoutSeconds
    }
    network {
      subnet gateway clusterCidr zone serial
      routes { subnet via }
      records { name type address target port }
    }
    logRequests { id instanceId tail since }
    logFollows { instanceId since }
  }
}`;

const RUNNER_LOGS = `mutation($input: RunnerLogsInput!) { runnerLogs(input: $input) }`;
const RUNNER_LOG_TAIL = `mutation($input: RunnerLogTailInput!) { runnerLogTail(input: $input) }`;

const RUNNER_HEARTBEAT = `mutation($input: RunnerHeartbeatInput!) {
  runnerHeartbeat(input: $input) { hostId serverTime intervalSeconds clockSkewSeconds }
}`;

export interface HeartbeatResult {
  hostId: string;
  serverTime: string;
  intervalSeconds: number;
  clockSkewSeconds: number;
}

export interface Api {
  url: string;
  registerHost(input: RegisterHostInput): Promise<RegisterHostResult>;
  runnerSync(hostToken: string, input: SyncRequest): Promise<SyncResponse>;
  runnerHeartbeat(hostToken: string, input: { session: string; sentAt: string }, timeoutMs: number): Promise<HeartbeatResult>;
  runnerLogs(hostToken: string, input: LogChunk): Promise<boolean>;
  runnerLogTail(hostToken: string, input: LogTailChunk): Promise<boolean>;
  runnerRenewCertificate(hostToken: string, csr: string): Promise<HostCertificate>;
  /** Closes kept-alive connections (at the runner's stop). */
  close(): void;
}

/** New lines of a followed container (runner/logs.ts). */
export interface LogTailChunk {
  instanceId: string;
  lines: LogLine[];
  dropped: number;
  error?: string | null;
}

/** One chunk of the answer to a log request (runner/logs.ts). */
export interface LogChunk {
  requestId: string;
  seq: number;
  lines: LogLine[];
  done: boolean;
  error?: string | null;
}

/**
 * The API at `url`. Until it first answers with GraphQL, answers without it (5xx, a page of another server) count:
 * once they have come for `giveUpAfterSeconds`, every call throws ApiMismatchError, which ends a runner that never
 * got in. Connection failures and timeouts do not count (the API may be starting), and an API that answered once is
 * retried through any outage.
 */
export function createApi(url: string, giveUpAfterSeconds = 120, tls: () => TlsMaterial | null = () => null): Api {
  const agents = new TlsAgents(tls);
  let answered = false;
  let firstBadAnswer: { at: number; count: number } | null = null;
  const tracked = async <T>(query: string, variables: Record<string, unknown>, token?: string, timeoutMs?: number): Promise<T> => {
    try {
      const data = await call<T>(url, agents.current(url), query, variables, token, timeoutMs);
      answered = true;
      return data;
    } catch (err) {
      if (err instanceof ApiError) answered = true;
      if (answered || !(err instanceof ApiUnreachableError) || err.status === undefined) throw err;
      firstBadAnswer = { at: firstBadAnswer?.at ?? Date.now(), count: (firstBadAnswer?.count ?? 0) + 1 };
      const seconds = (Date.now() - firstBadAnswer.at) / 1000;
      if (seconds < giveUpAfterSeconds) throw err;
      throw new ApiMismatchError(url, `${firstBadAnswer.count} answers in ${Math.round(seconds)} s and none of them GraphQL, the last ${err.message}`);
    }
  };
  return {
    url,
    registerHost: async (input) => {
      const { registerHost } = await tracked<{ registerHost: RegisterHostResult }>(REGISTER_HOST(Boolean(input.csr)), { input });
      return { ...registerHost, certificate: registerHost.certificate ?? null };
    },
    runnerSync: async (hostToken, input) =>
      (await tracked<{ runnerSync: SyncResponse }>(RUNNER_SYNC, { input }, hostToken)).runnerSync,
    runnerHeartbeat: async (hostToken, input, timeoutMs) =>
      (await tracked<{ runnerHeartbeat: HeartbeatResult }>(RUNNER_HEARTBEAT, { input }, hostToken, timeoutMs)).runnerHeartbeat,
    runnerLogs: async (hostToken, input) =>
      (await tracked<{ runnerLogs: boolean }>(RUNNER_LOGS, { input }, hostToken)).runnerLogs,
    runnerLogTail: async (hostToken, input) =>
      (await tracked<{ runnerLogTail: boolean }>(RUNNER_LOG_TAIL, { input }, hostToken)).runnerLogTail,
    runnerRenewCertificate: async (hostToken, csr) =>
      (await tracked<{ runnerRenewCertificate: HostCertificate }>(RUNNER_RENEW_CERTIFICATE, { input: { csr } }, hostToken)).runnerRenewCertificate,
    close: () => agents.close(),
  };
}

/**
 * One keep-alive agent per TLS material: after a renewal new connections present the new certificate, and the old
 * agent's connections are closed a little later (requests in flight on them finish; the API accepts the replaced
 * certificate until it expires).
 */
class TlsAgents {
  private agent: https.Agent | null = null;
  private material: TlsMaterial | null = null;
  private readonly retiring = new Set<NodeJS.Timeout>();

  constructor(private readonly tls: () => TlsMaterial | null) {}

  current(url: string): http.Agent | undefined {
    if (!url.startsWith('https:')) return undefined;
    const material = this.tls();
    if (!material) return undefined;
    if (this.agent && this.material?.cert === material.cert && this.material?.ca === material.ca) return this.agent;
    const old = this.agent;
    if (old) {
      const timer = setTimeout(() => {
        old.destroy();
        this.retiring.delete(timer);
      }, 10_000);
      timer.unref();
      this.retiring.add(timer);
    }
    this.material = material;
    this.agent = new https.Agent({ keepAlive: true, ca: material.ca, cert: material.cert, key: material.key });
    return this.agent;
  }

  close(): void {
    this.agent?.destroy();
    this.agent = null;
    for (const timer of this.retiring) clearTimeout(timer);
    this.retiring.clear();
  }
}

interface GraphQLBody<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** What went wrong on the way (ECONNREFUSED, ENOTFOUND, a TLS error, …). */
function reason(err: unknown): string {
  return (err as { code?: string }).code ?? (err as Error).message;
}

/** One POST; its status and body text, or the error of the connection. */
function post(url: string, agent: http.Agent | undefined, headers: Record<string, string>, body: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = (url.startsWith('https:') ? https : http).request(url, {
      method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent, timeout: timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    request.on('timeout', () => request.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    request.on('error', reject);
    request.end(body);
  });
}

async function call<T>(url: string, agent: http.Agent | undefined, query: string, variables: Record<string, unknown>, token?: string, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  let res: { status: number; text: string };
  try {
    res = await post(url, agent, headers, JSON.stringify({ query, variables }), timeoutMs);
  } catch (err) {
    throw new ApiUnreachableError(reason(err));
  }
  if (res.status >= 500) throw new ApiUnreachableError(`HTTP ${res.status}`, res.status);
  let body: GraphQLBody<T>;
  try {
    body = JSON.parse(res.text) as GraphQLBody<T>;
  } catch {
    if (res.status === 401) throw new ApiError('UNAUTHENTICATED', 'HTTP 401');
    if (res.status >= 400) throw new ApiMismatchError(url, `HTTP ${res.status}, not JSON`);
    throw new ApiUnreachableError(`HTTP ${res.status} with a body that is not JSON`, res.status);
  }
  const first = body?.errors?.[0];
  // A GraphQL server that does not know the runner's fields: another API, or one too old for this runner.
  if (first?.extensions?.code === 'GRAPHQL_VALIDATION_FAILED') throw new ApiMismatchError(url, first.message);
  if (first) throw new ApiError(first.extensions?.code ?? 'INTERNAL', first.message);
  if (!body?.data) {
    if (res.status >= 400) throw new ApiMismatchError(url, `HTTP ${res.status} without a GraphQL answer`);
    throw new ApiUnreachableError(`HTTP ${res.status} without data`, res.status);
  }
  return body.data;
}
