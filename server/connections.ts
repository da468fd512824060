import { createHash, createHmac, timingSafeEqual, type Hash, type Hmac } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import { closeNoticeOf, SERVER_ACCESS_KEY_ID, serverSecretKey } from '../gateway/subscriptions';
import { log } from '../lib/log';

/**
 * The API Gateway management API for connections, as server mode serves it: `POST /@connections/{id}` sends the
 * body to the socket, `DELETE` closes it (with the graphql-ws close code of the close notice posted just before, if
 * any: a real socket can say what API Gateway cannot), `GET` describes it. gateway/subscriptions.ts posts here with the AWS SDK
 * exactly as it posts to API Gateway, so the publisher runs unchanged, and any replica can reach a socket held by
 * another (the connection record names the replica's endpoint). A socket this replica does not hold is 410 Gone.
 *
 * Calls are signed as on AWS (Signature Version 4) with the replicas' shared key; anything unsigned or signed with
 * another key is refused (403), so no one else can write to a subscriber's socket.
 */

export interface HeldSocket {
  send(text: string): Promise<void>;
  close(code: number, reason: string): void;
  /** The close notice last posted to the socket (gateway/subscriptions.ts), used as the close code at DELETE. */
  closing?: { code: number; reason: string };
  connectedAt: Date;
  lastActiveAt: Date;
  sourceIp: string;
  userAgent: string;
}

const PATH = /^\/@connections\/([^/?]+)$/;
/** Signatures older or newer than this are refused (API Gateway allows the same 5 minutes). */
const MAX_SKEW_MS = 5 * 60_000;

/** node:crypto as the signer's hash (SHA-256, or HMAC-SHA-256 with a key). */
class Sha256 {
  private hash: Hash | Hmac;
  constructor(private readonly secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = this.fresh();
  }
  private fresh() {
    if (this.secret === undefined) return createHash('sha256');
    return createHmac('sha256', typeof this.secret === 'string' ? this.secret : Buffer.from(this.secret as ArrayBuffer));
  }
  update(data: string | ArrayBuffer | ArrayBufferView) {
    this.hash.update(typeof data === 'string' ? data : Buffer.from(data as ArrayBuffer));
  }
  async digest() {
    return new Uint8Array(this.hash.digest());
  }
  reset() {
    this.hash = this.fresh();
  }
}

const AUTHORIZATION = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

/** Why the request's signature is not ours, or null when it is. */
export async function signatureProblem(req: IncomingMessage, body: Buffer, now = Date.now()): Promise<string | null> {
  const match = AUTHORIZATION.exec(String(req.headers.authorization ?? ''));
  if (!match) return 'the request is not signed (AWS Signature Version 4)';
  const [, accessKeyId, , region, service, signedHeaders, signature] = match;
  if (accessKeyId !== SERVER_ACCESS_KEY_ID) return `unknown access key ${accessKeyId.slice(0, 40)}`;
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  const signingDate = date && new Date(Date.UTC(+date[1], +date[2] - 1, +date[3], +date[4], +date[5], +date[6]));
  if (!signingDate || Math.abs(now - signingDate.getTime()) > MAX_SKEW_MS) return 'the signature is expired or its x-amz-date is missing';
  const claimedHash = req.headers['x-amz-content-sha256'];
  if (claimedHash && claimedHash !== createHash('sha256').update(body).digest('hex')) return 'the body does not match its signed hash';

  const names = signedHeaders.split(';');
  const headers: Record<string, string> = {};
  for (const name of names) headers[name] = String(req.headers[name] ?? '');
  const url = new URL(req.url ?? '/', 'http://server');
  const signer = new SignatureV4({ credentials: { accessKeyId, secretAccessKey: serverSecretKey() }, region, service, sha256: Sha256 });
  const signed = await signer.sign({
    method: req.method ?? 'POST', protocol: 'http:', hostname: url.hostname, path: decodeURIComponent(url.pathname),
    query: Object.fromEntries(url.searchParams), headers, body: body.length ? body : undefined,
  }, { signingDate, signableHeaders: new Set(names) });
  const expected = /Signature=([0-9a-f]{64})/.exec(String(signed.headers.authorization))?.[1] ?? '';
  const ok = expected.length === signature.length && timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
  return ok ? null : 'the signature does not match (signed with another key?)';
}

const json = (res: ServerResponse, status: number, body?: object, errorType?: string) => {
  res.writeHead(status, { 'content-type': 'application/json', ...(errorType ? { 'x-amzn-errortype': errorType } : {}) });
  res.end(body ? JSON.stringify(body) : undefined);
};

/** Serves one management API request; false when the path is not `/@connections/{id}`. */
export async function serveConnections(req: IncomingMessage, res: ServerResponse, body: Buffer, sockets: Map<string, HeldSocket>): Promise<boolean> {
  const match = PATH.exec(new URL(req.url ?? '/', 'http://server').pathname);
  if (!match) return false;
  const problem = await signatureProblem(req, body);
  if (problem) {
    log.warn({ path: req.url, from: req.socket.remoteAddress, problem }, 'connections API call refused');
    json(res, 403, { message: `Forbidden: ${problem}` }, 'ForbiddenException');
    return true;
  }
  const connectionId = decodeURIComponent(match[1]);
  const socket = sockets.get(connectionId);
  if (!socket) {
    json(res, 410, { message: `connection ${connectionId} is not held here (gone)` }, 'GoneException');
    return true;
  }
  switch (req.method) {
    case 'POST': {
      const text = body.toString('utf8');
      socket.closing = closeNoticeOf(text) ?? socket.closing;
      try {
        await socket.send(text);
      } catch {
        // Closing already: as good as gone.
        json(res, 410, { message: `connection ${connectionId} is closing (gone)` }, 'GoneException');
        return true;
      }
      json(res, 200);
      return true;
    }
    case 'DELETE':
      socket.close(socket.closing?.code ?? 1000, socket.closing?.reason ?? '');
      json(res, 204);
      return true;
    case 'GET':
      json(res, 200, {
        ConnectedAt: socket.connectedAt.toISOString(),
        LastActiveAt: socket.lastActiveAt.toISOString(),
        Identity: { SourceIp: socket.sourceIp, UserAgent: socket.userAgent },
      });
      return true;
    default:
      json(res, 405, { message: `${req.method} is not a method of /@connections/{id}: use POST, GET or DELETE` });
      return true;
  }
}
