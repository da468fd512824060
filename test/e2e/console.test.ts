import Docker from 'dockerode';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { createClient as createDbClient, Store } from '../../lib/store';
import { DEFINE_PRODUCT, DEMO_PRODUCT } from '../../scripts/demo-product';
import { startStack, type Stack } from '../../scripts/stack';
import { launchBrowser, type TestBrowser } from '../support/browser';
import { clearReleaseNames } from '../support/docker';
import { waitUntil } from '../support/wait';

/**
 * The web console in a real browser (Debian's chromium driven by playwright-core) against the whole stack on the
 * real Docker engine: an operator signs in, deploys, upgrades to a version whose healthcheck fails and watches the
 * automatic rollback, sees a killed container turn red and recover, acknowledges an alarm and reads an inspection.
 * Screenshots go to test-output/screenshots (docs/ has copies of a few).
 */
const docker = new Docker();
const RELEASE = 'cons';
let stack: Stack;
let web: TestBrowser;
let page: Page;
let base: string;
let dir: string;

const releaseId = async () =>
  (await stack.graphql<{ releases: { id: string; name: string }[] }>('{ releases { id name } }')).data!.releases.find((r) => r.name === RELEASE)?.id;

beforeAll(async () => {
  await clearReleaseNames(docker, RELEASE);
  dir = mkdtempSync(join(tmpdir(), 'fz-console-'));
  stack = await startStack({ dataDir: dir, httpPort: 3390, wsPort: 3391, lambdaPort: 3392, storePort: 4890, output: join(dir, 'stack.log') });
  expect((await stack.graphql(DEFINE_PRODUCT, { input: DEMO_PRODUCT })).errors).toBeUndefined();
  await stack.startRunner(`console-${process.pid}`, ['--labels', 'zone=console']);
  await waitUntil('the runner', async () => ((await stack.graphql<{ hosts: unknown[] }>('{ hosts { id } }')).data?.hosts.length ?? 0) > 0);
  base = stack.url.replace(/\/graphql$/, '/console');
  web = await launchBrowser();
  page = await web.newPage();
  // Generous: on a loaded 2-core machine a handler's first request can take seconds.
  page.context().setDefaultTimeout(60_000);
}, 240_000);

afterAll(async () => {
  await web?.close();
  const id = stack && await releaseId().catch(() => undefined);
  if (id) {
    await stack.graphql('mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id });
    await waitUntil('containers removed', async () => (await docker.listContainers({ all: true, filters: { label: [`fangzhou.release=${id}`] } })).length === 0, 60_000).catch(() => undefined);
  }
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('refuses a wrong key with the API\'s message, then signs in with the keyboard alone', async () => {
  await page.goto(base);
  // React mounts after the load event: the keyboard-only user starts typing once the key field has the focus.
  await page.locator('#key:focus').waitFor();
  await page.keyboard.type('fza_not-the-token');
  await page.keyboard.press('Enter');
  await page.getByRole('alert').filter({ hasText: 'token is not valid' }).waitFor();
  await page.getByRole('button', { name: 'Sign in again' }).press('Enter');
  await page.locator('#key:focus').waitFor();
  await page.keyboard.type(stack.adminToken);
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.getByRole('navigation').getByRole('link', { name: 'Fleet' }).click();
  const host = page.getByTestId(`host-console-${process.pid}`);
  await host.getByText('READY').waitFor();
  await host.getByRole('progressbar', { name: 'Memory MB' }).waitFor();
  expect(await host.textContent()).toMatch(/zone=console/);
  await web.shot(page, 'fleet');
});

test('deploys the demo product from the topology page and shows every instance turn healthy', async () => {
  await page.getByRole('link', { name: 'Topology' }).click();
  await page.getByText('Deploy a product').click();
  await page.getByLabel('Product').selectOption('demo');
  await page.getByLabel('Version').selectOption('1.0.0');
  await page.getByLabel('Name').fill(RELEASE);
  await page.getByLabel('Replicas').fill('2');
  await page.getByRole('button', { name: 'Deploy', exact: true }).click();
  for (const n of [0, 1]) await page.locator(`[data-testid=instance-${RELEASE}-${n}][data-health=good]`).waitFor({ timeout: 60_000 });
  await page.getByTestId(`release-${RELEASE}`).getByText('RUNNING', { exact: true }).waitFor({ timeout: 30_000 });
  await web.shot(page, 'topology');
});

test('an operator reads an instance\'s container output, fetched through its runner, and follows it live', async () => {
  await page.getByTestId(`release-${RELEASE}`).getByRole('link', { name: RELEASE }).click();
  const row = page.getByRole('row').filter({ has: page.getByRole('cell', { name: `${RELEASE}-0`, exact: true }) });
  await row.getByRole('button', { name: 'Logs' }).click();
  // The demo's httpd logs every request: its own healthcheck asks for /healthz every few seconds.
  const lines = page.getByTestId('log-lines');
  await lines.getByText('url:/healthz').first().waitFor();
  const count = async () => ((await lines.textContent()) ?? '').split('\n').filter((l) => l.includes('url:/healthz')).length;
  const before = await count();
  await page.getByLabel('Follow').check();
  await waitUntil('newer healthcheck requests on screen while following', async () => (await count()) > before, 60_000);
  // Follow is the instanceLogTail subscription: a line printed now reaches the screen without a reload.
  const db = new Store(createDbClient(stack.env.DYNAMODB_ENDPOINT, 'local'), stack.env.FZ_TABLE_PREFIX);
  const subscriptions = await db.scan<{ kind: string; field?: string }>('subscriptions');
  db.client.destroy();
  expect(subscriptions.filter((s) => s.kind === 'subscription' && s.field === 'instanceLogTail')).toHaveLength(1);
  const [container] = await docker.listContainers({ filters: { label: [`fangzhou.release=${await releaseId()}`], name: [`fz-${RELEASE}-0`] } });
  const exec = await docker.getContainer(container.Id).exec({ Cmd: ['sh', '-c', 'echo console-follow-marker > /proc/1/fd/1'] });
  await exec.start({ Detach: true });
  await lines.getByText('console-follow-marker').waitFor({ timeout: 30_000 });
  await web.shot(page, 'instance-logs');
  await page.getByRole('button', { name: 'Close' }).click();
  await page.getByRole('link', { name: 'Topology' }).click();
}, 120_000);

test('an upgrade to 3.0.0-unhealthy shows its progress bar, then the automatic rollback as it happens', async () => {
  await page.getByTestId(`release-${RELEASE}`).getByRole('link', { name: RELEASE }).click();
  await page.getByText('Upgrade', { exact: true }).click();
  await page.getByLabel('Version').selectOption('3.0.0-unhealthy');
  await page.getByLabel('Health timeout (s)').fill('90');
  await page.getByRole('button', { name: 'Start upgrade' }).click();
  const upgrade = page.getByTestId('upgrade');
  await upgrade.getByRole('progressbar', { name: 'Instances done' }).waitFor();
  await upgrade.getByText('3.0.0-unhealthy').first().waitFor();
  await web.shot(page, 'upgrade-in-progress');
  // The health gate fails on 3.0.0-unhealthy and the platform rolls back by itself: the page says so as it happens.
  await page.locator('[data-testid=upgrade][data-state=ROLLING_BACK]').waitFor({ timeout: 150_000 });
  expect(await page.getByTestId('auto-rollback').textContent()).toMatch(/^Rolling back automatically to 1\.0\.0: rolling back: /);
  await web.shot(page, 'upgrade-rolling-back');
  // How the rollback ends is the platform's upgrade suite's to judge (test/e2e/upgrade.test.ts); the page shows the end.
  await page.locator('[data-testid=upgrade][data-state=ROLLED_BACK], [data-testid=upgrade][data-state=FAILED]').waitFor({ timeout: 150_000 });
  await web.shot(page, 'upgrade-rolled-back');
  await page.getByRole('tab', { name: 'Revisions' }).click();
  expect(await page.getByTestId('diff').textContent()).toMatch(/fangzhou\/demo:/);
}, 400_000);

test('a killed container turns red on the topology page and recovers by itself', async () => {
  await page.getByRole('link', { name: 'Topology' }).click();
  const instance = `[data-testid=instance-${RELEASE}-0]`;
  await page.locator(`${instance}[data-health=good]`).waitFor({ timeout: 60_000 });
  // Record every colour the instance shows, so a red that lasts one render is still seen.
  // The page's own globals, typed loosely: this code runs in the browser and the test is checked without the DOM library.
  await page.evaluate((selector) => {
    const w = globalThis as any;
    const seen: string[] = (w.seen = []);
    new w.MutationObserver(() => {
      const health = w.document.querySelector(selector)?.getAttribute('data-health');
      if (health && seen[seen.length - 1] !== health) seen.push(health);
    }).observe(w.document.body, { subtree: true, attributes: true, childList: true });
  }, instance);
  const [victim] = await docker.listContainers({ filters: { name: [`fz-${RELEASE}-0`] } });
  await docker.getContainer(victim.Id).kill();
  await page.waitForFunction(() => ((globalThis as any).seen as string[]).includes('bad'), undefined, { timeout: 30_000 });
  await page.locator(`${instance}[data-health=good]`).waitFor({ timeout: 60_000 });
});

test('an operator acknowledges the rollback alarm from the alarms page', async () => {
  await page.getByRole('link', { name: 'Alarms' }).click();
  const alarm = page.getByTestId('alarm-UPGRADE_ROLLED_BACK').first();
  await alarm.waitFor();
  await web.shot(page, 'alarms');
  await alarm.getByRole('button', { name: 'Acknowledge' }).click();
  await page.getByTestId('alarm-UPGRADE_ROLLED_BACK').waitFor({ state: 'detached' });
  await page.getByLabel('State').selectOption('ACKNOWLEDGED');
  await page.locator('[data-testid=alarm-UPGRADE_ROLLED_BACK][data-state=ACKNOWLEDGED]').waitFor();
});

test('an inspection run from the console shows its report with the stopped upgrade among the findings', async () => {
  await page.getByRole('link', { name: 'Inspections' }).click();
  await page.getByRole('button', { name: 'Run inspection now' }).click();
  const report = page.getByTestId('inspection-report');
  await report.getByRole('heading', { level: 1 }).getByText(/score/).waitFor();
  const row = report.getByRole('row').filter({ hasText: 'release.upgrade' });
  expect(await row.textContent()).toMatch(/release\/cons.*the last upgrade to 3\.0\.0-unhealthy ended (rolled back|failed)/);
  await web.shot(page, 'inspection');
});

test('/metrics needs a credential and then reports the instances, the hosts and the requests in the Prometheus format', async () => {
  const metricsUrl = stack.url.replace(/\/graphql$/, '/metrics');
  expect((await fetch(metricsUrl)).status).toBe(401);
  const res = await fetch(metricsUrl, { headers: { authorization: `Bearer ${stack.adminToken}` } });
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  expect(text).toMatch(new RegExp(`^fangzhou_instance_healthy\\{release="${RELEASE}",instance="${RELEASE}-0\\.${RELEASE}\\.fz\\.internal",host="console-${process.pid}"\\} 1$`, 'm'));
  expect(text).toMatch(/^fangzhou_host_allocated\{host="console-\d+",resource="memory_mb"\} 64$/m);
  expect(text).toMatch(/^fangzhou_instance_memory_limit_bytes\{.*\} 33554432$/m);
  expect(text).toMatch(/^fangzhou_http_request_duration_seconds_count\{.*route="\/graphql".*\} [1-9]/m);
});

test('a viewer key sees the fleet, releases and alarms, and no button that the API would refuse it', async () => {
  const key = await stack.graphql<{ createApiKey: { secret: string } }>('mutation { createApiKey(input: {name: "console-viewer", role: VIEWER}) { secret } }');
  expect(key.errors).toBeUndefined();
  const viewer = await web.newPage();
  await viewer.goto(base);
  await viewer.getByLabel('API key').fill(key.data!.createApiKey.secret);
  await viewer.getByRole('button', { name: 'Sign in' }).click();
  await viewer.getByText('viewer', { exact: true }).waitFor();
  await viewer.locator(`[data-testid=instance-${RELEASE}-0]`).waitFor();
  expect(await viewer.getByText('Deploy a product').count()).toBe(0);
  await viewer.getByTestId(`release-${RELEASE}`).getByRole('link', { name: RELEASE }).click();
  await viewer.getByRole('cell', { name: `${RELEASE}-0`, exact: true }).waitFor();
  for (const name of ['Restart', 'Logs', 'Pause', 'Resume']) expect(await viewer.getByRole('button', { name }).count()).toBe(0);
  expect(await viewer.getByText('Upgrade', { exact: true }).count()).toBe(0);
  await viewer.getByRole('tab', { name: 'Revisions' }).click();
  expect(await viewer.getByRole('button', { name: /^Roll back/ }).count()).toBe(0);
  await viewer.getByRole('link', { name: 'Alarms' }).click();
  await viewer.getByRole('heading', { name: 'Alarms' }).waitFor();
  expect(await viewer.getByRole('button', { name: 'Acknowledge' }).count()).toBe(0);
  await viewer.getByRole('link', { name: 'Inspections' }).click();
  await viewer.getByRole('heading', { name: 'Inspections' }).waitFor();
  expect(await viewer.getByRole('button', { name: /inspection/i }).count()).toBe(0);
  await web.shot(viewer, 'viewer-release');
  await viewer.close();
}, 120_000);

test('on a 390-wide phone screen the topology fits the width and the menu opens from a button', async () => {
  const phone = await web.newPage({ width: 390, height: 844 });
  await phone.goto(base);
  await phone.getByLabel('API key').fill(stack.adminToken);
  await phone.getByRole('button', { name: 'Sign in' }).click();
  await phone.locator(`[data-testid=instance-${RELEASE}-0]`).waitFor();
  expect(await phone.evaluate(() => (globalThis as any).document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await expect(phone.getByRole('link', { name: 'Alarms' }).isVisible()).resolves.toBe(false);
  await phone.getByRole('button', { name: 'Menu' }).click();
  await phone.getByRole('link', { name: 'Alarms' }).waitFor();
  await web.shot(phone, 'phone-topology');
  await phone.close();
});
