import { resolve } from 'node:path';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from './demo-product';
import { registryMissing } from './registry';
import { ensureDocker, startStack } from './stack';

/**
 * `npm start`: the platform on its embedded defaults. Store: dynalite under .fangzhou/data (or DYNAMODB_ENDPOINT).
 * API: server mode (server/), or serverless-offline with FZ_RUNTIME=offline. Hosts: one runner on the local Docker engine. Ctrl-C stops everything it started.
 */
async function main() {
  const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  const stack = await startStack({
    dataDir: resolve(process.env.FZ_DATA_DIR ?? '.fangzhou'),
    httpPort: port('FZ_HTTP_PORT', 3000),
    wsPort: port('FZ_WS_PORT', 3001),
    lambdaPort: port('FZ_LAMBDA_PORT', 3002),
    storePort: port('FZ_STORE_PORT', 4567),
    dynamodbEndpoint: process.env.DYNAMODB_ENDPOINT || undefined,
    registry: registryMissing() ? undefined : { port: port('FZ_REGISTRY_PORT', 5000) },
    output: 'inherit',
    watch: true,
  });
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping…\n');
    await stack.stop();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);

  const defined = await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT });
  if (defined.errors) process.stderr.write(`could not define the demo product: ${defined.errors[0].message}\n`);

  if (!stack.registry) process.stderr.write(`no image registry: ${registryMissing()}; hosts run only the images their engine has\n`);
  const noDocker = await ensureDocker(stack.registry);
  if (noDocker) {
    process.stderr.write(`\nWARNING: no Docker engine could be had (${noDocker}). The API works, but no host runner was started, so deploys stay unplaced.\n\n`);
  } else {
    await stack.startRunner(process.env.FZ_RUNNER_NAME ?? 'local', ['--labels', process.env.FZ_RUNNER_LABELS ?? 'zone=local']);
  }

  const base = stack.url.replace(/\/graphql$/, '');
  process.stdout.write(`
Fangzhou is up.
  GraphiQL      ${base}/graphql   (open in a browser; set the Authorization header below)
  GraphQL HTTP  POST ${stack.url}
  Operator token  in .fangzhou/admin-token (send it as "Authorization: Bearer <token>")

First deploy:
  curl -s ${stack.url} -H 'content-type: application/json' -H "authorization: Bearer $(cat .fangzhou/admin-token)" \\
    -d '{"query":"mutation { deploy(input: {name: \\"hello\\", product: \\"demo\\", replicas: 3}) { id name status } }"}'
Then watch it:
  { releases { name status instances { domainName host { name } status { state health } ports { hostPort } } } }

Ctrl-C stops the stack (containers keep running; the runner converges them at next start).
`);
}

main().catch((err) => {
  process.stderr.write(`npm start failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
