import type { RemoteGraphQLDataSource } from '@apollo/gateway';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

type Fetcher = RemoteGraphQLDataSource['fetcher'];
type FetcherResponse = Awaited<ReturnType<Fetcher>>;

/**
 * Idle connections are closed before the subgraphs' server would close them (Node's default: 5 s), so a request is
 * never sent on a socket the other end is closing.
 */
const IDLE_MS = 4_000;
const agents = {
  'http:': new HttpAgent({ keepAlive: true, timeout: IDLE_MS }),
  'https:': new HttpsAgent({ keepAlive: true, timeout: IDLE_MS }),
};

function response(url: string, res: IncomingMessage, body: Buffer): FetcherResponse {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, v);
  }
  const status = res.statusCode ?? 0;
  const text = body.toString('utf8');
  const out: FetcherResponse = {
    url, status, statusText: res.statusMessage ?? '', ok: status >= 200 && status < 300, redirected: false, bodyUsed: false, headers,
    text: async () => text,
    json: async () => JSON.parse(text),
    arrayBuffer: async () => body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) as ArrayBuffer,
    clone: () => out,
  };
  return out;
}

/**
 * The gateway's fetch to its subgraphs: one request on a kept-alive connection, the whole answer read into memory
 * (a subgraph answers one JSON document). Apollo's default (make-fetch-happen) cost about a millisecond of CPU per
 * fetch here, part of it agent-base reading `new Error().stack` to tell http from https; Node's fetch about half a
 * millisecond, most of it web streams. No redirects, no retries (a fetch may be a mutation), no cache.
 */
export const keepAliveFetch: Fetcher = (url, init = {}) => new Promise((resolve, reject) => {
  const target = new URL(url);
  const agent = target.protocol === 'https:' ? agents['https:'] : agents['http:'];
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  const req = send(target, { method: init.method ?? 'GET', headers: init.headers, agent }, (res) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.on('error', reject);
    res.on('end', () => resolve(response(url, res, Buffer.concat(chunks))));
  });
  req.on('error', reject);
  req.end(init.body);
});
