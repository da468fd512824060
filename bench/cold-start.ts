/**
 * Cold start of the gateway handler: module init (`require`) and first request in a fresh `node` per sample, for the
 * esbuild bundle (the options of serverless.yml custom.esbuild) with and without --enable-source-maps, and for the
 * source under tsx. With source maps on, Node reads the bundle's source map at load: the variants show what that costs.
 * `node --import tsx bench/cold-start.ts`
 */
import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { benchStack, ms, post, ROOT, round, runBench, stats, type Stats } from './lib';

const SAMPLES = 5;
const run = promisify(execFile);

/** Runs in the child: require the handler, send it one API Gateway v2 event, print the timings as JSON. */
const PROBE = `
const { performance } = require('node:perf_hooks');
const [modulePath, query, token] = process.argv.slice(2);
const boot = performance.now(); // ms since the process started
const { handler } = require(modulePath);
const init = performance.now() - boot;
const body = JSON.stringify({ query });
const event = {
  version: '2.0', routeKey: 'POST /graphql', rawPath: '/graphql', rawQueryString: '', isBase64Encoded: false, body,
  headers: { 'content-type': 'application/json', 'content-length': String(body.length), authorization: 'Bearer ' + token },
  requestContext: { accountId: 'bench', apiId: 'bench', domainName: 'localhost', domainPrefix: 'localhost', requestId: 'r1',
    routeKey: 'POST /graphql', stage: '$default', time: '', timeEpoch: Date.now(),
    http: { method: 'POST', path: '/graphql', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' } },
};
const context = { functionName: 'gateway', awsRequestId: 'r1', callbackWaitsForEmptyEventLoop: true, getRemainingTimeInMillis: () => 29000 };
const t = performance.now();
handler(event, context).then((res) => {
  const first = performance.now() - t;
  const answer = JSON.parse(res.body);
  if (res.statusCode !== 200 || answer.errors) throw new Error(res.statusCode + ' ' + res.body);
  console.log(JSON.stringify({ boot, init, first }));
  process.exit(0);
}).catch((err) => { console.error(err); process.exit(1); });
`;

interface Sample { boot: number; init: number; first: number }

runBench('cold-start', 170_000, async (b) => {
  // The subgraph handlers for the second query; warmed below, so only the gateway process is cold.
  const { stack } = await benchStack(b, 3420, 4920);

  const outfile = join(b.dir, 'bundle', 'gateway.js');
  await build({
    entryPoints: [join(ROOT, 'handlers/gateway.ts')], outfile, logLevel: 'warning',
    bundle: true, minify: false, sourcemap: true, target: 'node20', platform: 'node', format: 'cjs',
  });
  const size = (f: string) => statSync(f).size / 1024 / 1024;
  console.log(`bundle ${outfile}: ${size(outfile).toFixed(2)} MiB (+ ${size(outfile + '.map').toFixed(2)} MiB source map)`);
  const probe = join(b.dir, 'probe.js');
  writeFileSync(probe, PROBE);

  const queries = {
    typename: { label: '{ __typename }', query: '{ __typename }' },
    subgraph: { label: '{ products { name } } → panama', query: '{ products { name } }' },
  };
  await post(stack.url, queries.subgraph.query, undefined, stack.adminToken);

  const env = { ...stack.env, FZ_SCHEMA_DIR: join(ROOT, 'schema'), LOG_LEVEL: 'warn', NODE_OPTIONS: '--enable-source-maps' };
  const noSourceMaps = { ...env, NODE_OPTIONS: '' };
  // The bundle as deployed (no --enable-source-maps: this bench showed it costs ~270 ms of cold start), the same bundle
  // with the flag for comparison, and the source under tsx.
  const variants = {
    bundledSourceMaps: { label: 'bundle + --enable-source-maps', args: [probe, outfile], env },
    bundled: { label: 'bundle', args: [probe, outfile], env: noSourceMaps },
    tsx: { label: 'source via --import tsx', args: ['--import', 'tsx', probe, join(ROOT, 'handlers/gateway.ts')], env: noSourceMaps },
  };

  const sample = async (args: string[], childEnv: NodeJS.ProcessEnv, query: string): Promise<Sample> => {
    const { stdout } = await run(process.execPath, [...args, query, stack.adminToken], { cwd: ROOT, env: childEnv, timeout: 30_000 });
    return JSON.parse(stdout.trim().split('\n').pop()!);
  };
  const show = (label: string, s: Stats) => `${label} ${ms(s.p50)} [${ms(s.min)}–${ms(s.max)}]`;
  const brief = (s: Stats) => ({ median: round(s.p50), min: round(s.min), max: round(s.max) });

  const figures: Record<string, unknown> = { samples: SAMPLES, bundleMiB: round(size(outfile)), sourceMapMiB: round(size(outfile + '.map')) };
  console.log(`${SAMPLES} samples each, one fresh node per sample, after one discarded run (disk cache, tsx cache); median [min–max]`);
  console.log('init = require(handler), first = first request, total = init + first (target < 1 s), boot = node start to probe\n');
  for (const [variant, v] of Object.entries(variants)) {
    for (const [name, q] of Object.entries(queries)) {
      await sample(v.args, v.env, q.query);
      const samples: Sample[] = [];
      for (let i = 0; i < SAMPLES; i++) samples.push(await sample(v.args, v.env, q.query));
      const init = stats(samples.map((s) => s.init));
      const first = stats(samples.map((s) => s.first));
      const total = stats(samples.map((s) => s.init + s.first));
      const boot = stats(samples.map((s) => s.boot));
      console.log(`${`${v.label}: ${q.label}`.padEnd(62)} ${show('init', init)}  ${show('first', first)}  ${show('total', total)}  ${show('boot', boot)}`);
      figures[`${variant}_${name}`] = { init: brief(init), first: brief(first), total: brief(total), boot: brief(boot) };
    }
  }
  return figures;
});
