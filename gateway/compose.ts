import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';
import { readSchemaFile } from '../lib/schema-files';

export const SUBGRAPHS = ['panama', 'ark', 'butler'] as const;
export type SubgraphName = (typeof SUBGRAPHS)[number];

/**
 * Composes the three SDL files into the supergraph the gateway loads. Errors name the subgraph and coordinate
 * that caused them, as @apollo/composition reports them.
 */
export function composeSupergraph(): string {
  const result = composeServices(SUBGRAPHS.map((name) => ({
    name,
    url: `http://localhost:3000/subgraphs/${name}`,
    typeDefs: parse(readSchemaFile(`${name}.graphql`)),
  })));
  if (result.errors) {
    throw new Error(`composition failed:\n${result.errors.map((e) => `- ${e.message}`).join('\n')}`);
  }
  return result.supergraphSdl;
}
