import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * The SDL files are the contract and are read at start, not compiled in. Handlers run from the source tree, from an
 * esbuild bundle under `.esbuild/`, or from a deployed package; the nearest ancestor holding `schema/` wins.
 */
function schemaDir(): string {
  if (process.env.FZ_SCHEMA_DIR) return process.env.FZ_SCHEMA_DIR;
  for (let dir = __dirname; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'schema', 'supergraph.graphql')) || existsSync(join(dir, 'schema', 'panama.graphql'))) return join(dir, 'schema');
    if (dirname(dir) === dir) throw new Error('schema/ not found above ' + __dirname + '; set FZ_SCHEMA_DIR');
  }
}

export const readSchemaFile = (name: string) => readFileSync(join(schemaDir(), name), 'utf8');
export const schemaPath = (name: string) => join(schemaDir(), name);
