import { inspect, score, type FleetView, type Inspection } from '../../subgraphs/butler/inspection';
import { reportHtml, reportMarkdown } from '../../subgraphs/butler/inspection-report';

const now = new Date('2026-12-02T04:00:00Z');
const ago = (s: number) => new Date(now.getTime() - s * 1000).toISOString();

const host = (name: string, extra: Record<string, unknown> = {}) => ({
  id: `h-${name}`, name, address: '10.0.0.1', labels: [], exclusiveFor: null, reservations: {}, status: 'READY',
  capacity: { cpuMillis: 1000, memoryMb: 1000 }, allocated: { cpuMillis: 100, memoryMb: 100 },
  lastHeartbeatAt: ago(1), engine: { version: '26.1.5', os: 'Debian' }, createdAt: ago(3600), seq: 1, ...extra,
}) as FleetView['hosts'][number];

const instance = (release: string, ordinal: number, hostId: string, extra: Record<string, unknown> = {}) => ({
  id: `r-${release}-${ordinal}`, releaseId: `r-${release}`, releaseName: release, product: 'demo', ordinal, hostId,
  domainName: `${release}-${ordinal}.${release}.fz.internal`, desiredState: 'RUNNING', specHash: 'spec1',
  spec: { image: 'fangzhou/demo:1', env: [], ports: [], cpuMillis: 100, memoryMb: 32, healthcheck: null, configFiles: [] },
  createdAt: ago(7200), seq: 1, ...extra,
}) as FleetView['instances'][number];

const container = (i: FleetView['instances'][number], extra: Record<string, unknown> = {}) => ({
  instanceId: i.id, hostId: i.hostId, releaseId: i.releaseId, containerId: 'c', specHash: i.specHash, name: `fz-${i.releaseName}-${i.ordinal}`,
  state: 'RUNNING', health: 'HEALTHY', restartCount: 0, exitCode: null, oomKilled: false, startedAt: ago(7000), ports: [],
  updatedAt: ago(1), seq: 1, ...extra,
}) as unknown as FleetView["containers"][number];

const release = (name: string, replicas: number, extra: Record<string, unknown> = {}) => ({
  id: `r-${name}`, name, product: 'demo', version: '1.0.0', replicas, phase: 'ACTIVE', dependsOn: [], upgrade: null, ...extra,
}) as unknown as FleetView['releases'][number];

function fleet(): FleetView {
  const a = instance('web', 0, 'h-a'), b = instance('web', 1, 'h-b');
  return { hosts: [host('a'), host('b')], releases: [release('web', 2)], instances: [a, b], containers: [container(a), container(b)], pollSeconds: 2 };
}

test('a healthy, spread fleet has no findings and scores 100', () => {
  const findings = inspect(fleet(), now);
  expect(findings).toEqual([]);
  expect(score(findings)).toBe(100);
});

test('finds a down host, a late heartbeat, engine drift and a nearly full host', () => {
  const view = fleet();
  view.hosts.push(host('c', { status: 'DOWN', lastHeartbeatAt: ago(600) }), host('d', { lastHeartbeatAt: ago(30), engine: { version: '20.10.0', os: 'Debian' }, allocated: { cpuMillis: 950, memoryMb: 100 } }));
  expect(inspect(view, now).map((f) => [f.severity, f.check, f.subject])).toEqual([
    ['CRITICAL', 'host.status', 'host/c'],
    ['WARNING', 'host.heartbeat', 'host/d'],
    ['WARNING', 'host.engine-drift', 'host/d'],
    ['WARNING', 'host.allocation', 'host/d'],
  ]);
});

test('finds a host certificate close to its expiry, and an expired one', () => {
  const view = { ...fleet(), certificateWarningSeconds: 7 * 86_400 };
  const cert = (notAfter: string) => ({ certificate: { serial: '01', subject: 'CN=h', notBefore: ago(86_400), notAfter, fingerprint: 'f', hostId: 'h' } });
  view.hosts.push(host('c', cert(ago(-3 * 86_400))), host('d', cert(ago(60))), host('e', cert(ago(-20 * 86_400))), host('f', { ...cert(ago(60)), tokenRevokedAt: ago(10) }));
  expect(inspect(view, now).map((f) => [f.severity, f.check, f.subject])).toEqual([
    ['CRITICAL', 'host.certificate', 'host/d'],
    ['WARNING', 'host.certificate', 'host/c'],
  ]);
});

test('finds a failing, OOM-killed, often restarted instance and the release short of healthy replicas', () => {
  const view = fleet();
  view.containers[0] = container(view.instances[0], { state: 'EXITED', health: 'NONE', oomKilled: true, restartCount: 4, exitCode: 137 });
  const findings = inspect(view, now);
  expect(findings.map((f) => [f.severity, f.check, f.subject])).toEqual([
    ['CRITICAL', 'instance.health', 'instance/web-0.web.fz.internal'],
    ['CRITICAL', 'instance.oom', 'instance/web-0.web.fz.internal'],
    ['WARNING', 'instance.restarts', 'instance/web-0.web.fz.internal'],
    ['WARNING', 'release.replicas', 'release/web'],
  ]);
  expect(findings[3].message).toBe('1 of 2 replicas are healthy');
  expect(score(findings)).toBe(50);
});

test('finds spec drift, memory near the limit, and every member of a release on one host', () => {
  const view = fleet();
  const b = instance('web', 1, 'h-a');
  view.instances[1] = b;
  view.containers[1] = container(b, { specHash: 'old', stats: { cpuPercent: 1, memoryBytes: 31 * 1024 * 1024 } });
  expect(inspect(view, now).map((f) => `${f.check} ${f.subject}: ${f.message}`)).toEqual([
    'instance.spec-drift instance/web-1.web.fz.internal: the container does not run the spec (image, env, config files) the release asks for',
    'instance.memory instance/web-1.web.fz.internal: uses 31 MB of its 32 MB limit',
    'release.spread release/web: all 2 instances run on one host: losing it loses the release',
  ]);
});

test('a dependency short of healthy replicas is a finding of the release that depends on it', () => {
  const view = fleet();
  view.releases.push(release('db', 1), release('app', 0, { dependsOn: ['r-db'] }));
  expect(inspect(view, now).map((f) => `${f.severity} ${f.subject}: ${f.message}`)).toEqual([
    'CRITICAL release/db: 0 of 1 replicas are healthy',
    'WARNING release/app: depends on db, which has 0 of 1 replicas healthy',
  ]);
});

test('reports render as Markdown and as escaped HTML', () => {
  const inspection: Inspection = {
    id: 'insp-1', trigger: 'ON_DEMAND', startedAt: now.toISOString(), finishedAt: now.toISOString(), score: 80, seq: 1,
    findings: [{ severity: 'CRITICAL', check: 'host.status', subject: 'host/<a>', message: 'the host is DOWN | gone' }],
  };
  expect(reportMarkdown(inspection)).toBe([
    '# Fangzhou inspection 2026-12-02T04:00:00.000Z', '', 'Score 80/100 · 1 critical · 0 warnings · 0 notes (on demand)', '',
    '| severity | check | subject | finding |', '|---|---|---|---|', '| CRITICAL | host.status | host/<a> | the host is DOWN \\| gone |', '',
  ].join('\n'));
  const html = reportHtml(inspection);
  expect(html).toContain('<td>host/&lt;a&gt;</td>');
  expect(html).not.toContain('<a>');
});

test('finds a host whose clock is off and a release whose members all sit in one zone of several', () => {
  const view = fleet();
  const zone = (z: string) => [{ key: 'zone', value: z }];
  view.hosts = [host('a', { labels: zone('east'), clockSkewSeconds: -42 }), host('b', { labels: zone('east') }), host('c', { labels: zone('west') })];
  expect(inspect(view, now).map((f) => [f.severity, f.check, f.subject, f.message.slice(0, 60)])).toEqual([
    ['WARNING', 'host.clock-skew', 'host/a', "its clock is 42 s behind the API's: heartbeats are judged by"],
    ['WARNING', 'release.zone-spread', 'release/web', 'all 2 instances run in zone east while the fleet has 2 zones'],
  ]);
  // Spread over both zones: nothing to say; a skew under 2 s is NTP's normal.
  view.hosts[1] = host('b', { labels: zone('west'), clockSkewSeconds: 1.5 });
  view.hosts[0] = host('a', { labels: zone('east'), clockSkewSeconds: 0.3 });
  expect(inspect(view, now)).toEqual([]);
});

test('finds a host whose disk is filling up or full, and one short of memory', () => {
  const view = fleet();
  const engine = (diskUsedPercent: number | null, memoryAvailablePercent: number | null) => ({ version: '26.1.5', os: 'Debian', diskUsedPercent, memoryAvailablePercent });
  view.hosts = [host('a', { engine: engine(96, 40) }), host('b', { engine: engine(88, 5) }), host('c', { engine: engine(84, 10) }), host('d', { engine: engine(null, null) })];
  expect(inspect(view, now).map((f) => [f.severity, f.check, f.subject])).toEqual([
    ['CRITICAL', 'host.disk', 'host/a'],
    ['WARNING', 'host.disk', 'host/b'],
    ['WARNING', 'host.memory-pressure', 'host/b'],
  ]);
});

test('a near miss between heartbeats and irregular beats are reported per host, by the interval its runner was told', () => {
  const view = fleet();
  const beats = (extra: Record<string, unknown>) => ({ count: 100, gapMs: 1000, jitterMs: 40, maxGapMs: 1200, maxGapAt: ago(60), ...extra });
  view.hosts = [
    host('steady', { beats: beats({}) }),
    host('stalled', { beats: beats({ maxGapMs: 3400, maxGapAt: ago(3600) }) }),
    host('wobbly', { beats: beats({ jitterMs: 700 }) }),
    // A host told to beat every 4 s (a large fleet) is judged by 20 s of silence: a 3.4 s gap is nothing.
    host('slow', { heartbeatSeconds: 4, beats: beats({ gapMs: 4000, maxGapMs: 4400 }) }),
    host('new', { beats: beats({ count: 3, maxGapMs: 4000 }) }),
  ];
  const findings = inspect(view, now).filter((f) => f.check === 'host.heartbeat-jitter');
  expect(findings.map((f) => [f.severity, f.subject])).toEqual([['WARNING', 'host/stalled'], ['INFO', 'host/wobbly']]);
  expect(findings[0].message).toContain(`a gap of 3.4 s between two heartbeats at ${ago(3600)}`);
  expect(findings[1].message).toContain('every 1.0 s ± 0.7 s');
});

test('an instance whose health flapped 3 times in 24 h, and config files changed in its container, are reported', () => {
  const view = fleet();
  view.healthFlaps = new Map([[view.instances[0].id, 3], [view.instances[1].id, 2]]);
  view.containers[1] = container(view.instances[1], { configDrift: ['/etc/app.conf', '/etc/users (missing)'] });
  const findings = inspect(view, now);
  expect(findings.map((f) => [f.severity, f.check, f.subject])).toEqual([
    ['WARNING', 'instance.health-flaps', 'instance/web-0.web.fz.internal'],
    ['WARNING', 'instance.config-drift', 'instance/web-1.web.fz.internal'],
  ]);
  expect(findings[0].message).toContain('turned unhealthy 3 times in 24 h');
  expect(findings[1].message).toContain('/etc/app.conf, /etc/users (missing)');
  // A container of an older spec is the spec-drift check's business, not this one's.
  view.containers[1] = container(view.instances[1], { specHash: 'spec0', configDrift: ['/etc/app.conf'] });
  expect(inspect(view, now).map((f) => f.check)).not.toContain('instance.config-drift');
});
