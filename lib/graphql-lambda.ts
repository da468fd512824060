import { ApolloServer, type ApolloServerOptions } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { handlers, startServerAndCreateLambdaHandler } from '@as-integrations/aws-lambda';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { randomUUID } from 'node:crypto';
import type { GraphQLFormattedError } from 'graphql';
import { authenticate, principalName, type Context } from './auth';
import { config } from './config';
import { checkArgumentLengths, checkDocument } from './limits';
import { log } from './log';
import { consume } from './ratelimit';

const CODES = new Set(['BAD_USER_INPUT', 'NOT_FOUND', 'CONFLICT', 'UNAUTHENTICATED', 'FORBIDDEN', 'UNSCHEDULABLE', 'RATE_LIMITED', 'INTERNAL']);
const REQUEST_ERRORS = new Set(['GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_REQUEST', 'OPERATION_RESOLUTION_FAILURE']);

/**
 * Every error leaves with one of the contract's codes. Errors of ours pass as they are; a malformed request becomes
 * BAD_USER_INPUT; anything unexpected is logged and answered as INTERNAL without internals (stack, SQL-ish detail).
 */
export function formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const code = String(formatted.extensions?.code ?? '');
  const { stacktrace: _s, ...extensions } = formatted.extensions ?? {};
  if (CODES.has(code)) return { ...formatted, message: brief(formatted.message), extensions };
  if (REQUEST_ERRORS.has(code)) return { ...formatted, message: brief(formatted.message), extensions: { ...extensions, code: 'BAD_USER_INPUT', reason: code } };
  log.error({ err: (error as { originalError?: unknown })?.originalError ?? error, path: formatted.path }, 'internal error');
  return { message: 'internal error; the server log has the details', path: formatted.path, locations: formatted.locations, extensions: { code: 'INTERNAL' } };
}

/**
 * Messages quote what the caller sent ("product "x" does not exist"); a megabyte sent is not a megabyte echoed: a long
 * quoted value keeps its start and says its length, and the whole message stays readable.
 */
export function brief(message: string): string {
  const quotedShort = message.replace(/"([^"]{81,})"/g, (_m, value: string) => `"${value.slice(0, 40)}…" (${value.length} characters)`);
  return quotedShort.length <= 1_000 ? quotedShort : `${quotedShort.slice(0, 1_000)}… (${quotedShort.length} characters)`;
}

export function apolloServer(options: ApolloServerOptions<Context>): ApolloServer<Context> {
  return new ApolloServer<Context>({
    ...options,
    formatError,
    includeStacktraceInErrorResponses: false,
    // Traces are for Apollo's hosted studio, which a private cloud does not reach.
    plugins: [...(options.plugins ?? []), ApolloServerPluginInlineTraceDisabled(), {
      // Every entry point (HTTP and in-process) resolves its operation here, before any resolver writes.
      requestDidStart: async () => ({
        didResolveOperation: async ({ schema, operation, document, request }) => {
          if (!operation) return;
          const fragments = Object.fromEntries(document.definitions.flatMap((d) => (d.kind === 'FragmentDefinition' ? [[d.name.value, d]] : [])));
          checkArgumentLengths(schema, operation, fragments, request.variables ?? {});
        },
      }),
    }],
  } as ApolloServerOptions<Context>);
}

const STATUS: Record<string, number> = { UNAUTHENTICATED: 401, FORBIDDEN: 403, RATE_LIMITED: 429, PAYLOAD_TOO_LARGE: 413 };

class Refusal extends Error {
  constructor(readonly code: string, message: string, readonly status: number, readonly details: Record<string, unknown> = {}) {
    super(message);
  }
}

const refusal = (err: unknown): Refusal => {
  if (err instanceof Refusal) return err;
  const extensions = (err as { extensions?: Record<string, unknown> }).extensions ?? {};
  const { code, http: _http, ...details } = extensions;
  if (typeof code !== 'string' || !CODES.has(code)) throw err;
  return new Refusal(code, (err as Error).message, STATUS[code] ?? 400, details);
};

const header = (event: APIGatewayProxyEventV2, name: string) => event.headers?.[name] ?? event.headers?.[name.toLowerCase()];

/** The GraphQL document of a request: the body's `query` (POST) or the `query` parameter (GET). */
function documentOf(event: APIGatewayProxyEventV2, body: string): string | undefined {
  if (event.requestContext?.http?.method === 'GET') return event.queryStringParameters?.query;
  try {
    const parsed = JSON.parse(body) as { query?: unknown };
    return typeof parsed?.query === 'string' ? parsed.query : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Everything checked before Apollo validates or plans a document, cheapest first: body size, the credential
 * (an anonymous caller may send only a small document), the document's tokens, depth, aliases and fields,
 * introspection (callers with a credential only), then the caller's rate of mutations and runner syncs.
 * Malformed bodies pass through to Apollo, which answers them itself.
 */
async function admit(event: APIGatewayProxyEventV2): Promise<Context> {
  const limits = config().limits;
  const raw = event.body ?? '';
  const bytes = event.isBase64Encoded ? Math.floor((raw.length * 3) / 4) : Buffer.byteLength(raw);
  if (bytes > limits.maxBodyBytes) {
    throw new Refusal('BAD_USER_INPUT', `the request body is ${bytes} bytes; at most ${limits.maxBodyBytes} are accepted`, 413, { reason: 'BODY_LIMIT' });
  }
  const authorization = header(event, 'authorization');
  // API Gateway's mutual TLS puts the verified client certificate here, and so does server mode (server/lambda.ts).
  const principal = await authenticate(authorization, event.requestContext?.authentication?.clientCert?.clientCertPem);
  if (principal.kind === 'anonymous' && bytes > limits.maxAnonymousBodyBytes) {
    throw new Refusal('UNAUTHENTICATED', 'a request this large needs a credential: send "Authorization: Bearer <API key>"', 401);
  }
  const body = event.isBase64Encoded ? Buffer.from(raw, 'base64').toString('utf8') : raw;
  const query = documentOf(event, body);
  if (query !== undefined) {
    const shape = checkDocument(query, limits);
    if (shape.introspection && principal.kind === 'anonymous') {
      throw new Refusal('UNAUTHENTICATED', 'introspection needs a credential: send "Authorization: Bearer <API key>"', 401);
    }
    const who = `${event.rawPath ?? ''}#${principal.kind === 'anonymous' ? `anonymous:${event.requestContext?.http?.sourceIp ?? ''}` : principalName(principal)}`;
    const syncs = shape.rootFields.mutation.filter((f) => f === 'runnerSync').length;
    if (syncs) await consume(`${who}#runnerSync`, limits.runnerSyncsPerMinute);
    if (shape.rootFields.mutation.length > syncs) await consume(`${who}#mutation`, limits.mutationsPerMinute);
  }
  return { principal, authorization, requestId: header(event, 'x-request-id') ?? event.requestContext?.requestId ?? randomUUID() };
}

/** An HTTP API (payload v2) Lambda handler around an Apollo server; the caller's credential becomes the context. */
export function graphqlLambda(server: ApolloServer<Context>) {
  const admitted = new WeakMap<APIGatewayProxyEventV2, Context>();
  const apollo = startServerAndCreateLambdaHandler(server, handlers.createAPIGatewayProxyEventV2RequestHandler(), {
    context: async ({ event }) => admitted.get(event)!,
  });
  return async (event: APIGatewayProxyEventV2, context: Parameters<typeof apollo>[1], callback: Parameters<typeof apollo>[2]): Promise<APIGatewayProxyStructuredResultV2> => {
    try {
      admitted.set(event, await admit(event));
    } catch (err) {
      const r = refusal(err);
      return {
        statusCode: r.status,
        headers: { 'content-type': 'application/json', ...(r.code === 'RATE_LIMITED' ? { 'retry-after': String(r.details.retryAfterSeconds ?? 60) } : {}) },
        body: JSON.stringify({ errors: [{ message: r.message, extensions: { code: r.code, ...r.details } }] }),
      };
    }
    return apollo(event, context, callback) as Promise<APIGatewayProxyStructuredResultV2>;
  };
}
