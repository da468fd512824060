import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { composeSupergraph } from '../../gateway/compose';

test('the committed supergraph is what the three subgraph schemas compose to (run npm run compose if not)', () => {
  const committed = readFileSync(join(__dirname, '../../schema/supergraph.graphql'), 'utf8');
  expect(composeSupergraph()).toBe(committed);
});
