import net from 'node:net';
import { createGateway } from '../../gateway/gateway';

/**
 * A private cloud sees no traffic from the platform to anywhere but its own parts: building and loading the gateway
 * (as every API process does) opens no connection at all — no cloud metadata probe, no usage report to Apollo.
 */
test('building and loading the gateway connects nowhere', async () => {
  const attempts: string[] = [];
  const original = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
    const [first] = args as [unknown];
    attempts.push(typeof first === 'object' && first !== null ? JSON.stringify({ host: (first as { host?: string }).host, port: (first as { port?: number }).port }) : String(first));
    return (original as (...a: unknown[]) => net.Socket).apply(this, args);
  } as typeof original;
  const gateway = createGateway('http', 'http://127.0.0.1:9/subgraphs');
  try {
    await gateway.load();
    // The cloud detectors and the metrics exporter start in the background; give them time to try.
    await new Promise((resolve) => setTimeout(resolve, 1500));
  } finally {
    await gateway.stop();
    net.Socket.prototype.connect = original;
  }
  expect(attempts).toEqual([]);
});
