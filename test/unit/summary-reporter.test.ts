import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The closing line of a real jest run over fixture files: it must agree with the run's exit code. */
const ROOT = resolve(__dirname, '../..');
let cache: string;
beforeAll(() => { cache = mkdtempSync(join(tmpdir(), 'fz-jest-cache-')); });
afterAll(() => rmSync(cache, { recursive: true, force: true }));

test('a failing afterAll and a file that does not load count as failed, and the line agrees with the exit code', () => {
  const config = { rootDir: ROOT, testEnvironment: 'node', testMatch: ['<rootDir>/test/fixtures/reporter/*.fixture.js'], reporters: ['<rootDir>/test/support/summary-reporter.js'] };
  const run = spawnSync(process.execPath, [require.resolve('jest/bin/jest'), '--config', JSON.stringify(config), '--ci', '--cacheDirectory', cache], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  expect(run.status).toBe(1);
  const line = run.stdout.trim().split('\n').pop();
  expect(line).toMatch(/^2 passed, 2 failed, 0 skipped \(/);
  expect(line).toContain('test/fixtures/reporter/after-all-fails.fixture.js failed outside its tests');
  expect(line).toContain('test/fixtures/reporter/does-not-load.fixture.js failed outside its tests');
});
