/** Unit tests are plain functions; integration tests use the store and the Docker engine; e2e tests run the stack. */
const transform = { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] };
const project = (name, extra = {}) => ({
  displayName: name,
  testEnvironment: 'node',
  transform,
  testMatch: [`<rootDir>/test/${name}/**/*.test.ts`],
  ...extra,
});
module.exports = {
  projects: [project('unit'), project('integration'), project('e2e')],
  testTimeout: 120000,
  // End-to-end suites spawn stacks, runners, engines and WebSocket clients; every suite stops what it started, but a
  // keep-alive socket left by a library must not keep CI waiting after the last result.
  forceExit: true,
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
};
