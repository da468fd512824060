import { parseProducts } from '../../cli/product-file';

const withHealthcheck = (command: string) => `name: web
versions:
  - version: "1.0.0"
    image: fangzhou/demo:1
defaults:
  healthcheck:
    command: ${command}
`;

test('a healthcheck command written as one string is accepted and sent as given (the API makes it a shell command)', () => {
  const { products, problems } = parseProducts(withHealthcheck('test -f /www/health'), 'web.yaml');
  expect(problems).toEqual([]);
  expect(products[0].input).toMatchObject({ defaults: { healthcheck: { command: 'test -f /www/health' } } });
});

test('a healthcheck command as a list is accepted as before', () => {
  const { products, problems } = parseProducts(withHealthcheck('[CMD, test, -f, /www/health]'), 'web.yaml');
  expect(problems).toEqual([]);
  expect(products[0].input).toMatchObject({ defaults: { healthcheck: { command: ['CMD', 'test', '-f', '/www/health'] } } });
});

test('a wrongly typed single value for a list is still refused with its line', () => {
  const { problems } = parseProducts(withHealthcheck('42'), 'web.yaml');
  expect(problems).toEqual([{ file: 'web.yaml', line: 7, message: 'defaults.healthcheck.command must be a string (got 42; quote it: "42")' }]);
});
