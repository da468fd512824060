import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';

/**
 * The functions of serverless.yml, read from the file itself: which handler serves which HTTP route, which one the
 * WebSocket routes, which run on a schedule. Server mode serves exactly these, so a route added to serverless.yml
 * (an `httpApi` event) is served by both runtimes with no second list to keep in step.
 */

const ROOT = resolve(__dirname, '..');

// Handlers take an API Gateway event and a Lambda context; their shapes differ per event kind.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Handler = (event: any, context: any, callback?: () => void) => Promise<any>;

export interface HttpRoute {
  function: string;
  method: string;
  /** As written in serverless.yml: `/graphql`, `/graphiql/{asset}`, `/console/{proxy+}`. */
  path: string;
}

export interface Functions {
  /** Every function's key in serverless.yml and its handler module path (`handlers/gateway.handler`). */
  handlers: Record<string, string>;
  /** Seconds each function may run (its `timeout`, else the provider's), for the context's remaining time. */
  timeouts: Record<string, number>;
  http: HttpRoute[];
  /** The function serving `$connect`, `$disconnect` and `$default` (one function for all three here). */
  websocket: string | undefined;
  /** Functions with a `schedule` event, in the order serverless.yml lists them. */
  schedules: string[];
}

interface FunctionDef {
  handler: string;
  timeout?: number;
  events?: { httpApi?: { method: string; path: string }; websocket?: { route: string }; schedule?: unknown }[];
}

export function readFunctions(file = join(ROOT, 'serverless.yml')): Functions {
  const doc = parse(readFileSync(file, 'utf8')) as { provider?: { timeout?: number }; functions: Record<string, FunctionDef> };
  const out: Functions = { handlers: {}, timeouts: {}, http: [], websocket: undefined, schedules: [] };
  for (const [name, def] of Object.entries(doc.functions)) {
    out.handlers[name] = def.handler;
    out.timeouts[name] = def.timeout ?? doc.provider?.timeout ?? 6;
    for (const event of def.events ?? []) {
      if (event.httpApi) out.http.push({ function: name, method: event.httpApi.method.toUpperCase(), path: event.httpApi.path });
      if (event.websocket) out.websocket = name;
      if (event.schedule && !out.schedules.includes(name)) out.schedules.push(name);
    }
  }
  return out;
}

/** Loads a handler as the Lambda runtime would: `handlers/gateway.handler` is export `handler` of handlers/gateway. */
export function loadHandler(spec: string): Handler {
  const dot = spec.lastIndexOf('.');
  const module = require(join(ROOT, spec.slice(0, dot))) as Record<string, unknown>;
  const handler = module[spec.slice(dot + 1)];
  if (typeof handler !== 'function') throw new Error(`serverless.yml names handler ${spec}, but ${spec.slice(0, dot)} exports no function ${spec.slice(dot + 1)}`);
  return handler as Handler;
}

/** A route path as a matcher: `{name}` is one segment, `{name+}` the rest of the path. */
export function routeMatcher(path: string): (actual: string) => Record<string, string> | undefined {
  const names: string[] = [];
  const pattern = path.split('/').map((segment) => {
    const m = /^\{(\w+)(\+?)\}$/.exec(segment);
    if (!m) return segment.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
    names.push(m[1]);
    return m[2] ? '(.+)' : '([^/]+)';
  }).join('/');
  const re = new RegExp(`^${pattern}$`);
  return (actual) => {
    const m = re.exec(actual);
    if (!m) return undefined;
    return Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
  };
}
