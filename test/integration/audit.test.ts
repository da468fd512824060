import { exportLines, verify } from '../../cli/audit';
import type { Api } from '../../cli/api';
import { appendAudit, type AuditEntry } from '../../lib/audit';
import { asHost, operator, startInProcess, withRole } from '../support/inprocess';

/**
 * The audit log on the real store protocol: mutations through the in-process gateway are appended to a hash chain,
 * concurrent appends keep it whole, and `fz audit verify` (its code, over the same API) finds edited or removed entries.
 */
let api: Awaited<ReturnType<typeof startInProcess>>;
let cli: Api;
let store: import('../../lib/store').Store;

beforeAll(async () => {
  api = await startInProcess('audit-');
  store = (await import('../../lib/store')).store();
  cli = { url: 'in-process', request: (query, variables) => api.run(query, variables) as never };
});

afterAll(async () => {
  await api?.stop();
});

const lines = async (fn: (out: (l: string) => void, err: (l: string) => void) => Promise<unknown>) => {
  const out: string[] = [];
  const err: string[] = [];
  const result = await fn((l) => out.push(l), (l) => err.push(l));
  return { result, out, err };
};

test('every mutation is audited with principal, outcome, code and redacted input, newest first', async () => {
  await api.run('mutation { createAlertChannel(input: {name: "pager", kind: WEBHOOK, target: "https://hooks.example.test/s3cr3t-path"}) { id } }');
  await api.run('mutation { scaleRelease(id: "r-missing", replicas: 2) { id } }', {}, withRole('OPERATOR', 'k-ops'));
  await api.run('mutation { createJoinToken { token } }', {}, withRole('VIEWER', 'k-viewer'));
  const log = await api.run('{ auditLog(first: 3) { nodes { seq principal role operation input outcome code } pageInfo { hasNextPage } } }');
  expect(log.data!.auditLog.nodes).toEqual([
    { seq: 3, principal: 'k-viewer', role: 'VIEWER', operation: 'createJoinToken', input: '{}', outcome: 'DENIED', code: 'FORBIDDEN' },
    { seq: 2, principal: 'k-ops', role: 'OPERATOR', operation: 'scaleRelease', input: '{"id":"r-missing","replicas":2}', outcome: 'ERROR', code: 'NOT_FOUND' },
    { seq: 1, principal: 'admin-token', role: 'ADMIN', operation: 'createAlertChannel', input: '{"input":{"name":"pager","kind":"WEBHOOK","target":"[redacted]","minSeverity":"WARNING"}}', outcome: 'OK', code: null },
  ]);
  expect(JSON.stringify(await store.scan('audit'))).not.toContain('s3cr3t');
  const filtered = await api.run('{ auditLog(filter: {outcome: DENIED}) { nodes { operation } } }');
  expect(filtered.data!.auditLog.nodes).toEqual([{ operation: 'createJoinToken' }]);
  expect((await api.run('{ auditLog { nodes { seq } } }', {}, withRole('OPERATOR'))).errors?.[0].extensions?.code).toBe('FORBIDDEN');
});

test('concurrent appends from many writers, in this process and in three others, keep one unbroken chain', async () => {
  const before = (await api.run('{ auditHead { last } }')).data!.auditHead.last as number;
  // One process's appends queue behind each other; other API processes (a Store of their own each) race for entries.
  const { Store, createClient } = await import('../../lib/store');
  const others = [1, 2, 3].map(() => new Store(createClient(), store.prefix));
  await Promise.all(Array.from({ length: 12 }, (_, i) => appendAudit(i % 4 ? others[i % 4 - 1] : store, {
    at: new Date().toISOString(), principal: `writer-${i}`, role: 'OPERATOR', operation: 'deploy', input: '{}', outcome: 'OK', code: null, requestId: null,
  })));
  const { result, out } = await lines((o, e) => verify(cli, o, e));
  expect(result).toBe(true);
  expect(out[0]).toMatch(new RegExp(`^audit log intact: ${before + 12} entries, last ${before + 12}`));
});

test('fz audit verify detects an edited entry and a removed one; export is one JSON line per entry', async () => {
  const exported = await lines((o) => exportLines(cli, o));
  const entries = exported.out.map((l) => JSON.parse(l) as AuditEntry);
  expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i + 1));

  const id = (seq: number) => `e-${String(seq).padStart(12, '0')}`;
  const second = await store.get<Record<string, unknown>>('audit', id(2));
  await store.doc.send(new (await import('@aws-sdk/lib-dynamodb')).PutCommand({ TableName: store.tableName('audit'), Item: { ...second, principal: 'someone-else' } }));
  await store.remove('audit', id(5));
  const { result, err } = await lines((o, e) => verify(cli, o, e));
  expect(result).toBe(false);
  expect(err).toEqual(['entry 2: edited: its fields do not match its hash', 'entry 5: missing: the entry was removed']);
});

test('refusals of callers without a credential are not written to the audit log', async () => {
  const before = (await api.run('{ auditHead { last } }', {}, operator)).data!.auditHead.last;
  await api.run('mutation { createJoinToken { token } }', {}, { principal: { kind: 'anonymous' } });
  expect((await api.run('{ auditHead { last } }')).data!.auditHead.last).toBe(before);
});

test("a runner's heartbeats and syncs are reports, not changes: they leave the audit log as it was", async () => {
  const hostId = await api.registerHost('audit-quiet');
  const before = (await api.run('{ auditHead { last } }')).data!.auditHead.last;
  for (let i = 0; i < 3; i++) {
    const beat = await api.run('mutation($input: RunnerHeartbeatInput!) { runnerHeartbeat(input: $input) { hostId } }',
      { input: { session: 's-audit-quiet', sentAt: new Date().toISOString() } }, asHost(hostId));
    expect(beat.errors).toBeUndefined();
    const sync = await api.run('mutation { runnerSync(input: {observed: [], session: "s-audit-quiet"}) { hostId } }', {}, asHost(hostId));
    expect(sync.errors).toBeUndefined();
  }
  expect((await api.run('{ auditHead { last } }')).data!.auditHead.last).toBe(before);
});
