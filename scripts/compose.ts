import { writeFileSync } from 'node:fs';
import { composeSupergraph } from '../gateway/compose';
import { schemaPath } from '../lib/schema-files';

const path = schemaPath('supergraph.graphql');
writeFileSync(path, composeSupergraph());
process.stdout.write(`wrote ${path}\n`);
