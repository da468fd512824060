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

test('config templates may use secrets: files hold a token everywhere but in the runner\'s answer; a release without the secret is refused and nothing is written', async () => {
  const TEMPLATE_SECRET = 'tmpl-s3cret-a1b2c3';
  const defined = await api.run('mutation($i: ProductInput!) { defineProduct(input: $i) { name } }', {
    i: { ...DEMO_PRODUCT, name: 'keeper', configTemplates: [{ path: '/etc/keeper/auth.conf', template: 'user=keeper\npassword={{secret "STORE_PASSWORD"}}\n' }] },
  });
  expect(defined.errors).toBeUndefined();
  const host = await api.registerHost('secret-tmpl', { cpuMillis: 4000, memoryMb: 4096 });
  const before = (await api.run('{ releases { id } }')).data!.releases.length;

  const refused = await api.run('mutation { deploy(input: {name: "keeper0", product: "keeper", replicas: 1}) { id } }');
  expect(refused.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
  expect(refused.errors?.[0].message).toContain('the secret STORE_PASSWORD is not among the release\'s secrets (it has none): deploy it with secretEnv STORE_PASSWORD, or give the product a default secret STORE_PASSWORD');
  expect((await api.run('{ releases { id } }')).data!.releases).toHaveLength(before);

  const deployed = await api.run(`mutation { deploy(input: {name: "keeper1", product: "keeper", replicas: 1, secretEnv: [{name: "STORE_PASSWORD", value: "${TEMPLATE_SECRET}"}]}) { id } }`);
  expect(deployed.errors).toBeUndefined();
  const id = deployed.data!.deploy.id;

  const sync = await api.run('mutation { runnerSync(input: {observed: []}) { desired { releaseId configFiles { path content } } } }', {}, asHost(host));
  const mine = sync.data!.runnerSync.desired.find((d: { releaseId: string }) => d.releaseId === id);
  expect(mine.configFiles).toEqual([{ path: '/etc/keeper/auth.conf', content: `user=keeper\npassword=${TEMPLATE_SECRET}\n` }]);

  const files = await api.run(`{ configFiles(releaseId: "${id}") { files { path content } } }`);
  expect(files.data!.configFiles[0].files).toEqual([{ path: '/etc/keeper/auth.conf', content: 'user=keeper\npassword=⟦secret:STORE_PASSWORD⟧\n' }]);
  const scripts = (await api.run(`{ shell: deploymentScript(releaseId: "${id}", format: SHELL) compose: deploymentScript(releaseId: "${id}", format: COMPOSE) }`)).data!;
  expect(scripts.shell).toContain('password=⟦secret:STORE_PASSWORD⟧');
  expect(scripts.shell).toContain("fz_fill_secrets 'fz-keeper1-0/etc/keeper/auth.conf' STORE_PASSWORD");
  expect(scripts.compose).toContain('password=${STORE_PASSWORD:?set STORE_PASSWORD: a secret of this release}');
  expect(JSON.stringify([files, scripts])).not.toContain(TEMPLATE_SECRET);

  const { store } = await import('../../lib/store');
  for (const table of Object.keys(tables) as Table[]) {
    expect([table, JSON.stringify(await store().scan(table)).includes(TEMPLATE_SECRET)]).toEqual([table, false]);
  }

  // A redefinition whose templates need a secret the running release lacks is refused and changes nothing.
  const redefined = await api.run('mutation($i: ProductInput!) { defineProduct(input: $i) { name } }', {
    i: { ...DEMO_PRODUCT, name: 'keeper', configTemplates: [{ path: '/etc/keeper/auth.conf', template: '{{secret "STORE_PASSWORD"}} {{secret "TLS_KEY"}}' }] },
  });
  expect(redefined.errors?.[0].extensions?.code).toBe('CONFLICT');
  expect(redefined.errors?.[0].message).toContain('the config templates of keeper use secrets that release "keeper1" (TLS_KEY) does not have');
  expect((await api.run('{ product(name: "keeper") { configTemplates { template } } }')).data!.product.configTemplates[0].template).toContain('user=keeper');
});
