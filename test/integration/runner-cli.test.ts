import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * The runner's command line as an operator meets it. The host without a default route is a real network namespace
 * of its own (`unshare --net`: only a loopback, gone when the process ends).
 */
const ROOT = resolve(__dirname, '../..');
let stateDir: string;
beforeAll(() => { stateDir = mkdtempSync(join(tmpdir(), 'fz-runner-cli-')); });
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

const runner = (args: string[], wrap: string[] = []) => {
  const [cmd, ...rest] = [...wrap, process.execPath, '--import', 'tsx', join(ROOT, 'runner/main.ts'), ...args];
  return spawnSync(cmd, rest, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, FZ_API_URL: 'http://127.0.0.1:9/graphql' }, timeout: 60_000 });
};

test('on a host without a default route the runner refuses to start without --address and says what to pass', () => {
  const res = runner(['--name', 'lonely', '--state-dir', stateDir], ['unshare', '--net']);
  expect(res.status).toBe(2);
  expect(res.stderr.trim()).toBe("cannot tell this host's address: it has no default route; pass --address IP (the address other hosts of the fleet reach this one at)");
});
