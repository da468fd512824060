/** The GraphQL client of the CLI: the API address and the operator token from the environment. */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface GraphQLError {
  message: string;
  extensions?: { code?: string; field?: string; [key: string]: unknown };
}

export interface Api {
  url: string;
  request<T>(query: string, variables?: Record<string, unknown>): Promise<{ data?: T; errors?: GraphQLError[] }>;
}

/** Something the user has to fix before any request can work (no token, API unreachable). */
export class CliError extends Error {}

export const DEFAULT_API_URL = 'http://localhost:3000/graphql';

/** FZ_TOKEN, else the operator token `npm start` writes to `$FZ_DATA_DIR/admin-token` (default .fangzhou). */
export function operatorToken(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FZ_TOKEN) return env.FZ_TOKEN.trim();
  const file = resolve(join(env.FZ_DATA_DIR ?? '.fangzhou', 'admin-token'));
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  throw new CliError(`no operator token: set FZ_TOKEN, or run this where npm start wrote ${file}`);
}

export function connect(url: string, token: string): Api {
  return {
    url,
    async request(query, variables) {
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ query, variables }),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new CliError(`cannot reach the API at ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message} (is it running? set FZ_API_URL)`);
      }
      const body = await res.text();
      let parsed: { data?: never; errors?: GraphQLError[] };
      try {
        parsed = JSON.parse(body);
      } catch {
        throw new CliError(`the API at ${url} answered HTTP ${res.status} with something that is not GraphQL: ${body.slice(0, 200)}`);
      }
      const code = parsed.errors?.[0]?.extensions?.code;
      if (code === 'UNAUTHENTICATED' || code === 'FORBIDDEN') {
        throw new CliError(`the API refused the operator token: ${parsed.errors![0].message} (set FZ_TOKEN to the token in .fangzhou/admin-token)`);
      }
      return parsed;
    },
  };
}
