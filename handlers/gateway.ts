import type { APIGatewayProxyEventV2, Context as LambdaContext } from 'aws-lambda';
import { createGateway } from '../gateway/gateway';
import { consoleRequest } from '../gateway/console';
import { browserRequest } from '../gateway/graphiql';
import { metricsRequest } from '../gateway/metrics';
import { apolloServer, graphqlLambda } from '../lib/graphql-lambda';
import { observeRequest } from '../lib/metrics';

const graphql = graphqlLambda(apolloServer({ gateway: createGateway() }));

export const handler = async (event: APIGatewayProxyEventV2, context: LambdaContext) => {
  const path = event.rawPath ?? event.requestContext?.http?.path ?? '/';
  return observeRequest(event.requestContext?.http?.method ?? 'GET', path, async () =>
    path === '/metrics' ? metricsRequest(event)
      : consoleRequest(event) ?? browserRequest(event) ?? graphql(event, context, () => undefined));
};
