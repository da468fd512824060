import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { badInput } from './errors';

/**
 * Secret env values, sealed with AES-256-GCM (node:crypto) before they are stored. The key comes from the environment
 * (`FZ_SECRET_KEY`, 32 bytes in base64) or a file outside the store (`FZ_SECRET_KEY_FILE`; `npm start` makes
 * `.fangzhou/secret-key`, mode 0600). A sealed value is `fzs1.<iv>.<tag>.<ciphertext>` (base64url); only the runner
 * of the host that runs an instance receives the opened value.
 */
export interface SealedVar {
  name: string;
  sealed: string;
}

const PREFIX = 'fzs1';

function key(): Buffer {
  const raw = process.env.FZ_SECRET_KEY || (process.env.FZ_SECRET_KEY_FILE ? readFileSync(process.env.FZ_SECRET_KEY_FILE, 'utf8').trim() : '');
  if (!raw) throw badInput('secretEnv needs a secret key on the server: set FZ_SECRET_KEY (32 bytes, base64) or FZ_SECRET_KEY_FILE', 'secretEnv');
  const bytes = Buffer.from(raw, 'base64');
  if (bytes.length !== 32) throw new Error('FZ_SECRET_KEY must be 32 bytes in base64 (openssl rand -base64 32)');
  return bytes;
}

export const newSecretKey = () => randomBytes(32).toString('base64');

export function seal(value: string, k = key()): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', k, iv);
  const ciphertext = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
  return [PREFIX, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join('.');
}

export function open(sealed: string, k = key()): string {
  const [prefix, iv, tag, ciphertext] = sealed.split('.');
  if (prefix !== PREFIX) throw new Error('not a sealed value');
  const decipher = createDecipheriv('aes-256-gcm', k, Buffer.from(iv, 'base64url'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
}

export const sealAll = (vars: { name: string; value: string }[]): SealedVar[] => {
  if (!vars.length) return [];
  const k = key();
  return vars.map((v) => ({ name: v.name, sealed: seal(v.value, k) }));
};

export const openAll = (vars: SealedVar[] | undefined): { name: string; value: string }[] => {
  if (!vars?.length) return [];
  const k = key();
  return vars.map((v) => ({ name: v.name, value: open(v.sealed, k) }));
};

/** Merges secret variables by name, later lists winning (a release's over its product's defaults). */
export const mergeSealed = (...lists: (SealedVar[] | undefined)[]): SealedVar[] => {
  const merged = new Map<string, SealedVar>();
  for (const list of lists) for (const v of list ?? []) merged.set(v.name, v);
  return [...merged.values()];
};

/**
 * A secret in a config template (`{{secret "DB_PASSWORD"}}`) renders as this token, never as its value: rendered
 * files are stored, listed by `configFiles` and written into artefacts with the token in place. Only the runner of
 * the instance's host gets the file with the value filled in (`fillSecrets`), as it gets secretEnv.
 */
export const secretToken = (name: string) => `⟦secret:${name}⟧`;
const TOKEN = /⟦secret:([A-Za-z_][A-Za-z0-9_]*)⟧/g;

/** The names of the secrets a rendered file holds (each once, in order of first use). */
export const secretsIn = (content: string): string[] => [...new Set([...content.matchAll(TOKEN)].map((m) => m[1]))];

/** The content with every secret token replaced by its value; a name without a value is an error. */
export function fillSecrets(content: string, values: ReadonlyMap<string, string>): string {
  return content.replace(TOKEN, (_, name: string) => {
    const value = values.get(name);
    if (value === undefined) throw new Error(`a config file uses the secret ${name}, which the release does not have`);
    return value;
  });
}

/** The content with every secret token replaced by what `replacement` makes of its name (artefacts). */
export const replaceSecrets = (content: string, replacement: (name: string) => string) => content.replace(TOKEN, (_, name: string) => replacement(name));
