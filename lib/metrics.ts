import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/**
 * The platform's Prometheus registry (metric names prefixed `fangzhou_`). Request figures are counted by the process
 * that serves the requests: one per replica in server mode, one per warm Lambda instance on AWS (Prometheus sums
 * what it scrapes). Fleet figures are read from the store at scrape time, so any replica answers them alike.
 */
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'fangzhou_' });

export const httpRequestDuration = new Histogram({
  name: 'fangzhou_http_request_duration_seconds',
  help: 'API requests served by this process, by route, method and status (rate() of _count gives request rates)',
  labelNames: ['route', 'method', 'status'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

/** Times one request; the route is the path's first segment, so ids in paths never become label values. */
export async function observeRequest<T>(method: string, path: string, serve: () => Promise<T>): Promise<T> {
  const end = httpRequestDuration.startTimer({ method, route: '/' + (path.split('/')[1] ?? '') });
  try {
    const result = await serve();
    end({ status: String((result as { statusCode?: number } | undefined)?.statusCode ?? 200) });
    return result;
  } catch (err) {
    end({ status: '500' });
    throw err;
  }
}
