import { ApolloServer, type ApolloServerOptions } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { handlers, startServerAndCreateLambdaHandler } from '@as-integrations/aws-lambda';
import type { GraphQLFormattedError } from 'graphql';
import { contextFromHeaders, type Context } from './auth';
import { log } from './log';

const CODES = new Set(['BAD_USER_INPUT', 'NOT_FOUND', 'CONFLICT', 'UNAUTHENTICATED', 'FORBIDDEN', 'UNSCHEDULABLE', 'INTERNAL']);
const REQUEST_ERRORS = new Set(['GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED', 'BAD_REQUEST', 'OPERATION_RESOLUTION_FAILURE']);

/**
 * Every error leaves with one of the contract's codes. Errors of ours pass as they are; a malformed request becomes
 * BAD_USER_INPUT; anything unexpected is logged and answered as INTERNAL without internals (stack, SQL-ish detail).
 */
export function formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const code = String(formatted.extensions?.code ?? '');
  const { stacktrace: _s, ...extensions } = formatted.extensions ?? {};
  if (CODES.has(code)) return { ...formatted, extensions };
  if (REQUEST_ERRORS.has(code)) return { ...formatted, extensions: { ...extensions, code: 'BAD_USER_INPUT', reason: code } };
  log.error({ err: (error as { originalError?: unknown })?.originalError ?? error, path: formatted.path }, 'internal error');
  return { message: 'internal error; the server log has the details', path: formatted.path, locations: formatted.locations, extensions: { code: 'INTERNAL' } };
}

export function apolloServer(options: ApolloServerOptions<Context>): ApolloServer<Context> {
  return new ApolloServer<Context>({
    ...options,
    formatError,
    includeStacktraceInErrorResponses: false,
    // Traces are for Apollo's hosted studio, which a private cloud does not reach.
    plugins: [...(options.plugins ?? []), ApolloServerPluginInlineTraceDisabled()],
  } as ApolloServerOptions<Context>);
}

/** An HTTP API (payload v2) Lambda handler around an Apollo server; the caller's credential becomes the context. */
export function graphqlLambda(server: ApolloServer<Context>) {
  return startServerAndCreateLambdaHandler(server, handlers.createAPIGatewayProxyEventV2RequestHandler(), {
    context: ({ event }) => contextFromHeaders({ get: (name) => event.headers?.[name] ?? event.headers?.[name.toLowerCase()] }),
  });
}
