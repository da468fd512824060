import { GraphQLError } from 'graphql';
import { AppError } from './errors';
import { hashSecret } from './ids';
import { config } from './config';
import { store } from './store';

/** Who is calling: an operator (portal, script), a host runner (acts only for its own host), or nobody yet. */
export type Principal = { kind: 'operator' } | { kind: 'host'; hostId: string } | { kind: 'anonymous' };

export interface Context {
  principal: Principal;
  /** The raw Authorization header, forwarded by the gateway to the subgraphs it calls over HTTP. */
  authorization?: string;
}

const unauthenticated = (message: string) =>
  new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });

export async function authenticate(authorization: string | undefined): Promise<Principal> {
  if (!authorization) return { kind: 'anonymous' };
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!match) throw unauthenticated('the Authorization header must be "Bearer <token>"');
  const token = match[1];
  if (token.startsWith('fza_')) {
    const expected = config().adminTokenHash;
    if (expected && hashSecret(token) === expected) return { kind: 'operator' };
    throw unauthenticated('the operator token is not valid (npm start prints the current one)');
  }
  if (token.startsWith('fzh_')) {
    const claim = await store().get<{ hostId: string }>('claims', `host-token#${hashSecret(token)}`);
    if (claim) return { kind: 'host', hostId: claim.hostId };
    throw unauthenticated('the host token is not valid: the host was removed or the token was replaced; register the runner again with a new join token');
  }
  throw unauthenticated('unknown kind of token: expected an operator token (fza_…) or a host token (fzh_…)');
}

/** What the caller is, as the console shows it: the operator token acts with every right. */
export const callerOf = (principal: Principal) =>
  principal.kind === 'host' ? { kind: 'HOST', role: 'VIEWER' } : { kind: 'OPERATOR', role: 'ADMIN' };

export async function contextFromHeaders(headers: { get(name: string): string | undefined | null }): Promise<Context> {
  const authorization = headers.get('authorization') ?? undefined;
  return { principal: await authenticate(authorization), authorization };
}

/** Which root fields a principal other than an operator may call. Everything else needs an operator. */
export interface AccessPolicy {
  anonymous?: string[];
  host?: string[];
}

type Resolver = (parent: unknown, args: unknown, ctx: Context, info: unknown) => unknown;
type ResolverMap = Record<string, Record<string, unknown>>;

const allowed = (principal: Principal, field: string, policy: AccessPolicy) =>
  principal.kind === 'operator' ||
  policy.anonymous?.includes(field) ||
  (principal.kind === 'host' && policy.host?.includes(field));

/**
 * Wraps every root field and every entity reference resolver so that nothing is reachable without a credential.
 * Entity lookups come from the gateway on behalf of an operator's query, so they need an operator too.
 */
export function secure<T extends ResolverMap>(resolvers: T, policy: AccessPolicy = {}): T {
  const out: ResolverMap = {};
  for (const [typeName, fields] of Object.entries(resolvers)) {
    const root = typeName === 'Query' || typeName === 'Mutation';
    // Entity stubs owned by another subgraph have no reference resolver of their own; give them one to guard.
    out[typeName] = root || fields.__resolveReference ? { ...fields } : { ...fields, __resolveReference: (reference: unknown) => reference };
    for (const [field, resolver] of Object.entries(out[typeName])) {
      if (!root && field !== '__resolveReference') continue;
      const name = root ? field : `${typeName}.__resolveReference`;
      const deny = (ctx: Context) => {
        if (allowed(ctx.principal, name, policy)) return;
        if (ctx.principal.kind === 'anonymous') throw new AppError('UNAUTHENTICATED', `${name} needs a credential: send "Authorization: Bearer <operator token>"`);
        throw new AppError('FORBIDDEN', `${name} is not allowed for a host runner`);
      };
      // Apollo calls reference resolvers as (reference, context, info) and field resolvers as (parent, args, context, info).
      out[typeName][field] = root
        ? (parent: unknown, args: unknown, ctx: Context, info: unknown) => (deny(ctx), (resolver as Resolver)(parent, args, ctx, info))
        : (reference: unknown, ctx: Context, info: unknown) => (deny(ctx), (resolver as (r: unknown, c: Context, i: unknown) => unknown)(reference, ctx, info));
    }
  }
  return out as T;
}

export function requireHost(ctx: Context): string {
  if (ctx.principal.kind !== 'host') throw new AppError('FORBIDDEN', 'only a host runner (with its host token) may call this');
  return ctx.principal.hostId;
}
