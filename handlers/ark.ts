import { apolloServer, graphqlLambda } from '../lib/graphql-lambda';
import { arkSchema } from '../subgraphs/ark/schema';

export const handler = graphqlLambda(apolloServer({ schema: arkSchema() }));
