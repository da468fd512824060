import { DEMO_PRODUCT } from '../../scripts/demo-product';
import type { Table } from '../../lib/store';
import tables from '../../lib/tables.json';
import { asHost, startInProcess } from '../support/inprocess';

/**
 * Secret env on the real store protocol through the in-process gateway: a value given once is in no answer, no
 * artefact and no store item in clear; only the runner of a host running an instance receives it.
 */
const SECRET = 'hunter2-0f9e8d7c6b5a';
const PRODUCT_SECRET = 'pr0duct-default-s3cret';
let api: Awaited<ReturnType<typeof startInProcess>>;

beforeAll(async () => {
  api = await startInProcess('secrets-');
});

afterAll(async () => {
  await api?.stop();
});

test('secretEnv is write-only, sealed at rest and handed only to the runner of the instance', async () => {
  const defined = await api.run('mutation($i: ProductInput!) { defineProduct(input: $i) { defaults { env { name } secretEnvNames } } }', {
    i: { ...DEMO_PRODUCT, name: 'vault', defaults: { ...DEMO_PRODUCT.defaults, env: [{ name: 'MODE', value: 'plain' }], secretEnv: [{ name: 'API_TOKEN', value: PRODUCT_SECRET }] } },
  });
  expect(defined.data!.defineProduct.defaults.secretEnvNames).toEqual(['API_TOKEN']);
  const hostA = await api.registerHost('secret-a', { cpuMillis: 4000, memoryMb: 4096 });
  const hostB = await api.registerHost('secret-b', { cpuMillis: 10, memoryMb: 10 });
  const deployed = await api.run('mutation { deploy(input: {name: "vault1", product: "vault", replicas: 1, env: [{name: "DB_PASSWORD", value: "not-yet"}], secretEnv: [{name: "DB_PASSWORD", value: "' + SECRET + '"}]}) { id env { name value } secretEnvNames } }');
  expect(deployed.errors).toBeUndefined();
  const release = deployed.data!.deploy;
  // A name given as a secret anywhere is a secret: it leaves the plain env.
  expect(release.env).toEqual([{ name: 'MODE', value: 'plain' }]);
  expect(release.secretEnvNames.sort()).toEqual(['API_TOKEN', 'DB_PASSWORD']);

  const sync = 'mutation { runnerSync(input: {observed: []}) { desired { name env { name value } } } }';
  const own = await api.run(sync, {}, asHost(hostA));
  expect(own.data!.runnerSync.desired[0].env).toEqual(expect.arrayContaining([{ name: 'DB_PASSWORD', value: SECRET }, { name: 'API_TOKEN', value: PRODUCT_SECRET }]));
  const other = await api.run(sync, {}, asHost(hostB));
  expect(JSON.stringify(other)).not.toContain(SECRET);

  const everything = await Promise.all([
    api.run('{ products { name defaults { env { name value } secretEnvNames } configTemplates { path template } } }'),
    api.run(`{ release(id: "${release.id}") { env { name value } secretEnvNames revisions { reason } instances { id image } } }`),
    api.run(`{ shell: deploymentScript(releaseId: "${release.id}", format: SHELL) compose: deploymentScript(releaseId: "${release.id}", format: COMPOSE) }`),
    api.run(`{ configFiles(releaseId: "${release.id}") { files { path content } } configSummary(format: CSV) }`),
    api.run('{ events(first: 200) { nodes { kind message } } auditLog(first: 200) { nodes { operation input } } }'),
  ]);
  const answers = JSON.stringify(everything);
  expect(answers).not.toContain(SECRET);
  expect(answers).not.toContain(PRODUCT_SECRET);
  // The artefacts take secrets from their caller's environment instead.
  const scripts = everything[2].data!;
  expect(scripts.shell).toContain('--env DB_PASSWORD');
  expect(scripts.shell).toContain(': "${DB_PASSWORD:?set DB_PASSWORD: a secret of this release}"');
  expect(scripts.compose).toContain('DB_PASSWORD: "${DB_PASSWORD:?set DB_PASSWORD: a secret of this release}"');

  const { store } = await import('../../lib/store');
  for (const table of Object.keys(tables) as Table[]) {
    const items = JSON.stringify(await store().scan(table));
    expect([table, items.includes(SECRET) || items.includes(PRODUCT_SECRET)]).toEqual([table, false]);
  }

  const revealed = await api.run(`mutation { revealSecretEnv(releaseId: "${release.id}") { name value } }`);
  expect(revealed.data!.revealSecretEnv).toEqual(expect.arrayContaining([{ name: 'DB_PASSWORD', value: SECRET }]));
  const audit = await api.run('{ auditLog(filter: {operation: "revealSecretEnv"}) { nodes { principal outcome } } }');
  expect(audit.data!.auditLog.nodes).toEqual([{ principal: 'admin-token', outcome: 'OK' }]);
});

test('a product redefined without secretEnv keeps its secrets; the audit log has their names only', async () => {
  const again = await api.run('mutation($i: ProductInput!) { defineProduct(input: $i) { defaults { secretEnvNames } } }', {
    i: { ...DEMO_PRODUCT, name: 'vault', defaults: { ...DEMO_PRODUCT.defaults, env: [{ name: 'MODE', value: 'plain' }] } },
  });
  expect(again.data!.defineProduct.defaults.secretEnvNames).toEqual(['API_TOKEN']);
  const log = await api.run('{ auditLog(filter: {operation: "defineProduct"}) { nodes { input } } }');
  expect(log.data!.auditLog.nodes[1].input).toContain('"secretEnv":[{"name":"API_TOKEN","value":"[redacted]"}]');
});
