import { gql, useQuery } from 'urql';
import { Badge, healthClass, link, Result } from '../ui';
import { useLive } from '../live';
import { Deploy } from './Deploy';

const TOPOLOGY = gql`query Topology { releases {
  id name version status statusMessage product { name }
  health { desired running healthy unhealthy }
  instances { id ordinal domainName host { id name } status { state health restartCount } }
} }`;
const CHANGES = gql`subscription TopologyChanges { containerStatusChanged { instance { id } state health } }`;

type Release = {
  id: string; name: string; version: string; status: string; statusMessage: string | null; product: { name: string };
  health: { desired: number; running: number; healthy: number; unhealthy: number };
  instances: { id: string; ordinal: number; domainName: string; host: { id: string; name: string } | null; status: { state: string; health: string; restartCount: number } | null }[];
};

/** Releases → instances → hosts, coloured by container health; every status change re-reads the picture. */
export function Topology() {
  const [result, reexecute] = useQuery<{ releases: Release[] }>({ query: TOPOLOGY });
  const liveError = useLive(CHANGES, {}, () => reexecute({ requestPolicy: 'network-only' }));
  return (
    <section>
      <h1>Topology</h1>
      {liveError && <p className="error" role="alert">Live updates interrupted: {liveError.message}</p>}
      <Deploy onDeployed={() => reexecute({ requestPolicy: 'network-only' })} />
      <Result result={result} what="releases">{({ releases }) => releases.length === 0 ? <p>Nothing deployed yet.</p> : (
        <ul className="topology">
          {releases.map((r) => (
            <li key={r.id} className="release" data-testid={`release-${r.name}`}>
              <h2><a href={link('release', r.id)}>{r.name}</a> <span className="muted">{r.product.name} {r.version}</span> <Badge value={r.status} /></h2>
              {r.statusMessage && <p className="muted">{r.statusMessage}</p>}
              <p className="muted">{r.health.healthy}/{r.health.desired} healthy</p>
              <ul className="instances">
                {r.instances.map((i) => (
                  <li key={i.id} className={`instance ${healthClass(i.status)}`} data-testid={`instance-${r.name}-${i.ordinal}`}
                    data-health={healthClass(i.status)} title={i.domainName}>
                    <strong>{r.name}-{i.ordinal}</strong>
                    <span>{i.status ? `${i.status.state.toLowerCase()} · ${i.status.health.toLowerCase()}` : 'no report yet'}</span>
                    <span className="muted">on {i.host?.name ?? 'unplaced'}</span>
                  </li>
                ))}
              </ul>
            </li>
          ))}
        </ul>
      )}</Result>
    </section>
  );
}
