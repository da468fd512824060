/**
 * Latency of a cross-subgraph query through the gateway (panama → ark → butler) against the same work sent to the
 * subgraphs directly, on the stack's runtime (server mode, or serverless-offline with FZ_RUNTIME=offline). No
 * Docker: a simulated host reports the release's containers. `node --import tsx bench/gateway-latency.ts`
 */
import { benchStack, printStats, round, roundStats, runBench } from './lib';
import { deployDemoRelease, simulatedHost, timeGateway } from './support';

const WARMUP = 20;
/** FZ_BENCH_REQUESTS: fewer on a busy machine (the run gives up after 300 s). */
const REQUESTS = Number(process.env.FZ_BENCH_REQUESTS || 500);
const REPLICAS = 3;

runBench('gateway-latency', 300_000, async (b) => {
  const { stack } = await benchStack(b, 3400, 4900);
  await simulatedHost(b, stack, `bench-latency-${process.pid}`);
  const release = await deployDemoRelease(stack, 'bench-latency', REPLICAS);
  console.log(`release ${release.id} RUNNING with ${REPLICAS} instances; ${WARMUP} warm-up + ${REQUESTS} sequential requests per target`);
  const f = await timeGateway(stack, release, WARMUP, REQUESTS);

  console.log('\nsubgraph comparison: the ark fetch of the gateway\'s plan, sent directly:');
  console.log(`  _entities(representations: [{__typename: "Release", id}]) { ... on Release { instances { __typename id host { name } } } }`);
  console.log('plan fetches: the three fetches the gateway makes for this query (panama release, ark _entities, butler _entities), sent by the bench\n');
  printStats('gateway  POST /graphql (release → 3 subgraphs)', f.gateway);
  printStats('subgraph POST /subgraphs/ark (_entities)', f.ark);
  printStats('subgraphs panama+ark+butler back-to-back', f.planFetches);
  printStats('gateway  { __typename } (no fetch)', f.bare);
  const ratios = {
    p50: round(f.gateway.p50 / f.ark.p50),
    p99: round(f.gateway.p99 / f.ark.p99),
    planP50: round(f.gateway.p50 / f.planFetches.p50),
    planP99: round(f.gateway.p99 / f.planFetches.p99),
  };
  console.log(`\nratio gateway/ark subgraph:          p50 ${ratios.p50}x  p99 ${ratios.p99}x`);
  console.log(`ratio gateway/three plan fetches:    p50 ${ratios.planP50}x  p99 ${ratios.planP99}x`);
  console.log(`gateway overhead over its own fetches (p50 difference): ${f.overheadP50.toFixed(1)} ms`);

  return {
    runtime: process.env.FZ_RUNTIME ?? 'server',
    requests: REQUESTS,
    warmup: WARMUP,
    subgraphQuery: 'ark _entities(Release) { instances { __typename id host { name } } }',
    gateway: roundStats(f.gateway),
    ark: roundStats(f.ark),
    planFetches: roundStats(f.planFetches),
    bare: roundStats(f.bare),
    gatewayOverheadP50: round(f.overheadP50),
    ratioGatewayToArk: { p50: ratios.p50, p99: ratios.p99 },
    ratioGatewayToPlanFetches: { p50: ratios.planP50, p99: ratios.planP99 },
  };
});
