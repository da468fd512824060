import type { APIGatewayProxyEventV2, Context as LambdaContext } from 'aws-lambda';
import { createGateway } from '../gateway/gateway';
import { browserRequest } from '../gateway/graphiql';
import { consoleRequest } from '../gateway/console';
import { apolloServer, graphqlLambda } from '../lib/graphql-lambda';

const graphql = graphqlLambda(apolloServer({ gateway: createGateway() }));

export const handler = async (event: APIGatewayProxyEventV2, context: LambdaContext) =>
  consoleRequest(event) ?? browserRequest(event) ?? graphql(event, context, () => undefined);
