/**
 * The demo product the dev stack and the tests deploy: a static busybox HTTP server built by scripts/build-images.sh.
 * Version 3.0.0-unhealthy fails its healthcheck on purpose, for upgrade and rollback drills.
 */
export const DEMO_PRODUCT = {
  name: 'demo',
  description: 'A tiny HTTP server (busybox httpd) for trying Fangzhou; 3.0.0-unhealthy fails its healthcheck',
  versions: [
    { version: '1.0.0', image: 'fangzhou/demo:1' },
    { version: '2.0.0', image: 'fangzhou/demo:2' },
    { version: '3.0.0-unhealthy', image: 'fangzhou/demo:3', notes: 'healthcheck fails: for upgrade drills' },
  ],
  defaults: {
    replicas: 1,
    resources: { cpuMillis: 100, memoryMb: 32 },
    ports: [{ name: 'http', containerPort: 8080, protocol: 'tcp' }],
    healthcheck: {
      command: ['CMD', '/bin/busybox', 'wget', '-q', '-O', '/dev/null', 'http://127.0.0.1:8080/healthz'],
      intervalSeconds: 2, timeoutSeconds: 2, retries: 2, startPeriodSeconds: 0,
    },
  },
};

export const DEFINE_PRODUCT = `mutation Define($input: ProductInput!) { defineProduct(input: $input) { name versions { version } } }`;
