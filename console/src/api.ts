import { Client, fetchExchange, subscriptionExchange } from 'urql';
import { createClient as createWsClient } from 'graphql-ws';

/** Where subscriptions connect: the gateway writes it into the page; otherwise the API's own origin. */
function wsUrl(): string {
  const configured = document.querySelector<HTMLMetaElement>('meta[name="fz-ws-url"]')?.content;
  if (configured) return configured;
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
}

/**
 * One urql client per signed-in key: queries and mutations over HTTP to /graphql, subscriptions over graphql-ws
 * (the key goes in connection_init, as the API's WebSocket handler expects).
 */
export function apiClient(key: string, onUnauthenticated: () => void): Client {
  const authorization = `Bearer ${key}`;
  const ws = createWsClient({
    url: wsUrl(),
    connectionParams: { authorization },
    lazy: true,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    // The API closes unauthorised sockets with a ping carrying the close code (see gateway/subscriptions.ts).
    on: { ping: (_received, payload) => { if ((payload as { close?: { code?: number } } | undefined)?.close?.code === 4401) onUnauthenticated(); } },
  });
  return new Client({
    url: '/graphql',
    requestPolicy: 'cache-and-network',
    // POST always: the API refuses GET queries without CSRF headers (Apollo's CSRF prevention).
    preferGetMethod: false,
    fetchOptions: () => ({ headers: { authorization } }),
    exchanges: [
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return { subscribe: (sink) => ({ unsubscribe: ws.subscribe(input, sink) }) };
        },
      }),
    ],
  });
}

export const KEY_STORAGE = 'fangzhou.apiKey';
