/**
 * `fz product apply` against the whole stack: the CLI runs as a child process (as `npm run fz` runs it), defines the
 * built-in catalog through the real gateway, and refuses broken files with file:line messages, defining nothing.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import YAML from 'yaml';
import { startStack, type Stack } from '../../scripts/stack';

const repo = resolve(__dirname, '../..');
const CATALOG = ['catalog/etcd.yaml', 'catalog/nats.yaml', 'catalog/redis.yaml'];
let stack: Stack;
let dir: string;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function fz(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', 'cli/fz.ts', ...args], {
      cwd: repo,
      env: { ...process.env, FZ_API_URL: stack.url, FZ_TOKEN: stack.adminToken, ...env },
    }, (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

const PRODUCT = `query($name: String!) { product(name: $name) {
  name description requiresExclusiveHosts
  versions { version image notes }
  dependencies { product versionRange }
  defaults { replicas resources { cpuMillis memoryMb } ports { name containerPort protocol } env { name value } secretEnvNames
    healthcheck { command intervalSeconds timeoutSeconds retries startPeriodSeconds }
    stopSignal stopTimeoutSeconds dataPath lifecycle { afterStart beforeStop onReplace } }
  configTemplates { path template }
} }`;

const productNamed = async (name: string) => (await stack.graphql<{ product: Record<string, unknown> | null }>(PRODUCT, { name })).data?.product;
const productNames = async () => (await stack.graphql<{ products: { name: string }[] }>('{ products { name } }')).data!.products.map((p) => p.name);

/** Writes a file into the temp dir; returns its path and the 1-based line of the first line containing `marker`. */
function writeCase(name: string, text: string, marker: string): { file: string; line: number } {
  const file = join(dir, name);
  writeFileSync(file, text);
  const line = text.split('\n').findIndex((l) => l.includes(marker)) + 1;
  expect(line).toBeGreaterThan(0);
  return { file, line };
}

const GOOD = `name: NAME
versions:
  - version: "1.0.0"
    image: fangzhou/demo:1
defaults:
  replicas: 1
  healthcheck:
    command: [CMD, /bin/busybox, wget, -q, -O, /dev/null, "http://127.0.0.1:8080/healthz"]
    retries: 2
`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fz-cli-'));
  stack = await startStack({ dataDir: dir, httpPort: 3320, wsPort: 3321, lambdaPort: 3322, storePort: 4820, output: join(dir, 'stack.log') });
}, 240_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('product apply defines every catalog product exactly as its file says', async () => {
  const res = await fz(['product', 'apply', ...CATALOG]);
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  expect(res.stdout).toContain('catalog/redis.yaml: applied product redis: versions 7.0.15 (fangzhou/redis:7.0.15)');
  expect(res.stdout).toContain('catalog/etcd.yaml: applied product etcd: versions 3.4.23 (fangzhou/etcd:3.4.23)');
  expect(res.stdout).toContain('catalog/nats.yaml: applied product nats: versions 2.9.10 (fangzhou/nats:2.9.10)');

  for (const file of CATALOG) {
    const input = YAML.parse(readFileSync(join(repo, file), 'utf8'));
    const product = await productNamed(input.name);
    // Every field the file sets comes back as written; what it leaves out comes back as the documented default.
    const { lifecycle, ...defaults } = input.defaults;
    expect(product).toEqual({
      ...input,
      versions: input.versions.map((v: Record<string, unknown>) => ({ notes: null, ...v })),
      defaults: {
        secretEnvNames: [], stopSignal: 'SIGTERM', stopTimeoutSeconds: 10, dataPath: null, ...defaults,
        lifecycle: lifecycle ? { afterStart: null, beforeStop: null, onReplace: null, ...lifecycle } : null,
      },
    });
  }

  // Applying again redefines (idempotent), and the list shows them.
  expect((await fz(['product', 'apply', ...CATALOG])).code).toBe(0);
  const list = await fz(['product', 'list']);
  expect(list.code).toBe(0);
  expect(list.stdout).toMatch(/^NAME\s+VERSIONS\s+DEPENDS ON\s+DESCRIPTION$/m);
  expect(list.stdout).toMatch(/^etcd\s+3\.4\.23\s+-\s+etcd distributed key-value store/m);
  expect(list.stdout).toMatch(/^nats\s+2\.9\.10\s/m);
  expect(list.stdout).toMatch(/^redis\s+7\.0\.15\s/m);
  const json = JSON.parse((await fz(['product', 'list', '--json'])).stdout) as { name: string }[];
  expect(json.map((p) => p.name)).toEqual(expect.arrayContaining(['etcd', 'nats', 'redis']));
});

test.each([
  ['a wrongly typed field', 'bad-type', 'retries: 2', 'retries: three', 'defaults.healthcheck.retries must be an integer, got three'],
  ['an unknown field', 'bad-field', 'replicas: 1', 'replica: 1', 'unknown field defaults.replica'],
  ['a version YAML reads as a number', 'bad-number', 'version: "1.0.0"', 'version: 1.0', 'versions[0].version must be a string (got 1.0; quote it: "1.0")'],
  ['an image the API refuses', 'bad-image', 'image: fangzhou/demo:1', 'image: "Fangzhou Demo!"', 'versions[0].image "Fangzhou Demo!" is not a Docker image reference'],
  ['a version the API refuses', 'bad-semver', 'version: "1.0.0"', 'version: "one"', 'versions[0].version "one" is not a semantic version'],
])('product apply of a file with %s exits non-zero with file:line and defines nothing', async (_what, name, good, bad, message) => {
  const { file, line } = writeCase(`${name}.yaml`, GOOD.replace('NAME', name).replace(good, bad), bad);
  const before = await productNames();
  const res = await fz(['product', 'apply', file]);
  expect(res.code).toBe(1);
  expect(res.stderr).toContain(`${file}:${line}: ${message}`);
  expect(res.stdout).toBe('');
  expect(await productNamed(name)).toBeNull();
  expect(await productNames()).toEqual(before);
});

test('one broken file among good ones: nothing is sent, every problem is listed with its line', async () => {
  const good = writeCase('good.yaml', GOOD.replace('NAME', 'good-one'), 'name:');
  const broken = writeCase('broken.yaml', `${GOOD.replace('NAME', 'broken-one').replace('replicas: 1', 'replicas: "1"')}configTemplates:\n  - path: /etc/x.conf\n    templat: oops\n`, 'replicas:');
  const templat = readFileSync(broken.file, 'utf8').split('\n').findIndex((l) => l.includes('templat:')) + 1;
  const res = await fz(['product', 'apply', good.file, broken.file]);
  expect(res.code).toBe(1);
  expect(res.stderr).toContain(`${broken.file}:${broken.line}: defaults.replicas must be an integer, got "1"`);
  expect(res.stderr).toContain(`${broken.file}:${templat}: unknown field configTemplates[0].templat`);
  expect(res.stderr).toContain(`${broken.file}:${templat - 1}: configTemplates[0].template is required`);
  expect(await productNamed('good-one')).toBeNull();
  expect(await productNamed('broken-one')).toBeNull();

  // Fixed, the same batch applies.
  writeFileSync(broken.file, GOOD.replace('NAME', 'broken-one'));
  const fixed = await fz(['product', 'apply', good.file, broken.file]);
  expect(fixed.stderr).toBe('');
  expect(fixed.code).toBe(0);
  expect(await productNamed('good-one')).toMatchObject({ name: 'good-one' });
  expect(await productNamed('broken-one')).toMatchObject({ name: 'broken-one' });
});

test('a JSON file works too, and its lines are reported', async () => {
  const text = JSON.stringify({ name: 'json-one', versions: [{ version: '1.0.0', image: 'fangzhou/demo:1' }], defaults: { replicas: 'x' } }, null, 2);
  const { file, line } = writeCase('product.json', text, '"replicas"');
  const res = await fz(['product', 'apply', file]);
  expect(res.code).toBe(1);
  expect(res.stderr).toContain(`${file}:${line}: defaults.replicas must be an integer, got "x"`);
  writeFileSync(file, text.replace('"x"', '2'));
  expect((await fz(['product', 'apply', file])).code).toBe(0);
  expect(await productNamed('json-one')).toMatchObject({ defaults: { replicas: 2 } });
});

test('a wrong token or an unreachable API is said plainly, with a non-zero exit', async () => {
  const wrongToken = await fz(['product', 'apply', 'catalog/redis.yaml'], { FZ_TOKEN: 'fza_not-the-token' });
  expect(wrongToken.code).toBe(1);
  expect(wrongToken.stderr).toMatch(/^fz: the API refused the operator token/);
  const unreachable = await fz(['product', 'list'], { FZ_API_URL: 'http://127.0.0.1:3329/graphql' });
  expect(unreachable.code).toBe(1);
  expect(unreachable.stderr).toMatch(/^fz: cannot reach the API at http:\/\/127\.0\.0\.1:3329\/graphql: ECONNREFUSED/);
  const usage = await fz(['product', 'frobnicate']);
  expect(usage.code).toBe(2);
  expect(usage.stderr).toContain('usage:');
});
