import { readFileSync } from 'node:fs';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';

/**
 * GraphiQL from the npm packages on disk: Apollo's default landing page loads from a CDN and is blank offline.
 * Assets are resolved through node_modules, so this works from source, from the esbuild bundle and when deployed
 * with the packages included.
 */
const ASSETS: Record<string, { module: string; type: string }> = {
  'react.js': { module: 'react/umd/react.production.min.js', type: 'text/javascript' },
  'react-dom.js': { module: 'react-dom/umd/react-dom.production.min.js', type: 'text/javascript' },
  'graphiql.js': { module: 'graphiql/graphiql.min.js', type: 'text/javascript' },
  'graphiql.css': { module: 'graphiql/graphiql.min.css', type: 'text/css' },
};

const DEFAULT_QUERY = `# Send "Authorization: Bearer <operator token>" (Headers tab below); npm start prints the token.
query Overview {
  hosts { name status labels { key value } allocated { cpuMillis memoryMb } }
  releases {
    name product { name } version status statusMessage
    instances { id domainName host { name } status { state health restartCount } }
  }
}
`;

export function graphiqlPage(endpoint: string): string {
  const props = {
    defaultQuery: DEFAULT_QUERY,
    headers: JSON.stringify({ Authorization: 'Bearer <operator token>' }, null, 2),
    shouldPersistHeaders: true,
  };
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Fangzhou GraphiQL</title>
  <link rel="stylesheet" href="/graphiql/graphiql.css">
  <style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphiql/react.js"></script>
  <script src="/graphiql/react-dom.js"></script>
  <script src="/graphiql/graphiql.js"></script>
  <script>
    const fetcher = GraphiQL.createFetcher({ url: ${JSON.stringify(endpoint)} });
    const props = Object.assign({ fetcher }, ${JSON.stringify(props)});
    ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props));
  </script>
</body>
</html>`;
}

const cache = new Map<string, string>();

export function graphiqlAsset(name: string): APIGatewayProxyStructuredResultV2 {
  const asset = ASSETS[name];
  if (!asset) return { statusCode: 404, headers: { 'content-type': 'text/plain' }, body: `no asset ${name}` };
  if (!cache.has(name)) cache.set(name, readFileSync(require.resolve(asset.module), 'utf8'));
  return { statusCode: 200, headers: { 'content-type': asset.type, 'cache-control': 'public, max-age=86400' }, body: cache.get(name)! };
}

/** GETs from a browser get GraphiQL; everything else goes to the GraphQL handler. */
export function browserRequest(event: APIGatewayProxyEventV2): APIGatewayProxyStructuredResultV2 | undefined {
  if (event.requestContext?.http?.method !== 'GET') return undefined;
  const path = event.rawPath ?? event.requestContext.http.path;
  if (path.startsWith('/graphiql/')) return graphiqlAsset(path.slice('/graphiql/'.length));
  const accept = event.headers?.accept ?? '';
  if (accept.includes('text/html')) {
    return { statusCode: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: graphiqlPage('/graphql') };
  }
  return undefined;
}
