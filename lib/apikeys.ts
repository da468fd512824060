import { randomBytes } from 'node:crypto';
import { AppError, badInput, notFound } from './errors';
import { hashSecret, matchesHash, newId } from './ids';
import type { Store, Versioned } from './store';
import { verifiedPerStore } from './verified';

export type Role = 'VIEWER' | 'OPERATOR' | 'ADMIN';
export const ROLES: readonly Role[] = ['VIEWER', 'OPERATOR', 'ADMIN'];

/** Limits a key to some products and releases: it may then change and read only those (lib/auth.ts, scopeOf). */
export interface Scope {
  products: string[];
  releases: string[];
}

export interface ApiKey extends Versioned {
  id: string;
  name: string;
  role: Role;
  scope: Scope | null;
  /** sha256 of the secret; the secret itself is shown once, by createApiKey. */
  secretHash: string;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

export interface ApiKeyInput {
  name: string;
  role: Role;
  scope?: { products?: string[] | null; releases?: string[] | null } | null;
}

/** `fzk_<key id>_<secret>`: the id lets authentication read one item instead of searching by hash. */
const TOKEN = /^fzk_(k-[0-9a-f]{12})_([A-Za-z0-9_-]{32})$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,62}$/;

export async function createApiKey(store: Store, input: ApiKeyInput, createdBy: string, now = new Date()) {
  if (!NAME.test(input.name)) throw badInput('name must be 1–63 letters, digits, spaces or . _ @ -, starting with a letter or digit', 'name');
  const list = (values: string[] | null | undefined, field: string) => {
    const out = [...new Set(values ?? [])];
    if (out.length > 100) throw badInput(`${field} may name at most 100 entries`, field);
    for (const v of out) if (!/^[a-z0-9][a-z0-9.-]{0,62}$/.test(v)) throw badInput(`${field}: "${v.slice(0, 64)}" is not a product name or release id`, field);
    return out;
  };
  const scope = input.scope ? { products: list(input.scope.products, 'scope.products'), releases: list(input.scope.releases, 'scope.releases') } : null;
  if (scope && !scope.products.length && !scope.releases.length) throw badInput('a scope must name at least one product or release (or leave scope out for every one)', 'scope');
  const id = newId('k');
  const secret = `fzk_${id}_${randomBytes(24).toString('base64url')}`;
  const key = await store.create<Omit<ApiKey, 'seq'>>('apikeys', {
    id, name: input.name, role: input.role, scope, secretHash: hashSecret(secret),
    createdAt: now.toISOString(), createdBy, revokedAt: null,
  });
  if (!key) throw new AppError('CONFLICT', 'a key with this id exists already; try again');
  return { key, secret };
}

export async function revokeApiKey(store: Store, id: string, now = new Date()): Promise<ApiKey> {
  const key = await store.mutate<ApiKey>('apikeys', id, (k) => k && !k.revokedAt ? { ...k, revokedAt: now.toISOString() } : undefined);
  if (!key) throw notFound('API key', id);
  verified(store).forget((k) => k.id === id);
  return key;
}

export async function listApiKeys(store: Store): Promise<ApiKey[]> {
  return (await store.scan<ApiKey>('apikeys')).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** API keys found valid, per store (lib/verified.ts): a query's subgraph checks read the key once. */
const verified = verifiedPerStore<Store, ApiKey>();

/** The key a bearer secret belongs to, or undefined when it is unknown, revoked or wrong. */
export async function keyOfSecret(store: Store, secret: string, now = Date.now()): Promise<ApiKey | undefined> {
  const match = TOKEN.exec(secret);
  if (!match) return undefined;
  const hash = hashSecret(secret);
  const known = verified(store);
  const hit = known.get(hash, now);
  if (hit) return hit;
  const mark = known.mark();
  const key = await store.get<ApiKey>('apikeys', match[1]);
  if (!key || key.revokedAt || !matchesHash(secret, key.secretHash)) return undefined;
  known.remember(hash, key, mark, now);
  return key;
}

export const getApiKey = (store: Store, id: string) => store.get<ApiKey>('apikeys', id);
