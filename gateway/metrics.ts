import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { authenticate } from '../lib/auth';
import { registry } from '../lib/metrics';
import { store } from '../lib/store';
import { collectFleetMetrics } from '../subgraphs/butler';

/**
 * GET /metrics in the Prometheus text format. Like every API route it needs a credential: Prometheus sends one with
 * `authorization: {credentials: <key>}` in its scrape config.
 */
export async function metricsRequest(event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> {
  const refuse = (message: string) => ({ statusCode: 401, headers: { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }, body: message + '\n' });
  const principal = await authenticate(event.headers?.authorization).catch((err: Error) => err);
  if (principal instanceof Error) return refuse(principal.message);
  if (principal.kind !== 'operator') return refuse('/metrics needs an API key or the operator token: "Authorization: Bearer <key>"');
  await collectFleetMetrics(store());
  return { statusCode: 200, headers: { 'content-type': registry.contentType }, body: await registry.metrics() };
}
