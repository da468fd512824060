/** Unit tests are plain functions; integration tests use the store and the Docker engine; e2e tests run the stack. */
const transform = { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }] };
const LEFTOVERS = '<rootDir>/test/support/leftovers-environment.js';
const project = (name, extra = {}) => ({
  displayName: name,
  testEnvironment: 'node',
  transform,
  setupFiles: ['<rootDir>/test/support/quiet-node-version-warning.js'],
  testMatch: [`<rootDir>/test/${name}/**/*.test.ts`],
  ...extra,
});
module.exports = {
  // Integration and e2e files start processes, containers, namespaces and engines: each must leave none of its own
  // behind, or it fails (test/support/leftovers-environment.js).
  projects: [project('unit'), project('integration', { testEnvironment: LEFTOVERS }), project('e2e', { testEnvironment: LEFTOVERS })],
  testTimeout: 120000,
  // End-to-end suites spawn stacks, runners, engines and WebSocket clients; every suite stops what it started, but a
  // keep-alive socket left by a library must not keep CI waiting after the last result.
  forceExit: true,
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
};
