/**
 * fz — the Fangzhou command line.
 *
 *   npm run fz -- product apply <file.yaml|file.json>... [--dry-run]
 *   npm run fz -- product list [--json]
 *   npm run fz -- audit verify | audit export
 *   npm run fz -- doctor [--repair]
 *   npm run fz -- image export <image>... --output <bundle.tar> [--registry host:port | --from-engine]
 *   npm run fz -- image import <bundle.tar> [--registry host:port]
 *   npm run fz -- image push <image>... [--registry host:port]
 *
 * The API is FZ_API_URL (default http://localhost:3000/graphql); the operator token is FZ_TOKEN or the one
 * `npm start` wrote to .fangzhou/admin-token. Exit 0 on success, 1 when something was refused, 2 on bad usage.
 */
import { parseArgs } from 'node:util';
import { CliError, DEFAULT_API_URL, connect, operatorToken, type Api } from './api';
import { exportLines, verify } from './audit';
import { doctor } from './doctor';
import { exportImages, importImages, localEngine, pushImages } from './images';
import { formatProblem, loadProductFile, parsePath, type ProductDocument, type Problem } from './product-file';

const USAGE = `usage:
  fz product apply <file.yaml|file.json>... [--dry-run]   define (or redefine) the products in the files
  fz product list [--json]                                the products the API knows
  fz audit verify                                         check the audit log's hash chain (admin key)
  fz audit export                                         the audit log as JSON lines, oldest first (admin key)
  fz doctor [--repair]                                    check (and repair: admin key) each host's allocated resources
  fz image export <image>... -o <bundle.tar>              pull the images from the platform registry into one bundle
  fz image import <bundle.tar>                            push every image of a bundle to the platform registry
  fz image push <image>...                                push images of the local engine to the platform registry
options:
  --api-url URL   the GraphQL API (default: FZ_API_URL or ${DEFAULT_API_URL})
  --dry-run       check the files locally, send nothing
  --repair        rewrite drifted hosts' books from the instances placed on them
  --json          print the products as JSON
  --registry A    the platform registry, host:port (default: FZ_REGISTRY or 127.0.0.1:\$FZ_REGISTRY_PORT, 5000)
  --from-engine   export the local Docker engine's images instead of the registry's
  -o, --output F  the bundle to write
environment: FZ_API_URL, FZ_TOKEN (default: the token in .fangzhou/admin-token), FZ_REGISTRY, DOCKER_HOST`;

const DEFINE_PRODUCT = `mutation Define($input: ProductInput!) {
  defineProduct(input: $input) { name versions { version image } dependencies { product versionRange } configTemplates { path } }
}`;

const LIST_PRODUCTS = `{ products {
  name description requiresExclusiveHosts
  versions { version image notes }
  dependencies { product versionRange }
  defaults { replicas resources { cpuMillis memoryMb } ports { name containerPort protocol } }
  configTemplates { path }
} }`;

interface DefinedProduct {
  name: string;
  versions: { version: string; image: string }[];
  dependencies: { product: string; versionRange: string }[];
  configTemplates: { path: string }[];
}

class UsageError extends Error {}

/** Where a server error points in the file: `extensions.field`, else the path a GraphQL coercion error names. */
function serverProblem(product: ProductDocument, err: { message: string; extensions?: { code?: string; field?: string; line?: unknown } }): Problem {
  const field = err.extensions?.field ?? /at "(input\.[^"]+)"/.exec(err.message)?.[1];
  // A template error also names its line inside the template: point at that line of the file.
  const innerLine = typeof err.extensions?.line === 'number' ? err.extensions.line : undefined;
  const line = field ? product.lineOf(parsePath(field), innerLine) : product.lineOf(['name']);
  const code = err.extensions?.code ? ` (${err.extensions.code})` : '';
  return { file: product.file, line, message: `${err.message}${code}` };
}

async function apply(files: string[], dryRun: boolean, api: () => Api, out: (line: string) => void): Promise<Problem[]> {
  if (files.length === 0) throw new UsageError('product apply needs at least one file');
  // Every file is checked before anything is sent: a typo in one file defines nothing.
  const products: ProductDocument[] = [];
  const problems: Problem[] = [];
  for (const file of files) {
    const loaded = loadProductFile(file);
    products.push(...loaded.products);
    problems.push(...loaded.problems);
  }
  if (problems.length > 0) return problems;
  if (dryRun) {
    for (const p of products) out(`${p.file}: product ${String(p.input.name)} is well-formed (not sent: --dry-run)`);
    return [];
  }
  const client = api();
  for (const product of products) {
    const res = await client.request<{ defineProduct: DefinedProduct }>(DEFINE_PRODUCT, { input: product.input });
    if (res.errors?.length || !res.data) {
      problems.push(...(res.errors ?? [{ message: 'the API returned no data' }]).map((e) => serverProblem(product, e)));
      continue;
    }
    const d = res.data.defineProduct;
    const deps = d.dependencies.length ? d.dependencies.map((x) => `${x.product} ${x.versionRange}`).join(', ') : 'none';
    const templates = d.configTemplates.length ? d.configTemplates.map((t) => t.path).join(', ') : 'none';
    out(`${product.file}: applied product ${d.name}: versions ${d.versions.map((v) => `${v.version} (${v.image})`).join(', ')}; dependencies ${deps}; config files ${templates}`);
  }
  return problems;
}

async function list(json: boolean, api: Api, out: (line: string) => void): Promise<void> {
  const res = await api.request<{ products: (DefinedProduct & { description: string })[] }>(LIST_PRODUCTS);
  if (res.errors?.length || !res.data) throw new CliError(res.errors?.map((e) => e.message).join('; ') ?? 'the API returned no data');
  if (json) return out(JSON.stringify(res.data.products, null, 2));
  if (res.data.products.length === 0) return out('no products (define some: fz product apply catalog/*.yaml)');
  const rows = res.data.products.map((p) => [p.name, p.versions.map((v) => v.version).join(', '), p.dependencies.map((d) => `${d.product} ${d.versionRange}`).join(', ') || '-', p.description]);
  const header = ['NAME', 'VERSIONS', 'DEPENDS ON', 'DESCRIPTION'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [header, ...rows]) out(r.map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i]) : c)).join('  '));
}

export async function main(argv: string[], out = (l: string) => console.log(l), err = (l: string) => console.error(l)): Promise<number> {
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: argv,
        allowPositionals: true,
        options: {
          'api-url': { type: 'string' }, 'dry-run': { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
          registry: { type: 'string' }, 'from-engine': { type: 'boolean' }, output: { type: 'string', short: 'o' }, repair: { type: 'boolean' },
        },
      });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const { values, positionals } = parsed;
    if (values.help) {
      out(USAGE);
      return 0;
    }
    const url = values['api-url'] ?? process.env.FZ_API_URL ?? DEFAULT_API_URL;
    const api = () => connect(url, operatorToken());
    const [noun, verb, ...rest] = positionals;
    if (noun === 'product' && verb === 'apply') {
      const problems = await apply(rest, values['dry-run'] ?? false, api, out);
      problems.forEach((p) => err(formatProblem(p)));
      return problems.length ? 1 : 0;
    }
    if (noun === 'product' && verb === 'list' && rest.length === 0) {
      await list(values.json ?? false, api(), out);
      return 0;
    }
    if (noun === 'audit' && verb === 'verify' && rest.length === 0) return (await verify(api(), out, err)) ? 0 : 1;
    if (noun === 'audit' && verb === 'export' && rest.length === 0) {
      await exportLines(api(), out);
      return 0;
    }
    if (noun === 'doctor' && verb === undefined) return (await doctor(api(), values.repair ?? false, out)) ? 0 : 1;
    const registry = values.registry ?? (process.env.FZ_REGISTRY || `127.0.0.1:${process.env.FZ_REGISTRY_PORT ?? 5000}`);
    if (noun === 'image' && verb === 'export') {
      if (rest.length === 0) throw new UsageError('image export needs at least one image, e.g. fangzhou/redis:7.0.15');
      if (!values.output) throw new UsageError('image export needs --output <bundle.tar>');
      await exportImages(localEngine(), rest, values.output, values['from-engine'] ? null : registry, out);
      return 0;
    }
    if (noun === 'image' && verb === 'push') {
      if (rest.length === 0) throw new UsageError('image push needs at least one image of the local engine');
      await pushImages(localEngine(), rest, registry, out);
      return 0;
    }
    if (noun === 'image' && verb === 'import' && rest.length === 1) {
      await importImages(rest[0], registry, out);
      return 0;
    }
    throw new UsageError(noun ? `unknown command: ${positionals.join(' ')}` : 'no command given');
  } catch (e) {
    if (e instanceof UsageError) {
      err(`fz: ${e.message}\n${USAGE}`);
      return 2;
    }
    if (e instanceof CliError) {
      err(`fz: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => { console.error(e); process.exitCode = 1; },
  );
}
