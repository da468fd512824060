import type { IncomingMessage, ServerResponse } from 'node:http';
import { routeMatcher, type HttpRoute } from './functions';
import { httpEvent, writeResult } from './lambda';

/**
 * The `httpApi` routes of serverless.yml: a request is matched by method and path (`{name}` one segment,
 * `{name+}` the rest) and handed to the route's function as an HTTP API event, as API Gateway would.
 */

export type FunctionCall = (functionName: string, event: unknown) => Promise<unknown>;

export type Route = (req: IncomingMessage, res: ServerResponse, body: Buffer) => Promise<boolean>;

export function httpRoutes(routes: HttpRoute[], call: FunctionCall): Route {
  const matchers = routes.map((route) => ({ route, match: routeMatcher(route.path) }));
  return async (req, res, body) => {
    const path = new URL(req.url ?? '/', 'http://server').pathname;
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    let pathMatched = false;
    for (const { route, match } of matchers) {
      const params = match(path);
      if (!params) continue;
      pathMatched = true;
      if (route.method !== method && route.method !== 'ANY' && route.method !== '*') continue;
      writeResult(res, await call(route.function, httpEvent(req, body, route, params)) as Parameters<typeof writeResult>[1]);
      return true;
    }
    if (!pathMatched) return false;
    const allowed = [...new Set(matchers.filter(({ match }) => match(path)).map(({ route }) => route.method))];
    res.writeHead(405, { 'content-type': 'application/json', allow: allowed.join(', ') });
    res.end(JSON.stringify({ message: `${req.method} ${path} is not served; use ${allowed.join(' or ')}` }));
    return true;
  };
}
