import { config } from '../../lib/config';
import { AppError } from '../../lib/errors';
import { newId } from '../../lib/ids';
import type { LogLine, LogRequest } from '../../lib/runner-protocol';
import type { Store } from '../../lib/store';
import { getHost } from './hosts';
import { getInstance, notifyHost, type Instance } from './instances';

/**
 * Container logs on demand. Nothing is collected ahead of time: `instanceLogs` writes a request for the host of the
 * instance, wakes its runner over its notification channel (the desired-state notice) and waits; the runner finds
 * the request in its next runnerSync answer, reads the container's tail from its engine and answers with runnerLogs
 * in bounded chunks. The caller removes the request and its chunks when it has its answer or gives up, so a chunk
 * that arrives later is refused (NOT_FOUND) and nothing stays behind. A runner answers only requests for its own host.
 */

export const MAX_TAIL = 1000;
/** A line longer than this is cut (the answer says `truncated`). */
export const MAX_LINE_CHARS = 4096;
/** Lines per runnerLogs chunk: one chunk stays far below the store's item size. */
export const MAX_CHUNK_LINES = 50;
/** A request older than this is left for removal; a runner that wakes late does not answer it. */
const REQUEST_TTL_MS = 60_000;

interface RequestItem {
  id: string;
  kind: 'request';
  /** Indexed (byHost): the runner of this host finds its requests in runnerSync. */
  hostId: string;
  instanceId: string;
  tail: number;
  since: string | null;
  createdAt: string;
}

interface ChunkItem {
  id: string;
  kind: 'chunk';
  /** Indexed (byRequest). */
  requestId: string;
  /** The chunk's number (`seq` is the store's version of the item). */
  part: number;
  lines: LogLine[];
  done: boolean;
  error: string | null;
}

export interface InstanceLogs {
  instance: Instance;
  lines: LogLine[];
  truncated: boolean;
}

const chunkKey = (requestId: string, seq: number) => `${requestId}#${String(seq).padStart(6, '0')}`;

/** Asks the runner of the instance's host for the container's last lines and waits for its answer. */
export async function instanceLogs(store: Store, id: string, tail = 100, since?: string | null, waitMs = config().logWaitSeconds * 1000): Promise<InstanceLogs> {
  if (!Number.isInteger(tail) || tail < 1 || tail > MAX_TAIL) {
    throw new AppError('BAD_USER_INPUT', `tail must be between 1 and ${MAX_TAIL} lines (got ${tail})`, { field: 'tail' });
  }
  if (since != null && Number.isNaN(Date.parse(since))) {
    throw new AppError('BAD_USER_INPUT', 'since must be an RFC 3339 time, e.g. 2026-12-02T10:00:00Z', { field: 'since' });
  }
  const instance = await getInstance(store, id);
  if (!instance) throw new AppError('NOT_FOUND', `no instance ${id}`);
  const host = instance.hostId ? await getHost(store, instance.hostId) : undefined;
  if (!host) throw new AppError('CONFLICT', `instance ${instance.domainName} is not placed on a host yet: it has no container to read`);
  if (host.status === 'DOWN') throw new AppError('CONFLICT', `host ${host.name} is DOWN: its runner cannot read the logs of ${instance.domainName}`);

  const request: RequestItem = {
    id: newId('logs'), kind: 'request', hostId: host.id, instanceId: id, tail, since: since ?? null, createdAt: new Date().toISOString(),
  };
  await store.create('logs', request);
  try {
    await notifyHost(store, host.id, `logs of ${instance.domainName} requested`);
    const deadline = Date.now() + waitMs;
    for (let delay = 50; ; delay = Math.min(delay * 2, 250)) {
      const chunks = await chunksOf(store, request.id);
      const last = chunks.find((c) => c.done);
      // Complete when the last chunk and every one before it arrived (chunks may land out of order).
      if (last && chunks.filter((c) => c.part <= last.part).length === last.part + 1) {
        if (last.error) throw new AppError('NOT_FOUND', `the runner of host ${host.name} could not read the container of ${instance.domainName}: ${last.error}`);
        const lines = chunks.filter((c) => c.part <= last.part).sort((a, b) => a.part - b.part).flatMap((c) => c.lines);
        const truncated = lines.some((l) => l.text.length >= MAX_LINE_CHARS);
        return { instance, lines, truncated };
      }
      if (Date.now() >= deadline) {
        throw new AppError('CONFLICT', `the runner of host ${host.name} did not answer within ${Math.round(waitMs / 1000)} s; try again (is it running and up to date?)`);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  } finally {
    // The request first: a chunk written after this is refused, so none is left behind.
    await store.remove('logs', request.id).catch(() => undefined);
    for (const c of await chunksOf(store, request.id).catch(() => [])) await store.remove('logs', c.id).catch(() => undefined);
  }
}

const chunksOf = (store: Store, requestId: string) => store.query<ChunkItem>('logs', 'byRequest', requestId);

/** What waits for a host's runner in the logs table: its log requests and the follows of its containers (logtail.ts). */
export type HostLogItem = { id: string; kind: string };
export const hostLogItems = (store: Store, hostId: string) => store.query<HostLogItem>('logs', 'byHost', hostId);

/** The requests waiting for this host's runner (sent with every runnerSync answer); stale ones are removed. */
export async function logRequestsFor(store: Store, hostItems: readonly HostLogItem[], now = new Date()): Promise<LogRequest[]> {
  const items = hostItems.filter((r): r is RequestItem => r.kind === 'request');
  const live: LogRequest[] = [];
  for (const r of items) {
    if (now.getTime() - Date.parse(r.createdAt) > REQUEST_TTL_MS) await store.remove('logs', r.id).catch(() => undefined);
    else live.push({ id: r.id, instanceId: r.instanceId, tail: r.tail, since: r.since });
  }
  return live;
}

export interface LogChunkInput {
  requestId: string;
  seq: number;
  lines: LogLine[];
  done: boolean;
  error?: string | null;
}

/** Stores one chunk of a runner's answer; only the runner of the request's host may answer, only while it waits. */
export async function recordLogChunk(store: Store, hostId: string, input: LogChunkInput): Promise<boolean> {
  const request = await store.get<RequestItem>('logs', input.requestId);
  if (!request || request.kind !== 'request' || request.hostId !== hostId) {
    throw new AppError('NOT_FOUND', `no log request ${input.requestId} waits for this host (answered, given up or never made)`);
  }
  if (!Number.isInteger(input.seq) || input.seq < 0 || input.seq > MAX_TAIL) throw new AppError('BAD_USER_INPUT', 'seq must be between 0 and 1000', { field: 'seq' });
  if (input.lines.length > MAX_CHUNK_LINES) throw new AppError('BAD_USER_INPUT', `a chunk holds at most ${MAX_CHUNK_LINES} lines`, { field: 'lines' });
  const lines = input.lines.map((l) => ({ at: l.at, stream: l.stream, text: l.text.slice(0, MAX_LINE_CHARS) }));
  const chunk: ChunkItem = {
    id: chunkKey(input.requestId, input.seq), kind: 'chunk', requestId: input.requestId, part: input.seq, lines, done: input.done,
    error: input.error ? input.error.slice(0, 500) : null,
  };
  // A retried chunk is the same chunk: the first write wins.
  await store.create('logs', chunk);
  return true;
}
