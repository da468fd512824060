import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { randomUUID } from 'node:crypto';

export interface HttpAnswer {
  status: number;
  headers: Record<string, unknown>;
  body: { data?: Record<string, any> | null; errors?: { message: string; extensions?: { code?: string; reason?: string } }[] };
}

type Handler = (event: APIGatewayProxyEventV2, context: unknown, callback: unknown) => Promise<unknown>;

/**
 * Calls a real HTTP API Lambda handler (handlers/gateway.ts with the subgraphs in-process) with the event API Gateway
 * would send, so the adapter's checks (size, credential, limits, rate) run exactly as deployed, without a server.
 */
export function httpClient(handler: Handler, path = '/graphql') {
  return async (body: string | object, token?: string | null, headers: Record<string, string> = {}): Promise<HttpAnswer> => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const event = {
      version: '2.0', routeKey: `POST ${path}`, rawPath: path, rawQueryString: '',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      requestContext: { http: { method: 'POST', path, sourceIp: '127.0.0.1', protocol: 'HTTP/1.1', userAgent: 'test' }, requestId: randomUUID() },
      body: text, isBase64Encoded: false,
    } as unknown as APIGatewayProxyEventV2;
    const res = (await handler(event, {}, () => undefined)) as APIGatewayProxyStructuredResultV2;
    let parsed: HttpAnswer['body'] = {};
    try {
      parsed = JSON.parse(String(res.body ?? '{}'));
    } catch {
      parsed = { errors: [{ message: String(res.body) }] };
    }
    return { status: res.statusCode ?? 200, headers: res.headers ?? {}, body: parsed };
  };
}
