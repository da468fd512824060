import { createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { GraphQLError } from 'graphql';
import { ROLES, type Role } from './apikeys';
import { config } from './config';
import { hashSecret } from './ids';
import { Verified } from './verified';

/**
 * Bearer JWTs of an external identity provider, verified with `jose` against the provider's JWKS (fetched and cached
 * by jose, refreshed when a token names an unknown key id). One claim carries the role.
 */
export interface JwtIdentity {
  subject: string;
  role: Role;
  /** ms since epoch; subscriptions stop delivering after it. */
  expiresAt: number | null;
}

let keySet: { url: string; get: JWTVerifyGetKey } | undefined;
const jwks = (url: string) => {
  if (keySet?.url !== url) keySet = { url, get: createRemoteJWKSet(new URL(url), { timeoutDuration: 5_000, cooldownDuration: 30_000 }) };
  return keySet.get;
};

const refused = (message: string, code = 'UNAUTHENTICATED') =>
  new GraphQLError(message, { extensions: { code, http: { status: code === 'UNAUTHENTICATED' ? 401 : 403 } } });

export const looksLikeJwt = (token: string) => /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/.test(token);

/** The highest role any of the claim's values maps to: a value is a role name, or a name `roleMap` maps. */
export function roleOf(claim: unknown, roleMap: string): Role | null {
  const map = new Map<string, Role>();
  for (const pair of roleMap.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, role] = pair.split('=').map((s) => s.trim());
    if (ROLES.includes(role?.toUpperCase() as Role)) map.set(name, role.toUpperCase() as Role);
  }
  const values = (Array.isArray(claim) ? claim : [claim]).filter((v): v is string => typeof v === 'string');
  const roles = values.map((v) => map.get(v) ?? (ROLES.includes(v.toUpperCase() as Role) ? v.toUpperCase() as Role : null));
  return roles.reduce<Role | null>((best, r) => (r && (!best || ROLES.indexOf(r) > ROLES.indexOf(best)) ? r : best), null);
}

/**
 * JWTs found valid (lib/verified.ts), never past their expiry: a query's subgraph checks over HTTP verify the token
 * once (about 0.2 ms of CPU each here). A JWT cannot be revoked before it expires.
 */
const verified = new Verified<JwtIdentity>();

export async function verifyJwt(token: string, now = Date.now()): Promise<JwtIdentity> {
  const hash = hashSecret(token);
  const hit = verified.get(hash, now);
  if (hit) return hit;
  const mark = verified.mark();
  const identity = await verifyAtProvider(token);
  verified.remember(hash, identity, mark, now, identity.expiresAt ?? Infinity);
  return identity;
}

async function verifyAtProvider(token: string): Promise<JwtIdentity> {
  const c = config().jwt;
  if (!c.jwksUrl || !c.issuer) {
    throw refused('bearer JWTs are not accepted here: no identity provider is configured (FZ_JWT_JWKS_URL and FZ_JWT_ISSUER)');
  }
  let payload;
  try {
    ({ payload } = await jwtVerify(token, jwks(c.jwksUrl), { issuer: c.issuer, audience: c.audience, algorithms: ['RS256', 'ES256', 'EdDSA', 'PS256'] }));
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw refused('the JWT has expired: get a new one from the identity provider');
    if (err instanceof errors.JWTClaimValidationFailed) throw refused(`the JWT was refused: its "${err.claim}" claim is not what this API expects`);
    if (err instanceof errors.JOSEError) throw refused(`the JWT was refused (${err.code}): it is not signed by the configured identity provider`);
    throw refused('the JWT could not be checked: the identity provider\'s key set is unreachable; try again');
  }
  const role = roleOf(payload[c.roleClaim], c.roleMap);
  if (!role) throw refused(`the JWT grants no role: its "${c.roleClaim}" claim maps to none of VIEWER, OPERATOR, ADMIN`, 'FORBIDDEN');
  if (!payload.sub) throw refused('the JWT has no "sub" claim: the caller cannot be named in the audit log');
  return { subject: payload.sub, role, expiresAt: payload.exp ? payload.exp * 1000 : null };
}
