import { buildSchema } from 'graphql';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ForwardingDataSource, LocalDataSource } from '../../gateway/data-sources';
import { keepAliveFetch } from '../../gateway/fetcher';
import type { Context } from '../../lib/auth';

/**
 * How the gateway reaches its subgraphs: over HTTP on kept-alive connections (the deployed shape), or in-process with
 * each document parsed and validated once (server mode's default).
 */

let server: Server;
let url: string;
const connections: number[] = [];
const headersSeen: Record<string, string | string[] | undefined>[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    headersSeen.push(req.headers);
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const status = req.url === '/missing' ? 404 : 200;
      res.writeHead(status, { 'content-type': 'application/json', 'x-seen-authorization': req.headers.authorization ?? '' })
        .end(JSON.stringify({ data: { echo: body, method: req.method } }));
    });
  });
  server.on('connection', () => connections.push(Date.now()));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise((resolve) => {
  server.closeAllConnections();
  server.close(resolve);
}));

test('sequential subgraph fetches share one kept-alive connection and carry body, headers and status', async () => {
  connections.length = 0;
  for (let i = 0; i < 3; i++) {
    const res = await keepAliveFetch(`${url}/ark`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer fzk_x' }, body: `{"n":${i}}` });
    expect(res.ok).toBe(true);
    expect(res.headers.get('x-seen-authorization')).toBe('Bearer fzk_x');
    expect(await res.json()).toEqual({ data: { echo: `{"n":${i}}`, method: 'POST' } });
  }
  expect(connections).toHaveLength(1);
  const missing = await keepAliveFetch(`${url}/missing`, { method: 'POST', body: '{}' });
  expect([missing.ok, missing.status]).toEqual([false, 404]);
});

test('an unreachable subgraph fails the fetch', async () => {
  await expect(keepAliveFetch('http://127.0.0.1:9/none', { method: 'POST', body: '{}' })).rejects.toThrow(/ECONNREFUSED/);
});

test('an in-process subgraph answers each document as graphql-js would, refusing an invalid one every time', async () => {
  const source = new LocalDataSource(buildSchema('type Query { hello(name: String!): String }'));
  // No resolvers: a valid document answers hello with null.
  const ask = (query: string, variables?: Record<string, unknown>) => source.process({
    request: { query, variables },
    context: { principal: { kind: 'anonymous' } } as Context,
  } as Parameters<LocalDataSource['process']>[0]);
  for (let i = 0; i < 2; i++) {
    expect((await ask('query($n: String!) { hello(name: $n) }', { n: 'x' })).data).toEqual({ hello: null });
    expect((await ask('{ goodbye }')).errors?.[0].message).toMatch(/Cannot query field "goodbye" on type "Query"/);
    expect((await ask('{ hello(')).errors?.[0].message).toMatch(/Syntax Error/);
  }
});

test('a subgraph called over HTTP gets the credential and the id of the request that called it', async () => {
  const source = new ForwardingDataSource(`${url}/ark`);
  const ask = (context: Partial<Context>) => source.process({
    request: { query: '{ hello }' },
    context,
  } as unknown as Parameters<ForwardingDataSource['process']>[0]);
  headersSeen.length = 0;
  await ask({ principal: { kind: 'anonymous' }, authorization: 'Bearer fzk_y', requestId: 'req-123' } as Partial<Context>);
  await ask({ principal: { kind: 'anonymous' } } as Partial<Context>);
  expect(headersSeen.map((h) => [h.authorization, h['x-request-id']])).toEqual([['Bearer fzk_y', 'req-123'], [undefined, undefined]]);
});
