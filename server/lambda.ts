import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { APIGatewayEventClientCertificate, APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context as LambdaContext } from 'aws-lambda';

/**
 * Node's HTTP request and response as API Gateway's HTTP API (payload format 2.0) hands them to a Lambda function
 * and takes them back: the adapter that lets server mode call the handlers of serverless.yml unchanged.
 */

/** API Gateway refuses larger Lambda payloads too (6 MB); a larger body is answered 413 before any handler runs. */
export const MAX_BODY_BYTES = 6 * 1024 * 1024;

export class BodyTooLarge extends Error {
  constructor() {
    super(`the request body is larger than ${MAX_BODY_BYTES / 1024 / 1024} MB`);
  }
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * The client certificate of a TLS connection whose chain the server verified (against the platform CA), in the shape
 * API Gateway's mutual TLS gives it to a function; undefined for plain HTTP and for clients that presented none.
 */
export function clientAuthentication(req: IncomingMessage): { clientCert: APIGatewayEventClientCertificate } | undefined {
  const socket = req.socket as TLSSocket;
  if (!socket.encrypted || !socket.authorized) return undefined;
  const cert = socket.getPeerX509Certificate();
  if (!cert) return undefined;
  return {
    clientCert: {
      clientCertPem: cert.toString(), serialNumber: cert.serialNumber, subjectDN: cert.subject, issuerDN: cert.issuer,
      validity: { notBefore: cert.validFrom, notAfter: cert.validTo },
    },
  };
}

const TEXT = /^(text\/|application\/(json|graphql|javascript|x-www-form-urlencoded|xml))/;

export function httpEvent(req: IncomingMessage, body: Buffer, route: { method: string; path: string }, pathParameters: Record<string, string>): APIGatewayProxyEventV2 {
  const url = new URL(req.url ?? '/', 'http://server');
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined && name !== 'cookie') headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const text = !body.length || TEXT.test(headers['content-type'] ?? 'application/json');
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: `${route.method} ${route.path}`,
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    cookies: req.headers.cookie?.split(';').map((c) => c.trim()),
    headers,
    queryStringParameters: url.search ? Object.fromEntries(url.searchParams) : undefined,
    pathParameters: Object.keys(pathParameters).length ? pathParameters : undefined,
    requestContext: {
      accountId: 'server',
      apiId: 'server',
      domainName: headers.host ?? 'server',
      domainPrefix: 'server',
      http: {
        method: req.method ?? 'GET',
        path: url.pathname,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? '',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      ...(clientAuthentication(req) ? { authentication: clientAuthentication(req) } : {}),
      routeKey: `${route.method} ${route.path}`,
      stage: '$default',
      time: new Date(now).toISOString(),
      timeEpoch: now,
    },
    body: body.length ? body.toString(text ? 'utf8' : 'base64') : undefined,
    isBase64Encoded: !text,
  };
}

/** A Lambda context for an in-process call: the function's name and a deadline from its serverless.yml timeout. */
export function lambdaContext(functionName: string, timeoutSeconds: number): LambdaContext {
  const deadline = Date.now() + timeoutSeconds * 1000;
  const requestId = randomUUID();
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `server:function:${functionName}`,
    memoryLimitInMB: '0',
    awsRequestId: requestId,
    logGroupName: functionName,
    logStreamName: requestId,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Writes a handler's result the way API Gateway does (a string or object result is a 200 JSON body). */
export function writeResult(res: ServerResponse, result: APIGatewayProxyStructuredResultV2 | string | object | undefined) {
  const structured = result && typeof result === 'object' && 'statusCode' in result
    ? result as APIGatewayProxyStructuredResultV2
    : { statusCode: 200, headers: { 'content-type': 'application/json' }, body: typeof result === 'string' ? result : JSON.stringify(result ?? null) };
  const headers: Record<string, string | number | boolean | string[]> = { ...(structured.headers ?? {}) };
  if (structured.cookies?.length) headers['set-cookie'] = structured.cookies;
  const body = structured.body === undefined ? undefined : Buffer.from(structured.body, structured.isBase64Encoded ? 'base64' : 'utf8');
  res.writeHead(structured.statusCode ?? 200, headers as Record<string, string | string[]>);
  res.end(body);
}
