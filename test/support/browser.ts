import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium (installed by .ci/run); Playwright downloads no browser of its own here. */
const CHROMIUM = '/usr/bin/chromium';

/** Screenshots are test output, kept outside git (see .gitignore); a few are copied into docs/ by hand. */
export const SCREENSHOT_DIR = resolve(__dirname, '../../test-output/screenshots');

export interface TestBrowser {
  context: BrowserContext;
  newPage(viewport?: { width: number; height: number }): Promise<Page>;
  shot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * A headless Chromium with a fresh profile (Playwright passes it as --user-data-dir) that is removed on close,
 * whatever the test did.
 */
export async function launchBrowser(): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'fz-chromium-'));
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
  return {
    context,
    async newPage(viewport = { width: 1280, height: 800 }) {
      const page = await context.newPage();
      await page.setViewportSize(viewport);
      return page;
    },
    async shot(page, name) {
      const path = join(SCREENSHOT_DIR, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
