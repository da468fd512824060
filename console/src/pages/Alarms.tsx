import { useState } from 'react';
import { gql, useMutation, useQuery } from 'urql';
import { Badge, Can, ErrorBox, Result } from '../ui';
import { useLive } from '../live';

const ALARMS = gql`query Alarms($filter: AlarmFilter) { alarms(filter: $filter, first: 100) { nodes {
  id kind severity state message raisedAt acknowledgedAt resolvedAt
  host { name } release { id name } instance { domainName }
  notifications { channel { id name } status attempts lastError deliveredAt }
} } }`;
const RAISED = gql`subscription AlarmsLive { alarmRaised(minSeverity: INFO) { id } }`;
const ACK = gql`mutation Ack($id: ID!) { acknowledgeAlarm(id: $id) { id state } }`;

type Alarm = {
  id: string; kind: string; severity: string; state: string; message: string; raisedAt: string; acknowledgedAt: string | null; resolvedAt: string | null;
  host: { name: string } | null; release: { id: string; name: string } | null; instance: { domainName: string } | null;
  notifications: { channel: { id: string; name: string }; status: string; attempts: number; lastError: string | null; deliveredAt: string | null }[];
};

export function Alarms() {
  const [filter, setFilter] = useState<{ state?: string; severity?: string }>({ state: 'FIRING' });
  const [result, reexecute] = useQuery<{ alarms: { nodes: Alarm[] } }>({ query: ALARMS, variables: { filter } });
  useLive(RAISED, {}, () => reexecute({ requestPolicy: 'network-only' }));
  const [ack, acknowledge] = useMutation(ACK);
  return (
    <section>
      <h1>Alarms</h1>
      <div className="inline" role="group" aria-label="Filters">
        <label>State <select value={filter.state ?? ''} onChange={(e) => setFilter({ ...filter, state: e.target.value || undefined })}>
          <option value="">any</option><option>FIRING</option><option>ACKNOWLEDGED</option><option>RESOLVED</option>
        </select></label>
        <label>Severity <select value={filter.severity ?? ''} onChange={(e) => setFilter({ ...filter, severity: e.target.value || undefined })}>
          <option value="">any</option><option>CRITICAL</option><option>WARNING</option><option>INFO</option>
        </select></label>
      </div>
      {ack.error && <ErrorBox error={ack.error} />}
      <Result result={result} what="alarms">{({ alarms }) => alarms.nodes.length === 0 ? <p>No alarms match.</p> : (
        <ul className="alarms">
          {alarms.nodes.map((a) => (
            <li key={a.id} className={`alarm ${a.severity.toLowerCase()}`} data-testid={`alarm-${a.kind}`} data-state={a.state}>
              <h2><Badge value={a.severity} /> {a.kind} <Badge value={a.state} /></h2>
              <p>{a.message}</p>
              <p className="muted">raised {new Date(a.raisedAt).toLocaleString()}
                {a.host && ` · host ${a.host.name}`}{a.release && <> · release <a href={`#/release/${a.release.id}`}>{a.release.name}</a></>}{a.instance && ` · ${a.instance.domainName}`}
                {a.acknowledgedAt && ` · acknowledged ${new Date(a.acknowledgedAt).toLocaleString()}`}{a.resolvedAt && ` · resolved ${new Date(a.resolvedAt).toLocaleString()}`}</p>
              {a.notifications.length > 0 && (
                <ul className="deliveries" aria-label="Deliveries">{a.notifications.map((n) => (
                  <li key={n.channel.id}>{n.channel.name}: {n.status.toLowerCase()} after {n.attempts} attempt(s){n.lastError && ` — ${n.lastError}`}</li>
                ))}</ul>
              )}
              <Can role="OPERATOR">{a.state === 'FIRING' && <button onClick={async () => { await acknowledge({ id: a.id }); reexecute({ requestPolicy: 'network-only' }); }} disabled={ack.fetching}>Acknowledge</button>}</Can>
            </li>
          ))}
        </ul>
      )}</Result>
    </section>
  );
}

const EVENTS = gql`query Events($filter: EventFilter) { events(filter: $filter, first: 100) { nodes { id at kind message severity host { name } release { id name } progress { done total } } } }`;
const STATUS = gql`subscription EventsLive { containerStatusChanged { instance { id } } }`;

export function Events() {
  const [kind, setKind] = useState('');
  const [result, reexecute] = useQuery<{ events: { nodes: { id: string; at: string; kind: string; message: string; severity: string; host: { name: string } | null; release: { id: string; name: string } | null; progress: { done: number; total: number } | null }[] } }>({ query: EVENTS, variables: { filter: kind ? { kind } : null } });
  useLive(STATUS, {}, () => reexecute({ requestPolicy: 'network-only' }));
  useLive(RAISED, {}, () => reexecute({ requestPolicy: 'network-only' }));
  return (
    <section>
      <h1>Events</h1>
      <label>Kind <input value={kind} onChange={(e) => setKind(e.target.value.toUpperCase())} placeholder="e.g. CONTAINER_STATUS" /></label>
      <Result result={result} what="events">{({ events }) => (
        <ol className="timeline">
          {events.nodes.map((e) => (
            <li key={e.id} className={e.severity.toLowerCase()}>
              <time dateTime={e.at}>{new Date(e.at).toLocaleTimeString()}</time> <code>{e.kind}</code> {e.message}
              {e.progress && ` (${e.progress.done}/${e.progress.total})`}
              {e.release && <> · <a href={`#/release/${e.release.id}`}>{e.release.name}</a></>}{e.host && ` · ${e.host.name}`}
            </li>
          ))}
        </ol>
      )}</Result>
    </section>
  );
}
