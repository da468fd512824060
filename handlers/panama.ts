import { apolloServer, graphqlLambda } from '../lib/graphql-lambda';
import { panama } from '../subgraphs';

export const handler = graphqlLambda(apolloServer({ schema: panama.panamaSchema() }));
