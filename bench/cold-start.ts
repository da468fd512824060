/**
 * Cold start of the gateway handler: module init (`require`) and first request in a fresh `node` per sample, for the
 * esbuild bundle (the options of serverless.yml custom.esbuild) and for the source under tsx.
 * `node --import tsx bench/cold-start.ts`
 */
import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { benchStack, ms, post, ROOT, round, runBench, stats } from './lib';

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

  const queries = { typename: '{ __typename }', subgraph: '{ products { name } }' };
  await post(stack.url, queries.subgraph, undefined, stack.adminToken);

  const env = {
    ...stack.env, FZ_SCHEMA_DIR: join(ROOT, 'schema'), LOG_LEVEL: 'warn',
    // serverless.yml sets it for every function; Node then parses the source map when the bundle loads.
    NODE_OPTIONS: '--enable-source-maps',
  };
  const variants = {
    bundled: { args: [probe, outfile], env },
    tsx: { args: ['--import', 'tsx', probe, join(ROOT, 'handlers/gateway.ts')], env: { ...env, NODE_OPTIONS: '' } },
  };

  const figures: Record<string, unknown> = { bundleMiB: round(size(outfile)), sourceMapMiB: round(size(outfile + '.map')) };
  console.log(`${SAMPLES} samples each, one fresh node per sample, after one discarded run per variant (disk cache, tsx cache)\n`);
  for (const [variant, { args, env: childEnv }] of Object.entries(variants)) {
    for (const [name, query] of Object.entries(queries)) {
      const sample = async (): Promise<Sample> => {
        const { stdout } = await run(process.execPath, [...args, query, stack.adminToken], { cwd: ROOT, env: childEnv, timeout: 30_000 });
        return JSON.parse(stdout.trim().split('\n').pop()!);
      };
      await sample();
      const samples: Sample[] = [];
      for (let i = 0; i < SAMPLES; i++) samples.push(await sample());
      const pick = (f: (s: Sample) => number) => stats(samples.map(f));
      const parts = { boot: pick((s) => s.boot), init: pick((s) => s.init), first: pick((s) => s.first), total: pick((s) => s.init + s.first) };
      const label = `${variant.padEnd(7)} ${name === 'typename' ? '{ __typename }' : '{ products { name } } (panama)'}`;
      const show = (k: keyof typeof parts) => `${k} ${ms(parts[k].p50)} [${ms(parts[k].min)}–${ms(parts[k].max)}]`;
      console.log(`${label.padEnd(40)} ${show('init')}  ${show('first')}  ${show('total')}  (node boot ${ms(parts.boot.p50)})`);
      figures[`${variant}_${name}`] = Object.fromEntries(Object.entries(parts).map(([k, s]) => [k, { median: round(s.p50), min: round(s.min), max: round(s.max) }]));
    }
  }
  console.log('\nmedian [min–max]; init = require(handler), first = first request, total = init + first (target < 1 s)');
  return figures;
});
