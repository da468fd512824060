import { buildSubgraphSchema } from '@apollo/subgraph';
import gql from 'graphql-tag';
import { secure } from '../../lib/auth';
import { readSchemaFile } from '../../lib/schema-files';
import { store } from '../../lib/store';
import { containersOfHost, containersOfRelease, getContainer, isFailing, isServing, type ContainerRecord } from './status';
import { instancesOfRelease } from '../ark/instances';

const resolvers = {
  Query: {
    unhealthyContainers: async () => (await store().scan<ContainerRecord>('containers')).filter(isFailing),
  },
  Instance: {
    status: ({ id }: { id: string }) => getContainer(store(), id),
  },
  Host: {
    containers: ({ id }: { id: string }) => containersOfHost(store(), id),
  },
  Release: {
    health: async ({ id }: { id: string }) => {
      const [instances, containers] = await Promise.all([instancesOfRelease(store(), id), containersOfRelease(store(), id)]);
      return {
        desired: instances.length,
        running: containers.filter((c) => c.state === 'RUNNING').length,
        healthy: containers.filter(isServing).length,
        unhealthy: containers.filter((c) => c.health === 'UNHEALTHY').length,
      };
    },
  },
  ContainerStatus: {
    instance: (c: ContainerRecord) => ({ __typename: 'Instance', id: c.instanceId }),
    host: (c: ContainerRecord) => ({ __typename: 'Host', id: c.hostId }),
    stats: () => null,
  },
} satisfies Record<string, Record<string, unknown>>;

export const butlerSchema = () => buildSubgraphSchema({
  typeDefs: gql(readSchemaFile('butler.graphql')),
  resolvers: secure(resolvers) as never,
});
