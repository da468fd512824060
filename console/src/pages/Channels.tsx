import { useState, type FormEvent } from 'react';
import { gql, useMutation, useQuery } from 'urql';
import { Can, ErrorBox, Result } from '../ui';

const CHANNELS = gql`query Channels { alertChannels { id name kind target minSeverity createdAt } }`;
const CREATE = gql`mutation CreateChannel($input: AlertChannelInput!) { createAlertChannel(input: $input) { id } }`;
const TEST = gql`mutation TestChannel($id: ID!) { testAlertChannel(id: $id) { delivered error } }`;

type Channel = { id: string; name: string; kind: string; target: string; minSeverity: string; createdAt: string };

export function Channels() {
  const [result, reexecute] = useQuery<{ alertChannels: Channel[] }>({ query: CHANNELS });
  const [created, create] = useMutation(CREATE);
  const [tested, test] = useMutation<{ testAlertChannel: { delivered: boolean; error: string | null } }>(TEST);
  const [testedId, setTestedId] = useState<string>();
  const [form, setForm] = useState({ name: '', kind: 'WEBHOOK', target: '', minSeverity: 'WARNING' });
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const res = await create({ input: form });
    if (!res.error) { setForm({ ...form, name: '', target: '' }); reexecute({ requestPolicy: 'network-only' }); }
  };
  return (
    <section>
      <h1>Alert channels</h1>
      <Can role="ADMIN">
        <form onSubmit={submit} className="inline panel" aria-label="New channel">
          <label>Name <input required value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} /></label>
          <label>Kind <select value={form.kind} onChange={(e) => setForm({ ...form, kind: e.target.value })}><option>WEBHOOK</option><option>EMAIL</option></select></label>
          <label>Target <input required value={form.target} onChange={(e) => setForm({ ...form, target: e.target.value })} placeholder={form.kind === 'EMAIL' ? 'ops@example.com' : 'https://…'} /></label>
          <label>From severity <select value={form.minSeverity} onChange={(e) => setForm({ ...form, minSeverity: e.target.value })}><option>CRITICAL</option><option>WARNING</option><option>INFO</option></select></label>
          <button type="submit" disabled={created.fetching}>Create</button>
        </form>
        {created.error && <ErrorBox error={created.error} />}
      </Can>
      <Result result={result} what="channels">{({ alertChannels }) => alertChannels.length === 0 ? <p>No channels: alarms are only shown here.</p> : (
        <table>
          <thead><tr><th>Name</th><th>Kind</th><th>Target</th><th>From</th><th /></tr></thead>
          <tbody>{alertChannels.map((c) => (
            <tr key={c.id}><td>{c.name}</td><td>{c.kind}</td><td><code>{c.target}</code></td><td>{c.minSeverity}</td>
              <td><Can role="ADMIN"><button onClick={() => { setTestedId(c.id); test({ id: c.id }); }} disabled={tested.fetching}>Send test</button></Can>
                {testedId === c.id && tested.data && <span role="status">{tested.data.testAlertChannel.delivered ? ' delivered' : ` failed: ${tested.data.testAlertChannel.error}`}</span>}
                {testedId === c.id && tested.error && <ErrorBox error={tested.error} />}</td></tr>
          ))}</tbody>
        </table>
      )}</Result>
    </section>
  );
}
