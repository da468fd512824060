import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { waitFor, waitUntil } from '../support/wait';

/**
 * `npm start` exactly as a newcomer runs it, on its default ports (3000-3002, store 4567), followed by the README's
 * "First steps" read from README.md at test time and run line by line in bash, as written. Every process the start
 * spawned carries its data dir in its environment; that is how the test finds what was left behind.
 */
const ROOT = resolve(__dirname, '../..');
const PORTS = [3000, 3001, 3002, 4567];
const started: { child: ChildProcess; dataDir: string }[] = [];
let work: string;

beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'fz-npm-start-')); });

/** A start that a failed test left running is stopped before the next test needs the same ports. */
afterEach(async () => {
  for (const { child, dataDir } of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      signalGroup(child, 'SIGINT');
      await Promise.race([new Promise((r) => child.once('exit', r)), new Promise((r) => setTimeout(r, 30_000))]);
    }
    signalGroup(child, 'SIGKILL');
    for (const pid of processesOf(dataDir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  }
}, 60_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The README's "First steps" commands: the first sh block under that heading, without blank lines. */
function firstSteps(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## First steps'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1];
  return block.split('\n').filter((line) => line.trim());
}

function npmStart(dir: string) {
  const dataDir = join(dir, '.fangzhou');
  const child = spawn('npm', ['start'], { cwd: ROOT, env: { ...process.env, FZ_DATA_DIR: dataDir }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push({ child, dataDir });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; });
  child.stderr!.on('data', (d) => { stderr += d; });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, dataDir, exited, stdout: () => stdout, output: () => stdout + stderr };
}

/** Ctrl-C in a terminal: SIGINT to the foreground process group. */
const signalGroup = (child: ChildProcess, signal: NodeJS.Signals) => { try { process.kill(-child.pid!, signal); } catch { /* gone */ } };

/** Our processes: those whose environment names this start's data dir (dockerd, if one was started, stays by design). */
function processesOf(dataDir: string): number[] {
  const marker = `FZ_DATA_DIR=${dataDir}\0`;
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'latin1').includes(marker) && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'dockerd';
    } catch {
      return false;
    }
  });
}

const listening = (port: number) => new Promise<boolean>((r) => {
  const socket = connect(port, '127.0.0.1');
  socket.once('connect', () => { socket.destroy(); r(true); });
  socket.once('error', () => r(false));
});

/** A bash session in the user's working directory; each line runs as typed, its output and status come back. */
function shell(cwd: string) {
  const bash = spawn('bash', ['--noprofile', '--norc'], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let buffer = '';
  bash.stdout!.on('data', (d) => { buffer += d; });
  bash.stderr!.on('data', (d) => { buffer += d; });
  let n = 0;
  return {
    async run(line: string): Promise<{ out: string; status: number }> {
      const marker = `__fz_done_${++n}`;
      buffer = '';
      bash.stdin!.write(`${line}\nprintf '\\n${marker} %s\\n' $?\n`);
      const done = await waitFor(`bash to run: ${line}`, async () => new RegExp(`\\n${marker} (\\d+)\\n`).exec(buffer) ?? undefined, 60_000, 50);
      return { out: buffer.slice(0, done.index).trim(), status: Number(done[1]) };
    },
    close: () => bash.kill(),
  };
}

test('npm start says "Fangzhou is up" once its host is READY; the README first steps then work as written; Ctrl-C leaves nothing behind', async () => {
  const dir = join(work, 'first');
  mkdirSync(dir);
  const start = npmStart(dir);
  await waitUntil('"Fangzhou is up"', async () => {
    if (start.child.exitCode !== null) throw new Error(`npm start exited with ${start.child.exitCode}:\n${start.output().slice(-3000)}`);
    return start.stdout().includes('Fangzhou is up.');
  }, 540_000, 250);
  expect(start.stdout()).toMatch(/Host {10}local is READY/);
  expect(statSync(join(start.dataDir, 'admin-token')).mode & 0o777).toBe(0o600);

  const bash = shell(dir);
  try {
    for (const line of firstSteps()) {
      let result = await bash.run(line);
      if (line.startsWith('gql \'{"query":"{ releases')) {
        // Watching: a user runs the query again until the release is RUNNING.
        let again = result;
        await waitUntil('hello to be RUNNING', async () => {
          again = await bash.run(line);
          return /"name":"hello","status":"RUNNING"/.test(again.out) || again.out;
        }, 300_000, 500);
        result = again;
        expect(result.out).toMatch(/"status":\{"state":"RUNNING","health":"HEALTHY"\}/);
      }
      expect({ line, status: result.status, errors: result.out.includes('"errors"') }).toEqual({ line, status: 0, errors: false });
      if (line.startsWith('DEPLOYED=')) expect(result.out).toMatch(/^\{"data":\{"deploy":\{"id":"r-[0-9a-f]+","status":"[A-Z]+"\}\}\}$/);
      if (line.startsWith('docker ps')) for (const n of [0, 1, 2]) expect(result.out).toContain(`fz-hello-${n}`);
      if (line.startsWith('gql \'{"query":"mutation { deleteRelease')) expect(result.out).toBe('{"data":{"deleteRelease":{"status":"DELETING"}}}');
    }
    const dockerPs = firstSteps().find((line) => line.startsWith('docker ps'))!;
    await waitUntil('the containers to be removed', async () => !(await bash.run(dockerPs)).out.includes('fz-hello-'), 60_000, 500);
  } finally {
    bash.close();
  }

  // The AWS SDK's multi-line notice about Node 22 appears at most once, not once per handler.
  expect(start.output().split('NodeVersionSupportWarning').length - 1).toBeLessThanOrEqual(1);

  signalGroup(start.child, 'SIGINT');
  await start.exited;
  expect(processesOf(start.dataDir)).toEqual([]);
  expect(await Promise.all(PORTS.map(listening))).toEqual(PORTS.map(() => false));
}, 900_000);

test('Ctrl-C while npm start is still starting stops the store and everything else it had started', async () => {
  const dir = join(work, 'interrupted');
  mkdirSync(dir);
  expect(await Promise.all(PORTS.map(listening))).toEqual(PORTS.map(() => false));
  const start = npmStart(dir);
  await waitUntil('the store to listen', () => listening(4567), 120_000, 50);
  expect(start.stdout()).not.toContain('Fangzhou is up.');
  signalGroup(start.child, 'SIGINT');
  await start.exited;
  expect(processesOf(start.dataDir)).toEqual([]);
  expect(await Promise.all(PORTS.map(listening))).toEqual(PORTS.map(() => false));
}, 300_000);
