import {
  ApiGatewayManagementApiClient, DeleteConnectionCommand, PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import {
  GraphQLError, Kind, getArgumentValues, getOperationAST, getVariableValues, parse, print, validate, visit,
  type DocumentNode, type FieldNode, type FragmentDefinitionNode, type GraphQLFormattedError, type GraphQLSchema,
  type OperationDefinitionNode, type SelectionSetNode, type VariableDefinitionNode,
} from 'graphql';
import { authenticate, BOOTSTRAP_ADMIN, inScope, OUT_OF_SCOPE, principalName, scopeOf, roleAllows, type Principal } from '../lib/auth';
import { config } from '../lib/config';
import { AppError } from '../lib/errors';
import { log } from '../lib/log';
import { caCertFile } from '../lib/pca';
import type { Store } from '../lib/store';
import { followLogs, unfollowLogs } from '../subgraphs/ark';

/**
 * Subscriptions over API Gateway WebSockets, in the graphql-ws protocol (subprotocol `graphql-transport-ws`).
 *
 * API Gateway keeps the socket; every message is one Lambda call with no memory of the previous ones, so the
 * protocol state lives in the `subscriptions` table:
 * - `conn#<connectionId>`: the connection (management endpoint, whether connection_init was received, the
 *   principal once acknowledged). Written at $connect, removed at $disconnect or when a post finds it gone (410).
 * - `sub#<connectionId>#<operation id>`: one subscription, already rewritten into the lookup query the publisher
 *   runs for each event (DESIGN.md "Subscriptions"), with its topic and filter. The create is conditional, so a
 *   duplicate operation id is detected by the store, not by a read that could race.
 *
 * Topics: `alarmRaised` → `alarm`; `containerStatusChanged` → `container`; `releaseProgress(releaseId)` →
 * `release:<releaseId>`; `hostDesiredStateChanged` → `host:<the subscriber's own host id>`; `instanceLogTail(instanceId)`
 * → `logs:<instanceId>` (fed by chunks of a followed container, not by events: its subscribe starts Ark's follow and
 * its end, however it comes, stops it). An event is offered to
 * the subscriptions whose topic equals one of the event's `topics` or is a prefix of one up to a `:` (so an event
 * with `container:<releaseId>:<hostId>` reaches topic `container`), then the subscription's filter decides (alarm
 * severity ≥ minSeverity; container releaseId/hostId when given; the host of a desired-state change).
 *
 * Who may subscribe: an operator to everything but `hostDesiredStateChanged` (`instanceLogTail` needs the OPERATOR role
 * and, for a scoped key, the instance's product or release: FORBIDDEN otherwise); a host runner (host token) only to
 * `hostDesiredStateChanged`, which always means its own host (anything else closes the connection with 4403).
 * A key scoped to some products or releases receives only what is theirs: a release filter outside its scope is
 * FORBIDDEN at subscribe, and each delivery's lookup, run as the subscriber, is refused by the owning subgraph with
 * `extensions.reason` OUT_OF_SCOPE for an event about anything else (another release, a host, the platform), which
 * the publisher then does not send.
 *
 * Close codes: API Gateway cannot close a socket with a status code of our choosing (DeleteConnection has no code;
 * clients see 1000, serverless-offline gives 1005). So a close is a protocol-valid `ping` whose payload carries the
 * graphql-ws close code and reason, `{"type":"ping","payload":{"close":{"code":4401,"reason":"Unauthorized"}}}`,
 * followed by DeleteConnection. A graphql-ws client sees it in `on.ping(received, payload)`. Server mode (server/)
 * closes the real socket with that code and reason as well.
 */

export const PROTOCOL = 'graphql-transport-ws';
export const SUBSCRIPTIONS_TABLE = 'subscriptions' as const;

/** The graphql-ws close codes this server decides on. */
export const CloseCode = {
  BadRequest: 4400,
  Unauthorized: 4401,
  Forbidden: 4403,
  SubscriberAlreadyExists: 4409,
  TooManyInitialisationRequests: 4429,
  InternalServerError: 4500,
} as const;

export interface ConnectionRecord {
  id: string;
  kind: 'connection';
  connectionId: string;
  /** The API Gateway management endpoint to post to this connection. */
  endpoint: string;
  /** connection_init was received (a second one is refused with 4429). */
  initialised: boolean;
  /** Set when connection_init authenticated an operator or a host runner and connection_ack was sent. */
  principal: Principal | null;
  connectedAt: string;
  acknowledgedAt: string | null;
  seq: number;
}

export type SubscriptionField = 'alarmRaised' | 'containerStatusChanged' | 'releaseProgress' | 'hostDesiredStateChanged' | 'instanceLogTail';

/** The one field a host runner may subscribe to. */
export const HOST_SUBSCRIPTION: SubscriptionField = 'hostDesiredStateChanged';

export interface SubscriptionFilter {
  minSeverity?: 'CRITICAL' | 'WARNING' | 'INFO';
  releaseId?: string | null;
  hostId?: string | null;
  instanceId?: string | null;
}

/** What a subscribe message becomes once validated: the lookup query to run per event, its topic and filter. */
export interface PreparedSubscription {
  field: SubscriptionField;
  topic: string;
  filter: SubscriptionFilter;
  /** The rewritten operation: `query ($<lookupVariable>: ID!, …) { <responseKey>: <lookup>(<arg>: $<lookupVariable>) { … } }`. */
  query: string;
  /** The client's variables that the rewritten query still uses. */
  variables: Record<string, unknown>;
  lookupVariable: string;
  /** The key of the root field in the result (the client's alias, or the subscription field's name). */
  responseKey: string;
}

export interface SubscriptionRecord extends PreparedSubscription {
  id: string;
  kind: 'subscription';
  connectionId: string;
  subscriptionId: string;
  endpoint: string;
  principal: Principal;
  createdAt: string;
  seq: number;
}

/** Each subscription field, the lookup query field it becomes, and which id of the event it is looked up by. */
export const LOOKUPS: Record<SubscriptionField, { lookup: string; argument: string; eventKey: 'alarmId' | 'instanceId' | 'id' }> = {
  alarmRaised: { lookup: 'alarm', argument: 'id', eventKey: 'alarmId' },
  containerStatusChanged: { lookup: 'containerStatus', argument: 'instanceId', eventKey: 'instanceId' },
  releaseProgress: { lookup: 'event', argument: 'id', eventKey: 'id' },
  hostDesiredStateChanged: { lookup: 'hostDesiredStateChange', argument: 'eventId', eventKey: 'id' },
  instanceLogTail: { lookup: 'logTail', argument: 'id', eventKey: 'id' },
};

/** The kind of what the publisher makes of a chunk of a followed container's output (Ark's subgraphs/ark/logtail.ts). */
export const LOG_TAIL = 'LOG_TAIL';

/** The kind of the events behind hostDesiredStateChanged (written by Ark's subgraphs/ark/instances.ts). */
const HOST_DESIRED_CHANGED = 'HOST_DESIRED_CHANGED';

export const connectionKey = (connectionId: string) => `conn#${connectionId}`;
export const subscriptionKey = (connectionId: string, id: string) => `sub#${connectionId}#${id}`;

/** The part of the store this module needs (a fake in unit tests). */
export type SubscriptionStore = Pick<Store, 'get' | 'create' | 'mutate' | 'remove' | 'query'>;

// ---------------------------------------------------------------------------------------------------------------
// Messages

export type ClientMessage =
  | { type: 'connection_init'; payload?: Record<string, unknown> | null }
  | { type: 'ping'; payload?: Record<string, unknown> | null }
  | { type: 'pong'; payload?: Record<string, unknown> | null }
  | { type: 'subscribe'; id: string; payload: SubscribePayload }
  | { type: 'complete'; id: string };

export interface SubscribePayload {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
  extensions?: Record<string, unknown> | null;
}

const MAX_ID_LENGTH = 256;

const kindOf = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value);
const isObject = (value: unknown): value is Record<string, unknown> => kindOf(value) === 'object';

/** Parses one client message; a reason (for close 4400) when it is not a valid graphql-ws client message. */
export function parseClientMessage(body: string | undefined | null): { message: ClientMessage } | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(body ?? '');
  } catch {
    return { error: 'Invalid message received: not JSON' };
  }
  if (!isObject(value)) return { error: `Invalid message received: expected an object, got ${kindOf(value)}` };
  const { type, id, payload } = value;
  if (typeof type !== 'string') return { error: `Invalid message received: 'type' must be a string, got ${kindOf(type)}` };
  const optionalObject = (name: string, v: unknown) =>
    v === undefined || v === null || isObject(v) ? null : `"${type}" message expects '${name}' to be an object or missing, got ${kindOf(v)}`;
  const requireId = () => {
    if (typeof id !== 'string' || id === '') return `"${type}" message requires a non-empty string 'id'`;
    if (id.length > MAX_ID_LENGTH) return `"${type}" message 'id' is longer than ${MAX_ID_LENGTH} characters`;
    return null;
  };
  switch (type) {
    case 'connection_init':
    case 'ping':
    case 'pong': {
      const problem = optionalObject('payload', payload);
      return problem ? { error: problem } : { message: { type, payload: payload as Record<string, unknown> | null | undefined } };
    }
    case 'subscribe': {
      const problem = requireId()
        ?? (isObject(payload) ? null : `"subscribe" message expects 'payload' to be an object, got ${kindOf(payload)}`)
        ?? (typeof (payload as Record<string, unknown>).query === 'string' ? null : `"subscribe" message payload expects 'query' to be a string`)
        ?? optionalObject('payload.variables', (payload as Record<string, unknown>).variables)
        ?? optionalObject('payload.extensions', (payload as Record<string, unknown>).extensions);
      if (problem) return { error: problem };
      const { operationName } = payload as Record<string, unknown>;
      if (operationName !== undefined && operationName !== null && typeof operationName !== 'string') {
        return { error: `"subscribe" message payload expects 'operationName' to be a string or missing, got ${kindOf(operationName)}` };
      }
      return { message: { type, id: id as string, payload: payload as unknown as SubscribePayload } };
    }
    case 'complete': {
      const problem = requireId();
      return problem ? { error: problem } : { message: { type, id: id as string } };
    }
    case 'connection_ack':
    case 'next':
    case 'error':
      return { error: `Unexpected message of type ${type} received: only a server sends it` };
    default:
      return { error: `Invalid message received: unknown type "${type.slice(0, 40)}"` };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Subscribe: validation and the rewrite into a lookup query

const requestError = (error: GraphQLError, reason: string): GraphQLFormattedError => ({
  ...error.toJSON(),
  extensions: { ...(error.extensions ?? {}), code: (error.extensions?.code as string | undefined) ?? 'BAD_USER_INPUT', reason },
});

const userError = (message: string, code = 'BAD_USER_INPUT'): GraphQLFormattedError => ({ message, extensions: { code } });

/** Every field, fragment spread and variable reachable from a selection set, following fragments. */
function collectUses(selectionSet: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>, used = { fragments: new Set<string>(), variables: new Set<string>() }) {
  visit(selectionSet, {
    FragmentSpread(node) {
      if (used.fragments.has(node.name.value)) return;
      used.fragments.add(node.name.value);
      const fragment = fragments.get(node.name.value);
      if (fragment) collectUses(fragment.selectionSet, fragments, used);
    },
    Variable(node) {
      used.variables.add(node.name.value);
    },
  });
  return used;
}

/** The one root field of a (validated) subscription, looking through fragments at the root. */
function rootField(selectionSet: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>): FieldNode | undefined {
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) return selection;
    const inner = selection.kind === Kind.INLINE_FRAGMENT ? selection.selectionSet : fragments.get(selection.name.value)?.selectionSet;
    const found = inner && rootField(inner, fragments);
    if (found) return found;
  }
  return undefined;
}

/**
 * Validates a subscribe payload against the API schema and rewrites it: the root subscription field becomes the
 * lookup field (`alarmRaised(minSeverity: X) { sel }` → `alarmRaised: alarm(id: $fzLookupId) { sel }`), keeping the
 * operation's name, fragments, directives and the variables that are still used. Errors are GraphQL formatted
 * errors for an `error` message (the connection stays open). `principal` is the subscriber: the topic of
 * `hostDesiredStateChanged` is its own host; it is no field for an operator.
 */
export function prepareSubscription(schema: GraphQLSchema, payload: SubscribePayload, principal: Principal = BOOTSTRAP_ADMIN): PreparedSubscription | { errors: GraphQLFormattedError[] } {
  let document: DocumentNode;
  try {
    document = parse(payload.query);
  } catch (err) {
    return { errors: [requestError(err as GraphQLError, 'GRAPHQL_PARSE_FAILED')] };
  }
  const validationErrors = validate(schema, document);
  if (validationErrors.length) return { errors: validationErrors.map((e) => requestError(e, 'GRAPHQL_VALIDATION_FAILED')) };

  const operation = getOperationAST(document, payload.operationName ?? undefined);
  if (!operation) {
    return { errors: [userError(payload.operationName ? `Unknown operation named "${payload.operationName}"` : 'Must provide operation name if query contains multiple operations')] };
  }
  if (operation.operation !== 'subscription') {
    return { errors: [userError(`only subscriptions are served over the WebSocket; send this ${operation.operation} to POST /graphql`)] };
  }
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], payload.variables ?? {}, { maxErrors: 20 });
  if (coerced.errors) return { errors: coerced.errors.map((e) => requestError(e, 'BAD_USER_INPUT')) };

  const fragments = new Map(document.definitions.filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION).map((f) => [f.name.value, f]));
  const field = rootField(operation.selectionSet, fragments);
  const fieldName = field?.name.value;
  if (!field || !fieldName || !(fieldName in LOOKUPS)) {
    return { errors: [userError(`subscription field "${fieldName}" is not served here; subscribe to one of ${Object.keys(LOOKUPS).join(', ')}`)] };
  }
  const name = fieldName as SubscriptionField;
  const fieldDef = schema.getSubscriptionType()!.getFields()[name];
  const args = getArgumentValues(fieldDef, field, coerced.coerced) as Record<string, string | null | undefined>;

  let topic: string;
  let filter: SubscriptionFilter;
  if (name === 'alarmRaised') {
    topic = 'alarm';
    filter = { minSeverity: (args.minSeverity ?? 'INFO') as SubscriptionFilter['minSeverity'] };
  } else if (name === 'containerStatusChanged') {
    topic = 'container';
    filter = { releaseId: args.releaseId ?? null, hostId: args.hostId ?? null };
  } else if (name === 'hostDesiredStateChanged') {
    if (principal.kind !== 'host') {
      return { errors: [userError('hostDesiredStateChanged is for host runners: connect with the host token (fzh_…) of the host whose changes you want', 'FORBIDDEN')] };
    }
    topic = `host:${principal.hostId}`;
    filter = { hostId: principal.hostId };
  } else if (name === 'instanceLogTail') {
    if (principal.kind !== 'operator' || !roleAllows(principal, 'OPERATOR')) {
      return { errors: [userError(`instanceLogTail needs the OPERATOR role${principal.kind === 'operator' ? `; ${principal.id} has ${principal.role}` : ''}`, 'FORBIDDEN')] };
    }
    topic = `logs:${args.instanceId}`;
    filter = { instanceId: args.instanceId };
  } else {
    if (!args.releaseId) return { errors: [userError('releaseProgress needs a releaseId')] };
    topic = `release:${args.releaseId}`;
    filter = { releaseId: args.releaseId };
  }

  // The rewrite. The lookup variable gets a name the operation does not use yet.
  const definedVariables = new Set((operation.variableDefinitions ?? []).map((v) => v.variable.name.value));
  let lookupVariable = 'fzLookupId';
  while (definedVariables.has(lookupVariable)) lookupVariable += '_';
  const { lookup, argument } = LOOKUPS[name];
  const responseKey = field.alias?.value ?? field.name.value;
  const lookupField: FieldNode = {
    kind: Kind.FIELD,
    alias: { kind: Kind.NAME, value: responseKey },
    name: { kind: Kind.NAME, value: lookup },
    arguments: [{ kind: Kind.ARGUMENT, name: { kind: Kind.NAME, value: argument }, value: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: lookupVariable } } }],
    directives: field.directives,
    selectionSet: field.selectionSet,
  };
  const selectionSet: SelectionSetNode = { kind: Kind.SELECTION_SET, selections: [lookupField] };
  const uses = collectUses(selectionSet, fragments);
  const keptVariables = (operation.variableDefinitions ?? []).filter((v) => uses.variables.has(v.variable.name.value));
  const lookupDefinition: VariableDefinitionNode = {
    kind: Kind.VARIABLE_DEFINITION,
    variable: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: lookupVariable } },
    type: { kind: Kind.NON_NULL_TYPE, type: { kind: Kind.NAMED_TYPE, name: { kind: Kind.NAME, value: 'ID' } } },
  };
  const query: OperationDefinitionNode = {
    kind: Kind.OPERATION_DEFINITION,
    operation: 'query' as OperationDefinitionNode['operation'],
    name: operation.name,
    variableDefinitions: [lookupDefinition, ...keptVariables],
    directives: [],
    selectionSet,
  };
  const rewritten: DocumentNode = {
    kind: Kind.DOCUMENT,
    definitions: [query, ...[...fragments.values()].filter((f) => uses.fragments.has(f.name.value))],
  };
  const variables: Record<string, unknown> = {};
  for (const v of keptVariables) {
    const key = v.variable.name.value;
    if (payload.variables && key in payload.variables) variables[key] = payload.variables[key];
  }
  return { field: name, topic, filter, query: print(rewritten), variables, lookupVariable, responseKey };
}

// ---------------------------------------------------------------------------------------------------------------
// Event matching (used by the publisher)

const SEVERITY_RANK = { INFO: 0, WARNING: 1, CRITICAL: 2 } as const;

/** The subscription topics an event reaches: each of its topics and their `:`-prefixes (`container:r:h` → `container`, `container:r`, `container:r:h`). */
export function topicsOfEvent(eventTopics: readonly string[]): string[] {
  const out = new Set<string>();
  for (const topic of eventTopics) {
    const parts = topic.split(':');
    for (let n = 1; n <= parts.length; n++) out.add(parts.slice(0, n).join(':'));
  }
  return [...out];
}

export interface MatchableEvent {
  id: string;
  at: string;
  kind?: string;
  severity: 'CRITICAL' | 'WARNING' | 'INFO';
  topics: string[];
  alarmId: string | null;
  instanceId: string | null;
  releaseId: string | null;
  hostId: string | null;
}

/** Events that happened before a subscription existed are not replayed to it (a little grace for clock skew). */
const REPLAY_GRACE_MS = 2000;

/** Whether the event is for this subscription: topic, the subscription's filter, and an id to look it up by. */
export function matches(sub: Pick<SubscriptionRecord, 'field' | 'topic' | 'filter' | 'createdAt'>, event: MatchableEvent): boolean {
  if (!topicsOfEvent(event.topics ?? []).includes(sub.topic)) return false;
  if (Date.parse(event.at) < Date.parse(sub.createdAt) - REPLAY_GRACE_MS) return false;
  if (!lookupId(sub.field, event)) return false;
  switch (sub.field) {
    case 'alarmRaised':
      return SEVERITY_RANK[event.severity] >= SEVERITY_RANK[sub.filter.minSeverity ?? 'INFO'];
    case 'containerStatusChanged':
      return (!sub.filter.releaseId || sub.filter.releaseId === event.releaseId) && (!sub.filter.hostId || sub.filter.hostId === event.hostId);
    case 'releaseProgress':
      return true;
    case 'hostDesiredStateChanged':
      // A notice about one host, or a round told to many (no host of its own: its topics name them, checked above).
      return (event.kind === undefined || event.kind === HOST_DESIRED_CHANGED) && !!sub.filter.hostId && (event.hostId ?? sub.filter.hostId) === sub.filter.hostId;
    case 'instanceLogTail':
      return event.kind === LOG_TAIL && !!sub.filter.instanceId && sub.filter.instanceId === event.instanceId;
  }
}

export const lookupId = (field: SubscriptionField, event: MatchableEvent): string | null => event[LOOKUPS[field].eventKey] ?? null;

// ---------------------------------------------------------------------------------------------------------------
// The connection API (PostToConnection, DeleteConnection)

export type PostResult = 'sent' | 'gone';

export interface Connections {
  /** Sends one message; 'gone' when the connection no longer exists (410). Other failures throw. */
  post(endpoint: string, connectionId: string, message: object): Promise<PostResult>;
  /** Closes the connection (DeleteConnection); a connection that is already gone is fine. */
  close(endpoint: string, connectionId: string): Promise<void>;
}

/**
 * 410, or (server mode) nothing listening at the endpoint: the replica that held the socket is gone, and its
 * sockets with it, so its clients have reconnected elsewhere.
 */
const isGone = (err: unknown) => {
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'GoneException' || e?.$metadata?.httpStatusCode === 410 || e?.code === 'ECONNREFUSED';
};

/** The management endpoint of a connection: serverless-offline's WebSocket port offline, the API's stage URL in AWS. */
export function managementEndpoint(requestContext: { apiId?: string; domainName?: string; stage?: string }): string {
  if (process.env.FZ_WS_MANAGEMENT_ENDPOINT) return process.env.FZ_WS_MANAGEMENT_ENDPOINT;
  if (process.env.IS_OFFLINE) return `http://${process.env.FZ_LISTEN_HOST || 'localhost'}:${process.env.FZ_WS_PORT || 3001}`;
  // The execute-api host, not domainName: with a custom domain, domainName has no stage mapping for @connections.
  const region = process.env.AWS_REGION;
  return requestContext.apiId && region
    ? `https://${requestContext.apiId}.execute-api.${region}.amazonaws.com/${requestContext.stage}`
    : `https://${requestContext.domainName}/${requestContext.stage}`;
}

/** The access key id server-mode replicas sign management API calls with (server/connections.ts checks it). */
export const SERVER_ACCESS_KEY_ID = 'fangzhou-server';

/**
 * The signing key of server mode's management API: derived from the operator token's hash, which every replica is
 * given and nothing outside them has, so no second secret has to be distributed to a fleet of replicas.
 */
export function serverSecretKey(): string {
  const adminTokenHash = process.env.FZ_ADMIN_TOKEN_HASH;
  if (!adminTokenHash) throw new Error('FZ_ADMIN_TOKEN_HASH is not set: server mode signs its connections API with a key derived from it');
  return createHmac('sha256', adminTokenHash).update('fangzhou @connections').digest('hex');
}

/** Region the management API is signed for (server mode checks the signature for the same one). */
export const connectionsRegion = () => process.env.AWS_REGION || 'us-east-1';

const connectionsCredentials = () => {
  // serverless-offline checks no signature; server mode checks one with the replicas' shared key; real AWS uses the function's role.
  if (process.env.IS_OFFLINE) return { credentials: { accessKeyId: 'offline', secretAccessKey: 'offline' } };
  if (process.env.FZ_RUNTIME === 'server') return { credentials: { accessKeyId: SERVER_ACCESS_KEY_ID, secretAccessKey: serverSecretKey() } };
  return {};
};

/** PostToConnection / DeleteConnection through the AWS SDK, one client per endpoint (module-level cache). */
export function apiGatewayConnections(): Connections {
  const clients = new Map<string, ApiGatewayManagementApiClient>();
  const client = (endpoint: string) => {
    let c = clients.get(endpoint);
    if (!c) {
      // Server mode with the platform CA on serves the connections API over HTTPS with a certificate of that CA.
      const caDir = config().ca.dir;
      const requestHandler = caDir && endpoint.startsWith('https:') ? { requestHandler: { httpsAgent: new Agent({ ca: readFileSync(caCertFile(caDir)), keepAlive: true }) } } : {};
      c = new ApiGatewayManagementApiClient({ endpoint, region: connectionsRegion(), ...connectionsCredentials(), ...requestHandler });
      clients.set(endpoint, c);
    }
    return c;
  };
  return {
    async post(endpoint, connectionId, message) {
      try {
        await client(endpoint).send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: Buffer.from(JSON.stringify(message)) }));
        return 'sent';
      } catch (err) {
        if (isGone(err)) return 'gone';
        throw err;
      }
    },
    async close(endpoint, connectionId) {
      try {
        await client(endpoint).send(new DeleteConnectionCommand({ ConnectionId: connectionId }));
      } catch (err) {
        if (!isGone(err)) throw err;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The protocol: $connect, messages, $disconnect

export interface ProtocolContext {
  store: SubscriptionStore;
  connections: Connections;
  /** The gateway's API schema (loaded once per process). */
  schema: () => Promise<GraphQLSchema>;
  /** Checks that filter arguments name things that exist; returns an error message or null. */
  checkFilter?: (filter: SubscriptionFilter, field: SubscriptionField, principal: Principal) => Promise<GraphQLFormattedError | null>;
  /** Who a credential is, with the connection's client certificate (lib/auth's `authenticate` unless a test gives its own). */
  authenticate?: (authorization: string, clientCert?: string | null) => Promise<Principal>;
  /** A host runner answered the watchdog's probe (probeHost) on this socket: record that it lives. */
  probeAnswered?: (hostId: string) => Promise<void>;
  now?: () => Date;
}

export interface ConnectRequest {
  connectionId: string;
  endpoint: string;
  /** The subprotocols the client offered (Sec-WebSocket-Protocol). */
  protocols: string[];
}

/** $connect: the subprotocol must be graphql-transport-ws; the connection is stored, not yet acknowledged. */
export async function connect(ctx: ProtocolContext, request: ConnectRequest): Promise<{ statusCode: number; headers?: Record<string, string>; body?: string }> {
  if (!request.protocols.includes(PROTOCOL)) {
    log.info({ connectionId: request.connectionId, protocols: request.protocols }, 'websocket refused: subprotocol not acceptable');
    return { statusCode: 400, body: `Subprotocol not acceptable: use ${PROTOCOL} (the graphql-ws protocol)` };
  }
  const now = (ctx.now ?? (() => new Date()))().toISOString();
  await ctx.store.create<Omit<ConnectionRecord, 'seq'>>(SUBSCRIPTIONS_TABLE, {
    id: connectionKey(request.connectionId), kind: 'connection', connectionId: request.connectionId, endpoint: request.endpoint,
    initialised: false, principal: null, connectedAt: now, acknowledgedAt: null,
  });
  return { statusCode: 200, headers: { 'Sec-WebSocket-Protocol': PROTOCOL } };
}

/** Removes a connection and every subscription of it (at $disconnect, after a 410, after a close). */
export async function removeConnection(store: SubscriptionStore, connectionId: string): Promise<number> {
  const items = await store.query<{ id: string } & Partial<SubscriptionRecord>>(SUBSCRIPTIONS_TABLE, 'byConnection', connectionId);
  const keys = new Set([connectionKey(connectionId), ...items.map((i) => i.id)]);
  await Promise.all([...keys].map((key) => store.remove(SUBSCRIPTIONS_TABLE, key)));
  for (const item of items) await stopFollowing(store, item);
  return keys.size - 1;
}

/** A log tail subscription that ends takes its subscriber off Ark's follow (the last one ends the follow). */
async function stopFollowing(store: SubscriptionStore, record: Partial<SubscriptionRecord> & { id: string }) {
  if (record.kind !== 'subscription' || record.field !== 'instanceLogTail' || !record.filter?.instanceId) return;
  await unfollowLogs(store as Store, record.filter.instanceId, record.id);
}

/** The payload key of the watchdog's ping to a silent host's runner; graphql-ws clients echo it in their pong. */
export const PROBE = 'fzProbe';

/**
 * Pings the runner of a host on its notification socket(s), the second witness of its liveness besides its
 * heartbeats (subgraphs/butler/watchdog.ts). 'closed' when it holds no socket any more (sockets found gone are
 * cleaned up); 'sent' when at least one took the ping, and its pong reaches `probeAnswered`.
 */
export async function probeHost(store: SubscriptionStore, connections: Connections, hostId: string, now = new Date()): Promise<'sent' | 'closed'> {
  const subscriptions = await store.query<SubscriptionRecord>(SUBSCRIPTIONS_TABLE, 'byTopic', `host:${hostId}`);
  let sent = false;
  for (const sub of subscriptions) {
    const outcome = await connections.post(sub.endpoint, sub.connectionId, { type: 'ping', payload: { [PROBE]: now.toISOString() } })
      .catch(() => 'failed' as const);
    if (outcome === 'gone') await removeConnection(store, sub.connectionId);
    // A failed post proves nothing either way: the missing answer decides.
    else sent = true;
  }
  return sent ? 'sent' : 'closed';
}

/**
 * Filter arguments must name a release and a host that exist (NOT_FOUND otherwise), and a scoped key's release must
 * be in its scope (FORBIDDEN otherwise: it would receive nothing, as every delivery is checked again).
 */
export const checkFilterTargets = (store: SubscriptionStore) => async (filter: SubscriptionFilter, _field?: SubscriptionField, principal?: Principal): Promise<GraphQLFormattedError | null> => {
  const release = filter.releaseId ? await store.get<{ id: string; product: string }>('releases', filter.releaseId) : undefined;
  if (filter.releaseId && !release) return userError(`release "${filter.releaseId}" does not exist`, 'NOT_FOUND');
  const scope = principal && scopeOf(principal);
  if (release && scope && !inScope(scope, { releaseId: release.id, product: release.product })) {
    return { message: `${principalName(principal!)} is scoped to products [${scope.products.join(', ')}] and releases [${scope.releases.join(', ')}]: release ${release.id} is outside it`, extensions: { code: 'FORBIDDEN', reason: OUT_OF_SCOPE } };
  }
  if (filter.hostId && !(await store.get('hosts', filter.hostId))) return userError(`host "${filter.hostId}" does not exist`, 'NOT_FOUND');
  return null;
};

export const disconnect = (ctx: ProtocolContext, connectionId: string) => removeConnection(ctx.store, connectionId);

const closeNotice = (code: number, reason: string) => ({ type: 'ping', payload: { close: { code, reason } } });

/**
 * The close code and reason a message posted to a connection announces, if it is a close notice. Server mode, which
 * holds real sockets, closes with them at the DeleteConnection that follows.
 */
export function closeNoticeOf(posted: string): { code: number; reason: string } | undefined {
  if (!posted.startsWith('{"type":"ping"')) return undefined;
  try {
    const close = (JSON.parse(posted) as ReturnType<typeof closeNotice>).payload?.close;
    return typeof close?.code === 'number' && typeof close.reason === 'string' ? close : undefined;
  } catch {
    return undefined;
  }
}

/** Closes a connection the graphql-ws way as far as API Gateway allows: the close notice, then DeleteConnection. */
export async function closeConnection(ctx: ProtocolContext, endpoint: string, connectionId: string, code: number, reason: string) {
  log.info({ connectionId, code, reason }, 'closing websocket');
  try {
    await ctx.connections.post(endpoint, connectionId, closeNotice(code, reason));
    await ctx.connections.close(endpoint, connectionId);
  } finally {
    await removeConnection(ctx.store, connectionId);
  }
}

const FORBIDDEN_REASON = 'Forbidden: only an operator may subscribe';

/**
 * Closes with 4401 (no or an invalid credential) or 4403 (a credential that may not subscribe). Operators and host
 * runners are acknowledged; what a host runner may subscribe to is decided at subscribe.
 */
async function principalFrom(
  payload: Record<string, unknown> | null | undefined, clientCert: string | null | undefined,
  authenticateWith: (authorization: string, clientCert?: string | null) => Promise<Principal> = authenticate,
): Promise<{ principal: Principal } | { code: number; reason: string }> {
  const authorization = payload?.authorization ?? payload?.Authorization;
  if (authorization !== undefined && typeof authorization !== 'string') {
    return { code: CloseCode.BadRequest, reason: 'connection_init payload.authorization must be a string "Bearer <token>"' };
  }
  if (!authorization) return { code: CloseCode.Unauthorized, reason: 'Unauthorized: connection_init needs payload {authorization: "Bearer <operator token>"}' };
  let principal: Principal;
  try {
    principal = await authenticateWith(authorization, clientCert);
  } catch (err) {
    return { code: CloseCode.Unauthorized, reason: `Unauthorized: ${(err as Error).message}`.slice(0, 120) };
  }
  if (principal.kind !== 'operator' && principal.kind !== 'host') return { code: CloseCode.Forbidden, reason: FORBIDDEN_REASON };
  return { principal };
}

/**
 * $default: one graphql-ws message from the client. `clientCert`: the client certificate of the connection (server
 * mode with the platform CA on), which a host runner's connection_init must come with.
 */
export async function handleMessage(ctx: ProtocolContext, connectionId: string, endpoint: string, body: string | undefined | null, clientCert?: string | null): Promise<void> {
  const { store, connections } = ctx;
  const now = () => (ctx.now ?? (() => new Date()))().toISOString();
  const close = (code: number, reason: string) => closeConnection(ctx, endpoint, connectionId, code, reason);
  const send = async (message: object) => {
    if ((await connections.post(endpoint, connectionId, message)) === 'gone') await removeConnection(store, connectionId);
  };

  const parsed = parseClientMessage(body);
  if ('error' in parsed) return close(CloseCode.BadRequest, parsed.error.slice(0, 120));
  const message = parsed.message;
  try {
    switch (message.type) {
      case 'ping':
        return await send(message.payload ? { type: 'pong', payload: message.payload } : { type: 'pong' });
      case 'pong': {
        if (!ctx.probeAnswered || !(message.payload && PROBE in message.payload)) return;
        const connection = await store.get<ConnectionRecord>(SUBSCRIPTIONS_TABLE, connectionKey(connectionId));
        if (connection?.principal?.kind === 'host') await ctx.probeAnswered(connection.principal.hostId);
        return;
      }
      case 'connection_init': {
        let repeated = false;
        await store.mutate<ConnectionRecord>(SUBSCRIPTIONS_TABLE, connectionKey(connectionId), (current) => {
          repeated = !!current?.initialised;
          if (repeated) return undefined;
          return current
            ? { ...current, initialised: true }
            : { id: connectionKey(connectionId), kind: 'connection', connectionId, endpoint, initialised: true, principal: null, connectedAt: now(), acknowledgedAt: null };
        });
        if (repeated) return await close(CloseCode.TooManyInitialisationRequests, 'Too many initialisation requests');
        const auth = await principalFrom(message.payload, clientCert, ctx.authenticate);
        if ('code' in auth) return await close(auth.code, auth.reason);
        await store.mutate<ConnectionRecord>(SUBSCRIPTIONS_TABLE, connectionKey(connectionId), (current) =>
          current && { ...current, principal: auth.principal, acknowledgedAt: now() });
        return await send({ type: 'connection_ack' });
      }
      case 'subscribe': {
        const connection = await store.get<ConnectionRecord>(SUBSCRIPTIONS_TABLE, connectionKey(connectionId));
        if (!connection?.principal) return await close(CloseCode.Unauthorized, 'Unauthorized');
        const key = subscriptionKey(connectionId, message.id);
        if (await store.get(SUBSCRIPTIONS_TABLE, key)) return await close(CloseCode.SubscriberAlreadyExists, `Subscriber for ${message.id} already exists`.slice(0, 120));
        const prepared = prepareSubscription(await ctx.schema(), message.payload, connection.principal);
        // A host token serves its runner's one subscription; every other field is for operators.
        if (connection.principal.kind === 'host' && 'field' in prepared && prepared.field !== HOST_SUBSCRIPTION) {
          return await close(CloseCode.Forbidden, FORBIDDEN_REASON);
        }
        const problem = 'errors' in prepared ? prepared.errors : await ctx.checkFilter?.(prepared.filter, prepared.field, connection.principal).then((e) => (e ? [e] : null));
        if (problem) {
          log.info({ connectionId, id: message.id, errors: problem.map((e) => e.message) }, 'subscription refused');
          return await send({ id: message.id, type: 'error', payload: problem });
        }
        const created = await store.create<Omit<SubscriptionRecord, 'seq'>>(SUBSCRIPTIONS_TABLE, {
          ...(prepared as PreparedSubscription), id: key, kind: 'subscription', connectionId, subscriptionId: message.id,
          endpoint: connection.endpoint, principal: connection.principal, createdAt: now(),
        });
        if (!created) return await close(CloseCode.SubscriberAlreadyExists, `Subscriber for ${message.id} already exists`.slice(0, 120));
        if (created.field === 'instanceLogTail') {
          try {
            await followLogs(store as Store, connection.principal, created.filter.instanceId!, key);
          } catch (err) {
            await store.remove(SUBSCRIPTIONS_TABLE, key);
            await stopFollowing(store, created);
            if (!(err instanceof AppError)) throw err;
            return await send({ id: message.id, type: 'error', payload: [userError(err.message, err.code)] });
          }
        }
        log.info({ connectionId, id: message.id, topic: created.topic }, 'subscribed');
        return;
      }
      case 'complete': {
        // Unknown ids (already completed, never subscribed) are ignored, as graphql-ws servers do.
        const key = subscriptionKey(connectionId, message.id);
        const record = await store.get<SubscriptionRecord>(SUBSCRIPTIONS_TABLE, key);
        await store.remove(SUBSCRIPTIONS_TABLE, key);
        if (record) await stopFollowing(store, record);
        return;
      }
    }
  } catch (err) {
    log.error({ err, connectionId, type: message.type }, 'websocket message failed');
    await close(CloseCode.InternalServerError, 'Internal server error').catch(() => undefined);
  }
}
