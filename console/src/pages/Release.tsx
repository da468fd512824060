import { useEffect, useRef, useState, type FormEvent } from 'react';
import { gql, useClient, useMutation, useQuery } from 'urql';
import { ago, Badge, Bar, Can, ErrorBox, healthClass, Result } from '../ui';
import { useLive } from '../live';

const RELEASE = gql`query ReleasePage($id: ID!) { release(id: $id) {
  id name version status statusMessage replicas revision createdAt
  resources { cpuMillis memoryMb }
  product { name versions { version image notes } }
  revisions { revision version createdAt reason }
  upgrade { kind state fromVersion toVersion maxUnavailable done total batch startedAt finishedAt message }
  health { desired running healthy unhealthy }
  instances {
    id ordinal domainName ip image host { name address }
    ports { name containerPort protocol hostPort }
    status { state health restartCount exitCode oomKilled startedAt updatedAt error stats { cpuPercent memoryBytes } }
  }
} }`;
const PROGRESS = gql`query ReleaseProgress($id: ID!) { events(filter: {releaseId: $id}, first: 30) { nodes { id at kind message severity progress { done total } } } }`;
const LIVE_PROGRESS = gql`subscription LiveProgress($id: ID!) { releaseProgress(releaseId: $id) { id } }`;
const LIVE_STATUS = gql`subscription LiveStatus($id: ID) { containerStatusChanged(releaseId: $id) { instance { id } } }`;
const UPGRADE = gql`mutation Upgrade($id: ID!, $version: String!, $strategy: UpgradeStrategyInput) { upgradeRelease(id: $id, version: $version, strategy: $strategy) { id status } }`;
const ROLLBACK = gql`mutation Rollback($id: ID!, $revision: Int!) { rollbackRelease(id: $id, revision: $revision) { id status } }`;
const PAUSE = gql`mutation Pause($id: ID!) { pauseUpgrade(id: $id) { id status } }`;
const RESUME = gql`mutation Resume($id: ID!) { resumeUpgrade(id: $id) { id status } }`;
const RESTART = gql`mutation Restart($id: ID!) { restartInstance(id: $id) { id } }`;
const LOG_TAIL = gql`subscription InstanceLogTail($id: ID!) { instanceLogTail(instanceId: $id) { lines { at stream text } dropped ended } }`;
const LOGS = gql`query InstanceLogs($id: ID!, $tail: Int, $since: String) { instanceLogs(id: $id, tail: $tail, since: $since) { truncated lines { at stream text } } }`;

type Upgrade = { kind: string; state: string; fromVersion: string; toVersion: string; maxUnavailable: number; done: number; total: number; batch: string[]; startedAt: string; finishedAt: string | null; message: string | null };
type Instance = {
  id: string; ordinal: number; domainName: string; ip: string | null; image: string; host: { name: string; address: string } | null;
  ports: { name: string; containerPort: number; protocol: string; hostPort: number | null }[];
  status: { state: string; health: string; restartCount: number; exitCode: number | null; oomKilled: boolean; startedAt: string | null; updatedAt: string; error: string | null; stats: { cpuPercent: number; memoryBytes: number } | null } | null;
};
type Revision = { revision: number; version: string; createdAt: string; reason: string };
type Release = {
  id: string; name: string; version: string; status: string; statusMessage: string | null; replicas: number; revision: number; createdAt: string;
  resources: { cpuMillis: number; memoryMb: number }; product: { name: string; versions: { version: string; image: string; notes: string | null }[] };
  revisions: Revision[]; upgrade: Upgrade | null; health: { desired: number; running: number; healthy: number; unhealthy: number }; instances: Instance[];
};

export function ReleasePage({ id }: { id: string }) {
  const [result, reexecute] = useQuery<{ release: Release | null }>({ query: RELEASE, variables: { id } });
  const [progress, reexecuteProgress] = useQuery<{ events: { nodes: { id: string; at: string; kind: string; message: string; severity: string; progress: { done: number; total: number } | null }[] } }>({ query: PROGRESS, variables: { id } });
  const refresh = () => { reexecute({ requestPolicy: 'network-only' }); reexecuteProgress({ requestPolicy: 'network-only' }); };
  useLive(LIVE_PROGRESS, { id }, refresh);
  useLive(LIVE_STATUS, { id }, refresh);
  const [tab, setTab] = useState<'instances' | 'revisions' | 'config' | 'script'>('instances');
  return (
    <Result result={result} what="the release">{({ release }) => !release ? <p className="error" role="alert">No release {id}: it may have been deleted.</p> : (
      <section>
        <h1>{release.name} <span className="muted">{release.product.name} {release.version}</span> <Badge value={release.status} /></h1>
        {release.statusMessage && <p>{release.statusMessage}</p>}
        <p className="muted">revision {release.revision} · {release.replicas} replicas · {release.resources.cpuMillis} mCPU / {release.resources.memoryMb} MB each · {release.health.healthy}/{release.health.desired} healthy</p>
        {release.upgrade && <UpgradeProgress release={release} upgrade={release.upgrade} onChange={refresh} />}
        <Can role="OPERATOR"><UpgradeForm release={release} onChange={refresh} /></Can>
        {progress.data && progress.data.events.nodes.length > 0 && (
          <details className="panel" open={!!release.upgrade && !release.upgrade.finishedAt}>
            <summary>Progress log</summary>
            <ol className="timeline" data-testid="progress-log">
              {progress.data.events.nodes.map((e) => <li key={e.id} className={e.severity.toLowerCase()}><time>{new Date(e.at).toLocaleTimeString()}</time> <code>{e.kind}</code> {e.message}{e.progress && ` (${e.progress.done}/${e.progress.total})`}</li>)}
            </ol>
          </details>
        )}
        <div role="tablist" className="tabs">
          {(['instances', 'revisions', 'config', 'script'] as const).map((t) => (
            <button key={t} role="tab" aria-selected={tab === t} onClick={() => setTab(t)}>{{ instances: 'Instances', revisions: 'Revisions', config: 'Config files', script: 'Deployment script' }[t]}</button>
          ))}
        </div>
        {tab === 'instances' && <Instances release={release} />}
        {tab === 'revisions' && <Revisions release={release} onChange={refresh} />}
        {tab === 'config' && <ConfigFiles id={release.id} />}
        {tab === 'script' && <Script id={release.id} />}
      </section>
    )}</Result>
  );
}

/** The running upgrade or rollback: a bar of instances done, the current batch with its health, and what happened. */
function UpgradeProgress({ release, upgrade, onChange }: { release: Release; upgrade: Upgrade; onChange: () => void }) {
  const [pause, doPause] = useMutation(PAUSE);
  const [resume, doResume] = useMutation(RESUME);
  const rolledBack = upgrade.state === 'ROLLING_BACK' || upgrade.state === 'ROLLED_BACK';
  const batch = release.instances.filter((i) => upgrade.batch.includes(i.id));
  return (
    <div className={`panel upgrade ${rolledBack ? 'rollback' : ''}`} data-testid="upgrade" data-state={upgrade.state}>
      <h2>{upgrade.kind === 'ROLLBACK' ? 'Rollback' : 'Upgrade'} {upgrade.fromVersion} → {upgrade.toVersion} <Badge value={upgrade.state} /></h2>
      {rolledBack && <p className="alert" role="alert" data-testid="auto-rollback">{upgrade.state === 'ROLLING_BACK' ? 'Rolling back automatically' : 'Rolled back automatically'} to {upgrade.fromVersion}{upgrade.message ? `: ${upgrade.message}` : ''}</p>}
      {!rolledBack && upgrade.message && <p>{upgrade.message}</p>}
      <Bar label="Instances done" value={upgrade.done} max={upgrade.total} />
      {batch.length > 0 && (
        <div>
          <p className="muted">Current batch (up to {upgrade.maxUnavailable} at a time):</p>
          <ul className="instances" data-testid="batch">
            {batch.map((i) => <li key={i.id} className={`instance ${healthClass(i.status)}`}>{release.name}-{i.ordinal} <span>{i.status ? `${i.status.state.toLowerCase()} · ${i.status.health.toLowerCase()}` : 'starting'}</span></li>)}
          </ul>
        </div>
      )}
      <p className="muted">started {ago(upgrade.startedAt)}{upgrade.finishedAt && `, finished ${ago(upgrade.finishedAt)}`}</p>
      <Can role="OPERATOR">
        {upgrade.state === 'RUNNING' && <button onClick={async () => { await doPause({ id: release.id }); onChange(); }} disabled={pause.fetching}>Pause</button>}
        {upgrade.state === 'PAUSED' && <button onClick={async () => { await doResume({ id: release.id }); onChange(); }} disabled={resume.fetching}>Resume</button>}
      </Can>
      {(pause.error || resume.error) && <ErrorBox error={(pause.error ?? resume.error)!} />}
    </div>
  );
}

function UpgradeForm({ release, onChange }: { release: Release; onChange: () => void }) {
  const others = release.product.versions.filter((v) => v.version !== release.version);
  const [form, setForm] = useState({ version: others[0]?.version ?? '', maxUnavailable: 1, healthTimeoutSeconds: 60, autoRollback: true });
  const [state, upgrade] = useMutation(UPGRADE);
  const running = release.upgrade && !release.upgrade.finishedAt;
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const { version, ...strategy } = form;
    const res = await upgrade({ id: release.id, version, strategy });
    if (!res.error) onChange();
  };
  return (
    <details className="panel">
      <summary>Upgrade</summary>
      <form onSubmit={submit} className="inline" aria-label="Upgrade">
        <label>Version <select value={form.version} onChange={(e) => setForm({ ...form, version: e.target.value })}>
          {others.map((v) => <option key={v.version} value={v.version}>{v.version}{v.notes ? ` — ${v.notes}` : ''}</option>)}
        </select></label>
        <label>At most unavailable <input type="number" min={1} max={release.replicas} value={form.maxUnavailable} onChange={(e) => setForm({ ...form, maxUnavailable: Number(e.target.value) })} /></label>
        <label>Health timeout (s) <input type="number" min={1} value={form.healthTimeoutSeconds} onChange={(e) => setForm({ ...form, healthTimeoutSeconds: Number(e.target.value) })} /></label>
        <label className="check"><input type="checkbox" checked={form.autoRollback} onChange={(e) => setForm({ ...form, autoRollback: e.target.checked })} /> Roll back automatically</label>
        <button type="submit" disabled={state.fetching || !!running || !form.version}>Start upgrade</button>
      </form>
      {state.error && <ErrorBox error={state.error} />}
    </details>
  );
}

function Instances({ release }: { release: Release }) {
  const [restart, doRestart] = useMutation(RESTART);
  const [logsOf, setLogsOf] = useState<Instance | null>(null);
  return (
    <div className="scroll">
      <table>
        <thead><tr><th>Instance</th><th>Status</th><th>Host</th><th>DNS name</th><th>Ports</th><th>CPU</th><th>Memory</th><th>Restarts</th><th>Image</th><th /></tr></thead>
        <tbody>
          {release.instances.map((i) => (
            <tr key={i.id} className={healthClass(i.status)}>
              <td>{release.name}-{i.ordinal}</td>
              <td><span className={`dot ${healthClass(i.status)}`} aria-hidden /> {i.status ? `${i.status.state} · ${i.status.health}` : 'no report'}{i.status?.error && <div className="error">{i.status.error}</div>}</td>
              <td>{i.host?.name ?? '—'}</td>
              <td><code>{i.domainName}</code>{i.ip && <div className="muted">{i.ip}</div>}</td>
              <td>{i.ports.map((p) => <div key={p.name}>{p.name} {p.containerPort}/{p.protocol}{p.hostPort ? ` → :${p.hostPort}` : ''}</div>)}</td>
              <td>{i.status?.stats ? `${i.status.stats.cpuPercent.toFixed(1)}%` : '—'}</td>
              <td>{i.status?.stats ? <Bar label="MB" value={Math.round(i.status.stats.memoryBytes / 1048576)} max={release.resources.memoryMb} /> : '—'}</td>
              <td>{i.status?.restartCount ?? 0}{i.status?.oomKilled && ' (OOM)'}</td>
              <td><code>{i.image}</code></td>
              <td><Can role="OPERATOR">
                <button onClick={() => doRestart({ id: i.id })} disabled={restart.fetching}>Restart</button>{' '}
                <button onClick={() => setLogsOf(i)} aria-pressed={logsOf?.id === i.id}>Logs</button>
              </Can></td>
            </tr>
          ))}
        </tbody>
      </table>
      {restart.error && <ErrorBox error={restart.error} />}
      {logsOf && <Logs key={logsOf.id} name={`${release.name}-${logsOf.ordinal}`} id={logsOf.id} onClose={() => setLogsOf(null)} />}
    </div>
  );
}

type LogLine = { at: string; stream: string; text: string };
type LogTail = { lines: LogLine[]; dropped: number; ended: string | null };

/**
 * The last lines of an instance's container, read on demand by the runner of its host. "Follow" subscribes to
 * instanceLogTail (graphql-ws): the runner streams new lines as the container prints them; one read of the lines since
 * the last one shown closes the gap before the subscription began. At most 1,000 lines stay on screen.
 */
function Logs({ id, name, onClose }: { id: string; name: string; onClose: () => void }) {
  const client = useClient();
  const [lines, setLines] = useState<LogLine[]>([]);
  const [state, setState] = useState<{ loading: boolean; error: string | null; truncated: boolean }>({ loading: true, error: null, truncated: false });
  const [follow, setFollow] = useState(false);
  const [dropped, setDropped] = useState(0);
  const [ended, setEnded] = useState<string | null>(null);
  const lastAt = useRef<string | null>(null);
  // Engine times have a fixed width (nanoseconds), so later lines sort after earlier ones as strings.
  const append = (fresh: LogLine[]) => {
    const later = fresh.filter((l) => !lastAt.current || l.at > lastAt.current);
    if (!later.length) return;
    lastAt.current = later[later.length - 1].at;
    setLines((old) => [...old, ...later].slice(-1000));
  };
  const fetchLogs = async (since: string | null) => {
    const res = await client.query<{ instanceLogs: { truncated: boolean; lines: LogLine[] } }>(LOGS, { id, tail: since ? 1000 : 200, since }, { requestPolicy: 'network-only' }).toPromise();
    if (res.error || !res.data) {
      setState((s) => ({ ...s, loading: false, error: res.error?.message ?? 'no answer' }));
      return;
    }
    if (!since) {
      lastAt.current = null;
      setLines([]);
    }
    append(res.data.instanceLogs.lines);
    setState((s) => ({ loading: false, error: null, truncated: s.truncated || res.data!.instanceLogs.truncated }));
  };
  useEffect(() => { void fetchLogs(null); }, [id]);
  useEffect(() => {
    if (!follow) return undefined;
    setEnded(null);
    const { unsubscribe } = client.subscription<{ instanceLogTail: LogTail }>(LOG_TAIL, { id }).subscribe((res) => {
      if (res.error) {
        setState((s) => ({ ...s, error: res.error!.message }));
        setFollow(false);
        return;
      }
      const tail = res.data?.instanceLogTail;
      if (!tail) return;
      append(tail.lines);
      if (tail.dropped) setDropped((d) => d + tail.dropped);
      if (tail.ended) {
        setEnded(tail.ended);
        setFollow(false);
      }
    });
    void fetchLogs(lastAt.current);
    return unsubscribe;
  }, [follow, id]);
  return (
    <div className="panel" data-testid="logs" aria-live="polite">
      <h2>Logs of {name}</h2>
      <p>
        <label><input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow</label>{' '}
        <button onClick={() => { void fetchLogs(null); }}>Reload</button>{' '}
        <button onClick={onClose}>Close</button>
      </p>
      {state.loading && <p className="muted" role="status">Asking the runner of its host…</p>}
      {state.error && <ErrorBox error={state.error} />}
      {!state.loading && !state.error && lines.length === 0 && <p className="muted">The container printed nothing{follow ? ' yet' : ''}.</p>}
      {follow && <p className="muted" role="status" data-testid="following">Following: new lines appear as the container prints them.</p>}
      {ended && <p className="muted" role="status">{ended}</p>}
      {dropped > 0 && <p className="muted">{dropped} lines were dropped: the container printed more than 50 a second.</p>}
      {state.truncated && <p className="muted">Long lines were cut at 4 KiB.</p>}
      <pre className="logs" data-testid="log-lines">{lines.map((l) => `${l.at.slice(11, 23)} ${l.stream === 'STDERR' ? 'err' : 'out'} ${l.text}`).join('\n')}</pre>
    </div>
  );
}

/** What changes between two revisions: the version and the image it runs, and why each was made. */
export function revisionDiff(release: Pick<Release, 'product'>, from: Revision, to: Revision): { field: string; before: string; after: string }[] {
  const image = (version: string) => release.product.versions.find((v) => v.version === version)?.image ?? 'unknown image';
  return [
    { field: 'version', before: from.version, after: to.version },
    { field: 'image', before: image(from.version), after: image(to.version) },
    { field: 'reason', before: from.reason, after: to.reason },
    { field: 'created', before: from.createdAt, after: to.createdAt },
  ];
}

function Diff({ rows }: { rows: ReturnType<typeof revisionDiff> }) {
  return (
    <table className="diff" data-testid="diff">
      <thead><tr><th /><th>before</th><th>after</th></tr></thead>
      <tbody>{rows.map((r) => (
        <tr key={r.field} className={r.before === r.after ? 'same' : 'changed'}><th>{r.field}</th><td><del>{r.before}</del></td><td><ins>{r.after}</ins></td></tr>
      ))}</tbody>
    </table>
  );
}

function Revisions({ release, onChange }: { release: Release; onChange: () => void }) {
  const revs = release.revisions;
  const current = revs.find((r) => r.revision === release.revision) ?? revs[revs.length - 1];
  const [a, setA] = useState(revs.length > 1 ? revs[revs.length - 2].revision : current.revision);
  const [b, setB] = useState(current.revision);
  const [target, setTarget] = useState<Revision | null>(null);
  const [state, rollback] = useMutation(ROLLBACK);
  const pick = (n: number) => revs.find((r) => r.revision === n)!;
  return (
    <div>
      <table>
        <thead><tr><th>Revision</th><th>Version</th><th>When</th><th>Why</th><th /></tr></thead>
        <tbody>{[...revs].reverse().map((r) => (
          <tr key={r.revision}>
            <td>{r.revision}{r.revision === release.revision && ' (current)'}</td><td>{r.version}</td><td>{new Date(r.createdAt).toLocaleString()}</td><td>{r.reason}</td>
            <td><Can role="OPERATOR">{r.version !== release.version && <button onClick={() => setTarget(r)}>Roll back to {r.revision}…</button>}</Can></td>
          </tr>
        ))}</tbody>
      </table>
      <h3>Compare revisions</h3>
      <div className="inline">
        <label>From <select value={a} onChange={(e) => setA(Number(e.target.value))}>{revs.map((r) => <option key={r.revision} value={r.revision}>{r.revision} ({r.version})</option>)}</select></label>
        <label>To <select value={b} onChange={(e) => setB(Number(e.target.value))}>{revs.map((r) => <option key={r.revision} value={r.revision}>{r.revision} ({r.version})</option>)}</select></label>
      </div>
      <Diff rows={revisionDiff(release, pick(a), pick(b))} />
      {target && (
        <div className="panel confirm" role="dialog" aria-modal="false" aria-labelledby="rollback-title">
          <h3 id="rollback-title">Roll {release.name} back to revision {target.revision}?</h3>
          <Diff rows={revisionDiff(release, current, target)} />
          <p>Instances are replaced batch by batch, each waiting for health, like an upgrade.</p>
          <button autoFocus onClick={async () => { const res = await rollback({ id: release.id, revision: target.revision }); if (!res.error) { setTarget(null); onChange(); } }} disabled={state.fetching}>Confirm rollback</button>
          <button onClick={() => setTarget(null)}>Cancel</button>
          {state.error && <ErrorBox error={state.error} />}
        </div>
      )}
    </div>
  );
}

function ConfigFiles({ id }: { id: string }) {
  const [result] = useQuery<{ configFiles: { instanceId: string; ordinal: number; domainName: string; files: { path: string; content: string }[] }[] }>({ query: gql`query Config($id: ID!) { configFiles(releaseId: $id) { instanceId ordinal domainName files { path content } } }`, variables: { id } });
  return <Result result={result} what="config files">{({ configFiles }) => configFiles.every((c) => c.files.length === 0) ? <p>The product has no config templates.</p> : (
    <div>{configFiles.map((c) => c.files.map((f) => (
      <figure key={`${c.instanceId}${f.path}`}><figcaption>{c.domainName}: <code>{f.path}</code></figcaption><pre>{f.content}</pre></figure>
    )))}</div>
  )}</Result>;
}

function Script({ id }: { id: string }) {
  const [format, setFormat] = useState<'SHELL' | 'COMPOSE'>('SHELL');
  const [result] = useQuery<{ deploymentScript: string }>({ query: gql`query Script($id: ID!, $format: ScriptFormat!) { deploymentScript(releaseId: $id, format: $format) }`, variables: { id, format } });
  return (
    <div>
      <div className="inline" role="group" aria-label="Format">
        <button aria-pressed={format === 'SHELL'} onClick={() => setFormat('SHELL')}>Shell</button>
        <button aria-pressed={format === 'COMPOSE'} onClick={() => setFormat('COMPOSE')}>Compose</button>
      </div>
      <Result result={result} what="the deployment script">{({ deploymentScript }) => <pre>{deploymentScript}</pre>}</Result>
    </div>
  );
}
