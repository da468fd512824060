import Docker from 'dockerode';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startStack, type Stack, type StackOptions } from '../../scripts/stack';
import { waitUntil } from './wait';

/**
 * A fleet of hosts on this machine, shared by tests and benches: each host is a network namespace joined to a bridge
 * of ours by a veth pair, with its own `dockerd` and its own runner inside it. The control plane listens on the
 * bridge address, so runners reach it the way a real fleet does (over the network, not loopback), and the engines'
 * only image source is the platform registry at that same address.
 *
 * Names carry this process's pid (`fzt<pid><a-z>…`), so runs in parallel never collide; everything created is recorded
 * and removed by `stop()`, and by an exit hook when a test process dies without calling it. Only processes this
 * fleet started are ever signalled. Traffic stays on the bridge and in these namespaces.
 */

const ROOT = resolve(__dirname, '../..');
let fleetCount = 0;

export interface FleetHost {
  /** Host name the runner registers with (`<prefix>-<i>`). */
  name: string;
  /** Network namespace name. */
  netns: string;
  /** The host's address on the bridge. */
  address: string;
  /** `unix://…` address of its engine. */
  dockerHost: string;
  docker: Docker;
  /** The runner's log (JSON lines). */
  runnerLog: string;
  /** Starts its runner (registering it with a join token the first time). Extra args go to runner/main.ts. */
  startRunner(args?: string[], env?: Record<string, string>): Promise<ChildProcess>;
  /** SIGKILLs its runner. */
  killRunner(): Promise<void>;
  /** Stops its engine: SIGKILL of dockerd, containerd, shims and container processes, as a power cut would. */
  killEngine(): Promise<void>;
  /** Starts its engine again on the same data (Docker restarts containers with a restart policy). */
  startEngine(): Promise<void>;
  /** The host vanishes from the network (its veth goes down); processes keep running. */
  linkDown(): void;
  linkUp(): void;
}

export interface ControlPlaneAccess {
  /** The GraphQL endpoint as runners reach it (on the bridge address). */
  url: string;
  /** Returns a new join token. */
  joinToken(): Promise<string>;
}

export interface Fleet {
  /** Bridge address: where the control plane and registry must listen (FZ_LISTEN_HOST). */
  bridgeAddress: string;
  /** `<bridgeAddress>:<registryPort>`, trusted by every engine as an insecure registry. */
  registry: string;
  hosts: FleetHost[];
  /** Where runners find the control plane; call before starting runners. */
  attach(controlPlane: ControlPlaneAccess): void;
  /** Removes every host, link, namespace, mount, directory and process this fleet made. Safe to call twice. */
  stop(): Promise<void>;
}

export interface FleetOptions {
  hosts: number;
  /** Host name prefix (default `host`). */
  prefix?: string;
  registryPort?: number;
}

function sh(cmd: string, args: string[]): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${(res.stderr || res.stdout || String(res.error)).trim()}`);
  return res.stdout;
}

const quiet = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' });

/** A /24 of 10.77.0.0/16 that no route of this namespace uses yet, picked from the pid so parallel runs differ. */
function freeSubnet(): number {
  const routes = sh('ip', ['-4', 'route', 'show']);
  for (let k = 0; k < 250; k++) {
    const third = ((process.pid + k) % 250) + 1;
    if (!routes.includes(`10.77.${third}.`)) return third;
  }
  throw new Error('no free /24 in 10.77.0.0/16 for a test fleet');
}

/** Pids whose network namespace is `netns` (what `ip netns pids` prints, read from /proc directly). */
function pidsIn(netns: string): number[] {
  let inode: number;
  try {
    inode = statSync(`/var/run/netns/${netns}`).ino;
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) === `net:[${inode}]`) found.push(Number(entry));
    } catch { /* exited meanwhile */ }
  }
  return found;
}

function mountsUnder(roots: string[]): string[] {
  return readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1])
    .filter((m) => m && roots.some((r) => m.startsWith(r))).sort((a, b) => b.length - a.length);
}

const alive = (child: ChildProcess | null | undefined): child is ChildProcess =>
  !!child && child.pid !== undefined && child.exitCode === null && child.signalCode === null;

async function killChild(child: ChildProcess | null | undefined, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!alive(child)) return;
  const exited = new Promise((r) => child.once('exit', r));
  try { process.kill(child.pid!, signal); } catch { /* gone */ }
  const timer = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
  await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs + 2000))]);
  clearTimeout(timer);
}

/** What one fleet made; the exit hook removes it synchronously when a test process dies without stop(). */
interface Made { netns: string[]; links: string[]; dirs: string[]; pids: Set<number> }
const fleets = new Set<Made>();
let hooked = false;
function cleanupSync(made: Made) {
  for (const netns of made.netns) for (const pid of pidsIn(netns)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  for (const pid of made.pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  for (const mount of mountsUnder(made.dirs)) quiet('umount', ['-l', mount]);
  for (const netns of made.netns) quiet('ip', ['netns', 'del', netns]);
  for (const link of made.links) quiet('ip', ['link', 'del', link]);
  for (const dir of made.dirs) { try { rmSync(dir, { recursive: true, force: true }); } catch { /* busy leftovers in tmp */ } }
  made.netns = []; made.links = []; made.dirs = []; made.pids.clear();
  fleets.delete(made);
}

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  if (!hooked) {
    hooked = true;
    process.once('exit', () => fleets.forEach(cleanupSync));
  }
  const made: Made = { netns: [], links: [], dirs: [], pids: new Set() };
  fleets.add(made);
  const stoppers: (() => Promise<void>)[] = [];
  // ≤ 15 characters with any suffix below: interface names are limited to 15.
  const RUN = `fzt${process.pid}${String.fromCharCode(97 + (fleetCount++ % 26))}`;
  const prefix = options.prefix ?? 'host';
  const third = freeSubnet();
  const bridgeAddress = `10.77.${third}.1`;
  const registry = `${bridgeAddress}:${options.registryPort ?? Number(process.env.FZ_REGISTRY_PORT ?? 5000)}`;
  const bridge = `${RUN}b`;
  const dir = mkdtempSync(join(tmpdir(), `${RUN}-`));
  made.dirs.push(dir);
  let controlPlane: ControlPlaneAccess | null = null;

  made.links.push(bridge);
  sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
  sh('ip', ['addr', 'add', `${bridgeAddress}/24`, 'dev', bridge]);
  sh('ip', ['link', 'set', bridge, 'up']);
  quiet('ip', ['link', 'set', 'lo', 'up']);

  const hosts: FleetHost[] = [];
  try {
    for (let i = 0; i < options.hosts; i++) hosts.push(await makeHost(i));
    await Promise.all(hosts.map((h) => h.startEngine()));
  } catch (err) {
    await stopAll();
    throw err;
  }

  async function makeHost(i: number): Promise<FleetHost> {
    const name = `${prefix}-${i}`;
    const netns = `${RUN}h${i}`;
    const veth = `${RUN}v${i}`;
    const address = `10.77.${third}.${10 + i}`;
    const hostDir = join(dir, `h${i}`);
    // Short: unix socket paths are limited to 108 bytes, and the exec root holds containerd's sockets.
    const execRoot = `/tmp/${RUN}x${i}`;
    mkdirSync(join(hostDir, 'runner'), { recursive: true });
    mkdirSync(execRoot, { recursive: true });
    made.dirs.push(execRoot);
    const socket = join(execRoot, 'docker.sock');
    const daemonJson = join(hostDir, 'daemon.json');
    writeFileSync(daemonJson, '{}\n'); // not the machine's /etc/docker/daemon.json
    const runnerLog = join(hostDir, 'runner.log');
    const dockerdLog = join(hostDir, 'dockerd.log');
    // The engine's own temp dir: runc and containerd leave files there when killed (a power cut), removed with `dir`.
    const engineTemp = join(hostDir, 'tmp');
    mkdirSync(engineTemp, { recursive: true });

    made.netns.push(netns);
    sh('ip', ['netns', 'add', netns]);
    made.links.push(veth);
    sh('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    sh('ip', ['link', 'set', veth, 'master', bridge]);
    sh('ip', ['link', 'set', veth, 'up']);
    sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', netns, 'route', 'add', 'default', 'via', bridgeAddress]);

    const docker = new Docker({ socketPath: socket });
    let dockerd: ChildProcess | null = null;
    let runner: ChildProcess | null = null;
    const inside = (cmd: string, args: string[], log: string, env: NodeJS.ProcessEnv = process.env) => {
      const out = openSync(log, 'a');
      const child = spawn('nsenter', [`--net=/var/run/netns/${netns}`, '--', cmd, ...args], { cwd: ROOT, env, stdio: ['ignore', out, out] });
      if (child.pid) made.pids.add(child.pid);
      child.once('exit', () => made.pids.delete(child.pid!));
      return child;
    };

    /** Processes of this host's engine: containerd and the shims live in its namespace; containers have their own. */
    const containerPids = async () => {
      const list = await docker.listContainers().catch(() => []);
      const pids: number[] = [];
      for (const c of list) {
        const info = await docker.getContainer(c.Id).inspect().catch(() => null);
        if (info?.State.Pid) pids.push(info.State.Pid);
      }
      return pids;
    };

    const host: FleetHost = {
      name, netns, address, dockerHost: `unix://${socket}`, docker, runnerLog,
      async startEngine() {
        if (alive(dockerd)) return;
        dockerd = inside('dockerd', [
          '--config-file', daemonJson,
          '--data-root', join(hostDir, 'docker'), '--exec-root', execRoot, '--pidfile', join(execRoot, 'docker.pid'),
          '-H', `unix://${socket}`, '--iptables=false', '--ip-masq=false', '--bridge=none',
          '--insecure-registry', registry,
        ], dockerdLog, { ...process.env, TMPDIR: engineTemp });
        const started: ChildProcess = dockerd;
        await waitUntil(`dockerd of ${name}`, async () => {
          if (started.exitCode !== null || started.signalCode !== null) throw new Error(`dockerd exited (${started.exitCode ?? started.signalCode}); see ${dockerdLog}`);
          return (await docker.ping()) !== undefined;
        }, 30_000, 100);
      },
      async killEngine() {
        const victims = await containerPids();
        const engine = pidsIn(netns).filter((pid) => pid !== runner?.pid);
        for (const pid of [...engine, ...victims]) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
        if (alive(dockerd)) await new Promise((r) => dockerd!.once('exit', r));
        await waitUntil(`the engine of ${name} gone`, async () => pidsIn(netns).every((pid) => pid === runner?.pid), 10_000, 100);
      },
      async startRunner(args = [], env = {}) {
        if (!controlPlane) throw new Error('fleet.attach(controlPlane) first');
        if (alive(runner)) throw new Error(`the runner of ${name} is already running`);
        const stateDir = join(hostDir, 'runner');
        const registered = readdirSync(stateDir).length > 0;
        runner = inside(process.execPath, ['--import', 'tsx', join(ROOT, 'runner/main.ts'),
          '--name', name, '--address', address, '--docker-socket', `unix://${socket}`, '--state-dir', stateDir, ...args], runnerLog, {
          ...process.env,
          FZ_API_URL: controlPlane.url,
          FZ_JOIN_TOKEN: registered ? '' : await controlPlane.joinToken(),
          ...env,
        });
        return runner;
      },
      async killRunner() {
        await killChild(runner, 'SIGKILL', 0);
      },
      linkDown() {
        sh('ip', ['link', 'set', veth, 'down']);
      },
      linkUp() {
        sh('ip', ['link', 'set', veth, 'up']);
      },
    };
    // For stop(): the runner first (so it does not recreate what we remove), then containers, then the engine.
    stoppers.push(async () => {
      await killChild(runner, 'SIGTERM', 3000);
      if (alive(dockerd)) {
        const containers = await docker.listContainers({ all: true }).catch(() => []);
        await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
        await killChild(dockerd, 'SIGTERM', 10_000);
      }
      for (const pid of pidsIn(netns)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    });
    return host;
  }

  async function stopAll() {
    await Promise.all(stoppers.splice(0).map((s) => s().catch(() => undefined)));
    cleanupSync(made);
  }

  return {
    bridgeAddress,
    registry,
    hosts,
    attach(cp) {
      controlPlane = cp;
    },
    stop: stopAll,
  };
}

/** A stack started by scripts/stack.ts as this fleet's control plane. */
export function controlPlaneOf(stack: { url: string; graphql: (q: string) => Promise<{ data?: any }> }): ControlPlaneAccess {
  return {
    url: stack.url,
    async joinToken() {
      // A cold handler on a loaded machine may time out once (serverless-offline's 29 s); a second call finds it warm.
      let res: { data?: any } = {};
      for (let attempt = 0; attempt < 3 && !res.data?.createJoinToken?.token; attempt++) {
        res = await stack.graphql('mutation { createJoinToken { token } }');
      }
      if (!res.data?.createJoinToken?.token) throw new Error(`createJoinToken failed: ${JSON.stringify(res)}`);
      return res.data.createJoinToken.token as string;
    },
  };
}

/**
 * Pushes images of the machine's engine (DOCKER_HOST) into the platform registry at `registry` (on the bridge). The
 * engine trusts plain HTTP only on loopback, so the push goes through a loopback port that forwards to the registry.
 */
export async function pushImages(registry: string, images: string[]): Promise<void> {
  const [host, port] = registry.split(':');
  const open = new Set<{ destroy(): void }>();
  const forwarder = createServer((client) => {
    const upstream = connect(Number(port), host);
    open.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); };
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => forwarder.listen(0, '127.0.0.1', resolve));
  const local = `127.0.0.1:${(forwarder.address() as AddressInfo).port}`;
  const docker = (...args: string[]) => new Promise<void>((resolve, reject) => {
    const child = spawn('docker', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`docker ${args.join(' ')}: ${err.trim()}`))));
  });
  try {
    for (const image of images) {
      const ref = `${local}/${image}`;
      await docker('tag', image, ref);
      try {
        await docker('push', ref);
      } finally {
        execFileSync('docker', ['rmi', '--no-prune', ref], { stdio: 'ignore' });
      }
    }
  } finally {
    // The engine may keep its connections alive: end them, or close() would wait for them.
    open.forEach((socket) => socket.destroy());
    await new Promise((resolve) => forwarder.close(resolve));
  }
}

export interface FleetStackOptions {
  hosts: number;
  /** Host names are `<prefix>-<i>`; the stack's data dir is named after it too. */
  prefix: string;
  /** Where the platform registry listens on the bridge (every engine trusts it). */
  registryPort: number;
  ports: Pick<StackOptions, 'httpPort' | 'wsPort' | 'lambdaPort' | 'storePort'>;
  /** Images of this machine's engine to push into the platform registry: the hosts' engines start empty. */
  images: string[];
}

export interface FleetStack {
  fleet: Fleet;
  stack: Stack;
  /** Stops the fleet, then the stack, and removes the stack's data dir. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * A fleet and its control plane, ready for a test to deploy: the stack listens on the bridge with the platform
 * registry, the images are pushed, and every host's runner has joined and is READY. When any step fails, what was
 * started is stopped before it throws.
 */
export async function startFleetStack(options: FleetStackOptions): Promise<FleetStack> {
  const fleet = await startFleet({ hosts: options.hosts, prefix: options.prefix, registryPort: options.registryPort });
  const dir = mkdtempSync(join(tmpdir(), `fz-fleet-${options.prefix}-`));
  let stopStack = async (): Promise<void> => undefined;
  const stop = async () => {
    await fleet.stop();
    await stopStack();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const stack = await startStack({
      dataDir: dir, listenHost: fleet.bridgeAddress, ...options.ports,
      registry: { host: fleet.bridgeAddress, port: options.registryPort }, output: join(dir, 'stack.log'),
    });
    stopStack = () => stack.stop();
    await pushImages(stack.registry!, options.images);
    fleet.attach(controlPlaneOf(stack));
    for (const host of fleet.hosts) await host.startRunner();
    await waitUntil(`${options.hosts} hosts READY`, async () => {
      const res = await stack.graphql<{ hosts: { status: string }[] }>('{ hosts { status } }');
      return res.data?.hosts.length === options.hosts && res.data.hosts.every((h) => h.status === 'READY');
    }, 240_000);
    return { fleet, stack, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
