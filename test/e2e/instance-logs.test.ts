import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import Docker from 'dockerode';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadProductFile } from '../../cli/product-file';
import { startStack, type Stack } from '../../scripts/stack';
import { deployOne, removeRelease } from '../support/deploy';
import { clearReleaseNames } from '../support/docker';

/**
 * Container logs on demand, through the runner of the instance's host: a Redis of the catalog is deployed on the real
 * engine, `instanceLogs` answers the lines Redis printed at start (the same ones `docker logs` shows), `since` keeps
 * only later lines, a viewer is refused, and nothing of the request stays in the store.
 */
const docker = new Docker();
const ROOT = resolve(__dirname, '../..');
let stack: Stack;
let dir: string;
let releaseId: string;
let instanceId: string;
const hostName = `logs-${process.pid}`;

type Logs = { instanceLogs: { instance: { domainName: string }; truncated: boolean; lines: { at: string; stream: string; text: string }[] } };
const LOGS = 'query($id: ID!, $tail: Int, $since: String) { instanceLogs(id: $id, tail: $tail, since: $since) { instance { domainName } truncated lines { at stream text } } }';

beforeAll(async () => {
  await clearReleaseNames(docker, 'logs');
  dir = mkdtempSync(join(tmpdir(), 'fz-logs-'));
  stack = await startStack({ dataDir: dir, httpPort: 3400, wsPort: 3401, lambdaPort: 3402, storePort: 4900, output: join(dir, 'stack.log') });
  const [redis] = loadProductFile(join(ROOT, 'catalog', 'redis.yaml')).products;
  expect((await stack.graphql('mutation($input: ProductInput!) { defineProduct(input: $input) { name } }', { input: redis.input })).errors).toBeUndefined();
  ({ releaseId, instanceId } = await deployOne(stack, { host: hostName, labels: 'zone=logs', release: 'logs', product: String(redis.input.name) }));
}, 240_000);

afterAll(async () => {
  if (releaseId) await removeRelease(stack, releaseId);
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('instanceLogs answers the container\'s own output, read by the runner of its host', async () => {
  const res = await stack.graphql<Logs>(LOGS, { id: instanceId, tail: 100 });
  expect(res.errors).toBeUndefined();
  const { lines, instance, truncated } = res.data!.instanceLogs;
  expect(instance.domainName).toBe('logs-0.logs.fz.internal');
  expect(truncated).toBe(false);
  expect(lines.map((l) => l.text).join('\n')).toContain('Ready to accept connections');
  for (const l of lines) expect(Number.isNaN(Date.parse(l.at))).toBe(false);

  // The same lines `docker logs` shows for that container.
  const [container] = await docker.listContainers({ filters: { label: [`fangzhou.instance=${instanceId}`] } });
  const raw = (await docker.getContainer(container.Id).logs({ stdout: true, stderr: true, tail: 100 })) as unknown as Buffer;
  const ready = lines.find((l) => l.text.includes('Ready to accept connections'))!;
  expect(raw.toString('utf8')).toContain(ready.text);

  // tail cuts to the last lines; since keeps only later ones.
  const last = (await stack.graphql<Logs>(LOGS, { id: instanceId, tail: 1 })).data!.instanceLogs.lines;
  expect(last).toEqual([lines[lines.length - 1]]);
  const later = (await stack.graphql<Logs>(LOGS, { id: instanceId, tail: 100, since: lines[lines.length - 1].at })).data!.instanceLogs.lines;
  expect(later).toEqual([]);
}, 60_000);

test('what a person gets wrong or may not do is refused clearly, and no request is left in the store', async () => {
  const tooMany = await stack.graphql(LOGS, { id: instanceId, tail: 5000 });
  expect(tooMany.errors?.[0]).toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
  expect(tooMany.errors?.[0].message).toContain('between 1 and 1000');
  const missing = await stack.graphql(LOGS, { id: 'i-nothere', tail: 10 });
  expect(missing.errors?.[0]).toMatchObject({ extensions: { code: 'NOT_FOUND' } });

  const key = await stack.graphql<{ createApiKey: { secret: string } }>('mutation { createApiKey(input: {name: "logs-viewer", role: VIEWER}) { secret } }');
  expect(key.errors).toBeUndefined();
  const viewer = await stack.graphql(LOGS, { id: instanceId, tail: 10 }, key.data!.createApiKey.secret);
  expect(viewer.errors?.[0]).toMatchObject({ extensions: { code: 'FORBIDDEN' } });

  // A runner may answer only a request for its own host, and only while it is waited for.
  const hostToken = JSON.parse(readFileSync(join(dir, 'runners', `${hostName}.json`), 'utf8')).hostToken as string;
  const late = await stack.graphql('mutation { runnerLogs(input: {requestId: "logs-000000000000", seq: 0, lines: [], done: true}) }', {}, hostToken);
  expect(late.errors?.[0]).toMatchObject({ extensions: { code: 'NOT_FOUND' } });
  const client = new DynamoDBClient({ endpoint: stack.env.DYNAMODB_ENDPOINT, region: 'local', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  const left = await client.send(new ScanCommand({ TableName: `${stack.env.FZ_TABLE_PREFIX ?? 'fangzhou-'}logs` }));
  client.destroy();
  expect(left.Items).toEqual([]);
}, 60_000);
