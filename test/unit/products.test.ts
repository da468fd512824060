import { latestVersion, productFromInput, type Product } from '../../subgraphs/panama/products';

const valid = { name: 'redis', versions: [{ version: '7.0.15', image: 'fangzhou/redis:7' }] };
const fieldOf = (fn: () => unknown) => {
  try { fn(); } catch (err) { return (err as { extensions: { code: string; field?: string } }).extensions; }
  throw new Error('expected an error');
};

test('fills sensible defaults for a minimal product', () => {
  const product = productFromInput(valid);
  expect(product.defaults).toMatchObject({ replicas: 1, resources: { cpuMillis: 250, memoryMb: 128 }, ports: [], healthcheck: null });
});

test.each([
  ['a name that is not a DNS label', { ...valid, name: 'Redis_7' }, 'name'],
  ['no versions', { ...valid, versions: [] }, 'versions'],
  ['a version that is not semver', { ...valid, versions: [{ version: 'seven', image: 'x' }] }, 'versions[0].version'],
  ['an image that is not an image reference', { ...valid, versions: [{ version: '1.0.0', image: 'not an image' }] }, 'versions[0].image'],
  ['a bad dependency range', { ...valid, dependencies: [{ product: 'zk', versionRange: 'newest' }] }, 'dependencies[0].versionRange'],
  ['a port out of range', { ...valid, defaults: { ports: [{ name: 'main', containerPort: 70000 }] } }, 'defaults.ports[0].containerPort'],
  ['negative replicas', { ...valid, defaults: { replicas: -1 } }, 'defaults.replicas'],
  ['a relative config path', { ...valid, configTemplates: [{ path: 'etc/x.conf', template: '' }] }, 'configTemplates[0].path'],
])('rejects %s and names the field', (_what, input, field) => {
  expect(fieldOf(() => productFromInput(input as never))).toEqual({ code: 'BAD_USER_INPUT', field });
});

test('the default version is the newest stable one, not a pre-release', () => {
  const product = productFromInput({ ...valid, versions: [
    { version: '1.0.0', image: 'x:1' }, { version: '2.0.0', image: 'x:2' }, { version: '3.0.0-unhealthy', image: 'x:3' },
  ] }) as Product;
  expect(latestVersion(product).version).toBe('2.0.0');
});

test('a healthcheck given as one string is a shell command, as in Compose', () => {
  // GraphQL coerces `command: "test -f /www/health"` into a one-item list before the resolver sees it.
  const product = productFromInput({ ...valid, defaults: { healthcheck: { command: ['test -f /www/health'] } } });
  expect(product.defaults.healthcheck!.command).toEqual(['CMD-SHELL', 'test -f /www/health']);
});

test('a healthcheck in exec form, shell form or NONE is kept as given', () => {
  for (const command of [['CMD', 'test', '-f', '/www/health'], ['CMD-SHELL', 'test -f /www/health'], ['NONE'], ['/bin/probe', '--quick']]) {
    expect(productFromInput({ ...valid, defaults: { healthcheck: { command } } }).defaults.healthcheck!.command).toEqual(command);
  }
});

test.each([[[]], [['']], [['CMD']], [['CMD-SHELL']]])('refuses the healthcheck command %j and shows the two accepted forms', (command) => {
  try {
    productFromInput({ ...valid, defaults: { healthcheck: { command } } });
    throw new Error('expected an error');
  } catch (err) {
    expect((err as { extensions: { field: string } }).extensions.field).toBe('defaults.healthcheck.command');
    expect((err as Error).message).toContain('a shell command ("test -f /www/health", run with /bin/sh -c) or a program and its arguments (["CMD", "test", "-f", "/www/health"])');
  }
});
