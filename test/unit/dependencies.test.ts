import { dependencyPlan, resolveDependencies } from '../../subgraphs/panama/dependencies';
import type { Product } from '../../subgraphs/panama/products';

const product = (name: string, versions: string[], deps: [string, string][] = []) => ({
  name, versions: versions.map((version) => ({ version, image: `x/${name}:${version}` })),
  dependencies: deps.map(([p, versionRange]) => ({ product: p, versionRange })),
}) as Product;
const catalog = (...products: Product[]) => new Map(products.map((p) => [p.name, p]));
const errorOf = (fn: () => unknown) => {
  try { fn(); } catch (err) { return { code: (err as { extensions: { code: string } }).extensions.code, message: (err as Error).message }; }
  throw new Error('expected an error');
};

test('orders dependencies first and picks the newest version every dependant accepts', () => {
  const resolved = resolveDependencies(['app'], catalog(
    product('app', ['1.0.0'], [['kafka', '^3'], ['zk', '>=3.6']]),
    product('kafka', ['2.8.0', '3.6.1', '3.7.0'], [['zk', '~3.8']]),
    product('zk', ['3.6.4', '3.8.3', '3.9.1']),
  ));
  expect(resolved.map((r) => [r.product.name, r.version, r.requiredBy])).toEqual([
    ['zk', '3.8.3', ['kafka', 'app']],
    ['kafka', '3.7.0', ['app']],
    ['app', '1.0.0', []],
  ]);
});

test('a product asked for twice, directly and as a dependency, appears once', () => {
  const resolved = resolveDependencies(['zk', 'kafka'], catalog(product('kafka', ['3.7.0'], [['zk', '*']]), product('zk', ['3.9.1'])));
  expect(resolved.map((r) => r.product.name)).toEqual(['zk', 'kafka']);
});

test('a cycle is refused with the chain', () => {
  expect(errorOf(() => resolveDependencies(['a'], catalog(product('a', ['1.0.0'], [['b', '*']]), product('b', ['1.0.0'], [['c', '*']]), product('c', ['1.0.0'], [['a', '*']])))))
    .toEqual({ code: 'BAD_USER_INPUT', message: 'dependency cycle: a → b → c → a' });
});

test('an unsatisfiable range names who asked for what and what exists', () => {
  expect(errorOf(() => resolveDependencies(['kafka'], catalog(product('kafka', ['3.7.0'], [['zk', '^4']]), product('zk', ['3.8.3', '3.9.1'])))))
    .toEqual({ code: 'BAD_USER_INPUT', message: 'no version of zk satisfies ^4 (required by kafka); available: 3.8.3, 3.9.1' });
});

test('a missing dependency names the chain that needs it', () => {
  expect(errorOf(() => resolveDependencies(['app'], catalog(product('app', ['1.0.0'], [['kafka', '*']]), product('kafka', ['3.7.0'], [['zk', '*']])))))
    .toEqual({ code: 'NOT_FOUND', message: 'product "zk" does not exist (required by app → kafka)' });
});

describe('what a deploy takes of its dependencies', () => {
  const kafkaOnZk = catalog(product('app', ['1.0.0'], [['kafka', '^3']]), product('kafka', ['3.7.0'], [['zk', '~3.8']]), product('zk', ['3.8.3']));
  const plan = (existing: { id: string; product: string; version: string }[]) => {
    const { uses, creates } = dependencyPlan('app', resolveDependencies(['app'], kafkaOnZk), existing);
    return { uses: Object.fromEntries(uses), creates: creates.map((r) => r.product.name) };
  };

  test('creates what no existing release provides, dependencies first, the requested product last', () => {
    expect(plan([])).toEqual({ uses: {}, creates: ['zk', 'kafka', 'app'] });
  });

  test('relies on an existing release whose version fits, and needs nothing of what that release depends on', () => {
    expect(plan([{ id: 'r-kafka', product: 'kafka', version: '3.7.0' }])).toEqual({ uses: { kafka: 'r-kafka' }, creates: ['app'] });
  });

  test('passes over an existing release whose version does not fit', () => {
    const existing = [{ id: 'r-old', product: 'kafka', version: '2.8.0' }, { id: 'r-zk', product: 'zk', version: '3.8.3' }];
    expect(plan(existing)).toEqual({ uses: { zk: 'r-zk' }, creates: ['kafka', 'app'] });
  });
});
