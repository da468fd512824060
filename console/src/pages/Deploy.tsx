import { useState, type FormEvent } from 'react';
import { gql, useMutation, useQuery } from 'urql';
import { Can, ErrorBox } from '../ui';

const PRODUCTS = gql`query DeployProducts { products { name versions { version } defaults { replicas } } }`;
const DEPLOY = gql`mutation Deploy($input: DeployInput!) { deploy(input: $input) { id name status } }`;

/** The deploy form: product, version, name and replicas; the API validates and answers what to fix. */
export function Deploy({ onDeployed }: { onDeployed: () => void }) {
  return <Can role="OPERATOR"><DeployForm onDeployed={onDeployed} /></Can>;
}

function DeployForm({ onDeployed }: { onDeployed: () => void }) {
  const [products] = useQuery<{ products: { name: string; versions: { version: string }[]; defaults: { replicas: number } }[] }>({ query: PRODUCTS });
  const [state, deploy] = useMutation(DEPLOY);
  const [form, setForm] = useState({ name: '', product: '', version: '', replicas: 1 });
  const product = products.data?.products.find((p) => p.name === form.product);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const res = await deploy({ input: { name: form.name, product: form.product, version: form.version || undefined, replicas: form.replicas } });
    if (!res.error) { setForm({ ...form, name: '' }); onDeployed(); }
  };
  return (
    <details className="panel">
      <summary>Deploy a product</summary>
      <form onSubmit={submit} className="inline">
        <label>Product <select required value={form.product} onChange={(e) => setForm({ ...form, product: e.target.value, version: '' })}>
          <option value="">choose…</option>
          {products.data?.products.map((p) => <option key={p.name}>{p.name}</option>)}
        </select></label>
        <label>Version <select value={form.version} onChange={(e) => setForm({ ...form, version: e.target.value })}>
          <option value="">newest</option>
          {product?.versions.map((v) => <option key={v.version}>{v.version}</option>)}
        </select></label>
        <label>Name <input required value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} pattern="[a-z0-9-]+" /></label>
        <label>Replicas <input type="number" min={1} value={form.replicas} onChange={(e) => setForm({ ...form, replicas: Number(e.target.value) })} /></label>
        <button type="submit" disabled={state.fetching}>{state.fetching ? 'Deploying…' : 'Deploy'}</button>
      </form>
      {products.error && <ErrorBox error={products.error} />}
      {state.error && <ErrorBox error={state.error} />}
    </details>
  );
}
