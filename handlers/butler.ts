import { apolloServer, graphqlLambda } from '../lib/graphql-lambda';
import { butler } from '../subgraphs';

export const handler = graphqlLambda(apolloServer({ schema: butler.butlerSchema() }));
