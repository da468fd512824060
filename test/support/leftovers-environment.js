/**
 * The node test environment, plus a check that each test file leaves nothing of its own behind: processes,
 * containers, network namespaces, mounts, temp dirs. A file that does fails (after its tests, like a failing
 * afterAll), and what it left is named and then removed, so the next file starts clean.
 *
 * What is the file's own: every file gets a fresh TMPDIR (os.tmpdir() and every child process see it), so its temp
 * dirs are in there, its mounts are under it, and its processes carry it in their environment, even once detached.
 * Containers are those created on the engine (DOCKER_HOST) while the file ran, and network namespaces those created
 * meanwhile whose name carries this process's id (test namespaces are named per run). Files run one at a time per
 * engine and per process, which is what makes "created meanwhile" the file's own.
 */
const { execFileSync } = require('node:child_process');
const { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } = require('node:fs');
const { join, relative } = require('node:path');
const { TestEnvironment: NodeEnvironment } = require('jest-environment-node');

const NETNS_DIR = '/var/run/netns';
/** How long a file's processes may take to finish stopping after its last hook (SIGTERM, then SIGKILL after 5 s). */
const SETTLE_MS = 8000;

const netnsNames = () => (existsSync(NETNS_DIR) ? readdirSync(NETNS_DIR) : []);

function processesWith(marker) {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid).flatMap((pid) => {
    try {
      if (!readFileSync(`/proc/${pid}/environ`, 'latin1').includes(marker)) return [];
      return [{ pid: Number(pid), command: readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0+$/, '').replace(/\0/g, ' ').slice(0, 160) }];
    } catch {
      return []; // gone meanwhile, or not ours to read
    }
  });
}

const mountsUnder = (dir) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
  .map((line) => line.split(' ')[4]).filter((point) => point && (point === dir || point.startsWith(`${dir}/`)));

async function docker() {
  try {
    const Docker = require('dockerode');
    const engine = new Docker();
    await engine.ping();
    return engine;
  } catch {
    return null; // no engine: a unit test run, nothing to check there
  }
}

class LeftoversEnvironment extends NodeEnvironment {
  constructor(config, context) {
    const previous = process.env.TMPDIR;
    const tmp = mkdtempSync(join(require('node:os').tmpdir(), 'fz-test-'));
    // Before the test context is built, so the file's process.env, its children and os.tmpdir() all see it.
    process.env.TMPDIR = tmp;
    super(config, context);
    this.previousTmp = previous;
    this.tmp = tmp;
    this.file = relative(config.globalConfig.rootDir, context.testPath);
  }

  async setup() {
    await super.setup();
    this.startedAt = Math.floor(Date.now() / 1000) - 1;
    this.netns = new Set(netnsNames());
    this.engine = await docker();
    this.containers = this.engine ? new Set((await this.engine.listContainers({ all: true })).map((c) => c.Id)) : new Set();
  }

  async teardown() {
    await super.teardown();
    const left = await this.leftovers();
    const deadline = Date.now() + SETTLE_MS;
    while (left.processes.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      left.processes = processesWith(`TMPDIR=${this.tmp}\0`);
    }
    const found = [
      ...left.processes.map((p) => `process ${p.pid}: ${p.command}`),
      ...left.containers.map((c) => `container ${c.Names[0]} (${c.Image}, ${c.State})`),
      ...left.netns.map((n) => `network namespace ${n}`),
      ...left.mounts.map((m) => `mount ${m}`),
      ...left.files.map((f) => `temp ${f}`),
    ];
    await this.clean(left);
    if (this.previousTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = this.previousTmp;
    if (found.length) {
      throw new Error(`${this.file} left behind what it started (now removed):\n  ${found.join('\n  ')}`);
    }
  }

  async leftovers() {
    const containers = this.engine
      ? (await this.engine.listContainers({ all: true })).filter((c) => !this.containers.has(c.Id) && c.Created >= this.startedAt)
      : [];
    return {
      processes: processesWith(`TMPDIR=${this.tmp}\0`),
      containers,
      netns: netnsNames().filter((n) => !this.netns.has(n) && n.includes(String(process.pid))),
      mounts: mountsUnder(this.tmp),
      files: existsSync(this.tmp) ? readdirSync(this.tmp).map((f) => join(this.tmp, f)) : [],
    };
  }

  async clean(left) {
    for (const p of left.processes) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const c of left.containers) await this.engine.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    for (const n of left.netns) { try { execFileSync('ip', ['netns', 'delete', n], { stdio: 'ignore' }); } catch { /* gone */ } }
    for (const m of left.mounts.reverse()) { try { execFileSync('umount', ['-l', m], { stdio: 'ignore' }); } catch { /* gone */ } }
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

module.exports = LeftoversEnvironment;
