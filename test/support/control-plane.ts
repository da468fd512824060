import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { contextFromHeaders } from '../../lib/auth';
import { store } from '../../lib/store';
import { startRegistry } from '../../scripts/registry';
import { watchHosts } from '../../subgraphs/butler/watchdog';
import { reconcileReleases } from '../../subgraphs/panama/reconcile';
import type { ControlPlaneAccess } from './fleet';
import { startInProcess } from './inprocess';

export interface InProcessControlPlane extends ControlPlaneAccess {
  /** The platform registry's `host:port`. */
  registry: string;
  /** GraphQL as the operator. */
  graphql<T = Record<string, any>>(query: string, variables?: Record<string, unknown>): Promise<{ data?: T; errors?: { message: string; extensions?: { code?: string } }[] }>;
  stop(): Promise<void>;
}

/**
 * A control plane in this process for a fleet of runners: the three subgraphs behind the in-process gateway on
 * dynalite (the code the handlers run), served over HTTP on `listenHost` with the caller's credential as context,
 * the platform registry beside it, and the watchdog and reconcile ticks every second. It starts in seconds where
 * serverless-offline may need minutes on a loaded machine. Runners poll (start them with `--ws-url off`).
 */
export async function startInProcessControlPlane(options: { listenHost: string; port: number; registryPort: number; hostDownSeconds?: number }): Promise<InProcessControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'fz-control-plane-'));
  const registry = await startRegistry({ dir: join(dir, 'registry'), host: options.listenHost, port: options.registryPort });
  process.env.FZ_REGISTRY = registry.address;
  process.env.FZ_HOST_DOWN_SECONDS = String(options.hostDownSeconds ?? 5);
  const api = await startInProcess(`cp${process.pid}-`);
  const http = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    const ctx = await contextFromHeaders({ get: (name) => req.headers[name.toLowerCase()] as string | undefined });
    const result = await api.run(body.query, body.variables ?? {}, ctx);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(result));
  });
  await new Promise<void>((r) => http.listen(options.port, options.listenHost, r));
  let ticking = true;
  const ticks = (async () => {
    while (ticking) {
      await watchHosts(store()).catch(() => undefined);
      await reconcileReleases(store()).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const graphql: InProcessControlPlane['graphql'] = (query, variables = {}) => api.run(query, variables) as never;
  return {
    url: `http://${options.listenHost}:${options.port}/graphql`,
    registry: registry.address,
    graphql,
    joinToken: async () => (await graphql<{ createJoinToken: { token: string } }>('mutation { createJoinToken { token } }')).data!.createJoinToken.token,
    async stop() {
      ticking = false;
      await ticks;
      await new Promise((r) => http.close(r));
      await api.stop();
      await registry.stop();
      delete process.env.FZ_REGISTRY;
      delete process.env.FZ_HOST_DOWN_SECONDS;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
