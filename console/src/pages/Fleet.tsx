import { gql, useQuery } from 'urql';
import { ago, Badge, Bar, Result } from '../ui';
import { useLive } from '../live';

const HOSTS = gql`query Fleet { hosts {
  id name address status labels { key value } exclusiveFor lastHeartbeatAt
  capacity { cpuMillis memoryMb } allocated { cpuMillis memoryMb } engine { version os diskUsedPercent memoryAvailablePercent }
  containers { instance { id } }
} }`;
const CHANGES = gql`subscription FleetChanges { containerStatusChanged { instance { id } } }`;

type Host = {
  id: string; name: string; address: string; status: string; labels: { key: string; value: string }[]; exclusiveFor: string | null;
  lastHeartbeatAt: string | null; capacity: { cpuMillis: number; memoryMb: number }; allocated: { cpuMillis: number; memoryMb: number };
  engine: { version: string; os: string; diskUsedPercent: number | null; memoryAvailablePercent: number | null } | null; containers: unknown[];
};

export function Fleet() {
  const [result, reexecute] = useQuery<{ hosts: Host[] }>({ query: HOSTS });
  useLive(CHANGES, {}, () => reexecute({ requestPolicy: 'network-only' }));
  return (
    <section>
      <h1>Fleet</h1>
      <Result result={result} what="hosts">{({ hosts }) => hosts.length === 0 ? <p>No hosts yet: start a runner with a join token.</p> : (
        <ul className="cards">
          {hosts.map((h) => (
            <li key={h.id} className="card" data-testid={`host-${h.name}`}>
              <h2>{h.name} <Badge value={h.status} /></h2>
              <p className="muted">{h.address} · {h.engine ? `Docker ${h.engine.version} (${h.engine.os})` : 'engine unknown'}{h.engine?.diskUsedPercent != null && ` · disk ${h.engine.diskUsedPercent}% used`}{h.engine?.memoryAvailablePercent != null && ` · ${h.engine.memoryAvailablePercent}% memory available`} · heartbeat {ago(h.lastHeartbeatAt)}</p>
              <p>{h.labels.map((l) => <span key={l.key} className="label">{l.key}={l.value}</span>)}
                {h.exclusiveFor && <span className="label exclusive">exclusive: {h.exclusiveFor}</span>}</p>
              <Bar label="CPU millis" value={h.allocated.cpuMillis} max={h.capacity.cpuMillis} />
              <Bar label="Memory MB" value={h.allocated.memoryMb} max={h.capacity.memoryMb} />
              <p className="muted">{h.containers.length} containers</p>
            </li>
          ))}
        </ul>
      )}</Result>
    </section>
  );
}
