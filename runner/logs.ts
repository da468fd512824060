/**
 * Answers the API's log requests (instanceLogs): the tail of one of this host's own containers, read from the engine
 * and sent back with runnerLogs in bounded chunks. Requests come with runnerSync answers, which the API's push notice
 * makes arrive at once. A request is served once; a container that is not ours on this host is answered with an error,
 * never looked for elsewhere. Never throws: a failure is logged and the API's caller times out with a clear message.
 */
import type Docker from 'dockerode';
import { log } from '../lib/log';
import { LABELS, type LogLine, type LogRequest } from '../lib/runner-protocol';
import type { Api } from './api';

export const MAX_TAIL = 1000;
const MAX_LINE_CHARS = 4096;
const CHUNK_LINES = 50;
/** Request ids already answered (the API keeps a request until its caller has the answer). */
const REMEMBERED = 200;

/**
 * Splits what the engine answers for `docker logs` of a container without a TTY into lines: frames of an 8-byte
 * header (stream 1 stdout / 2 stderr, then the payload size, big-endian) and the payload, each line prefixed with
 * its RFC 3339 time when `timestamps` was asked for.
 */
export function parseLogFrames(buffer: Buffer): LogLine[] {
  const lines: LogLine[] = [];
  for (let offset = 0; offset + 8 <= buffer.length;) {
    const stream = buffer[offset] === 2 ? 'STDERR' : 'STDOUT';
    const size = buffer.readUInt32BE(offset + 4);
    const payload = buffer.subarray(offset + 8, offset + 8 + size).toString('utf8');
    offset += 8 + size;
    for (const raw of payload.split('\n')) {
      if (!raw) continue;
      const space = raw.indexOf(' ');
      const at = space > 0 ? raw.slice(0, space) : '';
      const text = space > 0 ? raw.slice(space + 1) : raw;
      lines.push({ at, stream, text: text.replace(/\r$/, '').slice(0, MAX_LINE_CHARS) });
    }
  }
  return lines;
}

export class LogServer {
  private readonly answered = new Set<string>();

  constructor(private readonly docker: Docker, private readonly api: Api, private readonly hostToken: string, private readonly hostId: string) {}

  /** Starts answering the requests not answered yet; returns at once. */
  serve(requests: LogRequest[] | undefined): void {
    for (const request of requests ?? []) {
      if (this.answered.has(request.id)) continue;
      this.answered.add(request.id);
      if (this.answered.size > REMEMBERED) this.answered.delete(this.answered.values().next().value as string);
      void this.answer(request);
    }
  }

  private async answer(request: LogRequest): Promise<void> {
    let lines: LogLine[] = [];
    let error: string | null = null;
    try {
      lines = await this.read(request);
    } catch (err) {
      error = (err as Error).message;
    }
    try {
      const chunks = Math.max(1, Math.ceil(lines.length / CHUNK_LINES));
      for (let seq = 0; seq < chunks; seq++) {
        await this.api.runnerLogs(this.hostToken, {
          requestId: request.id, seq, lines: lines.slice(seq * CHUNK_LINES, (seq + 1) * CHUNK_LINES), done: seq === chunks - 1, error,
        });
      }
      log.debug({ requestId: request.id, instanceId: request.instanceId, lines: lines.length }, 'answered a log request');
    } catch (err) {
      log.warn({ requestId: request.id, instanceId: request.instanceId, err: (err as Error).message }, 'could not send the logs the API asked for');
    }
  }

  private async read(request: LogRequest): Promise<LogLine[]> {
    const [own] = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABELS.host}=${this.hostId}`, `${LABELS.instance}=${request.instanceId}`] },
    });
    if (!own) throw new Error(`no container of instance ${request.instanceId} on this host`);
    const since = request.since ? Date.parse(request.since) : NaN;
    const output = await this.docker.getContainer(own.Id).logs({
      stdout: true, stderr: true, timestamps: true, follow: false,
      tail: Math.min(Math.max(1, request.tail), MAX_TAIL),
      // The engine takes whole or fractional Unix seconds; lines at the same instant are dropped below.
      ...(Number.isNaN(since) ? {} : { since: Math.floor(since / 1000) }),
    });
    const lines = parseLogFrames(Buffer.isBuffer(output) ? output : Buffer.from(String(output)));
    if (Number.isNaN(since)) return lines;
    const after = nanos(request.since!);
    return lines.filter((l) => nanos(l.at) > after);
  }
}

/** An RFC 3339 time in nanoseconds since the epoch (the engine's times have nanoseconds; Date has milliseconds). */
export function nanos(at: string): bigint {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(at);
  if (!match) return -1n;
  const ms = Date.parse(`${match[1]}${match[3]}`);
  if (Number.isNaN(ms)) return -1n;
  return BigInt(ms) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0').slice(0, 9));
}
