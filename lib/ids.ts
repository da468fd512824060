import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Ids are short, lowercase and DNS-safe: `r-3f9a1c0b2d4e`. */
export const newId = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;

/** Secrets carry a kind prefix so a leaked one is recognisable (`fzj_` join, `fzh_` host, `fza_` admin, `fzk_` API key). */
export const newSecret = (kind: 'fzj' | 'fzh' | 'fza') => `${kind}_${randomBytes(24).toString('base64url')}`;

/** Secrets are stored only as this hash. */
export const hashSecret = (secret: string) => createHash('sha256').update(secret).digest('hex');

/** Whether the secret hashes to `expectedHash`, compared in constant time (no early exit on the first differing byte). */
export const matchesHash = (secret: string, expectedHash: string) => {
  const actual = Buffer.from(hashSecret(secret), 'hex');
  const expected = Buffer.from(expectedHash, 'hex');
  return actual.length === expected.length && timingSafeEqual(actual, expected);
};

/** Full sha256 of a plain JSON value, independent of key order (the audit chain). */
export const sha256Json = (value: unknown) => createHash('sha256').update(canonical(value)).digest('hex');

/** Stable hash of a plain JSON value, independent of key order. */
export const hashJson = (value: unknown) => createHash('sha256').update(canonical(value)).digest('hex').slice(0, 16);

const canonical = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
};
