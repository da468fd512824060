import Docker from 'dockerode';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectEngine, DEFAULT_DOCKER_SOCKET } from '../../runner/engine';

/**
 * The leftovers check's containers, on the real engine, run by a real jest over fixture files: a container the file
 * created and forgot fails it and is removed; one created meanwhile by someone else on the same engine is neither
 * named nor touched. (Processes and temp dirs: test/unit/leftovers-check.test.ts.)
 */
const ROOT = resolve(__dirname, '../..');
const docker: Docker = connectEngine(process.env.DOCKER_HOST ?? DEFAULT_DOCKER_SOCKET);
const prefix = `fz-leftovers-${process.pid}`;
let cache: string;
beforeAll(() => { cache = mkdtempSync(join(tmpdir(), 'fz-jest-cache-')); });
afterAll(async () => {
  rmSync(cache, { recursive: true, force: true });
  for (const c of await docker.listContainers({ all: true, filters: { name: [prefix] } })) await docker.getContainer(c.Id).remove({ force: true });
});

test('a file that leaves a container fails and it is removed; a container someone else made meanwhile is left alone', async () => {
  const config = {
    rootDir: ROOT, testMatch: ['<rootDir>/test/fixtures/leftovers-docker/*.fixture.js'],
    testEnvironment: '<rootDir>/test/support/leftovers-environment.js', reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
  };
  // Someone else's container on the same engine, created while the fixtures run.
  const other = await docker.createContainer({ Image: 'fangzhou/demo:1', name: `${prefix}-someone-else` });
  const run = spawnSync(process.execPath, [require.resolve('jest/bin/jest'), '--config', JSON.stringify(config), '--ci', '--cacheDirectory', cache, '--runInBand'],
    { cwd: ROOT, encoding: 'utf8', timeout: 100_000, env: { ...process.env, FZ_FIXTURE_PREFIX: prefix } });
  expect(run.stdout.trim().split('\n').pop()).toMatch(/^2 passed, 1 failed, 0 skipped \(/); // both tests pass; one file fails outside them
  expect(run.status).toBe(1);
  expect(run.stderr).toMatch(new RegExp(`leaves-a-container\\.fixture\\.js left behind what it started \\(now removed\\):\\n\\s+container ${prefix}-forgotten \\(fangzhou/demo:1, created\\)`));
  expect(run.stderr).not.toMatch(/removes-its-container\.fixture\.js left behind/);
  expect(run.stderr).not.toMatch(/someone-else/);
  const names = (await docker.listContainers({ all: true, filters: { name: [prefix] } })).map((c) => c.Names[0]);
  expect(names).toEqual([`/${prefix}-someone-else`]);
  await other.remove({ force: true });
});
