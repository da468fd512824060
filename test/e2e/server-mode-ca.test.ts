import { createClient } from 'graphql-ws';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { hashSecret, newSecret } from '../../lib/ids';
import { createKeyAndCsr } from '../../lib/pca';
import { createClient as createDbClient, ensureTables, Store } from '../../lib/store';
import { startRunner, type Runner } from '../../runner/agent';
import { loadState, stateFile } from '../../runner/state';
import { startDynalite, type DynamoDbServer } from '../support/dynamodb';
import { startEngine, type Engine } from '../support/engine';
import { startReplica, type Replica } from '../support/replicas';
import { waitFor } from '../support/wait';

/**
 * Server mode with the platform CA on (FZ_CA_DIR): HTTPS and WSS on its ports with a certificate of the CA; a real
 * runner (on an engine of its own) registers over TLS with a certificate request, gets its client certificate and
 * then syncs, beats and listens over mutual TLS. A host token without the host's certificate, or with another host's,
 * is refused over HTTP and WebSocket. Certificates live 30 s here (FZ_CERT_LIFETIME_SECONDS) and warn 15 s before
 * expiry, so the expiry alarm fires between a certificate's 15th and 20th second and resolves when the runner renews
 * it at two thirds of its life.
 */
const PREFIX = 'fz-ca-';
const LIFETIME_SECONDS = 30;
let dir: string;
let caDir: string;
let store: DynamoDbServer;
let db: Store;
let engine: Engine;
let replica: Replica;
let runner: Runner | undefined;
let adminToken: string;
let ca: Buffer;

interface Identity { token?: string; cert?: string; key?: string }
type Answer = { status: number; data?: any; errors?: { message: string; extensions?: { code?: string } }[] };

/** GraphQL over HTTPS, trusting the platform CA; with a client certificate when the identity has one. */
function gql(query: string, variables: Record<string, unknown> = {}, who: Identity = { token: adminToken }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ query, variables });
    const req = request(`${replica.httpUrl}/graphql`, {
      method: 'POST', agent: false, ca, cert: who.cert, key: who.key,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(who.token ? { authorization: `Bearer ${who.token}` } : {}) },
    }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ...JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const HOST = 'query($id: ID!) { host(id: $id) { id status lastHeartbeatAt certificateExpiresAt } }';
const SYNC = 'mutation { runnerSync(input: {observed: []}) { hostId } }';

/** Registers a host by hand, as a runner does over TLS: a key made here, its request sent with the join token. */
async function registerByHand(name: string) {
  const joinToken = (await gql('mutation { createJoinToken { token } }')).data.createJoinToken.token;
  const { keyPem, csrPem } = await createKeyAndCsr(name);
  const res = await gql(`mutation($input: RegisterHostInput!) { registerHost(input: $input) { host { id } hostToken certificate { certificate caCertificate notAfter } } }`,
    { input: { joinToken, name, address: '127.0.0.1', capacity: { cpuMillis: 1000, memoryMb: 512 }, csr: csrPem } }, {});
  if (res.errors) throw new Error(res.errors[0].message);
  const r = res.data.registerHost;
  return { id: r.host.id as string, token: r.hostToken as string, cert: r.certificate.certificate as string, key: keyPem, caCertificate: r.certificate.caCertificate as string };
}

/** connection_init over WSS; resolves with 'acked' or the close code. */
function wsInit(who: Identity): Promise<'acked' | number> {
  return new Promise((resolve) => {
    const TlsSocket = class extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        super(address, protocols, { ca, cert: who.cert, key: who.key });
      }
    };
    const client = createClient({
      url: replica.wsUrl, webSocketImpl: TlsSocket, retryAttempts: 0, lazy: false, onNonLazyError: () => undefined,
      connectionParams: { authorization: `Bearer ${who.token}` },
      on: {
        connected: () => {
          resolve('acked');
          void client.dispose();
        },
        closed: (e) => resolve((e as { code: number }).code),
      },
    });
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fz-ca-'));
  caDir = join(dir, 'ca');
  store = await startDynalite();
  await ensureTables(createDbClient(store.endpoint, 'local'), PREFIX);
  db = new Store(createDbClient(store.endpoint, 'local'), PREFIX);
  adminToken = newSecret('fza');
  engine = await startEngine('ca', '10.212.0.0/16', []);
  replica = await startReplica({
    name: 'ca', httpPort: 3480, wsPort: 3481, storeEndpoint: store.endpoint, tablePrefix: PREFIX,
    adminTokenHash: hashSecret(adminToken), logFile: join(dir, 'server.log'),
    env: {
      FZ_CA_DIR: caDir, FZ_CERT_LIFETIME_SECONDS: String(LIFETIME_SECONDS), FZ_CERT_WARNING_SECONDS: '15',
      FZ_TICK_SECONDS: '1', FZ_CLUSTER_CIDR: '10.213.0.0/16', FZ_HOST_DOWN_SECONDS: '30',
    },
  });
  ca = readFileSync(join(caDir, 'ca.crt'));
}, 180_000);

afterAll(async () => {
  await runner?.stop();
  await replica?.kill();
  await engine?.stop();
  await store?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

test('the CA key is a 0600 file of the CA folder, and the API answers only over HTTPS with a certificate of that CA', async () => {
  expect(statSync(join(caDir, 'ca.key')).mode & 0o777).toBe(0o600);
  const answer = await gql('{ hosts { id } }');
  expect(answer.errors).toBeUndefined();
  expect(answer.data.hosts).toEqual([]);
});

test('a runner registers over TLS, gets its certificate and syncs over mutual TLS; no certificate or another host\'s is refused', async () => {
  const joinToken = (await gql('mutation { createJoinToken { token } }')).data.createJoinToken.token;
  runner = startRunner({
    name: 'ca-h1', labels: [], address: '127.0.0.1', apiUrl: `${replica.httpUrl}/graphql`, wsUrl: replica.wsUrl, joinToken,
    dockerTarget: `unix://${engine.socket}`, stateDir: join(dir, 'runners'), dnsPort: 20000 + (process.pid % 10000), caCert: ca.toString(),
  });
  const file = stateFile(join(dir, 'runners'), 'ca-h1');
  const state = await waitFor('the runner to register', async () => { try { return loadState(file)?.tls ? loadState(file)! : undefined; } catch { return undefined; } }, 60_000, 200);
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(state.tls!.key).toContain('PRIVATE KEY');
  const h1 = state.hostId;
  const synced = await waitFor('the host to sync and beat', async () => {
    const host = (await gql(HOST, { id: h1 })).data.host;
    return host.status === 'READY' && host.certificateExpiresAt ? host : undefined;
  }, 60_000, 200);
  expect(Date.parse(synced.certificateExpiresAt) - Date.now()).toBeGreaterThan(0);

  // The runner's own identity works; its token alone, or with another host's certificate, does not.
  const mine = { token: state.hostToken, cert: state.tls!.cert, key: state.tls!.key };
  expect((await gql(SYNC, {}, mine)).data.runnerSync.hostId).toBe(h1);
  const bare = await gql(SYNC, {}, { token: state.hostToken });
  expect(bare.status).toBe(401);
  expect(bare.errors![0]).toMatchObject({ extensions: { code: 'UNAUTHENTICATED' } });
  expect(bare.errors![0].message).toContain(`host ${h1} must present its client certificate`);
  const h2 = await registerByHand('ca-h2');
  expect(h2.caCertificate).toBe(ca.toString());
  expect((await gql(SYNC, {}, { token: h2.token, cert: h2.cert, key: h2.key })).data.runnerSync.hostId).toBe(h2.id);
  const crossed = await gql(SYNC, {}, { token: state.hostToken, cert: h2.cert, key: h2.key });
  expect(crossed.errors![0].message).toContain(`the client certificate belongs to host ${h2.id}, not to host ${h1}`);

  // The same over WebSocket: connection_init needs the host's own certificate.
  expect(await wsInit(mine)).toBe('acked');
  expect(await wsInit({ token: state.hostToken })).toBe(4401);
  expect(await wsInit({ token: state.hostToken, cert: h2.cert, key: h2.key })).toBe(4401);

  // Revoked: its certificate stops working at once, though it has not expired.
  await gql('mutation($id: ID!) { revokeHost(id: $id) { id } }', { id: h2.id });
  expect((await gql(SYNC, {}, { token: h2.token, cert: h2.cert, key: h2.key })).errors![0].extensions!.code).toBe('UNAUTHENTICATED');

  // No private key is in the store: the hosts' and the servers' records hold descriptions of certificates only.
  for (const table of ['hosts', 'claims'] as const) expect(JSON.stringify(await db.scan(table))).not.toContain('PRIVATE KEY');
}, 120_000);

test('a certificate close to its expiry raises CERTIFICATE_EXPIRING, and the renewal at 2/3 of its life resolves it', async () => {
  const h1 = (await gql('{ hosts { id name } }')).data.hosts.find((h: { name: string }) => h.name === 'ca-h1').id;
  const before = (await gql(HOST, { id: h1 })).data.host.certificateExpiresAt;
  // An operator watching over WSS: the publisher reaches the socket through the connections API, over HTTPS too.
  const TlsSocket = class extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { ca });
    }
  };
  const watcher = createClient({ url: replica.wsUrl, webSocketImpl: TlsSocket, retryAttempts: 0, connectionParams: { authorization: `Bearer ${adminToken}` } });
  const raised: { kind: string; host: { id: string } | null }[] = [];
  const unsubscribe = watcher.subscribe<{ alarmRaised: { kind: string; host: { id: string } | null } }>(
    { query: 'subscription { alarmRaised { kind host { id } } }' },
    { next: (r) => r.data && raised.push(r.data.alarmRaised), error: () => undefined, complete: () => undefined },
  );
  const ALARMS = 'query($f: AlarmFilter) { alarms(filter: $f) { nodes { id kind state severity message host { id } } } }';
  const firing = await waitFor('the expiry alarm of the host', async () =>
    (await gql(ALARMS, { f: { hostId: h1 } })).data.alarms.nodes.find((a: any) => a.kind === 'CERTIFICATE_EXPIRING' && a.state === 'FIRING'), 30_000, 250);
  expect(firing.message).toMatch(new RegExp(`the certificate of host ca-h1 \\(${h1}\\) expires at .* and was not renewed`));
  await waitFor('the alarm delivered to the subscriber', async () => raised.find((a) => a.kind === 'CERTIFICATE_EXPIRING' && a.host?.id === h1), 30_000, 100);
  unsubscribe();
  await watcher.dispose();
  const resolved = await waitFor('the renewal to resolve it', async () => {
    const alarm = (await gql(ALARMS, { f: { hostId: h1 } })).data.alarms.nodes.find((a: any) => a.id === firing.id);
    return alarm.state === 'RESOLVED' ? alarm : undefined;
  }, 30_000, 250);
  expect(resolved.state).toBe('RESOLVED');
  const after = (await gql(HOST, { id: h1 })).data.host;
  expect(Date.parse(after.certificateExpiresAt)).toBeGreaterThan(Date.parse(before));
  // The runner goes on over mutual TLS with its new certificate: it keeps beating.
  const beat = Date.parse(after.lastHeartbeatAt);
  await waitFor('a later heartbeat', async () => {
    const host = (await gql(HOST, { id: h1 })).data.host;
    return Date.parse(host.lastHeartbeatAt) > beat + 1000 ? host : undefined;
  }, 10_000, 250);
}, 90_000);
