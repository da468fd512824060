import { randomBytes } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { log } from '../lib/log';
import type { HeldSocket } from './connections';
import { clientAuthentication } from './lambda';

/**
 * Real WebSockets in front of the WebSocket function of serverless.yml (handlers/ws.ts), called as API Gateway
 * calls it: `$connect` before the upgrade is accepted (its status code decides, its Sec-WebSocket-Protocol header
 * is the one chosen), `$default` for each message, `$disconnect` when the socket closes. The handler answers
 * through the connections API (server/connections.ts), which finds the socket in `sockets`.
 *
 * Messages of one connection reach the handler one at a time, in order (connection_init before subscribe).
 */

/** API Gateway's limit for one WebSocket message. */
const MAX_MESSAGE_BYTES = 128 * 1024;

export type RouteCall = (event: {
  requestContext: {
    routeKey: string; connectionId: string; domainName?: string; stage?: string;
    /** The connection's verified client certificate (server/lambda.ts), with every route of it. */
    authentication?: ReturnType<typeof clientAuthentication>;
  };
  headers?: Record<string, string>;
  body?: string;
  isBase64Encoded?: boolean;
}) => Promise<{ statusCode?: number; headers?: Record<string, string>; body?: string } | undefined>;

export interface WebSockets {
  sockets: Map<string, HeldSocket>;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Refuses new sockets and closes every held one with `code` (1001: going away); resolves after their `$disconnect`. */
  closeAll(code: number, reason: string): Promise<void>;
}

const flatHeaders = (req: IncomingMessage) =>
  Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v ?? '']));

function refuse(socket: Duplex, status: number, body: string) {
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

export function webSockets(call: RouteCall): WebSockets {
  const sockets = new Map<string, HeldSocket>();
  /** Per connection: the handler calls in flight, one after another; ends with `$disconnect`. */
  const chains = new Map<string, Promise<void>>();
  /** Per connection: resolves once its `$disconnect` has run (what a graceful stop waits for). */
  const finished = new Map<string, Promise<void>>();
  const ended = new Map<string, () => void>();
  const chosenProtocol = new WeakMap<IncomingMessage, string>();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_MESSAGE_BYTES,
    handleProtocols: (_offered, req) => chosenProtocol.get(req) ?? false,
  });
  let closing = false;

  const route = (connectionId: string, req: IncomingMessage, routeKey: string, body?: string) =>
    call({ requestContext: { routeKey, connectionId, domainName: req.headers.host, stage: '$default', authentication: clientAuthentication(req) }, headers: flatHeaders(req), body, isBase64Encoded: false });

  const enqueue = (connectionId: string, step: () => Promise<unknown>) => {
    const next = (chains.get(connectionId) ?? Promise.resolve()).then(step).then(() => undefined, (err) => {
      log.error({ err, connectionId }, 'websocket route failed');
    });
    chains.set(connectionId, next);
    return next;
  };

  const disconnect = (connectionId: string, req: IncomingMessage) =>
    enqueue(connectionId, () => route(connectionId, req, '$disconnect')).then(() => {
      chains.delete(connectionId);
      finished.delete(connectionId);
      ended.get(connectionId)?.();
      ended.delete(connectionId);
    });

  const accept = (connectionId: string, req: IncomingMessage, ws: WebSocket) => {
    const held: HeldSocket = {
      connectedAt: new Date(),
      lastActiveAt: new Date(),
      sourceIp: req.socket.remoteAddress ?? '',
      userAgent: String(req.headers['user-agent'] ?? ''),
      send: (text) => new Promise((resolve, reject) => ws.send(text, (err) => (err ? reject(err) : resolve()))),
      close: (code, reason) => {
        try {
          ws.close(code, reason);
        } catch {
          // A reason longer than a close frame allows (123 bytes): the code alone.
          ws.close(code);
        }
      },
    };
    sockets.set(connectionId, held);
    const authentication = clientAuthentication(req);
    ws.on('message', (data, isBinary) => {
      held.lastActiveAt = new Date();
      const body = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
      void enqueue(connectionId, () => call({
        requestContext: { routeKey: '$default', connectionId, domainName: req.headers.host, stage: '$default', authentication },
        body: body.toString(isBinary ? 'base64' : 'utf8'),
        isBase64Encoded: isBinary,
      }));
    });
    ws.on('error', (err) => log.warn({ err, connectionId }, 'websocket error'));
    ws.once('close', () => {
      sockets.delete(connectionId);
      void disconnect(connectionId, req);
    });
  };

  return {
    sockets,
    upgrade(req, socket, head) {
      if (closing) return refuse(socket, 503, 'this replica is shutting down; connect again (to another replica)');
      const connectionId = randomBytes(12).toString('base64url');
      finished.set(connectionId, new Promise((resolve) => ended.set(connectionId, resolve)));
      let upgraded = false;
      // A client gone before the upgrade completed still had its $connect: its record goes too.
      socket.once('close', () => {
        if (!upgraded) void disconnect(connectionId, req);
      });
      enqueue(connectionId, async () => {
        const result = await route(connectionId, req, '$connect').catch((err) => {
          log.error({ err, connectionId }, 'websocket $connect failed');
          return { statusCode: 500, headers: {}, body: 'internal error' };
        });
        const status = result?.statusCode ?? 200;
        if (status !== 200) return refuse(socket, status, result?.body ?? STATUS_CODES[status] ?? '');
        if (socket.destroyed) return;
        const protocol = Object.entries<string>(result?.headers ?? {}).find(([k]) => k.toLowerCase() === 'sec-websocket-protocol')?.[1];
        if (protocol) chosenProtocol.set(req, protocol);
        wss.handleUpgrade(req, socket, head, (ws) => {
          upgraded = true;
          accept(connectionId, req, ws);
        });
      });
    },
    async closeAll(code, reason) {
      closing = true;
      const open = [...wss.clients];
      for (const ws of open) ws.close(code, reason);
      // A client that does not answer the close handshake is cut off rather than waited for.
      const cutOff = setTimeout(() => open.forEach((ws) => ws.terminate()), 3000);
      await Promise.all([...finished.values()]);
      clearTimeout(cutOff);
    },
  };
}
