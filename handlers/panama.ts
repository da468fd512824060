import { apolloServer, graphqlLambda } from '../lib/graphql-lambda';
import { panamaSchema } from '../subgraphs/panama/schema';

export const handler = graphqlLambda(apolloServer({ schema: panamaSchema() }));
