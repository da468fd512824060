import { apolloServer, graphqlLambda } from '../lib/graphql-lambda';
import { ark } from '../subgraphs';

export const handler = graphqlLambda(apolloServer({ schema: ark.arkSchema() }));
