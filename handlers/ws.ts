import type { GraphQLSchema } from 'graphql';
import { createGateway } from '../gateway/gateway';
import {
  apiGatewayConnections, checkFilterTargets, connect, disconnect, handleMessage, managementEndpoint, type ProtocolContext,
} from '../gateway/subscriptions';
import { log } from '../lib/log';
import { store } from '../lib/store';
import { recordSocketAnswer } from '../subgraphs/ark';

/** The WebSocket API's routes ($connect, $disconnect, $default) in one function: graphql-ws over API Gateway. */
export interface WebSocketEvent {
  requestContext: {
    routeKey: string; connectionId: string; apiId?: string; domainName?: string; stage?: string;
    /** The connection's verified client certificate (server mode with the platform CA on). */
    authentication?: { clientCert?: { clientCertPem?: string } };
  };
  headers?: Record<string, string | undefined>;
  body?: string | null;
  isBase64Encoded?: boolean;
}

let schema: Promise<GraphQLSchema> | undefined;
/** The gateway's API schema, from the committed supergraph (no subgraph is called to build it). */
const apiSchema = () => {
  schema ??= createGateway('http').load().then(({ schema: s }) => s).catch((err) => {
    schema = undefined;
    throw err;
  });
  return schema;
};

let ctx: ProtocolContext | undefined;
const context = (): ProtocolContext => (ctx ??= {
  store: store(),
  connections: apiGatewayConnections(),
  schema: apiSchema,
  checkFilter: checkFilterTargets(store()),
  probeAnswered: (hostId) => recordSocketAnswer(store(), hostId),
});

const header = (headers: WebSocketEvent['headers'], name: string) =>
  Object.entries(headers ?? {}).find(([k]) => k.toLowerCase() === name)?.[1];

export const handler = async (event: WebSocketEvent) => {
  const { routeKey, connectionId } = event.requestContext;
  const endpoint = managementEndpoint(event.requestContext);
  try {
    if (routeKey === '$connect') {
      const protocols = (header(event.headers, 'sec-websocket-protocol') ?? '').split(',').map((p) => p.trim()).filter(Boolean);
      return await connect(context(), { connectionId, endpoint, protocols });
    }
    if (routeKey === '$disconnect') {
      await disconnect(context(), connectionId);
      return { statusCode: 200 };
    }
    const body = event.isBase64Encoded && event.body ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
    await handleMessage(context(), connectionId, endpoint, body, event.requestContext.authentication?.clientCert?.clientCertPem);
    return { statusCode: 200 };
  } catch (err) {
    log.error({ err, routeKey, connectionId }, 'websocket route failed');
    return { statusCode: 500 };
  }
};
