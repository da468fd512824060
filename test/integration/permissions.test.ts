import {
  getNamedType, isEnumType, isInputObjectType, isListType, isNonNullType, isScalarType,
  type GraphQLField, type GraphQLInputType, type GraphQLSchema,
} from 'graphql';
import { roleAllows, ruleOf, type AccessRules, type Context } from '../../lib/auth';
import { anonymous, asHost, startInProcess, withRole } from '../support/inprocess';

/**
 * The permission matrix, generated from the schema: every mutation of every subgraph and a sample of queries, called
 * as every kind of principal through the in-process gateway on the real store protocol. Each call must be refused
 * (FORBIDDEN, or UNAUTHENTICATED without a credential) exactly when the documented table says so. A mutation added
 * without a rule fails here.
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
