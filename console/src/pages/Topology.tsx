import { useEffect, useState } from 'react';
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

type Change = { containerStatusChanged: { instance: { id: string } | null; state: string; health: string } };

/**
 * Releases → instances → hosts, coloured by container health; every status change re-reads the picture, and the
 * status it pushed is shown until that answer comes (a red that lasts less than a re-read is still shown).
 */
export function Topology() {
  const [result, reexecute] = useQuery<{ releases: Release[] }>({ query: TOPOLOGY });
  const [pushed, setPushed] = useState<Record<string, { state: string; health: string }>>({});
  useEffect(() => setPushed({}), [result.data]);
  const liveError = useLive<Change>(CHANGES, {}, () => reexecute({ requestPolicy: 'network-only' }), false, ({ containerStatusChanged: c }) => {
    const id = c.instance?.id;
    if (id) setPushed((p) => ({ ...p, [id]: { state: c.state, health: c.health } }));
  });
  const statusOf = (i: Release['instances'][number]) => (pushed[i.id] ? { restartCount: 0, ...i.status, ...pushed[i.id] } : i.status);
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
                {r.instances.map((i) => {
                  const status = statusOf(i);
                  return (
                    <li key={i.id} className={`instance ${healthClass(status)}`} data-testid={`instance-${r.name}-${i.ordinal}`}
                      data-health={healthClass(status)} title={i.domainName}>
                      <strong>{r.name}-{i.ordinal}</strong>
                      <span>{status ? `${status.state.toLowerCase()} · ${status.health.toLowerCase()}` : 'no report yet'}</span>
                      <span className="muted">on {i.host?.name ?? 'unplaced'}</span>
                    </li>
                  );
                })}
              </ul>
            </li>
          ))}
        </ul>
      )}</Result>
    </section>
  );
}
