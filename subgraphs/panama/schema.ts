import { buildSubgraphSchema } from '@apollo/subgraph';
import gql from 'graphql-tag';
import { secure } from '../../lib/auth';
import { readSchemaFile } from '../../lib/schema-files';
import { store } from '../../lib/store';
import { defineProduct, getProduct, listProducts, mustGetProduct, type ProductInput } from './products';
import { resolveDependencies } from './dependencies';
import { configureRelease, deleteRelease, deploy, getRelease, listReleases, scaleRelease, statusOf, type DeployInput, type Release } from './releases';

// status and statusMessage come from one look at the instances, shared by both fields of the same release object.
const statuses = new WeakMap<Release, ReturnType<typeof statusOf>>();
const status = (r: Release) => {
  if (!statuses.has(r)) statuses.set(r, statusOf(store(), r));
  return statuses.get(r)!;
};

const resolvers = {
  Query: {
    products: () => listProducts(store()),
    product: (_: unknown, { name }: { name: string }) => getProduct(store(), name),
    releases: () => listReleases(store()),
    release: (_: unknown, { id }: { id: string }) => getRelease(store(), id),
    resolveDependencies: async (_: unknown, { products }: { products: string[] }) =>
      resolveDependencies(products, new Map((await listProducts(store())).map((p) => [p.name, p]))),
  },
  Mutation: {
    defineProduct: (_: unknown, { input }: { input: ProductInput }) => defineProduct(store(), input),
    deploy: (_: unknown, { input }: { input: DeployInput }) => deploy(store(), input),
    configureRelease: (_: unknown, { id, env }: { id: string; env: { name: string; value: string }[] }) => configureRelease(store(), id, env),
    scaleRelease: (_: unknown, { id, replicas }: { id: string; replicas: number }) => scaleRelease(store(), id, replicas),
    deleteRelease: (_: unknown, { id }: { id: string }) => deleteRelease(store(), id),
  },
  Product: {
    __resolveReference: ({ name }: { name: string }) => getProduct(store(), name),
  },
  Release: {
    __resolveReference: ({ id }: { id: string }) => getRelease(store(), id),
    product: (r: Release) => mustGetProduct(store(), r.product),
    status: async (r: Release) => (await status(r)).status,
    statusMessage: async (r: Release) => (await status(r)).message,
  },
} satisfies Record<string, Record<string, unknown>>;

export const panamaSchema = () => buildSubgraphSchema({
  typeDefs: gql(readSchemaFile('panama.graphql')),
  resolvers: secure(resolvers) as never,
});
