import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The platform's image registry: Debian's `docker-registry` (the CNCF distribution registry) with its data and the
 * config file we write under the data dir. Hosts pull every image a release runs from it.
 */
export interface Registry {
  /** `host:port`, as engines name it in image references (`127.0.0.1:5000/fangzhou/redis@sha256:…`). */
  address: string;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** The registry keeps `config.yml`, its log and its blobs in here. */
  dir: string;
  host: string;
  port: number;
  output?: 'inherit' | 'ignore' | number;
}

export const REGISTRY_BINARY = 'docker-registry';

/** Null when the binary is installed; otherwise what to do about it. */
export function registryMissing(): string | null {
  const found = spawnSync('sh', ['-c', `command -v ${REGISTRY_BINARY}`], { stdio: 'ignore' }).status === 0;
  return found ? null : `${REGISTRY_BINARY} is not installed (apt-get install docker-registry; scripts/ensure-docker.sh does it as root)`;
}

/** Debian's default config asks for htpasswd auth and listens on every address; ours says exactly what it serves. */
export function registryConfig(dir: string, address: string): string {
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(dir, 'data'))}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${JSON.stringify(address)}`,
    // Signs upload state between requests; one registry process, so a fresh one per start is enough.
    `  secret: ${randomBytes(24).toString('hex')}`,
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
    '',
  ].join('\n');
}

export async function startRegistry(options: RegistryOptions): Promise<Registry> {
  const missing = registryMissing();
  if (missing) throw new Error(missing);
  const address = `${options.host}:${options.port}`;
  mkdirSync(join(options.dir, 'data'), { recursive: true });
  const configFile = join(options.dir, 'config.yml');
  writeFileSync(configFile, registryConfig(options.dir, address));
  const out = options.output ?? 'ignore';
  const child = spawn(REGISTRY_BINARY, ['serve', configFile], { stdio: ['ignore', out, out], detached: true });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${REGISTRY_BINARY} exited with code ${child.exitCode} (is ${address} in use?)`);
    // The distribution API's base endpoint answers 200 once the registry serves.
    if (await fetch(`http://${address}/v2/`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) {
      await stopChild(child, exited);
      throw new Error(`the registry at ${address} did not answer within 15 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { address, stop: () => stopChild(child, exited) };
}

async function stopChild(child: ChildProcess, exited: Promise<void>) {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
  const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 5000);
  await exited;
  clearTimeout(timer);
}
