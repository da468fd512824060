import { apolloServer, graphqlLambda } from '../lib/graphql-lambda';
import { butlerSchema } from '../subgraphs/butler/schema';

export const handler = graphqlLambda(apolloServer({ schema: butlerSchema() }));
