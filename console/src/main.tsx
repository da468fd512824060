import { StrictMode, useEffect, useMemo, useState, type FormEvent } from 'react';
import { createRoot } from 'react-dom/client';
import { Provider, gql, useQuery } from 'urql';
import { apiClient, KEY_STORAGE } from './api';
import { ErrorBox, Loading, RoleContext, type Role } from './ui';
import { Fleet } from './pages/Fleet';
import { Topology } from './pages/Topology';
import { ReleasePage } from './pages/Release';
import { Alarms, Events } from './pages/Alarms';
import { Products } from './pages/Products';
import { Channels } from './pages/Channels';
import { Inspections, InspectionPage } from './pages/Inspections';
import './styles.css';

const PAGES = [
  ['fleet', 'Fleet'], ['topology', 'Topology'], ['alarms', 'Alarms'], ['events', 'Events'],
  ['products', 'Products'], ['channels', 'Alert channels'], ['inspections', 'Inspections'],
] as const;

function useRoute(): string[] {
  const read = () => location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const update = () => setRoute(read());
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  return route;
}

function Page({ route }: { route: string[] }) {
  const [page = 'topology', id] = route;
  switch (page) {
    case 'fleet': return <Fleet />;
    case 'release': return <ReleasePage id={id} />;
    case 'alarms': return <Alarms />;
    case 'events': return <Events />;
    case 'products': return <Products />;
    case 'channels': return <Channels />;
    case 'inspections': return id ? <InspectionPage id={id} /> : <Inspections />;
    default: return <Topology />;
  }
}

const ME = gql`query Me { me { kind role } }`;

function Shell({ signOut }: { signOut: () => void }) {
  const route = useRoute();
  const [me] = useQuery<{ me: { kind: string; role: Role } }>({ query: ME });
  const [menu, setMenu] = useState(false);
  if (me.error) return <main className="signin"><ErrorBox error={me.error} /><button onClick={signOut}>Sign in again</button></main>;
  if (!me.data) return <main className="signin"><Loading what="your role" /></main>;
  const current = route[0] ?? 'topology';
  return (
    <RoleContext.Provider value={me.data.me.role}>
      <header>
        <a className="brand" href="#/topology">方舟 Fangzhou</a>
        <button className="menu" aria-expanded={menu} aria-controls="nav" onClick={() => setMenu(!menu)}>Menu</button>
        <nav id="nav" className={menu ? 'open' : ''} onClick={() => setMenu(false)}>
          {PAGES.map(([path, title]) => (
            <a key={path} href={`#/${path}`} aria-current={current === path ? 'page' : undefined}>{title}</a>
          ))}
        </nav>
        <span className="who">{me.data.me.role.toLowerCase()}</span>
        <button onClick={signOut}>Sign out</button>
      </header>
      <main><Page route={route} /></main>
    </RoleContext.Provider>
  );
}

function SignIn({ onKey, problem }: { onKey: (key: string) => void; problem?: string }) {
  const [key, setKey] = useState('');
  const submit = (e: FormEvent) => { e.preventDefault(); if (key.trim()) onKey(key.trim()); };
  return (
    <main className="signin">
      <h1>方舟 Fangzhou</h1>
      <form onSubmit={submit}>
        <label htmlFor="key">API key</label>
        <input id="key" type="password" autoComplete="off" value={key} onChange={(e) => setKey(e.target.value)} placeholder="fzk_… or the operator token fza_…" autoFocus />
        <button type="submit">Sign in</button>
      </form>
      {problem && <p className="error" role="alert">{problem}</p>}
    </main>
  );
}

function App() {
  const [key, setKey] = useState(() => sessionStorage.getItem(KEY_STORAGE));
  const [problem, setProblem] = useState<string>();
  const signOut = (why?: string) => { sessionStorage.removeItem(KEY_STORAGE); setKey(null); setProblem(why); };
  const client = useMemo(() => key ? apiClient(key, () => signOut('The API refused the key: sign in again.')) : null, [key]);
  if (!key || !client) return <SignIn problem={problem} onKey={(k) => { sessionStorage.setItem(KEY_STORAGE, k); setProblem(undefined); setKey(k); }} />;
  return <Provider value={client}><Shell signOut={() => signOut()} /></Provider>;
}

createRoot(document.getElementById('root')!).render(<StrictMode><App /></StrictMode>);
