import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** DynamoDB operations that change data, and where each names its tables. */
const WRITES: Record<string, (body: Record<string, any>) => string[]> = {
  PutItem: (b) => [b.TableName],
  UpdateItem: (b) => [b.TableName],
  DeleteItem: (b) => [b.TableName],
  BatchWriteItem: (b) => Object.keys(b.RequestItems ?? {}),
  TransactWriteItems: (b) => (b.TransactItems ?? []).map((t: Record<string, any>) => Object.values(t)[0]?.TableName),
};

export interface WriteCounter {
  /** Point the platform's store here. */
  endpoint: string;
  /** The tables written since the last call, in order (one entry per write), and forget them. */
  take(): string[];
  stop(): Promise<void>;
}

/**
 * A pass-through in front of a real DynamoDB-protocol server that notes every write by table, so a test can say
 * "this refused request wrote nothing" from what reached the store rather than from what the code claims.
 */
export async function writeCounter(target: string): Promise<WriteCounter> {
  const upstream = new URL(target);
  let written: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const operation = String(req.headers['x-amz-target'] ?? '').split('.').pop() ?? '';
      if (WRITES[operation]) {
        try {
          written.push(...WRITES[operation](JSON.parse(body.toString('utf8'))));
        } catch {
          written.push(`unparsed ${operation}`);
        }
      }
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 500, answer.headers);
        answer.pipe(res);
      });
      forward.on('error', (err) => res.destroy(err));
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    take() {
      const out = written;
      written = [];
      return out;
    },
    stop: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections?.();
    }),
  };
}
