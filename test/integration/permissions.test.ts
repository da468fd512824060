import {
  getNamedType, isEnumType, isInputObjectType, isListType, isNonNullType, isObjectType, isScalarType,
  type GraphQLField, type GraphQLInputType, type GraphQLObjectType, type GraphQLSchema,
} from 'graphql';
import { roleAllows, ruleOf, type AccessRules, type Context, type Role } from '../../lib/auth';
import { anonymous, asHost, startInProcess, withRole } from '../support/inprocess';

/**
 * The permission matrix, generated from the schema: every mutation of every subgraph and a sample of queries, called
 * as every kind of principal through the in-process gateway on the real store protocol. Each call must be refused
 * (FORBIDDEN, or UNAUTHENTICATED without a credential) exactly when the documented table says so. A mutation added
 * without a rule fails here. And every query field, called by keys scoped to another product with every id of a
 * release outside their scope, answers nothing of that release (a query field added without its scope check fails).
 */
const EXPECTED: Record<string, string> = {
  // Panama
  defineProduct: 'ADMIN', deploy: 'OPERATOR', scaleRelease: 'OPERATOR', configureRelease: 'OPERATOR', upgradeRelease: 'OPERATOR',
  rollbackRelease: 'OPERATOR', pauseUpgrade: 'OPERATOR', resumeUpgrade: 'OPERATOR', deleteRelease: 'OPERATOR',
  deleteProduct: 'ADMIN', createAlertChannel: 'ADMIN', deleteAlertChannel: 'ADMIN', testAlertChannel: 'ADMIN', removeHost: 'ADMIN', repairLedger: 'ADMIN', createApiKey: 'ADMIN', revokeApiKey: 'ADMIN', revealSecretEnv: 'ADMIN',
  // Ark
  createJoinToken: 'ADMIN', registerHost: 'ANYONE', labelHost: 'ADMIN', setHostExclusive: 'ADMIN', drainHost: 'ADMIN',
  cordonHost: 'ADMIN', uncordonHost: 'ADMIN', revokeHost: 'ADMIN', runnerSync: 'HOST', runnerHeartbeat: 'HOST', runnerLogs: 'HOST', runnerLogTail: 'HOST', runnerRenewCertificate: 'HOST',
  // Butler
  acknowledgeAlarm: 'OPERATOR', restartInstance: 'OPERATOR', runInspection: 'OPERATOR',
};
const SAMPLE_QUERIES: Record<string, string> = {
  products: 'VIEWER', releases: 'VIEWER', hosts: 'VIEWER', alarms: 'VIEWER', events: 'VIEWER', configSummary: 'VIEWER',
  apiKeys: 'ADMIN', auditLog: 'ADMIN', hostDesiredStateChange: 'HOST', instanceLogs: 'OPERATOR', logTail: 'OPERATOR',
};

const PRINCIPALS: [string, Context][] = [
  ['anonymous', anonymous], ['host', asHost('h-matrix')],
  ['VIEWER', withRole('VIEWER')], ['OPERATOR', withRole('OPERATOR')], ['ADMIN', withRole('ADMIN')],
];

let api: Awaited<ReturnType<typeof startInProcess>>;
let subgraphs: { schema: GraphQLSchema; rules: AccessRules }[];

beforeAll(async () => {
  api = await startInProcess('perm-');
  const [{ panamaSchema, panamaAccess }, { arkSchema, arkAccess }, { butlerSchema, butlerAccess }] = await Promise.all([
    import('../../subgraphs/panama/schema'), import('../../subgraphs/ark/schema'), import('../../subgraphs/butler/schema'),
  ]);
  subgraphs = [{ schema: panamaSchema(), rules: panamaAccess }, { schema: arkSchema(), rules: arkAccess }, { schema: butlerSchema(), rules: butlerAccess }];
});

afterAll(async () => {
  await api?.stop();
});

/** A value of the type that passes GraphQL validation (it names nothing that exists, so allowed calls fail later). */
function sample(type: GraphQLInputType): unknown {
  if (isNonNullType(type)) return sample(type.ofType);
  if (isListType(type)) return [sample(type.ofType)];
  if (isEnumType(type)) return type.getValues()[0].value;
  if (isInputObjectType(type)) {
    return Object.fromEntries(Object.values(type.getFields()).filter((f) => isNonNullType(f.type)).map((f) => [f.name, sample(f.type)]));
  }
  if (isScalarType(type)) return ({ Int: 1, Float: 1, Boolean: false } as Record<string, unknown>)[type.name] ?? 'matrix-x';
  return null;
}

/** A document calling the field with its required arguments as variables. */
function call(kind: 'query' | 'mutation', field: GraphQLField<unknown, unknown>) {
  const required = field.args.filter((a) => isNonNullType(a.type));
  const vars = required.map((a) => `$${a.name}: ${a.type.toString()}`).join(', ');
  const args = required.length ? `(${required.map((a) => `${a.name}: $${a.name}`).join(', ')})` : '';
  const selection = isScalarType(getNamedType(field.type)) || isEnumType(getNamedType(field.type)) ? '' : ' { __typename }';
  return { doc: `${kind}${vars ? `(${vars})` : ''} { ${field.name}${args}${selection} }`, variables: Object.fromEntries(required.map((a) => [a.name, sample(a.type)])) };
}

const REFUSED = /needs the \w+ role|needs a credential|is not allowed for a host runner/;

const fields = (kind: 'Query' | 'Mutation') => subgraphs.flatMap(({ schema, rules }) => {
  const type = kind === 'Query' ? schema.getQueryType() : schema.getMutationType();
  return Object.values(type?.getFields() ?? {}).filter((f) => !f.name.startsWith('_')).map((f) => ({ field: f, rule: ruleOf(rules, kind, f.name).rule, listed: rules[kind]?.[f.name] !== undefined }));
});

test('every mutation of the schema has a rule, and the rule is the documented one', () => {
  const mutations = fields('Mutation');
  expect(mutations.filter((m) => !m.listed).map((m) => m.field.name)).toEqual([]);
  expect(Object.fromEntries(mutations.map((m) => [m.field.name, m.rule]))).toEqual(EXPECTED);
});

test('every role × every mutation: refused exactly when the rule says so', async () => {
  const outcomes: string[] = [];
  for (const { field, rule } of fields('Mutation')) {
    const { doc, variables } = call('mutation', field);
    for (const [who, ctx] of PRINCIPALS) {
      const res = await api.run(doc, variables, ctx);
      const error = res.errors?.[0];
      const refused = Boolean(error && REFUSED.test(error.message));
      if (refused) expect([who, field.name, error!.extensions?.code]).toEqual([who, field.name, who === 'anonymous' ? 'UNAUTHENTICATED' : 'FORBIDDEN']);
      outcomes.push(`${field.name} ${who} ${refused ? 'refused' : 'allowed'}`);
      expect(`${field.name} ${who} ${refused ? 'refused' : 'allowed'}`).toBe(`${field.name} ${who} ${roleAllows(ctx.principal, rule) ? 'allowed' : 'refused'}`);
    }
  }
  expect(outcomes.length).toBe(Object.keys(EXPECTED).length * PRINCIPALS.length);
});

test('a sample of queries: refused exactly when the rule says so', async () => {
  const queries = fields('Query').filter((q) => q.field.name in SAMPLE_QUERIES);
  expect(Object.fromEntries(queries.map((q) => [q.field.name, q.rule]))).toEqual(SAMPLE_QUERIES);
  for (const { field, rule } of queries) {
    const { doc, variables } = call('query', field);
    for (const [who, ctx] of PRINCIPALS) {
      const res = await api.run(doc, variables, ctx);
      const refused = Boolean(res.errors?.some((e) => REFUSED.test(e.message)));
      expect(`${field.name} ${who} ${refused ? 'refused' : 'allowed'}`).toBe(`${field.name} ${who} ${roleAllows(ctx.principal, rule) ? 'allowed' : 'refused'}`);
    }
  }
});

describe('every query field as a key scoped to another product', () => {
  /** Two products on one host: "seen" in the keys' scope, "hidden" outside it, each with a release, events and an alarm. */
  const hidden: Record<string, string> = {};
  const shared: string[] = [];
  let seenRelease: string;
  let apiSchema: GraphQLSchema;
  const scoped = (role: Role): Context => ({ principal: { kind: 'operator', id: `k-scoped-${role.toLowerCase()}`, role, scope: { products: ['seen-prod'], releases: [] } } });

  beforeAll(async () => {
    apiSchema = (await (await import('../../gateway/gateway')).createGateway('http').load()).schema;
    const hostId = await api.registerHost('scope-host', { cpuMillis: 4000, memoryMb: 4096 }, [{ key: 'pool', value: 'scope-matrix' }]);
    const ids: Record<string, string> = {};
    for (const name of ['seen', 'hidden']) {
      const defined = await api.run(`mutation { defineProduct(input: {name: "${name}-prod", versions: [{version: "1.0.0", image: "fangzhou/demo:1"}], defaults: {replicas: 1, resources: {cpuMillis: 100, memoryMb: 64}}}) { name } }`);
      expect(defined.errors).toBeUndefined();
      const deployed = await api.run(`mutation { deploy(input: {name: "${name}-rel", product: "${name}-prod", placement: {requiredLabels: [{key: "pool", value: "scope-matrix"}]}}) { id instances { id } } }`);
      expect(deployed.errors).toBeUndefined();
      ids[name] = deployed.data!.deploy.id;
      if (name === 'hidden') hidden.instance = deployed.data!.deploy.instances[0].id;
    }
    seenRelease = ids.seen;
    hidden.release = ids.hidden;
    await api.reportAllRunning(hostId);
    await api.reportAllRunning(hostId, (d) => (d.instanceId === hidden.instance ? { health: 'UNHEALTHY' } : {}));
    const inspection = await api.run('mutation { runInspection { id } }');
    expect(inspection.errors).toBeUndefined();
    // Shared things whose lookups lead to the hidden release: the host it runs on, the inspection that found it.
    shared.push(hostId, inspection.data!.runInspection.id);
    const alarms = (await api.run(`{ alarms(filter: {releaseId: "${hidden.release}"}) { nodes { id } } }`)).data!.alarms.nodes;
    const events = (await api.run(`{ events(filter: {releaseId: "${hidden.release}"}) { nodes { id } } }`)).data!.events.nodes;
    expect(alarms.length && events.length).toBeTruthy();
    Object.assign(hidden, { alarm: alarms[0].id, event: events[0].id, product: 'hidden-prod', domainName: 'hidden-rel-0.hidden-rel.fz.internal' });
  });

  /** Every field without required arguments, to depth 3: ids, names and messages wherever the type leads. */
  function selection(type: GraphQLObjectType, depth: number): string {
    const parts: string[] = [];
    for (const f of Object.values(type.getFields())) {
      if (f.args.some((a) => isNonNullType(a.type) && a.defaultValue === undefined)) continue;
      const named = getNamedType(f.type);
      if (isScalarType(named) || isEnumType(named)) parts.push(f.name);
      else if (isObjectType(named) && depth < 3) parts.push(`${f.name} { ${selection(named, depth + 1) || '__typename'} }`);
    }
    return parts.join(' ');
  }

  /** The document for a query field, its string and ID arguments all given `value`. */
  function document(field: GraphQLField<unknown, unknown>, value: string) {
    const required = field.args.filter((a) => isNonNullType(a.type));
    const variables = Object.fromEntries(required.map((a) => {
      const named = getNamedType(a.type);
      const leaf = named.name === 'ID' || named.name === 'String' ? value : sample(a.type);
      return [a.name, isListType(isNonNullType(a.type) ? a.type.ofType : a.type) ? [leaf] : leaf];
    }));
    const vars = required.map((a) => `$${a.name}: ${a.type.toString()}`).join(', ');
    const args = required.length ? `(${required.map((a) => `${a.name}: $${a.name}`).join(', ')})` : '';
    const named = getNamedType(field.type);
    const sel = isObjectType(named) ? ` { ${selection(named, 1) || '__typename'} }` : '';
    return { doc: `query${vars ? `(${vars})` : ''} { ${field.name}${args}${sel} }`, variables };
  }

  const mentionsHidden = (data: unknown) => {
    const text = JSON.stringify(data ?? null);
    return text.includes(hidden.release) || text.includes('hidden-') || text.includes(hidden.alarm) || text.includes(hidden.event);
  };

  test('no query field answers anything of a release outside the scope; an unscoped admin sees it in the documented ones', async () => {
    const queries = Object.values(apiSchema.getQueryType()!.getFields()).filter((f) => !f.name.startsWith('_'));
    const values = [hidden.release, hidden.instance, hidden.alarm, hidden.event, hidden.product, hidden.domainName, ...shared];
    const adminSees = new Set<string>();
    const leaks: string[] = [];
    const crashes: string[] = [];
    for (const field of queries) {
      for (const value of field.args.some((a) => isNonNullType(a.type)) ? values : ['']) {
        const { doc, variables } = document(field, value);
        if (mentionsHidden((await api.run(doc, variables)).data)) adminSees.add(field.name);
        for (const role of ['VIEWER', 'OPERATOR'] as const) {
          const res = await api.run(doc, variables, scoped(role));
          if (mentionsHidden(res.data)) leaks.push(`${field.name}(${value}) as a scoped ${role}`);
          for (const e of res.errors ?? []) if (e.extensions?.code === 'INTERNAL') crashes.push(`${field.name}(${value}) as a scoped ${role}: ${e.message}`);
        }
      }
    }
    expect(leaks).toEqual([]);
    expect(crashes).toEqual([]);
    // The check can see a leak: these fields answer the hidden release to an admin.
    expect([...adminSees].sort()).toEqual(expect.arrayContaining([
      'alarm', 'alarms', 'auditLog', 'configFiles', 'configSummary', 'containerStatus', 'deploymentScript', 'event', 'events', 'host', 'hosts',
      'inspection', 'inspections', 'instance', 'product', 'products', 'release', 'releases', 'resolveDependencies', 'resolveName', 'unhealthyContainers',
    ]));
  });

  test('the scope’s own release reads as for anyone', async () => {
    const res = await api.run(`{ release(id: "${seenRelease}") { name product { name } instances { domainName } } }`, {}, scoped('VIEWER'));
    expect(res).toEqual({ data: { release: { name: 'seen-rel', product: { name: 'seen-prod' }, instances: [{ domainName: 'seen-rel-0.seen-rel.fz.internal' }] } } });
  });
});
