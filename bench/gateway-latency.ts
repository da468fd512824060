/**
 * Latency of a cross-subgraph query through the gateway (panama → ark → butler) under serverless-offline, against
 * the same work sent to the subgraphs directly. `node --import tsx bench/gateway-latency.ts`
 */
import { benchStack, DEPLOY, defineDemo, post, printStats, round, roundStats, runBench, sequential, stats, waitUntil } from './lib';

const WARMUP = 20;
const REQUESTS = 500;
const REPLICAS = 3;

const GATEWAY_QUERY = `query Release($id: ID!) {
  release(id: $id) { name status instances { id host { name } status { state health } } }
}`;

// The three fetches of the gateway's query plan for GATEWAY_QUERY, as it sends them (one after another).
const PANAMA_FETCH = 'query($id: ID!) { release(id: $id) { __typename id name status } }';
const ARK_FETCH = `query($representations: [_Any!]!) { _entities(representations: $representations) {
  ... on Release { instances { __typename id host { name } } } } }`;
const BUTLER_FETCH = `query($representations: [_Any!]!) { _entities(representations: $representations) {
  ... on Instance { status { state health } } } }`;

runBench('gateway-latency', 170_000, async (b) => {
  const { stack, startRunner } = await benchStack(b, 3400, 4900);
  const subgraph = (name: string) => stack.url.replace(/\/graphql$/, `/subgraphs/${name}`);
  await defineDemo(stack);
  await startRunner(`bench-latency-${process.pid}`);

  const { deploy } = await post(stack.url, DEPLOY, { input: { name: 'bench-latency', product: 'demo', version: '1.0.0', replicas: REPLICAS } }, stack.adminToken);
  const id: string = deploy.id;
  await waitUntil('the release to be RUNNING', async () =>
    (await post(stack.url, GATEWAY_QUERY, { id }, stack.adminToken)).release.status === 'RUNNING', 90_000, 250);
  console.log(`release ${id} RUNNING with ${REPLICAS} instances; ${WARMUP} warm-up + ${REQUESTS} sequential requests per target`);

  const instances: { id: string }[] = (await post(stack.url, GATEWAY_QUERY, { id }, stack.adminToken)).release.instances;
  const releaseRef = [{ __typename: 'Release', id }];
  const instanceRefs = instances.map((i) => ({ __typename: 'Instance', id: i.id }));
  const targets: Record<string, () => Promise<unknown>> = {
    gateway: () => post(stack.url, GATEWAY_QUERY, { id }, stack.adminToken),
    ark: () => post(subgraph('ark'), ARK_FETCH, { representations: releaseRef }, stack.adminToken),
    planFetches: async () => {
      await post(subgraph('panama'), PANAMA_FETCH, { id }, stack.adminToken);
      await post(subgraph('ark'), ARK_FETCH, { representations: releaseRef }, stack.adminToken);
      await post(subgraph('butler'), BUTLER_FETCH, { representations: instanceRefs }, stack.adminToken);
    },
  };
  const labels: Record<string, string> = {
    gateway: 'gateway  POST /graphql (release → 3 subgraphs)',
    ark: 'subgraph POST /subgraphs/ark (_entities)',
    planFetches: 'subgraphs panama+ark+butler back-to-back',
  };

  const results: Record<string, ReturnType<typeof stats>> = {};
  for (const [name, fn] of Object.entries(targets)) {
    await sequential(WARMUP, fn);
    results[name] = stats(await sequential(REQUESTS, fn));
  }

  console.log('\nsubgraph comparison: the ark fetch of the gateway\'s plan, sent directly:');
  console.log(`  _entities(representations: [{__typename: "Release", id}]) { ... on Release { instances { __typename id host { name } } } }`);
  console.log('plan fetches: the three fetches the gateway makes for this query (panama release, ark _entities, butler _entities), sent by the bench\n');
  for (const name of Object.keys(targets)) printStats(labels[name], results[name]);
  const { gateway, ark, planFetches } = results;
  const ratios = {
    p50: round(gateway.p50 / ark.p50),
    p99: round(gateway.p99 / ark.p99),
    planP50: round(gateway.p50 / planFetches.p50),
    planP99: round(gateway.p99 / planFetches.p99),
  };
  console.log(`\nratio gateway/ark subgraph:          p50 ${ratios.p50}x  p99 ${ratios.p99}x`);
  console.log(`ratio gateway/three plan fetches:    p50 ${ratios.planP50}x  p99 ${ratios.planP99}x`);
  console.log(`gateway overhead over its own fetches (p50 difference): ${(gateway.p50 - planFetches.p50).toFixed(1)} ms`);

  return {
    requests: REQUESTS,
    warmup: WARMUP,
    subgraphQuery: 'ark _entities(Release) { instances { __typename id host { name } } }',
    gateway: roundStats(gateway),
    ark: roundStats(ark),
    planFetches: roundStats(planFetches),
    ratioGatewayToArk: { p50: ratios.p50, p99: ratios.p99 },
    ratioGatewayToPlanFetches: { p50: ratios.planP50, p99: ratios.planP99 },
  };
});
