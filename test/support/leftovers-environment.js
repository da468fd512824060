/**
 * The node test environment, plus a check that each test file leaves nothing of its own behind: processes,
 * containers, network namespaces, mounts, temp dirs. A file that does fails (after its tests and hooks, with an error
 * of its own beside its tests' results; the summary line counts it), and what it left is named and then removed,
 * so the next file starts clean.
 *
 * Only what is the file's own is ever judged or removed, however many other runs share the machine and the engine:
 * - every file gets a fresh TMPDIR (os.tmpdir() and every child process see it): its temp dirs are in there, its
 *   mounts under it, and its processes carry it (or a folder under it) in their environment, even once detached;
 * - every file gets its own DOCKER_HOST: a recorder (docker-recorder.js) in front of the engine notes the id of each
 *   container created through it, so the file's containers are exactly those noted (its runners' and its scripts'
 *   included, since they inherit DOCKER_HOST). Containers of engines the file starts itself go with those engines;
 * - network namespaces, and the few short paths in /tmp that cannot live under TMPDIR (engines' exec roots, limited
 *   by the 108-byte socket path), are named after the test process's pid (test/support/fleet.ts, engine.ts): those
 *   created while the file ran with this pid in the name are its own.
 */
const { execFileSync, fork } = require('node:child_process');
const { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } = require('node:fs');
const { join, relative } = require('node:path');
const { TestEnvironment: NodeEnvironment } = require('jest-environment-node');

const NETNS_DIR = '/var/run/netns';
/** How long a file's processes may take to finish stopping after its last hook (SIGTERM, then SIGKILL after 5 s). */
const SETTLE_MS = 8000;
const DEFAULT_ENGINE = '/var/run/docker.sock';

/** Caches tools keep in os.tmpdir() across runs by design (tsx's compile cache, `tsx-<uid>`): not a file's leftover. */
const TOOL_CACHES = /^tsx-\d+$/;

const netnsNames = () => (existsSync(NETNS_DIR) ? readdirSync(NETNS_DIR) : []);
/** Names this test process gives what must live outside its TMPDIR: fleet.ts `fzt<pid><letter>…`, engine.ts `fzx-<name>-<pid>`. */
const ownName = (name) => new RegExp(`^fzt${process.pid}[a-z]|^fzx-.+-${process.pid}$`).test(name);

/** Processes whose TMPDIR is `dir` or a folder under it (a harness gives an engine it starts a temp dir of its own). */
function processesWith(dir) {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid).flatMap((pid) => {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      if (!env.some((v) => v === `TMPDIR=${dir}` || v.startsWith(`TMPDIR=${dir}/`))) return [];
      return [{ pid: Number(pid), command: readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0+$/, '').replace(/\0/g, ' ').slice(0, 160) }];
    } catch {
      return []; // gone meanwhile, or not ours to read
    }
  });
}

const mountPoints = () => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((line) => line.split(' ')[4]).filter(Boolean);
const under = (dir) => (point) => point === dir || point.startsWith(`${dir}/`);

/** The engine's socket path, when DOCKER_HOST names a unix socket (or is unset and the default socket exists). */
function engineSocket() {
  const host = process.env.DOCKER_HOST;
  if (!host) return existsSync(DEFAULT_ENGINE) ? DEFAULT_ENGINE : null;
  if (host.startsWith('unix://')) return host.slice('unix://'.length);
  return host.startsWith('/') ? host : null;
}

class LeftoversEnvironment extends NodeEnvironment {
  constructor(config, context) {
    const previous = { TMPDIR: process.env.TMPDIR, DOCKER_HOST: process.env.DOCKER_HOST };
    const os = require('node:os');
    const tmp = mkdtempSync(join(os.tmpdir(), 'fz-test-'));
    const engine = engineSocket();
    // The recorder's socket and notes live beside TMPDIR, not in it: they are the check's, not the file's.
    const own = engine ? mkdtempSync(join(os.tmpdir(), 'fz-check-')) : null;
    // Before the test context is built, so the file's process.env, its children and os.tmpdir() all see them.
    process.env.TMPDIR = tmp;
    if (own) process.env.DOCKER_HOST = `unix://${join(own, 'docker.sock')}`;
    super(config, context);
    this.previous = previous;
    this.tmp = tmp;
    this.engine = engine;
    this.own = own;
    this.file = relative(config.globalConfig.rootDir, context.testPath);
  }

  async setup() {
    await super.setup();
    this.netns = new Set(netnsNames());
    this.tmpNames = new Set(readdirSync('/tmp'));
    if (this.own) await this.startRecorder();
  }

  async startRecorder() {
    const env = { ...process.env, TMPDIR: this.previous.TMPDIR ?? '/tmp' };
    delete env.DOCKER_HOST;
    this.recorder = fork(join(__dirname, 'docker-recorder.js'), [join(this.own, 'docker.sock'), this.engine, join(this.own, 'created')],
      { env, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise((resolve, reject) => {
      this.recorder.once('message', resolve);
      this.recorder.once('exit', (code) => reject(new Error(`the Docker recorder of ${this.file} exited (${code})`)));
    });
    this.recorder.removeAllListeners('exit');
  }

  /**
   * Once the file's tests and hooks are done (run_finish, before its results are made): a leftover then fails the
   * file as an error of its own, and the results of its tests are still reported.
   */
  async handleTestEvent(event, state) {
    if (event.name !== 'run_finish') return;
    const problem = await this.check();
    if (problem) state.unhandledErrors.push(new Error(problem));
  }

  async teardown() {
    await super.teardown();
    const problem = await this.check(); // a file that never reached run_finish (it did not load)
    if (this.recorder) {
      const exited = new Promise((r) => this.recorder.once('exit', r));
      this.recorder.kill('SIGTERM');
      await exited;
    }
    if (this.own) rmSync(this.own, { recursive: true, force: true });
    rmSync(this.tmp, { recursive: true, force: true });
    for (const [name, value] of Object.entries(this.previous)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    if (problem) throw new Error(problem);
  }

  /** Names and removes what the file left (once); the message to fail it with, or null. */
  async check() {
    if (this.checked) return null;
    this.checked = true;
    const deadline = Date.now() + SETTLE_MS;
    let processes = processesWith(this.tmp);
    while (processes.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      processes = processesWith(this.tmp);
    }
    const left = { ...(await this.leftovers()), processes };
    const found = [
      ...left.processes.map((p) => `process ${p.pid}: ${p.command}`),
      ...left.containers.map((c) => `container ${c.Name.replace(/^\//, '')} (${c.Config.Image}, ${c.State.Status})`),
      ...left.netns.map((n) => `network namespace ${n}`),
      ...left.mounts.map((m) => `mount ${m}`),
      ...left.files.map((f) => `temp ${f}`),
    ];
    await this.clean(left);
    return found.length ? `${this.file} left behind what it started (now removed):\n  ${found.join('\n  ')}` : null;
  }

  /** Containers this file created (noted by its recorder) that still exist. */
  async containers() {
    if (!this.own) return [];
    const created = join(this.own, 'created');
    const ids = existsSync(created) ? [...new Set(readFileSync(created, 'utf8').split('\n').filter(Boolean))] : [];
    if (!ids.length) return [];
    const Docker = require('dockerode');
    this.docker = new Docker({ socketPath: this.engine });
    const found = [];
    for (const id of ids) {
      const info = await this.docker.getContainer(id).inspect().catch(() => null);
      if (info) found.push(info);
    }
    return found;
  }

  async leftovers() {
    const newInTmp = readdirSync('/tmp').filter((n) => !this.tmpNames.has(n) && ownName(n)).map((n) => join('/tmp', n));
    const points = mountPoints();
    return {
      containers: await this.containers(),
      netns: netnsNames().filter((n) => !this.netns.has(n) && ownName(n)),
      mounts: points.filter((p) => under(this.tmp)(p) || newInTmp.some((dir) => under(dir)(p))),
      files: [...(existsSync(this.tmp) ? readdirSync(this.tmp).filter((f) => !TOOL_CACHES.test(f)).map((f) => join(this.tmp, f)) : []), ...newInTmp],
    };
  }

  async clean(left) {
    for (const p of left.processes) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const c of left.containers) await this.docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    for (const n of left.netns) { try { execFileSync('ip', ['netns', 'delete', n], { stdio: 'ignore' }); } catch { /* gone */ } }
    for (const m of left.mounts.sort((a, b) => b.length - a.length)) { try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* gone */ } }
    for (const f of left.files) rmSync(f, { recursive: true, force: true });
  }
}

module.exports = LeftoversEnvironment;
