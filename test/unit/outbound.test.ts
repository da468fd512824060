import { checkOutbound, forbiddenAddress, forbiddenHostname } from '../../lib/outbound';

test('loopback, link-local, unspecified and metadata addresses are forbidden; private and public ones are not', () => {
  expect(forbiddenAddress('127.0.0.1')).toBe('a loopback address');
  expect(forbiddenAddress('::1')).toBe('a loopback address');
  expect(forbiddenAddress('::ffff:127.0.0.2')).toBe('a loopback address');
  expect(forbiddenAddress('169.254.169.254')).toBe('a cloud metadata address');
  expect(forbiddenAddress('100.100.100.200')).toBe('a cloud metadata address');
  expect(forbiddenAddress('fe80::1')).toBe('a link-local address');
  expect(forbiddenAddress('0.0.0.0')).toBe('an unspecified address');
  expect(forbiddenAddress('10.1.2.3')).toBeNull();
  expect(forbiddenAddress('203.0.113.9')).toBeNull();
});

test('host names that mean this machine or the metadata service are forbidden as written', () => {
  expect(forbiddenHostname('localhost')).toBe('a local or metadata host name');
  expect(forbiddenHostname('api.localhost')).toBe('a local or metadata host name');
  expect(forbiddenHostname('metadata.google.internal')).toBe('a local or metadata host name');
  expect(forbiddenHostname('[::1]')).toBe('a loopback address');
  expect(forbiddenHostname('hooks.example.com')).toBeNull();
});

test('a send is refused without naming the address, unless local targets are allowed', async () => {
  await expect(checkOutbound('127.0.0.1')).rejects.toThrow('refused: the target is a loopback address (FZ_WEBHOOK_ALLOW_LOCAL=true allows it)');
  process.env.FZ_WEBHOOK_ALLOW_LOCAL = 'true';
  try {
    await expect(checkOutbound('127.0.0.1')).resolves.toBeUndefined();
  } finally {
    delete process.env.FZ_WEBHOOK_ALLOW_LOCAL;
  }
});
