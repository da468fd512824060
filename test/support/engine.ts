import Docker from 'dockerode';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitUntil } from './wait';

/**
 * An extra Docker engine on this machine, standing in for another host: its own dockerd with its own data root,
 * exec root, socket and address pool (so its networks do not clash with the main engine's), no iptables changes.
 * The demo images are copied in from the main engine (no registry is reachable).
 */
export interface Engine {
  socket: string;
  docker: Docker;
  /** Kills dockerd (and so stops answering), as a lost host would. */
  kill(): Promise<void>;
  /** Starts dockerd again on the same data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** SIGKILL every process whose command line mentions `needle` (procps may be missing, /proc is not). */
function killMatching(needle: string) {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle)) process.kill(Number(pid), 'SIGKILL');
    } catch { /* exited meanwhile */ }
  }
}

function mountsUnder(roots: string[]): string[] {
  return readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1])
    .filter((m) => m && roots.some((r) => m.startsWith(r))).sort((a, b) => b.length - a.length);
}

export async function startEngine(name: string, pool: string, images: string[]): Promise<Engine> {
  const dir = mkdtempSync(join(tmpdir(), `fz-engine-${name}-`));
  const execRoot = `/tmp/fzx-${name}-${process.pid}`; // short: unix socket paths are limited to 108 bytes
  mkdirSync(execRoot, { recursive: true });
  const socket = join(dir, 'docker.sock');
  let child: ChildProcess | undefined;
  const docker = new Docker({ socketPath: socket });
  // Its own temp dir (runc and containerd leave files there when killed), removed with the rest of `dir`.
  const temp = join(dir, 'tmp');
  mkdirSync(temp, { recursive: true });
  const start = async () => {
    child = spawn('dockerd', [
      '--data-root', join(dir, 'data'), '--exec-root', execRoot, '--pidfile', join(dir, 'docker.pid'),
      '-H', `unix://${socket}`, '--iptables=false', '--ip-masq=false', '--bridge=none',
      '--default-address-pool', `base=${pool},size=24`,
    ], { stdio: 'ignore', detached: true, env: { ...process.env, TMPDIR: temp } });
    await waitUntil(`dockerd ${name}`, async () => (await docker.ping()) !== undefined, 30_000, 200);
  };
  const kill = async () => {
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child!.once('exit', r));
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    await exited;
    // dockerd's managed containerd and the shims outlive it; end them so the host is really gone.
    killMatching(execRoot);
  };
  await start();
  for (const image of images) {
    const save = spawn('docker', ['save', image], { stdio: ['ignore', 'pipe', 'inherit'] });
    const load = spawn('docker', ['-H', `unix://${socket}`, 'load', '-q'], { stdio: ['pipe', 'ignore', 'inherit'] });
    save.stdout!.pipe(load.stdin!);
    await new Promise((r) => load.once('exit', r));
  }
  return {
    socket,
    docker,
    kill,
    restart: start,
    async stop() {
      const containers = await docker.listContainers({ all: true }).catch(() => []);
      for (const c of containers) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
      if (child?.pid && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child!.once('exit', r));
        process.kill(-child.pid, 'SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      }
      await kill();
      // The engine's overlay and netns mounts outlive a killed dockerd: detach them before removing its folders.
      for (const mount of mountsUnder([dir, execRoot])) spawnSync('umount', ['-l', mount]);
      for (const path of [execRoot, dir]) {
        try { rmSync(path, { recursive: true, force: true }); } catch { /* a busy leftover in tmp is harmless */ }
      }
    },
  };
}
