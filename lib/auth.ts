import { GraphQLError } from 'graphql';
import { getApiKey, keyOfSecret, ROLES, type Role, type Scope } from './apikeys';
import { audit, redact, type Outcome } from './audit';
import { AppError } from './errors';
import { hashSecret, matchesHash } from './ids';
import { config } from './config';
import { looksLikeJwt, verifyJwt } from './jwt';
import { CertificateError, checkHostCertificate, platformCa } from './pca';
import { store, type Store } from './store';
import { verifiedPerStore } from './verified';

export type { Role, Scope } from './apikeys';

/**
 * Who is calling: an operator (a person or automation with a role: the bootstrap admin token, an API key or an
 * identity provider's JWT), a host runner (acts only for its own host), or nobody yet.
 */
export type OperatorPrincipal = { kind: 'operator'; id: string; role: Role; scope?: Scope | null; expiresAt?: number | null };
export type Principal =
  | OperatorPrincipal
  | { kind: 'host'; hostId: string }
  | { kind: 'anonymous' };

export interface Context {
  principal: Principal;
  /** The raw Authorization header, forwarded by the gateway to the subgraphs it calls over HTTP. */
  authorization?: string;
  /** Names the request in the audit log; the gateway forwards it to the subgraphs. */
  requestId?: string;
}

/** The bootstrap admin token (`npm start` writes it to .fangzhou/admin-token). */
export const BOOTSTRAP_ADMIN: OperatorPrincipal = { kind: 'operator', id: 'admin-token', role: 'ADMIN' };

const unauthenticated = (message: string) =>
  new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });

/**
 * With the platform CA on, a host token is accepted only with the host's client certificate (mutual TLS): issued by
 * the CA, valid, naming this host, and the one its host record names now (or the one it replaced) — so a revoked
 * host's certificate stops working at once, whatever its expiry.
 */
async function checkClientCertificate(hostId: string, clientCert: string | null | undefined): Promise<void> {
  const ca = platformCa();
  if (!ca) return;
  const host = await store().get<{ tokenRevokedAt?: string | null; certificate?: { serial: string } | null; previousCertificate?: { serial: string } | null }>('hosts', hostId);
  if (!host || host.tokenRevokedAt) throw unauthenticated(`host ${hostId} was revoked or removed`);
  try {
    await checkHostCertificate(await ca, clientCert, hostId, [host.certificate?.serial, host.previousCertificate?.serial]);
  } catch (err) {
    if (err instanceof CertificateError) throw unauthenticated(err.message);
    throw err;
  }
}

/** Host tokens found valid, per store (lib/verified.ts): a runner's beats, syncs and notices read the token's claim once. */
const verifiedHosts = verifiedPerStore<Store, string>(10_000);

async function hostOfToken(token: string): Promise<string | undefined> {
  const db = store();
  const known = verifiedHosts(db);
  const hash = hashSecret(token);
  const hit = known.get(hash);
  if (hit) return hit;
  const mark = known.mark();
  // Looked up by its hash: the store compares keys, no secret is compared in this process.
  const claim = await db.get<{ hostId: string }>('claims', `host-token#${hash}`);
  if (!claim) return undefined;
  known.remember(hash, claim.hostId, mark);
  return claim.hostId;
}

/** The host token with this hash was revoked or its host removed: this process stops taking it at once. */
export function forgetHostToken(db: Store, tokenHash: string): void {
  verifiedHosts(db).forget((_, hash) => hash === tokenHash);
}

/** `clientCert`: the PEM client certificate the TLS connection presented (and the server verified), if any. */
export async function authenticate(authorization: string | undefined, clientCert?: string | null): Promise<Principal> {
  if (!authorization) return { kind: 'anonymous' };
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!match) throw unauthenticated('the Authorization header must be "Bearer <token>"');
  const token = match[1];
  if (token.startsWith('fza_')) {
    const expected = config().adminTokenHash;
    if (expected && matchesHash(token, expected)) return BOOTSTRAP_ADMIN;
    throw unauthenticated('the admin token is not valid (npm start writes the current one to .fangzhou/admin-token)');
  }
  if (token.startsWith('fzk_')) {
    const key = await keyOfSecret(store(), token);
    if (key) return { kind: 'operator', id: key.id, role: key.role, scope: key.scope };
    throw unauthenticated('the API key is not valid: it was revoked, or the secret is mistyped (an admin can create a new one with createApiKey)');
  }
  if (token.startsWith('fzh_')) {
    const hostId = await hostOfToken(token);
    if (hostId) {
      await checkClientCertificate(hostId, clientCert);
      return { kind: 'host', hostId };
    }
    throw unauthenticated('the host token is not valid: the host was removed or revoked, or the token was replaced; register the runner again with a new join token');
  }
  if (looksLikeJwt(token)) {
    const identity = await verifyJwt(token);
    return { kind: 'operator', id: `jwt:${identity.subject}`, role: identity.role, expiresAt: identity.expiresAt };
  }
  throw unauthenticated('unknown kind of token: expected an API key (fzk_…), the admin token (fza_…), a host token (fzh_…) or a JWT of the configured identity provider');
}

/**
 * The principal as it stands now, for long-lived uses (a subscription re-checks at each delivery): a revoked key,
 * a removed host token or an expired JWT gives null; a key's changed role or scope is picked up.
 */
export async function refreshPrincipal(principal: Principal, now = Date.now()): Promise<Principal | null> {
  if (principal.kind === 'anonymous') return null;
  if (principal.kind === 'host') {
    const host = await store().get<{ tokenRevokedAt?: string | null }>('hosts', principal.hostId);
    return host && !host.tokenRevokedAt ? principal : null;
  }
  if (principal.expiresAt && principal.expiresAt <= now) return null;
  if (principal.id === BOOTSTRAP_ADMIN.id || principal.id.startsWith('jwt:')) return principal;
  const key = await getApiKey(store(), principal.id);
  return key && !key.revokedAt ? { kind: 'operator', id: key.id, role: key.role, scope: key.scope } : null;
}

/** What the caller is, as the console shows it (what it may do follows from the role). */
export const callerOf = (principal: Principal) =>
  principal.kind === 'operator' ? { kind: 'OPERATOR', role: principal.role } : { kind: 'HOST', role: 'VIEWER' };

export async function contextFromHeaders(headers: { get(name: string): string | undefined | null }): Promise<Context> {
  const authorization = headers.get('authorization') ?? undefined;
  return { principal: await authenticate(authorization), authorization, requestId: headers.get('x-request-id') ?? undefined };
}

/** How the audit log and error messages name a principal. */
export const principalName = (p: Principal) => (p.kind === 'operator' ? p.id : p.kind === 'host' ? `host:${p.hostId}` : 'anonymous');

/**
 * Who may call a root field: a minimum role (VIEWER < OPERATOR < ADMIN), `HOST` (host runners only) or `ANYONE`
 * (also without a credential; the field checks its own secret, like registerHost's join token). A key scoped to some
 * products or releases may change only those and read only what belongs to them: a mutation names what it changes
 * with `target`; a query names what it reads with `visible` (or `target`), and a list filters itself (scopeOf).
 */
export type Rule = Role | 'HOST' | 'ANYONE';
export interface Target { product?: string | null; releaseId?: string | null }
/** For a read by a scoped key: whether what it asks for is in the scope; null when it does not exist (answered as for anyone). */
export type Visible = (args: any, scope: Scope) => Promise<boolean | null> | boolean | null;
export interface FieldRule {
  rule: Rule;
  target?: (args: any) => Promise<Target | null> | Target | null;
  visible?: Visible;
  /**
   * For a change that reaches beyond its target (a deploy that creates or relies on releases of the products it
   * depends on): what of it lies outside the scope, said only as the scope may see it, and what to do; null when
   * nothing does. Asked once the target passed, before any work.
   */
  reach?: (args: any, scope: Scope) => Promise<string | null> | string | null;
}
export interface AccessRules {
  /** Query fields not listed need VIEWER. */
  Query?: Record<string, Rule | FieldRule>;
  /** Every mutation must be listed; one that is not needs ADMIN (and the permission matrix test fails). */
  Mutation?: Record<string, Rule | FieldRule>;
  /**
   * Entities whose reference (the gateway's lookup on behalf of a caller, or a direct `_entities` call) belongs to a
   * product or release: one outside a scoped key's scope is FORBIDDEN, so a subgraph called directly leaks nothing.
   */
  entities?: Record<string, Visible>;
}

/**
 * Mutations that are not audited: a runner's sync, its heartbeat and its log chunks (answers and tails) are reports, not changes by a
 * person. (Audited, each heartbeat of every host appended to the one hash chain: at 20 hosts the appends already
 * lost most of their races for the next entry and heartbeats queued behind each other for seconds.)
 */
const NOT_AUDITED = new Set(['runnerSync', 'runnerHeartbeat', 'runnerLogs', 'runnerLogTail']);

export const ruleOf = (rules: AccessRules, type: 'Query' | 'Mutation', field: string): FieldRule => {
  const r = rules[type]?.[field];
  if (r === undefined) return { rule: type === 'Query' ? 'VIEWER' : 'ADMIN' };
  return typeof r === 'string' ? { rule: r } : r;
};

/** Whether the principal's role passes the rule (scope aside). */
export function roleAllows(principal: Principal, rule: Rule): boolean {
  if (rule === 'ANYONE') return true;
  if (rule === 'HOST') return principal.kind === 'host';
  return principal.kind === 'operator' && ROLES.indexOf(principal.role) >= ROLES.indexOf(rule);
}

/**
 * The scope that limits what the principal reads and changes: an API key's, or null (unscoped keys, the admin token,
 * JWTs and host runners are not limited by one).
 */
export const scopeOf = (principal: Principal): Scope | null => (principal.kind === 'operator' && principal.scope) || null;

/** Whether a product or release lies in the scope: its product, or the release itself, is named there. */
export const inScope = (scope: Scope, target: Target | null | undefined): boolean =>
  !!target && ((!!target.product && scope.products.includes(target.product)) || (!!target.releaseId && scope.releases.includes(target.releaseId)));

/** A visibility check from a target function: in the scope, or null when the target does not exist. */
export const targetVisible = (target: NonNullable<FieldRule['target']>): Visible => async (args, scope) => {
  const t = await target(args);
  return t ? inScope(scope, t) : null;
};

/**
 * `extensions.reason` of a refusal for being outside a scoped key's scope. The publisher delivers nothing for an event
 * whose lookup is refused with it: the event is about something the subscriber may not see.
 */
export const OUT_OF_SCOPE = 'OUT_OF_SCOPE';

const scopeText = (principal: OperatorPrincipal, scope: Scope) =>
  `${principal.id} is scoped to products [${scope.products.join(', ')}] and releases [${scope.releases.join(', ')}]`;

/** How a refusal names what was asked for: the field and its arguments' values. */
const asked = (name: string, args: unknown) => {
  const values = Object.values((args ?? {}) as Record<string, unknown>).filter((v) => v !== undefined && v !== null).map((v) => JSON.stringify(v));
  const text = values.length ? `${name}(${values.join(', ')})` : name;
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
};

/** A mutation changes; a query, an entity reference or a subscription's lookup reads. */
export type Access = 'change' | 'read';

const check = (ctx: Context, name: string, fieldRule: FieldRule, args: unknown, access: Access = 'change') => authorize(ctx.principal, name, fieldRule, args, access);

/**
 * Throws UNAUTHENTICATED or FORBIDDEN unless the principal may use `name` with these arguments: its role passes the
 * rule and, for a scoped key, what it changes (`target`, and all a change `reach`es) or reads (`visible`, else
 * `target`) is one of its products or releases. A read of something that does not exist passes, and is answered as
 * for anyone (null or NOT_FOUND). Also used outside a resolver, e.g. when a subscription is made
 * (gateway/subscriptions.ts).
 */
export async function authorize(principal: Principal, name: string, fieldRule: FieldRule, args: unknown, access: Access = 'change'): Promise<void> {
  if (!roleAllows(principal, fieldRule.rule)) {
    if (principal.kind === 'anonymous') throw new AppError('UNAUTHENTICATED', `${name} needs a credential: send "Authorization: Bearer <API key>"`);
    if (principal.kind === 'host') throw new AppError('FORBIDDEN', `${name} is not allowed for a host runner`);
    throw new AppError('FORBIDDEN', `${name} needs the ${fieldRule.rule} role; ${principal.id} has ${principal.role}`);
  }
  const scope = scopeOf(principal);
  if (!scope || principal.kind !== 'operator') return;
  if (access === 'read') {
    const visible = fieldRule.visible ?? (fieldRule.target && targetVisible(fieldRule.target));
    if (visible && (await visible(args, scope)) === false) {
      throw new AppError('FORBIDDEN', `${scopeText(principal, scope)}: ${asked(name, args)} is outside it`, { reason: OUT_OF_SCOPE });
    }
    return;
  }
  if (fieldRule.rule === 'VIEWER') return;
  const target = fieldRule.target ? await fieldRule.target(args) : null;
  if (!inScope(scope, target)) {
    const what = target ? `${target.releaseId ? `release ${target.releaseId}` : ''}${target.product ? ` of product ${target.product}` : ''}`.trim() : 'this change (it acts on no single product or release)';
    throw new AppError('FORBIDDEN', `${scopeText(principal, scope)}: ${name} on ${what} is outside it`, { reason: OUT_OF_SCOPE });
  }
  const beyond = fieldRule.reach ? await fieldRule.reach(args, scope) : null;
  if (beyond) throw new AppError('FORBIDDEN', `${scopeText(principal, scope)}: ${beyond}`, { reason: OUT_OF_SCOPE });
}

type Resolver = (parent: unknown, args: unknown, ctx: Context, info: unknown) => unknown;
type ResolverMap = Record<string, Record<string, unknown>>;

const codeOf = (err: unknown) => String((err as { extensions?: { code?: unknown } })?.extensions?.code ?? 'INTERNAL');

function audited(name: string, ctx: Context, args: unknown, outcome: Outcome, code: string | null) {
  return audit(store(), {
    at: new Date().toISOString(),
    principal: principalName(ctx.principal),
    role: ctx.principal.kind === 'operator' ? ctx.principal.role : ctx.principal.kind === 'host' ? 'HOST' : null,
    operation: name,
    input: JSON.stringify(redact(args) ?? {}),
    outcome,
    code,
    requestId: ctx.requestId ?? null,
  });
}

/**
 * Wraps every root field and every entity reference resolver with its access rule, in the subgraph that owns the
 * field, so nothing is reachable without a credential even when a subgraph is called directly. Entity lookups come
 * from the gateway on behalf of a caller's query and need VIEWER (and, for a scoped key, an entity in its scope).
 * Every mutation but a runner's reports (sync, heartbeat, logs) is audited, refusals included.
 */
export function secure<T extends ResolverMap>(resolvers: T, rules: AccessRules = {}): T {
  const out: ResolverMap = {};
  for (const [typeName, fields] of Object.entries(resolvers)) {
    const root = typeName === 'Query' || typeName === 'Mutation';
    // Entity stubs owned by another subgraph have no reference resolver of their own; give them one to guard.
    out[typeName] = root || fields.__resolveReference ? { ...fields } : { ...fields, __resolveReference: (reference: unknown) => reference };
    for (const [field, resolver] of Object.entries(out[typeName])) {
      if (!root && field !== '__resolveReference') continue;
      if (!root) {
        const name = `${typeName}.__resolveReference`;
        const rule: FieldRule = { rule: 'VIEWER', visible: rules.entities?.[typeName] };
        // Apollo calls reference resolvers as (reference, context, info).
        out[typeName][field] = async (reference: unknown, ctx: Context, info: unknown) => {
          await check(ctx, name, rule, reference, 'read');
          return (resolver as (r: unknown, c: Context, i: unknown) => unknown)(reference, ctx, info);
        };
        continue;
      }
      const rule = ruleOf(rules, typeName as 'Query' | 'Mutation', field);
      const auditing = typeName === 'Mutation' && !NOT_AUDITED.has(field);
      out[typeName][field] = async (parent: unknown, args: unknown, ctx: Context, info: unknown) => {
        try {
          await check(ctx, field, rule, args, typeName === 'Query' ? 'read' : 'change');
        } catch (err) {
          // Callers without a credential are refused before any work, and not written down (no log flooding).
          if (auditing && ctx.principal.kind !== 'anonymous') await audited(field, ctx, args, 'DENIED', codeOf(err));
          throw err;
        }
        if (!auditing) return (resolver as Resolver)(parent, args, ctx, info);
        try {
          const result = await (resolver as Resolver)(parent, args, ctx, info);
          await audited(field, ctx, args, 'OK', null);
          return result;
        } catch (err) {
          await audited(field, ctx, args, 'ERROR', codeOf(err));
          throw err;
        }
      };
    }
  }
  return out as T;
}

export function requireHost(ctx: Context): string {
  if (ctx.principal.kind !== 'host') throw new AppError('FORBIDDEN', 'only a host runner (with its host token) may call this');
  return ctx.principal.hostId;
}

/** The principal a mutation is done by, for records that name their author (e.g. an API key's creator). */
export const actor = (ctx: Context) => principalName(ctx.principal);
