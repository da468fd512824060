/**
 * Answers the API's log requests (instanceLogs): the tail of one of this host's own containers, read from the engine
 * and sent back with runnerLogs in bounded chunks. Requests come with runnerSync answers, which the API's push notice
 * makes arrive at once. A request is served once; a container that is not ours on this host is answered with an error,
 * never looked for elsewhere. Never throws: a failure is logged and the API's caller times out with a clear message.
 *
 * Follows (instanceLogTail) come the same way: while a sync answer lists a container, its new lines are streamed from
 * the engine (`docker logs --follow`) and sent with runnerLogTail, at most CHUNK_LINES a chunk and TAIL_LINES_PER_SECOND
 * a second (the rest is dropped and counted); a follow no longer listed, or refused by the API, stops.
 */
import type Docker from 'dockerode';
import { log } from '../lib/log';
import { LABELS, type LogLine, type LogRequest } from '../lib/runner-protocol';
import type { LogFollow } from '../lib/runner-protocol';
import { ApiError, type Api } from './api';

export const MAX_TAIL = 1000;
const MAX_LINE_CHARS = 4096;
const CHUNK_LINES = 50;
/** Request ids already answered (the API keeps a request until its caller has the answer). */
const REMEMBERED = 200;
/** The cap on a followed container's lines per second; the API's chunk limit is CHUNK_LINES. */
export const TAIL_LINES_PER_SECOND = 50;
/** How often a follow sends what it gathered. */
const TAIL_FLUSH_MS = 500;

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
  private readonly follows = new Map<string, LogTailer>();

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

  /** Follows exactly the listed containers: starts the new ones, stops those no longer listed. */
  follow(follows: LogFollow[] | undefined): void {
    const wanted = new Map((follows ?? []).map((f) => [f.instanceId, f]));
    for (const [id, tailer] of this.follows) if (!wanted.has(id) || tailer.ended) this.stopFollow(id);
    for (const f of wanted.values()) {
      if (this.follows.has(f.instanceId)) continue;
      const tailer = new LogTailer(this.docker, this.api, this.hostToken, this.hostId, f);
      this.follows.set(f.instanceId, tailer);
      void tailer.run().finally(() => {
        if (this.follows.get(f.instanceId) === tailer) this.follows.delete(f.instanceId);
      });
    }
  }

  private stopFollow(id: string) {
    this.follows.get(id)?.stop();
    this.follows.delete(id);
  }

  /** Stops every follow (the runner stops). */
  close(): void {
    for (const id of [...this.follows.keys()]) this.stopFollow(id);
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

/**
 * One followed container: its engine's log stream, parsed frame by frame, filtered to lines after `since`, capped per
 * second, and sent every TAIL_FLUSH_MS. Ends when stopped, when the container's stream ends (a re-created container:
 * the next sync starts a follow of the new one after the last line sent), or when the API refuses the lines.
 */
class LogTailer {
  ended = false;
  private readonly abort = new AbortController();
  private pending: LogLine[] = [];
  private dropped = 0;
  private windowStart = 0;
  private windowLines = 0;
  private since: bigint;
  private sending: Promise<void> = Promise.resolve();

  constructor(private readonly docker: Docker, private readonly api: Api, private readonly hostToken: string, private readonly hostId: string, private readonly follow: LogFollow) {
    this.since = nanos(follow.since);
  }

  stop() {
    this.ended = true;
    this.abort.abort();
  }

  async run(): Promise<void> {
    const { instanceId } = this.follow;
    let timer: NodeJS.Timeout | undefined;
    try {
      const [own] = await this.docker.listContainers({
        all: true, filters: { label: [`${LABELS.host}=${this.hostId}`, `${LABELS.instance}=${instanceId}`] },
      });
      if (!own) {
        await this.send({ instanceId, lines: [], dropped: 0, error: `no container of instance ${instanceId} on this host` });
        return;
      }
      const sinceMs = Number(this.since / 1_000_000n);
      const stream = await this.docker.getContainer(own.Id).logs({
        stdout: true, stderr: true, timestamps: true, follow: true,
        ...(sinceMs > 0 ? { since: Math.floor(sinceMs / 1000) } : { tail: 0 }),
        abortSignal: this.abort.signal,
      }) as NodeJS.ReadableStream;
      timer = setInterval(() => this.flush(), TAIL_FLUSH_MS);
      let buffer = Buffer.alloc(0);
      await new Promise<void>((resolve) => {
        stream.on('data', (data: Buffer) => {
          buffer = Buffer.concat([buffer, data]);
          // Only whole frames: a frame's 8-byte header says how long its payload is.
          let whole = 0;
          while (whole + 8 <= buffer.length && whole + 8 + buffer.readUInt32BE(whole + 4) <= buffer.length) whole += 8 + buffer.readUInt32BE(whole + 4);
          this.take(parseLogFrames(buffer.subarray(0, whole)));
          buffer = buffer.subarray(whole);
        });
        stream.on('end', resolve);
        stream.on('close', resolve);
        stream.on('error', resolve);
        this.abort.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      (stream as unknown as { destroy?: () => void }).destroy?.();
    } catch (err) {
      if (!this.abort.signal.aborted) log.warn({ instanceId, err: (err as Error).message }, 'following a container\'s logs failed');
    } finally {
      if (timer) clearInterval(timer);
      if (!this.abort.signal.aborted) this.flush();
      await this.sending;
      this.ended = true;
    }
  }

  /** New lines: those after `since`, up to the cap of the current second; the rest counted as dropped. */
  private take(lines: LogLine[]) {
    for (const line of lines) {
      const at = nanos(line.at);
      if (at <= this.since) continue;
      this.since = at;
      const now = Date.now();
      if (now - this.windowStart >= 1000) {
        this.windowStart = now;
        this.windowLines = 0;
      }
      if (this.windowLines >= TAIL_LINES_PER_SECOND) {
        this.dropped++;
        continue;
      }
      this.windowLines++;
      this.pending.push(line);
    }
  }

  /** Sends what was gathered, one chunk at a time, never two at once. */
  private flush() {
    this.sending = this.sending.then(async () => {
      while (!this.ended && (this.pending.length || this.dropped)) {
        const lines = this.pending.splice(0, CHUNK_LINES);
        const dropped = this.dropped;
        this.dropped = 0;
        await this.send({ instanceId: this.follow.instanceId, lines, dropped });
      }
    });
  }

  private async send(chunk: Parameters<Api['runnerLogTail']>[1]) {
    try {
      await this.api.runnerLogTail(this.hostToken, chunk);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'NOT_FOUND') {
        // Nobody follows it any more.
        this.stop();
        return;
      }
      log.warn({ instanceId: this.follow.instanceId, err: (err as Error).message }, 'could not send the lines of a followed container');
    }
  }
}
