import type { ApolloServer } from '@apollo/server';
import type { FormattedExecutionResult } from 'graphql';
import { createGateway } from '../gateway/gateway';
import { publishPending, type Execute } from '../gateway/publisher';
import { apiGatewayConnections } from '../gateway/subscriptions';
import { refreshPrincipal, type Context } from '../lib/auth';
import { apolloServer } from '../lib/graphql-lambda';
import { store } from '../lib/store';

/**
 * The publisher: invoked by the tick (a schedule in AWS, the dev stack's loop offline) and by `kick('publish')` after
 * events are written. The gateway runs in this process with the subgraphs in-process, so each subscription query
 * runs as the subscriber's stored principal without keeping their token.
 */
let server: Promise<ApolloServer<Context>> | undefined;
const gateway = () => {
  server ??= (async () => {
    const s = apolloServer({ gateway: createGateway('inprocess') });
    await s.start();
    return s;
  })().catch((err) => {
    server = undefined;
    throw err;
  });
  return server;
};

// The subscriber's credential is checked again at each delivery: a revoked key or host token, or an expired JWT,
// gets an UNAUTHENTICATED error instead of the event; a key's changed role applies at once.
const execute: Execute = async (query, variables, stored) => {
  const principal = await refreshPrincipal(stored);
  if (!principal) {
    return { errors: [{ message: 'the credential of this subscription was revoked or has expired: subscribe again with a valid one', extensions: { code: 'UNAUTHENTICATED' } }] };
  }
  const res = await (await gateway()).executeOperation({ query, variables }, { contextValue: { principal } });
  if (res.body.kind !== 'single') throw new Error('expected a single result');
  return res.body.singleResult as FormattedExecutionResult;
};

const connections = apiGatewayConnections();

export const handler = () => publishPending({ store: store(), connections, execute });
