import { gql, useQuery } from 'urql';
import { Result } from '../ui';

const PRODUCTS = gql`query Products { products {
  name description requiresExclusiveHosts
  versions { version image notes }
  dependencies { product versionRange }
  defaults { replicas resources { cpuMillis memoryMb } ports { name containerPort protocol } }
} }`;

type Product = {
  name: string; description: string; requiresExclusiveHosts: boolean; versions: { version: string; image: string; notes: string | null }[];
  dependencies: { product: string; versionRange: string }[]; defaults: { replicas: number; resources: { cpuMillis: number; memoryMb: number }; ports: { name: string; containerPort: number; protocol: string }[] };
};

/** Layers products by dependency depth (dependencies left, dependants right); a cycle stops at the product count. */
export function layers(products: { name: string; dependencies: { product: string }[] }[]): Map<string, number> {
  const depth = new Map<string, number>();
  const byName = new Map(products.map((p) => [p.name, p]));
  const visit = (name: string, seen: number): number => {
    if (depth.has(name)) return depth.get(name)!;
    const deps = byName.get(name)?.dependencies ?? [];
    const d = seen > products.length || deps.length === 0 ? 0 : 1 + Math.max(...deps.map((x) => visit(x.product, seen + 1)));
    depth.set(name, d);
    return d;
  };
  products.forEach((p) => visit(p.name, 0));
  return depth;
}

function DependencyGraph({ products }: { products: Product[] }) {
  const depth = layers(products);
  const columns: string[][] = [];
  for (const [name, d] of depth) (columns[d] ??= []).push(name);
  const W = 150, H = 54, GX = 70, GY = 20;
  const pos = new Map<string, { x: number; y: number }>();
  columns.forEach((names, c) => names.forEach((n, r) => pos.set(n, { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
  const width = 20 + columns.length * (W + GX) - GX;
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + GY) - GY;
  return (
    <svg className="graph" viewBox={`0 0 ${width} ${height}`} width="100%" style={{ maxWidth: width }} role="img" aria-label="Product dependency graph: arrows point from a product to what it depends on">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" /></marker></defs>
      {products.flatMap((p) => p.dependencies.filter((d) => pos.has(d.product)).map((d) => {
        const a = pos.get(p.name)!, b = pos.get(d.product)!;
        return <g key={`${p.name}-${d.product}`}><line x1={a.x} y1={a.y + H / 2} x2={b.x + W} y2={b.y + H / 2} markerEnd="url(#arrow)" />
          <text x={(a.x + b.x + W) / 2} y={(a.y + b.y + H) / 2 - 4} className="range">{d.versionRange}</text></g>;
      }))}
      {[...pos].map(([name, { x, y }]) => {
        const p = products.find((q) => q.name === name);
        return <g key={name}><rect x={x} y={y} width={W} height={H} rx={8} className={p ? '' : 'missing'} />
          <text x={x + W / 2} y={y + 24} textAnchor="middle" className="name">{name}</text>
          <text x={x + W / 2} y={y + 42} textAnchor="middle" className="range">{p ? p.versions.map((v) => v.version).slice(-2).join(', ') : 'not in catalog'}</text></g>;
      })}
    </svg>
  );
}

export function Products() {
  const [result] = useQuery<{ products: Product[] }>({ query: PRODUCTS });
  return (
    <section>
      <h1>Products</h1>
      <Result result={result} what="the catalog">{({ products }) => (
        <>
          <h2>Dependencies</h2>
          <DependencyGraph products={products} />
          <ul className="cards">
            {products.map((p) => (
              <li key={p.name} className="card">
                <h2>{p.name}</h2>
                <p>{p.description}</p>
                <p className="muted">{p.defaults.replicas} replicas · {p.defaults.resources.cpuMillis} mCPU / {p.defaults.resources.memoryMb} MB · ports {p.defaults.ports.map((x) => `${x.name} ${x.containerPort}/${x.protocol}`).join(', ') || 'none'}{p.requiresExclusiveHosts && ' · exclusive hosts only'}</p>
                {p.dependencies.length > 0 && <p>Needs {p.dependencies.map((d) => `${d.product} ${d.versionRange}`).join(', ')}</p>}
                <table><thead><tr><th>Version</th><th>Image</th><th>Notes</th></tr></thead>
                  <tbody>{p.versions.map((v) => <tr key={v.version}><td>{v.version}</td><td><code>{v.image}</code></td><td>{v.notes}</td></tr>)}</tbody></table>
              </li>
            ))}
          </ul>
        </>
      )}</Result>
    </section>
  );
}
