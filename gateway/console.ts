import { existsSync, readFileSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';

/**
 * The web console (console/, built by Vite into console/dist when `npm ci` runs `prepare`), served from the API's
 * own origin at /console. Assets are files next to the code on every host: the repository offline and in server mode,
 * the package on AWS (serverless.yml includes console/dist). Nothing comes from a CDN.
 */
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml',
};

/** The build, found from where this code runs upward (the esbuild bundle sits deeper than the source). */
function distDir(): string | undefined {
  for (const start of [__dirname, process.cwd()]) {
    for (let dir = resolve(start); ; dir = dirname(dir)) {
      if (existsSync(join(dir, 'console/dist/index.html'))) return join(dir, 'console/dist');
      if (dirname(dir) === dir) break;
    }
  }
  return undefined;
}

/**
 * Where the browser opens graphql-ws: FZ_WS_URL when set (a deployment's WebSocket API), the offline WebSocket port
 * on the host the page was loaded from, else the page's own origin (the client's default).
 */
function wsUrl(event: APIGatewayProxyEventV2): string {
  if (process.env.FZ_WS_URL) return process.env.FZ_WS_URL;
  if (!process.env.IS_OFFLINE) return '';
  const host = (event.headers?.host ?? 'localhost').replace(/:\d+$/, '');
  return `ws://${host}:${process.env.FZ_WS_PORT || 3001}`;
}

const escapeAttr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
const files = new Map<string, string>();

/** Every asset Vite emits here is text (HTML, JS, CSS, SVG), so bodies go out as plain strings on every host. */
function read(dir: string, path: string): string | undefined {
  if (!files.has(path)) {
    const file = resolve(dir, '.' + path);
    if (!file.startsWith(dir + '/') || !existsSync(file)) return undefined;
    files.set(path, readFileSync(file, 'utf8'));
  }
  return files.get(path);
}

export function consoleRequest(event: APIGatewayProxyEventV2): APIGatewayProxyStructuredResultV2 | undefined {
  const path = event.rawPath ?? event.requestContext?.http?.path ?? '';
  if (path !== '/console' && !path.startsWith('/console/')) return undefined;
  const dir = distDir();
  if (!dir) {
    return { statusCode: 503, headers: { 'content-type': 'text/plain' }, body: 'The console is not built: run `npm ci` (or `npx vite build console`) in the repository.' };
  }
  const asset = path.startsWith('/console/assets/') ? path.slice('/console'.length) : undefined;
  if (asset) {
    const body = read(dir, asset);
    if (!body) return { statusCode: 404, headers: { 'content-type': 'text/plain' }, body: `no console asset ${asset}` };
    // Vite names assets by content hash, so they never change under the same name.
    return { statusCode: 200, headers: { 'content-type': TYPES[extname(asset)] ?? 'text/plain; charset=utf-8', 'cache-control': 'public, max-age=31536000, immutable' }, body };
  }
  const ws = wsUrl(event);
  const html = read(dir, '/index.html')!.replace('<meta name="fz-ws-url" content="">', `<meta name="fz-ws-url" content="${escapeAttr(ws)}">`);
  const wsOrigin = ws ? ` ${new URL(ws).origin}` : ' ws: wss:';
  return {
    statusCode: 200,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-cache',
      'content-security-policy': `default-src 'self'; connect-src 'self'${wsOrigin}; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'`,
      'x-content-type-options': 'nosniff',
    },
    body: html,
  };
}
