import { gql, useMutation, useQuery } from 'urql';
import { Badge, Can, ErrorBox, link, Result } from '../ui';

const LIST = gql`query Inspections { inspections(first: 30) { nodes { id startedAt trigger score counts { critical warning info } } } }`;
const RUN = gql`mutation RunInspection { runInspection { id score } }`;
const ONE = gql`query Inspection($id: ID!) { inspection(id: $id) {
  id startedAt finishedAt trigger score counts { critical warning info }
  findings { severity check subject message }
  markdown: report(format: MARKDOWN)
} }`;

type Summary = { id: string; startedAt: string; trigger: string; score: number; counts: { critical: number; warning: number; info: number } };

export function Inspections() {
  const [result, reexecute] = useQuery<{ inspections: { nodes: Summary[] } }>({ query: LIST });
  const [run, doRun] = useMutation<{ runInspection: { id: string } }>(RUN);
  return (
    <section>
      <h1>Inspections</h1>
      <Can role="OPERATOR">
        <button onClick={async () => { const res = await doRun({}); if (res.data) location.hash = link('inspections', res.data.runInspection.id); else reexecute({ requestPolicy: 'network-only' }); }} disabled={run.fetching}>
          {run.fetching ? 'Inspecting…' : 'Run inspection now'}
        </button>
      </Can>
      {run.error && <ErrorBox error={run.error} />}
      <Result result={result} what="inspections">{({ inspections }) => inspections.nodes.length === 0 ? <p>No inspection yet: the first runs within a day, or run one now.</p> : (
        <table>
          <thead><tr><th>When</th><th>Trigger</th><th>Score</th><th>Critical</th><th>Warning</th><th>Info</th></tr></thead>
          <tbody>{inspections.nodes.map((i) => (
            <tr key={i.id}><td><a href={link('inspections', i.id)}>{new Date(i.startedAt).toLocaleString()}</a></td><td>{i.trigger.toLowerCase()}</td>
              <td><Score value={i.score} /></td><td>{i.counts.critical}</td><td>{i.counts.warning}</td><td>{i.counts.info}</td></tr>
          ))}</tbody>
        </table>
      )}</Result>
    </section>
  );
}

const Score = ({ value }: { value: number }) => <strong className={`score ${value >= 90 ? 'good' : value >= 70 ? 'pending' : 'bad'}`}>{value}</strong>;

export function InspectionPage({ id }: { id: string }) {
  const [result] = useQuery<{ inspection: (Summary & { finishedAt: string; findings: { severity: string; check: string; subject: string; message: string }[]; markdown: string }) | null }>({ query: ONE, variables: { id } });
  return (
    <Result result={result} what="the inspection">{({ inspection }) => !inspection ? <p className="error" role="alert">No inspection {id}.</p> : (
      <section data-testid="inspection-report">
        <p><a href="#/inspections">← all inspections</a></p>
        <h1>Inspection of {new Date(inspection.startedAt).toLocaleString()} — score <Score value={inspection.score} /></h1>
        <p className="muted">{inspection.trigger.toLowerCase()} · {inspection.counts.critical} critical, {inspection.counts.warning} warnings, {inspection.counts.info} notes ·{' '}
          <a download={`inspection-${inspection.id}.md`} href={`data:text/markdown;charset=utf-8,${encodeURIComponent(inspection.markdown)}`}>Markdown report</a></p>
        {inspection.findings.length === 0 ? <p>Nothing to report: every check passed.</p> : (
          <table>
            <thead><tr><th>Severity</th><th>Check</th><th>Subject</th><th>Finding</th></tr></thead>
            <tbody>{inspection.findings.map((f, n) => (
              <tr key={n} className={f.severity.toLowerCase()}><td><Badge value={f.severity} /></td><td>{f.check}</td><td><code>{f.subject}</code></td><td>{f.message}</td></tr>
            ))}</tbody>
          </table>
        )}
      </section>
    )}</Result>
  );
}
