import net, { type AddressInfo } from 'node:net';

/**
 * A tiny TCP load balancer for tests: each new connection goes to the next backend in turn (round robin); a backend
 * that refuses the connection is skipped for that connection. It knows nothing of HTTP or WebSockets, like the
 * simplest balancer in front of a fleet, so what it proves about replicas holds behind any balancer.
 */
export interface Balancer {
  port: number;
  /** The backend port each accepted connection went to, in order. */
  served: number[];
  stop(): Promise<void>;
}

export async function startBalancer(backends: number[], host = '127.0.0.1'): Promise<Balancer> {
  let next = 0;
  const served: number[] = [];
  const open = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    open.add(s);
    s.once('close', () => open.delete(s));
    return s;
  };
  const server = net.createServer((client) => {
    track(client);
    client.pause();
    const attempt = (tries: number) => {
      if (tries >= backends.length) return void client.destroy();
      const port = backends[next++ % backends.length];
      const upstream = track(net.connect(port, host));
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        served.push(port);
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.pipe(upstream).pipe(client);
        client.resume();
      });
      upstream.once('error', () => {
        if (!connected) attempt(tries + 1);
      });
    };
    attempt(0);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    served,
    stop: () => new Promise<void>((resolve) => {
      for (const s of open) s.destroy();
      server.close(() => resolve());
    }),
  };
}
