import { ApolloGateway } from '@apollo/gateway';
import type { GraphQLSchema } from 'graphql';
import { config } from '../lib/config';
import { readSchemaFile } from '../lib/schema-files';
import type { SubgraphName } from './compose';
import { ForwardingDataSource, LocalDataSource } from './data-sources';

// Loaded only in the single-process shape, so the HTTP gateway does not pay for the subgraphs' code at cold start.
const localSchema = (name: SubgraphName): GraphQLSchema => {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const parts: typeof import('../subgraphs') = require('../subgraphs');
  if (name === 'panama') return parts.panama.panamaSchema();
  if (name === 'ark') return parts.ark.arkSchema();
  return parts.butler.butlerSchema();
};

/**
 * The federation gateway on the committed supergraph (no introspection at start). Apollo's data collection is off:
 * left on, @apollo/gateway probes cloud metadata addresses (169.254.169.254 and the like) and sends usage metrics to
 * Apollo's endpoint from every process that builds a gateway — traffic a private cloud must never see.
 */
export function createGateway(transport = config().subgraphTransport, urlBase = config().subgraphUrlBase): ApolloGateway {
  // Read by ApolloGateway's constructor; an operator cannot turn it back on by accident.
  process.env.APOLLO_TELEMETRY_DISABLED = 'true';
  return new ApolloGateway({
    supergraphSdl: readSchemaFile('supergraph.graphql'),
    buildService: ({ name }) => transport === 'inprocess'
      ? new LocalDataSource(localSchema(name as SubgraphName))
      : new ForwardingDataSource(`${urlBase}/${name}`),
  });
}
