import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry } from '../../scripts/registry';

/**
 * A platform registry of its own for a test (the real `docker-registry`, on a free loopback port, data in a temp
 * dir), and a way to put images from the main engine into it.
 */
export interface TestRegistry {
  address: string;
  /** Pushes a local image of the main engine to the registry under `as` (default: the same name). */
  push(image: string, as?: string): void;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startTestRegistry(): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'fz-registry-'));
  const registry = await startRegistry({ dir, host: '127.0.0.1', port: await freePort() });
  const docker = (...args: string[]) => execFileSync('docker', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  return {
    address: registry.address,
    push(image, as = image) {
      const ref = `${registry.address}/${as}`;
      docker('tag', image, ref);
      try {
        docker('push', ref);
      } finally {
        // The registry-prefixed tag is only the push's handle: the main engine keeps no leftover.
        docker('rmi', '--no-prune', ref);
      }
    },
    async stop() {
      await registry.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
