/** The runner's GraphQL calls to Ark, over the global fetch. */
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
}

export interface RegisterHostResult {
  host: { id: string; name: string };
  hostToken: string;
}

const REGISTER_HOST = `mutation($input: RegisterHostInput!) {
  registerHost(input: $input) { host { id name } hostToken }
}`;

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
export function createApi(url: string, giveUpAfterSeconds = 120): Api {
  let answered = false;
  let firstBadAnswer: { at: number; count: number } | null = null;
  const tracked = async <T>(query: string, variables: Record<string, unknown>, token?: string, timeoutMs?: number): Promise<T> => {
    try {
      const data = await call<T>(url, query, variables, token, timeoutMs);
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
    registerHost: async (input) =>
      (await tracked<{ registerHost: RegisterHostResult }>(REGISTER_HOST, { input })).registerHost,
    runnerSync: async (hostToken, input) =>
      (await tracked<{ runnerSync: SyncResponse }>(RUNNER_SYNC, { input }, hostToken)).runnerSync,
    runnerHeartbeat: async (hostToken, input, timeoutMs) =>
      (await tracked<{ runnerHeartbeat: HeartbeatResult }>(RUNNER_HEARTBEAT, { input }, hostToken, timeoutMs)).runnerHeartbeat,
    runnerLogs: async (hostToken, input) =>
      (await tracked<{ runnerLogs: boolean }>(RUNNER_LOGS, { input }, hostToken)).runnerLogs,
    runnerLogTail: async (hostToken, input) =>
      (await tracked<{ runnerLogTail: boolean }>(RUNNER_LOG_TAIL, { input }, hostToken)).runnerLogTail,
  };
}

interface GraphQLBody<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** Node's fetch says only "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, ...). */
function reason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

async function call<T>(url: string, query: string, variables: Record<string, unknown>, token?: string, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new ApiUnreachableError(reason(err));
  }
  if (res.status >= 500) throw new ApiUnreachableError(`HTTP ${res.status}`, res.status);
  let body: GraphQLBody<T>;
  try {
    body = (await res.json()) as GraphQLBody<T>;
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
