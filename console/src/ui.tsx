import { createContext, useContext, type ReactNode } from 'react';
import type { CombinedError } from 'urql';

export type Role = 'VIEWER' | 'OPERATOR' | 'ADMIN';
export const RoleContext = createContext<Role>('VIEWER');

/** Buttons a role would be refused are not drawn at all: viewers read, operators act, admins configure. */
export function Can({ role, children }: { role: 'OPERATOR' | 'ADMIN'; children: ReactNode }) {
  const mine = useContext(RoleContext);
  const rank = { VIEWER: 0, OPERATOR: 1, ADMIN: 2 };
  return rank[mine] >= rank[role] ? <>{children}</> : null;
}

export function Loading({ what }: { what: string }) {
  return <p className="loading" role="status" aria-live="polite">Loading {what}…</p>;
}

export function ErrorBox({ error }: { error: CombinedError | Error | string }) {
  const text = typeof error === 'string' ? error
    : 'graphQLErrors' in error && error.graphQLErrors.length ? error.graphQLErrors.map((e) => `${e.message}${e.extensions?.code ? ` (${e.extensions.code})` : ''}`).join('; ')
    : error.message;
  return <p className="error" role="alert">{text}</p>;
}

/** Renders loading, error or the data of a urql result; every request shows one of the three. */
export function Result<T>({ result, what, children }: { result: { fetching: boolean; error?: CombinedError; data?: T }; what: string; children: (data: T) => ReactNode }) {
  if (result.error && !result.data) return <ErrorBox error={result.error} />;
  if (!result.data) return <Loading what={what} />;
  return <>{result.error && <ErrorBox error={result.error} />}{children(result.data)}</>;
}

export function Bar({ value, max, label }: { value: number; max: number; label: string }) {
  const pct = max > 0 ? Math.min(100, Math.round((value / max) * 100)) : 0;
  return (
    <div className="bar" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={max} aria-valuenow={value}>
      <div className={`fill ${pct >= 90 ? 'hot' : pct >= 70 ? 'warm' : ''}`} style={{ width: `${pct}%` }} />
      <span>{label}: {value} / {max}</span>
    </div>
  );
}

/** Health colour of a container: green healthy, red failing, amber on the way, grey unknown. */
export function healthClass(status: { state: string; health: string } | null | undefined): string {
  if (!status) return 'unknown';
  if (status.state !== 'RUNNING') return 'bad';
  if (status.health === 'UNHEALTHY') return 'bad';
  if (status.health === 'STARTING') return 'pending';
  return 'good';
}

export function Badge({ value, kind }: { value: string; kind?: string }) {
  return <span className={`badge ${kind ?? value.toLowerCase()}`}>{value}</span>;
}

export function ago(iso: string | null | undefined): string {
  if (!iso) return 'never';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

export const link = (...parts: string[]) => `#/${parts.map(encodeURIComponent).join('/')}`;
